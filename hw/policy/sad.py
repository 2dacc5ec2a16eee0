"""SAD inbound lookup (RFC 4301 4.1): the SA for an inbound ESP/AH packet by
the longest match of (SPI, destination, source), then (SPI, destination),
then SPI alone; ESP and AH SPIs are separate spaces. Same result as
sim/sad.Sad.lookup_in.

The inbound selectors of every SA sit in one block RAM, indexed by SAD slot;
a lookup visits the slots in order, keeping the best rank (an earlier slot
wins a tie, as the model's insertion order does) and stopping early on a
rank-2 (SPI, dst, src) match or after the highest slot ever written valid.

`rows` > 1 stores an entry as that many narrower RAM rows, read on
consecutive cycles: 64 entries of 293 bits fill 9 ECP5 EBRs (512 x 36 each,
64 of 512 rows used) in one row, 3 in four (256 x 74 bits). A write takes
`rows` cycles (from the cycle of `w_en`); no lookup starts meanwhile, and
the owner writes nothing while a lookup runs (core.py: one FSM does both).

rows = 1: every slot's entry is read, one per cycle: up to (that slot + 1)
+ 4 cycles from the request's cycle to the response's.
rows > 1: (valid, ah, spi) of every slot is also kept in a narrow column
(64 x 34 bits: 1 EBR) scanned one slot per cycle; only the slots whose
column word matches the request (the SPI candidates) have their `rows`
rows read, while the column scan runs on. Up to (that slot + 1) + rows x
(candidates) + 8 cycles; with 64 SAs in use and rows = 4: 68 for a miss,
76 for a single candidate in slot 63 (`python -m latchnic.bench.policy
--no-synth`; test_sad checks the bounds).
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..onehot import one_hot
from ..ram import block_ram, read_register
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
        t = FoldedTable(m, platform, entry_layout, self.sas, self.rows, self.w_en, self.w_index[:ab], self.w_data)
        rp, w_busy = t.rp, t.w_busy
        m.d.comb += self.w_busy.eq(w_busy)
        # highest slot ever written valid: the slots after it are empty, the scan stops there
        top = Signal(ab)
        with m.If(self.w_en & self.w_data.valid & (self.w_index[:ab] > top)):
            m.d.sync += top.eq(self.w_index[:ab])

        req = Signal(req_layout)
        d_v = Signal()                         # rp.data holds a row the scan asked for
        didx = Signal(ab + rb + 1)             # its row address
        # four stages: the entry is registered as it leaves the RAM (an ECP5
        # EBR's clock-to-output leaves no room for logic), gives its compares
        # (SPI, 128-bit dst and src equality) to registers, the cycle after
        # ranks it into registers, and the next decides while the scan reads
        # on (timing: f1e913d's 25F report, the rank and the decision in one
        # cycle were five LUTs into the answer's enables and the FSM, -1.16)
        q_pend = Signal()
        q_idx = Signal(ab + 1)
        whole, e = t.assemble(m, didx)      # e: the entry, a cycle after `whole`
        m.d.sync += [q_idx.eq(didx[rb:]), q_pend.eq(d_v & whole)]
        # the rank stage's inputs, registered from the entry: `same` (the
        # entry is pending, valid, and its protocol and the SPI's low half
        # are the packet's) and `spi_hi` (the high half: timing, 9b8761d's
        # 25F report, the whole test from the entry was five LUTs, -0.10 ns),
        # the 128-bit address equalities as four 32-bit ones (timing: a
        # 128-bit compare after the RAM's output was one period), and what
        # the entry asks besides the SPI, with the IP version's test folded in
        # (timing: 70f03fc's 25F report, the rank's priority decode into the
        # answer's load enable, five LUTs)
        same, spi_hi = Signal(), Signal()
        dst_eq, src_eq = Signal(4), Signal(4)
        wants_spi = Signal()      # no address: a match of rank 0
        wants_dst = Signal()      # dst only, of the packet's version: rank 1
        wants_both = Signal()     # dst and src, of the packet's version: rank 2
        p_pend = Signal()
        p_idx = Signal(ab + 1)
        v6_same = e.v6 == req.v6
        m.d.sync += [same.eq(q_pend & e.valid & (e.ah == req.ah) & (e.spi[:16] == req.spi[:16])),
                     spi_hi.eq(e.spi[16:] == req.spi[16:]),
                     *(dst_eq[i].eq(e.dst[32 * i:32 * i + 32] == req.dst[32 * i:32 * i + 32])
                       for i in range(4)),
                     *(src_eq[i].eq(e.src[32 * i:32 * i + 32] == req.src[32 * i:32 * i + 32])
                       for i in range(4)),
                     wants_spi.eq(~e.has_dst), wants_dst.eq(e.has_dst & ~e.has_src & v6_same),
                     wants_both.eq(e.has_dst & e.has_src & v6_same),
                     p_idx.eq(q_idx), p_pend.eq(q_pend)]
        # rank of the registered entry: -1 (no match), 0 SPI, 1 +dst, 2 +dst+src;
        # when it matches exactly one `wants_*` is set, so the rank is theirs
        match = Signal()
        rank = Signal(2)
        m.d.comb += [match.eq(same & spi_hi & (wants_spi | dst_eq.all() & (wants_dst | wants_both & src_eq.all()))),
                     rank.eq(Cat(wants_dst, wants_both))]
        r_pend, r_match, r_rank, r_idx = Signal(), Signal(), Signal(2), Signal(ab + 1)
        m.d.sync += [r_pend.eq(p_pend), r_match.eq(match), r_rank.eq(rank), r_idx.eq(p_idx)]
        resp = Signal(resp_layout)
        m.d.comb += self.resp.payload.eq(resp)
        better = Signal()
        m.d.comb += better.eq(r_match & (~resp.hit | (r_rank > resp.rank)))

        # start: a request is taken (in IDLE, whose read address is slot 0);
        # then SCAN until `done`
        idle = Signal()
        start = Signal()
        done = Signal()
        if self.rows == 1:
            self._scan_rows(m, rp, top, idle, start, d_v, didx, r_pend, r_idx, done)
        else:
            self._scan_column(m, platform, rp, top, req, idle, start, d_v, didx, q_pend | p_pend, done)

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += [idle.eq(1), self.req.ready.eq(~w_busy)]
                m.d.sync += [q_pend.eq(0), p_pend.eq(0), same.eq(0), r_pend.eq(0), r_match.eq(0)]
                with m.If(self.req.valid & ~w_busy):
                    m.d.comb += start.eq(1)
                    m.d.sync += [req.eq(self.req.payload), resp.eq(0)]
                    m.next = "SCAN"
            with m.State("SCAN"):
                with m.If(better):
                    m.d.sync += [resp.hit.eq(1), resp.rank.eq(r_rank), resp.index.eq(r_idx)]
                # the first rank-2 match in slot order is the answer
                with m.If((better & (r_rank == 2)) | done):
                    m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += self.resp.valid.eq(1)
                with m.If(self.resp.ready):
                    m.next = "IDLE"
        one_hot(fsm)        # IDLE, in the request's `ready`, is one flip-flop (hw/onehot.py)
        return m

    def _scan_rows(self, m, rp, top, idle, start, d_v, didx, r_pend, r_idx, done):
        """One row per entry: read every slot's entry, one per cycle, up to `top`."""
        ridx = Signal.like(didx)               # slot addressed this cycle
        m.d.comb += [rp.addr.eq(Mux(idle, 0, ridx)), done.eq(r_pend & (r_idx == top))]
        m.d.sync += [ridx.eq(ridx + 1), didx.eq(Mux(idle, 0, ridx)), d_v.eq(1)]
        with m.If(start):
            m.d.sync += ridx.eq(1)

    def _scan_column(self, m, platform, rp, top, req, idle, start, d_v, didx, staged, done):
        """`rows` rows per entry: the (valid, ah, spi) column is scanned one
        slot per cycle; only the slots it matches (candidates) have their
        rows read, in slot order (the tie rule), while the column scan runs
        ahead through a small queue."""
        ab, rows, rb = self.abits, self.rows, (self.rows - 1).bit_length()
        # written with row 0 of the entry (the cycle of w_en); no lookup
        # starts before the last row is written (w_busy), so a lookup sees
        # the column and the rows of an entry from the same write. An EBR,
        # not LUT RAM (the 25F's logic is full); no_rw_check: no lookup runs
        # during a write, so yosys needs no read-first bypass behind the EBR
        m.submodules.col = col = block_ram(2 + 32, self.sas, ram_style="block")
        cwp, crp = col.write_port(), col.read_port()
        m.d.comb += [cwp.en.eq(self.w_en), cwp.addr.eq(self.w_index[:ab]),
                     cwp.data.eq(Cat(self.w_data.valid, self.w_data.ah, self.w_data.spi))]

        # column pipeline: C1 crp.data holds slot c1_idx; C2 registered word
        # (EBR output straight into a register); C3 c3_v: slot c3_idx is a candidate
        cs = Signal(ab)                        # next slot to read from the column
        c_more = Signal()                      # slots cs .. top still to read
        c1_v, c1_idx = Signal(), Signal(ab)
        c2_v, c2_idx = Signal(), Signal(ab)
        cword = read_register(m, platform, cwp, crp, name="cword")
        c3_v, c3_idx = Signal(), Signal(ab)
        # candidates the row reader has not taken yet
        depth = 4
        queue = Array(Signal(ab, name=f"cand{i}") for i in range(depth))
        q_rd, q_wr = Signal(range(depth)), Signal(range(depth))     # wrap: depth is a power of 2
        level = Signal(range(depth + 1))
        # row reader: reads rows 0 .. rows-1 of slot r_idx on consecutive cycles
        r_busy, r_row, r_idx = Signal(), Signal(rb), Signal(ab)

        # a slot read now may become a queue entry 3 cycles later: read only
        # while every slot in flight still has a place (the queue never overflows)
        issue = Signal()
        m.d.comb += issue.eq(c_more & (level + c1_v + c2_v + c3_v < depth))
        m.d.comb += crp.addr.eq(Mux(idle, 0, cs))
        m.d.sync += [c1_v.eq(issue), c1_idx.eq(cs)]
        with m.If(issue):
            m.d.sync += [cs.eq(cs + 1), c_more.eq(cs != top)]
        m.d.sync += [c2_v.eq(c1_v), c2_idx.eq(c1_idx),
                     c3_v.eq(c2_v & (cword == Cat(Const(1, 1), req.ah, req.spi))), c3_idx.eq(c2_idx)]

        # the reader takes the oldest candidate: the queue's head, or C3's
        # directly when the queue is empty (slot order kept)
        take = ~r_busy | (r_row == rows - 1)
        from_q = take & (level != 0)
        from_c3 = take & (level == 0) & c3_v
        push = c3_v & ~from_c3
        with m.If(push):
            m.d.sync += [queue[q_wr].eq(c3_idx), q_wr.eq(q_wr + 1)]
        with m.If(from_q):
            m.d.sync += q_rd.eq(q_rd + 1)
        m.d.sync += level.eq(level + push - from_q)
        with m.If(r_busy):
            m.d.sync += r_row.eq(r_row + 1)
            with m.If(r_row == rows - 1):
                m.d.sync += r_busy.eq(0)
        with m.If(from_q | from_c3):
            m.d.sync += [r_busy.eq(1), r_row.eq(0), r_idx.eq(Mux(from_q, queue[q_rd], c3_idx))]
        m.d.comb += rp.addr.eq(Cat(r_row, r_idx))
        m.d.sync += [d_v.eq(r_busy), didx.eq(Cat(r_row, r_idx))]

        # nothing left but the entry decided on this cycle (`staged`: one in
        # the compare or rank stage)
        m.d.comb += done.eq(~c_more & ~c1_v & ~c2_v & ~c3_v & (level == 0) & ~r_busy & ~d_v & ~staged)

        with m.If(start):
            # slot 0 read now; nothing of an earlier lookup (stopped early) stays in flight
            m.d.sync += [cs.eq(1), c_more.eq(top != 0), c1_v.eq(1), c1_idx.eq(0), c2_v.eq(0),
                         c3_v.eq(0), level.eq(0), q_rd.eq(0), q_wr.eq(0), r_busy.eq(0), d_v.eq(0)]
