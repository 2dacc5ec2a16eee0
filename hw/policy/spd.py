"""SPD engine: ordered rules per direction, first match wins (RFC 4301 4.4.1).

Rules live in one block RAM, `capacity` entries per direction (out at
0..capacity-1, in above). A lookup scans its direction's rules in priority
order, one rule per cycle, and stops at the first rule that matches, at the
first invalid entry (the driver keeps each direction's rules contiguous and
ends them with an invalid entry) or at the last entry. No match is `hit = 0`:
the SPD's implicit final rule, DISCARD (`no_policy`).

Banks (`banks = 2`, the core's SPD): each direction's rules are held twice,
an active and a shadow bank (one more RAM address bit). Lookups read their
direction's active bank; writes go to its shadow bank; `swap` makes a
direction's shadow the active bank in one cycle (TBL_COMMIT op swap, which
the core runs between frames). The driver writes a whole new direction
table into the shadow, then swaps, so a frame is decided against the
complete old or the complete new ordered rule list, never a mix of the two
(an entry-by-entry rewrite of a live list could, for a moment, drop a
PROTECT rule above a broader BYPASS one). After a swap the shadow holds the
previous table: the next change writes its whole table again. Reset: bank
0 active in both directions, both banks empty (no rule valid). The 25F
build's 2 x 64 rules x 2 rows of 311 bits go from 256 to 512 RAM rows: the
same 9 EBRs (512 x 36 each).

Cost (request taken to answer offered, as `python -m latchnic.bench.policy
--no-synth` measures it): k + 8 cycles for a first match at index k (rows =
1; 2k + 9 with rows = 2); a miss costs (rules programmed) + 7 (2 x rules +
7). The match is pipelined (the rule registered out of the RAM, then
selectors.selector_terms / match_parts / match_all: no 128-bit compare and
no 73-input AND in one clock period), which costs three cycles per lookup,
not per rule; the RAM's address comes from registers only, which costs
one more. One decision per packet.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ..onehot import one_hot
from ..ram import block_ram, read_register
from .folded import assemble_rows
from .selectors import (MATCH_PARTS, TERM_BITS, encode_selectors, flow_layout, match_all, match_parts,
                        pack, selector_layout, selector_terms)


class Action(enum.Enum, shape=2):
    PROTECT = 0
    BYPASS = 1
    DISCARD = 2


ACTIONS = {"protect": Action.PROTECT, "bypass": Action.BYPASS, "discard": Action.DISCARD}

rule_layout = data.StructLayout({
    "valid": 1,
    "sel": selector_layout,
    "action": Action,
    "sa": 16,              # out PROTECT: SAD index of the SA to use; in: the pinned SA
    "pin_sa": 1,           # in PROTECT pinned to one SA
    "pin_peer": 1,         # in PROTECT pinned to one peer
    "peer": 8,             # the pinned peer's PAD index
})

req_layout = data.StructLayout({"inbound": 1, "flow": flow_layout})

resp_layout = data.StructLayout({
    "hit": 1,
    "index": 16,
    "action": Action,
    "sa": 16,
    "pin_sa": 1,
    "pin_peer": 1,
    "peer": 8,
})


def encode_rule(rule, sa_index: int | None = None, peer_index: int | None = None) -> int:
    """A latchnic.config.SpdRule as the staged entry the driver commits.
    `sa_index`: SAD slot of rule.sa; `peer_index`: PAD index of rule.peer."""
    return pack(rule_layout, {
        "valid": 1, "sel": encode_selectors(rule), "action": ACTIONS[rule.action].value,
        "sa": sa_index or 0, "pin_sa": int(rule.dir == "in" and rule.sa is not None),
        "pin_peer": int(rule.peer is not None), "peer": peer_index or 0})


class SpdEngine(wiring.Component):
    """`req`: (direction, flow) lookups; `resp`: the first matching rule.
    `w_*`: the table write port (one whole rule per write, from TBL_COMMIT).
    `banks = 2`: writes go to the direction's shadow bank; `swap` (one
    cycle, never while a rule's rows are still going in) makes the shadow
    bank of direction `swap_inbound` the active one. A lookup keeps the bank
    it started on to its end.

    `rows = 2` stores a rule as two half-width RAM rows (read on consecutive
    cycles, 2 cycles per rule): a 622-bit rule does not fill a 512-deep ECP5
    EBR, so half-width rows halve the EBR count. The second half of a write
    goes in the cycle after `w_en`, so `w_en` may come at most every other
    cycle (the core's commits are many cycles apart, and it writes only while
    no lookup runs, so the datapath never sees half a rule)."""

    def __init__(self, capacity: int = 64, directions: int = 2, rows: int = 1, banks: int = 1):
        assert capacity & (capacity - 1) == 0 and directions in (1, 2) and rows in (1, 2)
        assert banks in (1, 2)
        self.capacity = capacity
        self.directions = directions
        self.rows = rows
        self.banks = banks
        self.abits = (capacity - 1).bit_length()
        super().__init__({
            "req": In(stream.Signature(req_layout)),
            "resp": Out(stream.Signature(resp_layout)),
            "w_en": In(1), "w_inbound": In(1), "w_index": In(16), "w_data": In(rule_layout),
            **({"swap": In(1), "swap_inbound": In(1)} if banks == 2 else {}),
        })

    def elaborate(self, platform):
        m = Module()
        ab = self.abits
        rb = self.rows - 1                      # row-select bits
        half = -(-rule_layout.size // self.rows)
        # a lookup never runs while a rule is written (the core commits
        # between frames): no row read in a cycle that writes it is used
        m.submodules.mem = mem = block_ram(half, self.banks * self.directions * self.capacity * self.rows)
        wp = mem.write_port()
        rp = mem.read_port()
        # one direction (the template table): the direction bit is not an address bit
        dirbit = (lambda v: v) if self.directions == 2 else (lambda v: Const(0, 0))
        # the active bank of each direction (banks = 2); the bank is the top address bit
        if self.banks == 2:
            active = Signal(self.directions)
            bank_of = lambda inbound: active.bit_select(inbound, 1) if self.directions == 2 else active[0]
            with m.If(self.swap):
                flip = Mux(self.swap_inbound, 0b10, 0b01) if self.directions == 2 else 1
                m.d.sync += active.eq(active ^ flip)
        else:
            bank_of = lambda inbound: Const(0, 0)
        # the RAM's upper address bits: direction, then bank
        table_bits = (self.directions == 2) + (self.banks == 2)
        # a write goes to the shadow bank: what lookups read changes only on a swap
        wtable = Signal(table_bits)
        m.d.comb += wtable.eq(Cat(dirbit(self.w_inbound), ~bank_of(self.w_inbound)))
        wbits = Signal(half * self.rows)
        m.d.comb += wbits.eq(self.w_data.as_value())
        if self.rows == 1:
            m.d.comb += [wp.addr.eq(Cat(self.w_index[:ab], wtable)),
                         wp.data.eq(wbits), wp.en.eq(self.w_en)]
        else:
            hi = Signal(half)
            hi_addr = Signal(len(wp.addr))
            hi_pending = Signal()
            m.d.sync += hi_pending.eq(0)
            with m.If(self.w_en):
                m.d.comb += [wp.addr.eq(Cat(Const(0, 1), self.w_index[:ab], wtable)),
                             wp.data.eq(wbits[:half]), wp.en.eq(1)]
                m.d.sync += [hi.eq(wbits[half:]), hi_pending.eq(1),
                             hi_addr.eq(Cat(Const(1, 1), self.w_index[:ab], wtable))]
            with m.Elif(hi_pending):
                m.d.comb += [wp.addr.eq(hi_addr), wp.data.eq(hi), wp.en.eq(1)]

        flow = Signal(flow_layout)
        # the lookup's (direction, bank), taken when it starts: a swap during
        # a scan does not move it to the other bank halfway
        table = Signal(table_bits)
        ridx = Signal(ab + rb + 1)              # row addressed this cycle
        didx = Signal(ab + rb + 1)              # row on rp.data
        # Stage 0 registers each row as it leaves the RAM (`word`, hw/ram.py):
        # an ECP5 EBR's clock-to-output (5.61 ns on -6) leaves no room for
        # logic after it. q_rule is the whole rule in the cycle after its last
        # row left the RAM (a two-row rule's first row waits in a register).
        word = read_register(m, platform, wp, rp, name="word")
        # the RAM is read at (ridx, table) in every state, both registers
        # (timing: 70f03fc's 25F report, the request's direction -> the bank
        # select -> IDLE's address mux -> the EBR's address pins, 6.8 ns of
        # routing; and the template table's LUT RAM likewise). So the first
        # row is read in the first SCAN cycle, one cycle later than IDLE
        # could; d_v says rp.data holds a row of this lookup
        d_v = Signal()
        m.d.comb += rp.addr.eq(Cat(ridx[:ab + rb], table))
        whole = (Const(1, 1) if self.rows == 1 else didx[0]) & d_v
        q_rule = assemble_rows(m, word, whole, self.rows, rule_layout)
        index = didx[rb:]
        # two-stage match: the rule gives its selector terms (short compares)
        # to registers; the cycle after combines them and decides, while the
        # scan reads on (a row read past the decision is ignored). One cycle
        # more per lookup, not per rule.
        q_whole = Signal()
        q_last = Signal()
        q_index = Signal(ab)
        m.d.sync += [q_whole.eq(whole), q_last.eq(index == self.capacity - 1),
                     q_index.eq(index)]
        terms = Signal(TERM_BITS)
        p_whole = Signal()             # terms/p_rule hold a whole rule
        p_rule = Signal(rule_layout)
        p_last = Signal()
        p_index = Signal(ab)
        m.d.sync += [terms.eq(selector_terms(q_rule.sel, flow)), p_rule.eq(q_rule), p_whole.eq(q_whole),
                     p_last.eq(q_last), p_index.eq(q_index)]
        # stage 3: the selector's parts registered, with the rule's answer
        # (timing: the terms' combine and the decision's load enables in one
        # cycle were 9-10 ns on the 25F); stage 4: the match of them (one AND
        # tree of all the terms was 8.7 ns routed). One cycle each per
        # lookup, not per rule
        parts, s_whole, s_last, s_valid = Signal(MATCH_PARTS), Signal(), Signal(), Signal()
        s_resp = Signal(resp_layout)
        m.d.sync += [parts.eq(match_parts(terms)), s_whole.eq(p_whole), s_last.eq(p_last),
                     s_valid.eq(p_rule.valid),
                     s_resp.hit.eq(1), s_resp.index.eq(p_index), s_resp.action.eq(p_rule.action),
                     s_resp.sa.eq(p_rule.sa), s_resp.pin_sa.eq(p_rule.pin_sa),
                     s_resp.pin_peer.eq(p_rule.pin_peer), s_resp.peer.eq(p_rule.peer)]
        r_hit, r_whole, r_last, r_valid = Signal(name="spd_hit"), Signal(), Signal(), Signal()
        r_resp = Signal(resp_layout)
        m.d.sync += [r_hit.eq(match_all(parts)), r_whole.eq(s_whole), r_last.eq(s_last),
                     r_valid.eq(s_valid), r_resp.eq(s_resp)]
        resp = Signal(resp_layout)
        m.d.comb += self.resp.payload.eq(resp)

        with m.FSM() as fsm:
            with m.State("IDLE"):
                req_table = Cat(dirbit(self.req.payload.inbound), bank_of(self.req.payload.inbound))
                m.d.comb += self.req.ready.eq(1)
                m.d.sync += [q_whole.eq(0), p_whole.eq(0), s_whole.eq(0), r_whole.eq(0), d_v.eq(0)]
                with m.If(self.req.valid):
                    m.d.sync += [flow.eq(self.req.payload.flow), table.eq(req_table),
                                 ridx.eq(0)]
                    m.next = "SCAN"
            with m.State("SCAN"):
                m.d.sync += [ridx.eq(ridx + 1), didx.eq(ridx), d_v.eq(1)]
                with m.If(r_whole):
                    with m.If(~r_valid):
                        m.d.sync += resp.eq(0)
                        m.next = "RESP"
                    with m.Elif(r_hit):
                        m.d.sync += resp.eq(r_resp)
                        m.next = "RESP"
                    with m.Elif(r_last):
                        m.d.sync += resp.eq(0)
                        m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += self.resp.valid.eq(1)
                with m.If(self.resp.ready):
                    m.next = "IDLE"
        one_hot(fsm)        # IDLE, in the request's `ready`, is one flip-flop (hw/onehot.py)
        return m
