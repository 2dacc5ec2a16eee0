"""GCMEngine with AXI-Stream-named flat ports, for cocotbext-axi and synthesis.

cocotbext-axi finds its signals by AXI names (tdata/tkeep/tvalid/tready/tlast)
and has no `first`; hw/stream.py's layout is one packed payload with data,
keep, first and last. This thin adapter renames the fields and regenerates
`first` from `last` (a beat after a last beat, or the first beat after reset,
starts a packet). The command, key and tag ports stay flat packed vectors;
the testbench packs them from the gateware's own layouts.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .gcm import GCMEngine, cmd_layout, tag_layout
from .key_expand import key_layout


class GCMAxisTop(wiring.Component):
    def __init__(self, config="compact"):
        self.engine = GCMEngine(config)
        w, sb = self.engine.width, self.engine.slot_bits
        super().__init__({
            "s_axis_tdata": In(w), "s_axis_tkeep": In(w // 8), "s_axis_tlast": In(1),
            "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "m_axis_tdata": Out(w), "m_axis_tkeep": Out(w // 8), "m_axis_tlast": Out(1),
            "m_axis_tvalid": Out(1), "m_axis_tready": In(1), "m_axis_tuser": Out(1),
            "cmd_data": In(cmd_layout(sb).size), "cmd_valid": In(1), "cmd_ready": Out(1),
            "key_data": In(key_layout(sb).size), "key_valid": In(1), "key_ready": Out(1),
            "tag_data": Out(tag_layout.size), "tag_valid": Out(1), "tag_ready": In(1),
            "len_errors": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = e = self.engine
        in_first = Signal(init=1)
        with m.If(self.s_axis_tvalid & self.s_axis_tready):
            m.d.sync += in_first.eq(self.s_axis_tlast)
        m.d.comb += [
            e.i.payload.data.eq(self.s_axis_tdata), e.i.payload.keep.eq(self.s_axis_tkeep),
            e.i.payload.last.eq(self.s_axis_tlast), e.i.payload.first.eq(in_first),
            e.i.valid.eq(self.s_axis_tvalid), self.s_axis_tready.eq(e.i.ready),
            self.m_axis_tdata.eq(e.o.payload.data), self.m_axis_tkeep.eq(e.o.payload.keep),
            self.m_axis_tlast.eq(e.o.payload.last), self.m_axis_tuser.eq(e.o.payload.first),
            self.m_axis_tvalid.eq(e.o.valid), e.o.ready.eq(self.m_axis_tready),
            e.cmd.payload.as_value().eq(self.cmd_data), e.cmd.valid.eq(self.cmd_valid),
            self.cmd_ready.eq(e.cmd.ready),
            e.key.payload.as_value().eq(self.key_data), e.key.valid.eq(self.key_valid),
            self.key_ready.eq(e.key.ready),
            self.tag_data.eq(e.tag.payload.as_value()), self.tag_valid.eq(e.tag.valid),
            e.tag.ready.eq(self.tag_ready), self.len_errors.eq(e.len_errors),
        ]
        return m
