"""SAD inbound lookup (RFC 4301 4.1): the SA for an inbound ESP/AH packet by
the longest match of (SPI, destination, source), then (SPI, destination),
then SPI alone; ESP and AH SPIs are separate spaces. Same result as
sim/sad.Sad.lookup_in.

The inbound selectors of every SA sit in one block RAM, indexed by SAD slot;
a lookup scans the slots in order, one per cycle, keeping the best rank (an
earlier slot wins a tie, as the model's insertion order does) and stopping
early on a rank-2 (SPI, dst, src) match or after the highest slot ever
written valid. Cost: up to (that slot + 1) x rows + 5 cycles (the match is
pipelined: two cycles more per lookup).

`rows` > 1 stores an entry as that many narrower RAM rows, read on
consecutive cycles: 64 entries of 293 bits fill 9 ECP5 EBRs (512 x 36 each,
64 of 512 rows used) in one row, 3 in four (256 x 74 bits). A write takes
`rows` cycles (from the cycle of `w_en`); no lookup starts meanwhile.
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .folded import FoldedTable
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
    def __init__(self, sas: int = 64, rows: int = 1):
        assert sas & (sas - 1) == 0 and rows & (rows - 1) == 0
        self.sas = sas
        self.rows = rows
        self.abits = max((sas - 1).bit_length(), 1)
        super().__init__({"req": In(stream.Signature(req_layout)),
                          "resp": Out(stream.Signature(resp_layout)),
                          "w_en": In(1), "w_index": In(16), "w_data": In(entry_layout),
                          "w_busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        ab = self.abits
        rb = (self.rows - 1).bit_length()
        t = FoldedTable(m, entry_layout, self.sas, self.rows, self.w_en, self.w_index[:ab], self.w_data)
        rp, w_busy = t.rp, t.w_busy
        m.d.comb += self.w_busy.eq(w_busy)
        # highest slot ever written valid: the slots after it are empty, the scan stops there
        top = Signal(ab)
        with m.If(self.w_en & self.w_data.valid & (self.w_index[:ab] > top)):
            m.d.sync += top.eq(self.w_index[:ab])

        req = Signal(req_layout)
        ridx = Signal(ab + rb + 1)             # row addressed this cycle
        didx = Signal(ab + rb + 1)             # row on rp.data
        # three stages: the entry is registered as it leaves the RAM (an ECP5
        # EBR's clock-to-output leaves no room for logic), gives its compares
        # (SPI, 128-bit dst and src equality) to registers, and the cycle
        # after ranks it and decides while the scan reads on
        e = Signal(entry_layout)
        q_pend = Signal()
        q_idx = Signal(ab + 1)
        whole, entry = t.assemble(m, didx)
        m.d.sync += [e.eq(entry), q_idx.eq(didx[rb:]), q_pend.eq(whole)]
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
                m.d.comb += [self.req.ready.eq(~w_busy), rp.addr.eq(0)]
                m.d.sync += [q_pend.eq(0), p_pend.eq(0)]
                with m.If(self.req.valid & ~w_busy):
                    m.d.sync += [req.eq(self.req.payload), ridx.eq(1), didx.eq(0), resp.eq(0)]
                    m.next = "SCAN"
            with m.State("SCAN"):
                m.d.comb += rp.addr.eq(ridx[:ab + rb])
                m.d.sync += [ridx.eq(ridx + 1), didx.eq(ridx)]
                better = p_pend & match & (~resp.hit | (rank > resp.rank))
                with m.If(better):
                    m.d.sync += [resp.hit.eq(1), resp.rank.eq(rank), resp.index.eq(p_idx)]
                with m.If((better & (rank == 2)) | (p_pend & (p_idx == top))):
                    m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += self.resp.valid.eq(1)
                with m.If(self.resp.ready):
                    m.next = "IDLE"
        return m
