"""SAD inbound lookup (RFC 4301 4.1): the SA for an inbound ESP/AH packet by
the longest match of (SPI, destination, source), then (SPI, destination),
then SPI alone; ESP and AH SPIs are separate spaces. Same result as
sim/sad.Sad.lookup_in.

The inbound selectors of every SA sit in one block RAM, indexed by SAD slot;
a lookup scans the slots in order, one per cycle, keeping the best rank (an
earlier slot wins a tie, as the model's insertion order does) and stopping
early on a rank-2 (SPI, dst, src) match. Cost: up to `sas` + 5 cycles (the
match is pipelined: two cycles more per lookup).
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .selectors import pack

entry_layout = data.StructLayout({
    "valid": 1, "ah": 1, "spi": 32,
    "has_dst": 1, "has_src": 1, "v6": 1,      # v6: the version of dst (and src)
    "dst": 128, "src": 128,
})

req_layout = data.StructLayout({"ah": 1, "spi": 32, "v6": 1, "dst": 128, "src": 128})
resp_layout = data.StructLayout({"hit": 1, "index": 16, "rank": 2})


def encode_sa_in(sa) -> int:
    """The inbound selectors of a latchnic.config.SA (dir = in)."""
    v6 = (sa.dst or sa.src).version == 6 if (sa.dst or sa.src) else False
    return pack(entry_layout, {
        "valid": 1, "ah": int(sa.proto == "ah"), "spi": sa.spi,
        "has_dst": int(sa.dst is not None), "has_src": int(sa.dst is not None and sa.src is not None),
        "v6": int(v6), "dst": int(sa.dst) if sa.dst else 0, "src": int(sa.src) if sa.src else 0})


class SadLookup(wiring.Component):
    def __init__(self, sas: int = 64):
        assert sas & (sas - 1) == 0
        self.sas = sas
        self.abits = max((sas - 1).bit_length(), 1)
        super().__init__({"req": In(stream.Signature(req_layout)),
                          "resp": Out(stream.Signature(resp_layout)),
                          "w_en": In(1), "w_index": In(16), "w_data": In(entry_layout)})

    def elaborate(self, platform):
        m = Module()
        ab = self.abits
        m.submodules.mem = mem = Memory(shape=entry_layout, depth=self.sas, init=[])
        wp, rp = mem.write_port(), mem.read_port()
        m.d.comb += [wp.addr.eq(self.w_index[:ab]), wp.data.eq(self.w_data), wp.en.eq(self.w_en)]

        req = Signal(req_layout)
        ridx = Signal(ab + 1)
        didx = Signal(ab + 1)
        # three stages: the entry is registered as it leaves the RAM (an ECP5
        # EBR's clock-to-output leaves no room for logic), gives its compares
        # (SPI, 128-bit dst and src equality) to registers, and the cycle
        # after ranks it and decides while the scan reads on
        e = Signal(entry_layout)
        q_pend = Signal()
        q_idx = Signal(ab + 1)
        m.d.sync += [e.eq(rp.data), q_idx.eq(didx), q_pend.eq(1)]
        same = Signal()
        dst_ok = Signal()
        src_ok = Signal()
        has_dst = Signal()
        has_src = Signal()
        p_pend = Signal()
        p_idx = Signal(ab + 1)
        m.d.sync += [same.eq(e.valid & (e.ah == req.ah) & (e.spi == req.spi)),
                     dst_ok.eq((e.v6 == req.v6) & (e.dst == req.dst)),
                     src_ok.eq((e.v6 == req.v6) & (e.src == req.src)),
                     has_dst.eq(e.has_dst), has_src.eq(e.has_src), p_idx.eq(q_idx), p_pend.eq(q_pend)]
        # rank of the registered entry: -1 (no match), 0 SPI, 1 +dst, 2 +dst+src
        match = Signal()
        rank = Signal(2)
        with m.If(same):
            with m.If(~has_dst):
                m.d.comb += [match.eq(1), rank.eq(0)]
            with m.Elif(dst_ok & ~has_src):
                m.d.comb += [match.eq(1), rank.eq(1)]
            with m.Elif(dst_ok & src_ok):
                m.d.comb += [match.eq(1), rank.eq(2)]
        resp = Signal(resp_layout)
        m.d.comb += self.resp.payload.eq(resp)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.req.ready.eq(1), rp.addr.eq(0)]
                m.d.sync += [q_pend.eq(0), p_pend.eq(0)]
                with m.If(self.req.valid):
                    m.d.sync += [req.eq(self.req.payload), ridx.eq(1), didx.eq(0), resp.eq(0)]
                    m.next = "SCAN"
            with m.State("SCAN"):
                m.d.comb += rp.addr.eq(ridx[:ab])
                m.d.sync += [ridx.eq(ridx + 1), didx.eq(ridx)]
                better = p_pend & match & (~resp.hit | (rank > resp.rank))
                with m.If(better):
                    m.d.sync += [resp.hit.eq(1), resp.rank.eq(rank), resp.index.eq(p_idx)]
                with m.If((better & (rank == 2)) | (p_pend & (p_idx == self.sas - 1))):
                    m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += self.resp.valid.eq(1)
                with m.If(self.resp.ready):
                    m.next = "IDLE"
        return m
