"""Fold the flip-flop after an ECP5 block RAM read port into the EBR's own
output register: a pass over the JSON netlist that `synth_ecp5 -json` writes,
run before nextpnr.

Why: yosys maps block RAM to DP16KD with REGMODE "NOREG" only (its
lib/lattice/brams_16kd.txt has no output-register option), and no available
tool folds the output register afterwards, so this is written by hand. An
EBR's clock-to-output is 5.61 ns without the output register and 0.96 ns with
it (-6 grade). The gateware registers every RAM word in a plain flip-flop
right after the synchronous read port; REGMODE "OUTREG" delays DO by exactly
one clock, the same as a flip-flop that captures DO every cycle, so that
flip-flop can move into the EBR with the same cycle behaviour.

A read port is changed only when every condition holds (anything else leaves
it untouched, with the first failing condition counted in the summary):

- its REGMODE is "NOREG", its OCE is constant 1 and its RST constant 0;
- every used DO bit has exactly one sink, the DI input of a TRELLIS_FF;
- each such flip-flop is clocked by the port's read-clock net on the same edge,
  has no clock enable (CEMUX "1", or CE tied active), no reset (LSR tied
  inactive, not LSRMODE "PRLD"), starts at 0 (REGSET "RESET", no init 1: the
  EBR output register powers up at 0) and has the EBR's GSR setting.

Then REGMODE becomes "OUTREG", each DO bit drives the net the flip-flop's Q
drove and the flip-flop is deleted. The old DO nets are left without driver
or sink; their names are dropped from `netnames`.

The read ports: DP16KD port A (DOA0..17, CLKA, OCEA, RSTA, REGMODE_A) and
port B (likewise); PDPW16KD (DO0..35, CLKR, OCER, RST, REGMODE). yosys writes
its 36-bit simple-dual-port RAM as a DP16KD with DATA_WIDTH_A 36 (nextpnr's
"PDP mode"): there the read word is DOA0..17 + DOB0..17, all read on CLKB
with OCEB and RSTB, and it is one read port. It gets both REGMODE_A and
REGMODE_B "OUTREG" and OCEA tied to 1 (yosys ties OCEA to 0), which is what
nextpnr itself makes of a PDPW16KD (REGMODE copied to both halves, OCEA left
at 1) and how the EBR was measured at 0.96 ns clock-to-output.

    python -m latchnic.boards.ecp5_outreg IN.json OUT.json
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# Part of bench/ecp5.py's cache digest: raise it whenever the pass changes
# what it writes, so cached place-and-route results are not reused.
OUTREG_VERSION = "1"


@dataclass(frozen=True)
class ReadPort:
    name: str                  # "A", "B", "R" (PDPW16KD, or DP16KD in PDP mode)
    do: tuple[str, ...]        # data-out pins, in bit order
    clk: str                   # read clock pin
    clkmux: str                # its inversion parameter
    oce: tuple[str, ...]       # output clock enables that must be 1
    rst: tuple[str, ...]       # resets that must be 0
    regmode: tuple[str, ...]   # parameters set to "OUTREG"
    tie_high: tuple[str, ...] = ()   # pins tied to 1 when absorbed


def _pins(prefix, n):
    return tuple(f"{prefix}{i}" for i in range(n))


DP16KD_A = ReadPort("A", _pins("DOA", 18), "CLKA", "CLKAMUX", ("OCEA",), ("RSTA",), ("REGMODE_A",))
DP16KD_B = ReadPort("B", _pins("DOB", 18), "CLKB", "CLKBMUX", ("OCEB",), ("RSTB",), ("REGMODE_B",))
DP16KD_PDP = ReadPort("R", _pins("DOA", 18) + _pins("DOB", 18), "CLKB", "CLKBMUX", ("OCEB",),
                      ("RSTA", "RSTB"), ("REGMODE_A", "REGMODE_B"), tie_high=("OCEA",))
PDPW16KD_R = ReadPort("R", _pins("DO", 36), "CLKR", "CLKRMUX", ("OCER",), ("RST",), ("REGMODE",))


def read_ports(cell: dict) -> tuple[ReadPort, ...]:
    if cell["type"] == "PDPW16KD":
        return (PDPW16KD_R,)
    if cell["type"] == "DP16KD":
        if _width(cell, "A") == 36:
            return (DP16KD_PDP,)
        return (DP16KD_A, DP16KD_B)
    return ()


def _width(cell, port) -> int | None:
    return _int(cell.get("parameters", {}).get(f"DATA_WIDTH_{port}", 18))


def _unsupported(cell) -> str | None:
    """A RAM this pass does not know how to read, left as it is: 36 bits on
    port B only is not nextpnr's PDP mode (DATA_WIDTH_A 36) and not a valid
    true dual-port width either (yosys never writes it)."""
    if cell["type"] == "DP16KD" and _width(cell, "B") == 36 and _width(cell, "A") != 36:
        return "DATA_WIDTH_B 36 without DATA_WIDTH_A 36"
    return None


# ------------------------------------------------------------ JSON values

def _text(value) -> str:
    """A string parameter as yosys writes it: a trailing space marks a string
    that would otherwise read as bits ("1 " is the string "1"); a string
    parameter can also arrive as its ASCII bits."""
    if not isinstance(value, str):
        return str(value)
    if value.endswith(" ") and set(value[:-1]) <= set("01xz"):
        return value[:-1]
    if value and len(value) % 8 == 0 and set(value) <= set("01"):
        raw = int(value, 2).to_bytes(len(value) // 8, "big").lstrip(b"\0")
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            return value
    return value


def _int(value) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value and set(value) <= set("01"):
        return int(value, 2)
    return None


def _param(cell, name, default) -> str:
    params = cell.get("parameters", {})
    return _text(params[name]) if name in params else default


def _bit(cell, pin):
    """The one bit on `pin`: a net number, "0"/"1"/"x"/"z", None if
    unconnected, "?" if it is wider than one bit (fails every check)."""
    bits = cell.get("connections", {}).get(pin)
    if not bits:
        return None
    return bits[0] if len(bits) == 1 else "?"


def _tied(cell, pin, unconnected: dict):
    """The constant a pin is held at after its inversion parameter (<pin>MUX:
    the pin's name passes, "INV" inverts), or None if it is not constant.
    An unconnected pin: `unconnected[key]` (how nextpnr ties it off), key
    None without a MUX parameter, "PIN" with the passing one; None for a case
    not listed."""
    mux = _param(cell, pin + "MUX", None)
    bit = _bit(cell, pin)
    if bit is None:
        return unconnected.get("PIN" if mux == pin else mux)
    if bit not in ("0", "1") or mux not in (None, pin, "INV"):
        return None
    return int(bit) ^ (mux == "INV")


# How nextpnr ties off an unconnected pin (ecp5/bitstream.cc, write_bram: a
# CIB clock/LSR/CE wire is tied to 1, with MUX "INV" added only when there was
# no MUX parameter; ecp5/pack.cc drops an FF's LSR tied inactive). A case not
# listed is refused.
UNCONNECTED_OCE = {None: 1, "PIN": 1}
UNCONNECTED_RST = {None: 0}
UNCONNECTED_LSR = {None: 0, "PIN": 0}


# ------------------------------------------------------------ the pass

@dataclass
class OutregReport:
    absorbed: list = field(default_factory=list)   # (cell, port, flip-flops removed)
    skipped: list = field(default_factory=list)    # (cell, port, reason)
    seconds: float = 0.0

    def summary(self) -> dict:
        return {"version": OUTREG_VERSION,
                "ports_absorbed": len(self.absorbed),
                "ffs_removed": sum(n for _, _, n in self.absorbed),
                "ports_skipped": len(self.skipped),
                "skipped": dict(Counter(r for _, _, r in self.skipped).most_common()),
                "seconds": round(self.seconds, 2)}

    def text(self) -> str:
        s = self.summary()
        skips = ", ".join(f"{n} {r}" for r, n in s["skipped"].items()) or "none"
        return (f"EBR output registers: {s['ports_absorbed']} read ports absorbed "
                f"({s['ffs_removed']} flip-flops removed); skipped: {skips}")


def _is_blackbox(module) -> bool:
    v = module.get("attributes", {}).get("blackbox")
    return v is not None and (_int(v) or 0) != 0


def _sinks(module) -> dict:
    """net -> [(cell, pin)] for every input it reaches, and ("<port>", name)
    for a module output. A cell without port directions counts every pin."""
    sinks: dict = {}
    for name, port in module.get("ports", {}).items():
        if port.get("direction") in ("output", "inout"):
            for b in port.get("bits", []):
                if isinstance(b, int):
                    sinks.setdefault(b, []).append(("<port>", name))
    for cname, cell in module.get("cells", {}).items():
        dirs = cell.get("port_directions", {})
        for pin, bits in cell.get("connections", {}).items():
            if dirs.get(pin, "input") == "output":
                continue
            for b in bits:
                if isinstance(b, int):
                    sinks.setdefault(b, []).append((cname, pin))
    return sinks


def _init_ones(module) -> set:
    """Nets with an init attribute of 1 (yosys removes init when it maps a
    flip-flop; this refuses any that survive)."""
    ones = set()
    for nn in module.get("netnames", {}).values():
        init = nn.get("attributes", {}).get("init")
        if not isinstance(init, str):
            continue
        bits = nn.get("bits", [])
        for i, b in enumerate(bits):       # init is MSB first, bits LSB first
            j = len(init) - 1 - i
            if isinstance(b, int) and 0 <= j < len(init) and init[j] == "1":
                ones.add(b)
    return ones


def _ff_reason(ff, clk_net, inverted, gsr, init_ones):
    """Why this flip-flop cannot become the EBR output register, or None."""
    if _bit(ff, "CLK") != clk_net:
        return "FF on another clock"
    clkmux = _param(ff, "CLKMUX", "CLK")
    if clkmux not in ("CLK", "INV") or (clkmux == "INV") != inverted:
        return "FF on the other clock edge"
    cemux = _param(ff, "CEMUX", "1")
    if cemux != "1" and _tied(ff, "CE", {}) != 1:      # unconnected CE: refused
        return "FF with clock enable"
    if _param(ff, "LSRMODE", "LSR") != "LSR" or _tied(ff, "LSR", UNCONNECTED_LSR) != 0:
        return "FF with reset"
    if _param(ff, "REGSET", "RESET") != "RESET" or _bit(ff, "Q") in init_ones:
        return "FF starts at 1"
    if _param(ff, "GSR", "ENABLED") != gsr:
        return "FF GSR differs from the EBR's"
    if not isinstance(_bit(ff, "Q"), int):
        return "FF output unconnected"
    return None


def _check_port(cell, port, sinks, cells, init_ones):
    """(reason, None) or (None, [(DO pin, DO net, flip-flop name)])."""
    for p in port.regmode:
        if _param(cell, p, "NOREG") != "NOREG":
            return f"{p} not NOREG", None
    if any(_tied(cell, p, UNCONNECTED_OCE) != 1 for p in port.oce):
        return "OCE not constant 1", None
    if any(_tied(cell, p, UNCONNECTED_RST) != 0 for p in port.rst):
        return "RST not constant 0", None
    clk_net = _bit(cell, port.clk)
    if not isinstance(clk_net, int):
        return "read clock not a net", None
    clkmux = _param(cell, port.clkmux, port.clk)
    if clkmux not in (port.clk, "INV"):
        return f"{port.clkmux} {clkmux}", None
    gsr = _param(cell, "GSR", "ENABLED")
    moves = []
    for pin in port.do:
        net = _bit(cell, pin)
        if not isinstance(net, int) or net not in sinks:
            continue                        # unused data bit: passes through unchanged
        users = sinks[net]
        if len(users) > 1:
            return "DO bit with more than one sink", None
        ff_name, ff_pin = users[0]
        ff = cells.get(ff_name)
        if ff is None:
            return "DO bit to a module port", None
        if ff["type"] != "TRELLIS_FF":
            return f"DO bit into a {ff['type']}", None
        if ff_pin != "DI":
            return f"DO bit into a FF's {ff_pin}", None
        reason = _ff_reason(ff, clk_net, clkmux == "INV", gsr, init_ones)
        if reason:
            return reason, None
        moves.append((pin, net, ff_name))
    if not moves:
        return "no DO bit used (write-only port)", None
    return None, moves


def absorb_module(module: dict, report: OutregReport):
    cells = module.get("cells", {})
    sinks = _sinks(module)
    init_ones = _init_ones(module)
    dead = set()
    rams = [name for name, cell in cells.items() if read_ports(cell)]   # before any deletion
    for cname in rams:
        cell = cells[cname]
        if reason := _unsupported(cell):
            report.skipped.append((cname, "*", reason))
            continue
        for port in read_ports(cell):
            reason, moves = _check_port(cell, port, sinks, cells, init_ones)
            if reason:
                report.skipped.append((cname, port.name, reason))
                continue
            for pin, net, ff_name in moves:
                # DO now drives what the flip-flop's Q drove
                cell["connections"][pin] = [cells[ff_name]["connections"]["Q"][0]]
                del cells[ff_name]
                dead.add(net)
            for p in port.regmode:
                cell.setdefault("parameters", {})[p] = "OUTREG"
            for p in port.tie_high:
                cell["connections"][p] = ["1"]
            report.absorbed.append((cname, port.name, len(moves)))
    if dead:
        # the old DO nets have no driver and no sink now: drop their names
        netnames = module.get("netnames", {})
        for name in list(netnames):
            bits = netnames[name].get("bits", [])
            if any(b in dead for b in bits if isinstance(b, int)):
                bits = ["x" if isinstance(b, int) and b in dead else b for b in bits]
                if all(not isinstance(b, int) for b in bits):
                    del netnames[name]
                else:
                    netnames[name]["bits"] = bits


def absorb_output_registers(netlist: dict) -> OutregReport:
    """Rewrite a yosys JSON netlist (as loaded by json.load) in place."""
    t = time.monotonic()
    report = OutregReport()
    for module in netlist.get("modules", {}).values():
        if not _is_blackbox(module):
            absorb_module(module, report)
    report.seconds = time.monotonic() - t
    return report


def rewrite(src: Path, dst: Path) -> OutregReport:
    """Read `src` (synth_ecp5 -json), write the rewritten netlist to `dst`
    (may be the same file)."""
    t = time.monotonic()
    netlist = json.loads(Path(src).read_text())
    report = absorb_output_registers(netlist)
    Path(dst).write_text(json.dumps(netlist))
    report.seconds = time.monotonic() - t
    return report


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    report = rewrite(Path(argv[0]), Path(argv[1]))
    print(report.text())
    print(json.dumps(report.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
