"""Top-level wrappers the cocotb tests build (flat, AXI-named ports)."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from latchnic.hw.axil import AxiLiteRegisters
from latchnic.hw.regmap import RegisterFile


def axil_top():
    return AxiLiteRegisters(RegisterFile())


def axis_in_members(prefix="s_axis"):
    return {f"{prefix}_tdata": In(64), f"{prefix}_tkeep": In(8), f"{prefix}_tlast": In(1),
            f"{prefix}_tvalid": In(1), f"{prefix}_tready": Out(1)}


def drive_axis_in(m, top, stream_in, prefix="s_axis"):
    """AXI-Stream-named input ports onto hw/stream.py's layout.

    cocotbext-axi finds signals by AXI names and has no `first`; this thin
    adapter renames the fields and regenerates `first` (the beat after a
    `last`, or the first beat after reset, starts a packet)."""
    g = lambda n: getattr(top, f"{prefix}_{n}")
    first = Signal(init=1)
    with m.If(g("tvalid") & g("tready")):
        m.d.sync += first.eq(g("tlast"))
    m.d.comb += [stream_in.payload.data.eq(g("tdata")), stream_in.payload.keep.eq(g("tkeep")),
                 stream_in.payload.last.eq(g("tlast")), stream_in.payload.first.eq(first),
                 stream_in.valid.eq(g("tvalid")), g("tready").eq(stream_in.ready)]


class ParserTop(wiring.Component):
    def __init__(self):
        from latchnic.hw.policy.parser import result_layout
        super().__init__({**axis_in_members(),
                          "res_data": Out(result_layout.size), "res_valid": Out(1),
                          "res_ready": In(1)})

    def elaborate(self, platform):
        from latchnic.hw.policy.parser import HeaderParser
        m = Module()
        m.submodules.parser = p = HeaderParser()
        drive_axis_in(m, self, p.i)
        m.d.comb += [self.res_data.eq(p.o.payload.as_value()), self.res_valid.eq(p.o.valid),
                     p.o.ready.eq(self.res_ready)]
        return m


def parser_top():
    return ParserTop()
