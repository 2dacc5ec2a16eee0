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


class CoreTop(wiring.Component):
    """PolicyCore with AXI-named stream ports and flat verdict/meta ports."""

    def __init__(self, params):
        from latchnic.hw.axil import axil_members
        from latchnic.hw.policy.core import GEN_BITS, PolicyCore, verdict_layout
        self.core = PolicyCore(params)
        super().__init__({**axil_members(), **axis_in_members(),
                          "meta_inbound": In(1), "meta_now": In(32),
                          # second pass of inbound ESP/AH (core.meta_layout)
                          "meta_decap": In(1), "meta_sa": In(16), "meta_seq": In(64),
                          "meta_status": In(3), "meta_gen": In(GEN_BITS),
                          "verdict_data": Out(verdict_layout.size), "verdict_valid": Out(1),
                          "verdict_ready": In(1), "irq": Out(1)})

    def elaborate(self, platform):
        from latchnic.hw.axil import axil_members
        m = Module()
        m.submodules.core = c = self.core
        for name in axil_members():
            a, b = getattr(self, name), getattr(c, name)
            m.d.comb += (b.eq(a) if self.signature.members[name].flow == In else a.eq(b))
        drive_axis_in(m, self, c.i)
        m.d.comb += [c.meta.inbound.eq(self.meta_inbound), c.meta.now.eq(self.meta_now),
                     c.meta.decap.eq(self.meta_decap), c.meta.sa.eq(self.meta_sa),
                     c.meta.seq.eq(self.meta_seq), c.meta.status.eq(self.meta_status),
                     c.meta.gen.eq(self.meta_gen),
                     self.verdict_data.eq(c.verdict.payload.as_value()),
                     self.verdict_valid.eq(c.verdict.valid), c.verdict.ready.eq(self.verdict_ready),
                     self.irq.eq(c.irq)]
        return m


def core_params(split: bool | None = None, latch_counters: bool | None = None):
    """The core benches' build; `split` (default: CORE_LATCH_SPLIT=1 in the
    environment, which the cocotb process inherits) adds a 4-slot IPv6 latch
    table after the 16 IPv4 slots, as tests/hw/policy/core_config_split.toml;
    `latch_counters` (default: unless CORE_LATCH_COUNTERS=0) keeps per-latch
    counters."""
    import os
    from latchnic.hw.regmap import Params
    if split is None:
        split = os.environ.get("CORE_LATCH_SPLIT") == "1"
    if latch_counters is None:
        latch_counters = os.environ.get("CORE_LATCH_COUNTERS", "1") == "1"
    return Params(sas=16, spd_rules=16, templates=8, latch_capacity=20 if split else 16, latch_ways=2,
                  latch_capacity_v6=4 if split else 0, event_depth=256, pad_claims=16,
                  latch_counters=latch_counters)


def core_top():
    return CoreTop(core_params(split=False, latch_counters=True))


def core_top_split():
    return CoreTop(core_params(split=True, latch_counters=True))


def core_top_no_latch_counters():
    """The default bench build without per-latch counters (as the 25F and 85F
    targets of bench/policy.py)."""
    return CoreTop(core_params(split=False, latch_counters=False))
