"""bench/ecp5.py utilisation_by_module: yosys without flattening gives each
component its own cells (what `bench/policy --by-component` prints). A small
design with an adder in one submodule and plain logic in another: the carry
cells land in the adder's module only, the shell's flip-flops in the shell."""

from pathlib import Path

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from latchnic.bench.ecp5 import utilisation_by_module


class Unit(wiring.Component):
    """y = fn(a, b), registered."""
    a: In(24)
    b: In(24)
    y: Out(24)

    def __init__(self, fn):
        self.fn = fn
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.y.eq(self.fn(self.a, self.b))
        return m


class Pair(wiring.Component):
    a: In(24)
    b: In(24)
    s: Out(24)
    y: Out(24)

    def elaborate(self, platform):
        m = Module()
        m.submodules.adder = add = Unit(lambda a, b: a + b)
        m.submodules.gates = gates = Unit(lambda a, b: (a & b) ^ (a | ~b))
        keep = Signal(24)                   # a flip-flop of the pair itself
        m.d.sync += keep.eq(self.a)
        m.d.comb += [add.a.eq(keep), add.b.eq(self.b), gates.a.eq(self.a), gates.b.eq(self.b),
                     self.s.eq(add.y), self.y.eq(gates.y)]
        return m


def test_cells_land_in_their_module(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)             # YoWASP reaches relative paths under /tmp
    cells = utilisation_by_module(Pair(), Path("hier"), timeout=300)
    assert set(cells) >= {"", "core", "core.adder", "core.gates"}, cells
    assert cells["core.adder"]["CCU2C"] == 12, cells      # 24 bits, two per CCU2C
    assert cells["core.adder"]["TRELLIS_FF"] == 24, cells
    assert cells["core.gates"]["CCU2C"] == 0 and cells["core.gates"]["TRELLIS_FF"] == 24, cells
    assert cells["core.gates"]["LUT4"] >= 1, cells
    assert cells["core"]["TRELLIS_FF"] == 24 and cells["core"]["CCU2C"] == 0, cells
    # the shell: a scan chain bit per input, a capture bit per output
    assert cells[""]["TRELLIS_FF"] == 4 * 24, cells
