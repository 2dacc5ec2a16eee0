"""AXI4-Lite slave + generated register decoder under cocotb/Verilator."""

from amaranth.hdl import Array, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from policy_harness import run
from policy_tops import axil_top

from latchnic.hw.regmap import REGMAP


class _ArrayPorts(wiring.Component):
    """axil_top with one input port per register of an indexed array (DROP_*:
    `drop_malformed`, ...), as the cocotb bench drives every ro register by
    name; the array's `<array>_data` is the port `<array>_index` selects
    (the core reads a RAM there)."""

    def __init__(self):
        self.inner = axil_top()
        members = {n: mb for n, mb in self.inner.signature.members.items()
                   if not n.endswith(("_index", "_data"))}
        self.arrays = {}
        for r in REGMAP:
            if r.array:
                members[r.port] = In(32)
                self.arrays.setdefault(r.array, []).append(r.port)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self.inner
        for name, member in self.inner.signature.members.items():
            if name.endswith(("_index", "_data")):
                continue
            a, b = getattr(self, name), getattr(inner, name)
            m.d.comb += (b.eq(a) if member.flow == In else a.eq(b))
        for array, ports in self.arrays.items():
            values = Array(getattr(self, p) for p in ports)
            m.d.comb += getattr(inner, array + "_data").eq(values[getattr(inner, array + "_index")])
        return m


def test_axil_register_file():
    tests, _ = run(_ArrayPorts, name="policy_axil", test_module="cocotb_axil_tb")
    assert tests == 5
