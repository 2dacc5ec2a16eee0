"""PAD claims table (RFC 4301 4.4.3): which remote addresses each peer may
claim. The inbound child-SA check after decapsulation asks "may the peer of
this SA claim this remote address?" (sim: Peer.may_claim, drop `pad_claim`).

One block RAM of claim entries (peer index, IP version, inclusive [lo, hi]
address range; a prefix is its range), in any order. The driver writes every
claim of every peer from index 0 on and ends the list with an invalid entry
(TBL_COMMIT table `pad`, hw/policy/program.py). A lookup scans from entry 0,
one entry per cycle, and stops at the first entry that covers the request,
at the first invalid entry or at the last entry. No hit: the claim is refused
(fail closed).

Cost: (k + 1) x rows + 5 cycles for a hit at entry k; a miss costs (claims
programmed + 1) x rows + 5 (the match is pipelined: three cycles more per
lookup, not per entry).

`rows` > 1 stores a claim as that many narrower RAM rows (hw/policy/folded.py):
64 claims of 266 bits take 8 ECP5 EBRs in one row, 2 in four (256 x 67 bits).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..onehot import one_hot
from .folded import FoldedTable
from .selectors import ADDR_LE_TERMS, le_combine, le_terms, pack

claim_layout = data.StructLayout({"valid": 1, "peer": 8, "v6": 1, "lo": 128, "hi": 128})

req_layout = data.StructLayout({"peer": 8, "v6": 1, "addr": 128})
resp_layout = data.StructLayout({"hit": 1, "index": 16})


def encode_claim(peer_index: int, sel) -> int:
    """One claim (a latchnic.config.AddrSel) of the peer with PAD index `peer_index`."""
    return pack(claim_layout, {"valid": 1, "peer": peer_index, "v6": int(sel.version == 6),
                               "lo": sel.lo, "hi": sel.hi})


class PadClaims(wiring.Component):
    """`req`: (peer, version, address); `resp`: does a claim of that peer cover it.
    `w_*`: the table write port (one whole claim per write, from TBL_COMMIT)."""

    def __init__(self, capacity: int = 64, rows: int = 1):
        assert capacity & (capacity - 1) == 0
        self.capacity = capacity
        self.rows = rows
        self.abits = max((capacity - 1).bit_length(), 1)
        super().__init__({"req": In(stream.Signature(req_layout)),
                          "resp": Out(stream.Signature(resp_layout)),
                          "w_en": In(1), "w_index": In(16), "w_data": In(claim_layout),
                          "w_busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        ab = self.abits
        t = FoldedTable(m, platform, claim_layout, self.capacity, self.rows, self.w_en, self.w_index[:ab],
                        self.w_data)
        rp, rb = t.rp, t.rb
        m.d.comb += self.w_busy.eq(t.w_busy)

        req = Signal(req_layout)
        ridx = Signal(ab + rb + 1)     # row addressed this cycle
        didx = Signal(ab + rb + 1)     # row on rp.data
        # four stages: the entry is registered as it leaves the RAM (an ECP5
        # EBR's clock-to-output leaves no room for logic), gives short
        # compares (16-bit address chunks, selectors.CHUNK) to registers,
        # which combine into the bound tests the cycle after; the FSM
        # decides on those while the scan reads on (entries read past the
        # decision are ignored). Timing: 9b8761d's 25F report, a 32-bit
        # chunk's compare from the entry register (-0.37 ns); the chunks'
        # combine behind the compares' registers would be in the decision
        q_pend = Signal()
        q_idx = Signal(ab + 1)
        whole, e = t.assemble(m, didx)      # e: the entry, a cycle after `whole`
        m.d.sync += [q_idx.eq(didx[rb:]), q_pend.eq(whole)]
        t_peer = Signal()
        t_lo = Signal(ADDR_LE_TERMS)
        t_hi = Signal(ADDR_LE_TERMS)
        t_valid = Signal()
        t_pend = Signal()              # the term registers hold an entry
        t_last = Signal()
        t_index = Signal(ab + 1)
        m.d.sync += [t_peer.eq((e.peer == req.peer) & (e.v6 == req.v6)),
                     t_lo.eq(le_terms(e.lo, req.addr, 128)),
                     t_hi.eq(le_terms(req.addr, e.hi, 128)),
                     t_valid.eq(e.valid), t_last.eq(q_idx == self.capacity - 1), t_index.eq(q_idx),
                     t_pend.eq(q_pend)]
        p_peer, p_lo, p_hi = Signal(), Signal(), Signal()
        p_valid = Signal()
        p_pend = Signal()              # the bound registers hold an entry
        p_last = Signal()
        p_index = Signal(ab + 1)
        m.d.sync += [p_peer.eq(t_peer), p_lo.eq(le_combine(t_lo)), p_hi.eq(le_combine(t_hi)),
                     p_valid.eq(t_valid), p_last.eq(t_last), p_index.eq(t_index), p_pend.eq(t_pend)]
        covers = Signal()
        m.d.comb += covers.eq(p_peer & p_lo & p_hi)
        resp = Signal(resp_layout)
        m.d.comb += self.resp.payload.eq(resp)

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += [self.req.ready.eq(~t.w_busy), rp.addr.eq(0)]
                m.d.sync += [q_pend.eq(0), t_pend.eq(0), p_pend.eq(0)]
                with m.If(self.req.valid & ~t.w_busy):
                    m.d.sync += [req.eq(self.req.payload), ridx.eq(1), didx.eq(0), resp.eq(0)]
                    m.next = "SCAN"
            with m.State("SCAN"):
                m.d.comb += rp.addr.eq(ridx[:ab + rb])
                m.d.sync += [ridx.eq(ridx + 1), didx.eq(ridx)]
                with m.If(p_pend):
                    with m.If(~p_valid):
                        m.next = "RESP"
                    with m.Elif(covers):
                        m.d.sync += [resp.hit.eq(1), resp.index.eq(p_index)]
                        m.next = "RESP"
                    with m.Elif(p_last):
                        m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += self.resp.valid.eq(1)
                with m.If(self.resp.ready):
                    m.next = "IDLE"
        one_hot(fsm)        # IDLE, in the request's `ready`, is one flip-flop (hw/onehot.py)
        return m
