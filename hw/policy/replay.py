"""Inbound anti-replay windows (RFC 4303 3.4.3, appendix A; ESN RFC 4304),
one per SA, bitmaps in block RAM. Same decisions as sim/replay.py.

Each SA has a ring of R = 2 x max_window bits, 32-bit words; sequence number
s lives at ring bit s mod R (RFC 6479's block scheme). Moving the top from T
to S clears the words of the blocks after T's block up to S's block (at most
R/32 words, one per cycle); because R >= window + 32, a cleared word never
holds a bit of the window. A check reads one word.

Operations (`cmd` -> `resp`):
* INIT(sa, top, esn, size): the SA's state after a SAD write: every word
  cleared, `top` marked received when not 0 (as the model starts).
* CHECK(sa, seq_low): before the ICV. With ESN the high half is inferred as in
  RFC 4303 A2.2; `ok` = the number may be accepted; `seq` = the full number;
  `same` = it equals the command's whole 64-bit `seq` (a second pass's
  re-check: the high half inferred again is the first pass's).
* UPDATE(sa, seq): after the ICV verified: move the window, mark `seq`.
  INIT and UPDATE answer `ok` only; their `seq` is not defined (not loading
  it keeps new_seq, which drives the bitmap's address, off resp.seq's
  enables: f7e1793's report).
* READ(sa): `seq` = the window top (the highest number accepted), for the
  host's counter read-out.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ..onehot import one_hot
from ..ram import block_ram, read_register

MASK32 = 0xFFFFFFFF


class ReplayOp(enum.Enum, shape=2):
    INIT = 0
    CHECK = 1
    UPDATE = 2
    READ = 3


state_layout = data.StructLayout({"top": 64, "esn": 1, "size": 13})


def cmd_layout(sa_bits):
    return data.StructLayout({"op": ReplayOp, "sa": sa_bits, "seq": 64, "esn": 1, "size": 13})


resp_layout = data.StructLayout({"ok": 1, "seq": 64, "same": 1})


class ReplayWindows(wiring.Component):
    def __init__(self, sas: int = 64, max_window: int = 1024):
        assert sas & (sas - 1) == 0 and max_window & (max_window - 1) == 0 and max_window >= 64
        self.sas, self.max_window = sas, max_window
        self.sa_bits = max((sas - 1).bit_length(), 1)
        self.ring_words = 2 * max_window // 32
        self.word_bits = (self.ring_words - 1).bit_length()
        super().__init__({"cmd": In(stream.Signature(cmd_layout(self.sa_bits))),
                          "resp": Out(stream.Signature(resp_layout))})

    def elaborate(self, platform):
        m = Module()
        wb = self.word_bits
        # words read in a cycle that writes them are never used (hw/ram.py):
        # the reads whose words are used are presented in IDLE, CHECK and
        # MARK_READ; the writes are decided in INIT, UPDATE, CLEAR and
        # MARK_WRITE and land a cycle later (below), which is INIT_DONE,
        # CLEAR / MARK_READ, CLEAR / MARK_READ and RESP
        m.submodules.state = smem = block_ram(state_layout, self.sas)
        m.submodules.bits = bmem = block_ram(32, self.sas * self.ring_words)
        s_rp, s_wp = smem.read_port(), smem.write_port()
        b_rp, b_wp = bmem.read_port(), bmem.write_port()
        # the write requests, registered (timing: the FSM's decode and the
        # address / data muxes are not in front of the RAMs' write pins)
        s_w, b_w = Signal(), Signal()
        s_waddr, b_waddr = Signal.like(s_wp.addr), Signal.like(b_wp.addr)
        s_wdata, b_wdata = Signal(state_layout), Signal(32)
        m.d.sync += [s_w.eq(0), b_w.eq(0)]
        m.d.comb += [s_wp.en.eq(s_w), s_wp.addr.eq(s_waddr), s_wp.data.eq(s_wdata),
                     b_wp.en.eq(b_w), b_wp.addr.eq(b_waddr), b_wp.data.eq(b_wdata)]

        cmd = Signal(cmd_layout(self.sa_bits))
        st = Signal(state_layout)
        resp = Signal(resp_layout)
        # the state word of the SA is read from the cycle the command is taken
        # (its address then comes from the request) and registered every
        # cycle, no reset (st_q: the EBR's output register on ECP5), so LOADED
        # finds it two cycles after IDLE
        idle = Signal()
        m.d.comb += [self.resp.payload.eq(resp),
                     s_rp.addr.eq(Mux(idle, self.cmd.payload.sa, cmd.sa))]
        st_q = read_register(m, platform, s_wp, s_rp, name="st_q")

        def word_addr(seq):
            return Cat(seq[5:5 + wb], cmd.sa)

        # ESN inference (RFC 4303 A2.2, as sim/replay.ReplayWindow.infer), in
        # register stages (CHECK_EDGE, CHECK_GE, CHECK_FULL, CHECK_CMP, CHECK) so that no
        # clock period holds more than one wide add or compare
        seq_low = cmd.seq[:32]
        tl = st.top[:32]
        th = st.top[32:64]
        lo_edge = Signal(33)         # tl - size + 1, may go negative (bit 32)
        # tl >= size - 1 is lo_edge's sign (timing: no second carry chain
        # behind the subtract); exact for size >= 1, and size 0 (never
        # configured: 64..4096) keeps its meaning
        top_ge = ~lo_edge[32] | (st.size == 0)
        th_inc = Signal(32)
        th_dec = Signal(32)
        full = Signal(64)
        seq_ok = Signal()
        newer = Signal()             # CHECK: full > top
        upd_newer = Signal()         # UPDATE: cmd.seq > top (its own flip-flop:
                                     # no mux between the two compares and it)
        # its 16-bit parts, registered in LOADED: part k of cmd.seq greater
        # than / equal to part k of top (timing: 70f03fc's 25F report, a
        # 64-bit compare from the state EBR's output, five LUTs and 2.9 ns
        # of routing); UPDATE_CMP combines them, two LUTs
        upd_gt, upd_eq = Signal(4), Signal(4)
        th_max, th_zero = Signal(), Signal()    # th all ones / zero
        old_edge = Signal(65)        # top - size (bit 64: negative)
        too_old = Signal()           # top - full >= size
        is_zero = Signal()
        same = Signal()              # full == cmd.seq (64 bits)
        blocks = Signal(59)           # UPDATE: blocks the top moves by
        # seq_low >= lo_edge, registered in CHECK_GE (timing: 70f03fc's 25F
        # report, the compare's carry chain and CHECK_FULL's muxes after it
        # in one period, -0.25 ns)
        ge_edge = Signal()
        seq_high = Mux(top_ge, Mux(ge_edge, th, th_inc), Mux(ge_edge, th_dec, th))
        valid_high = Mux(top_ge, ge_edge | ~th_max, ~ge_edge | ~th_zero)

        word_ctr = Signal(wb + 1)
        clr_from = Signal(64)       # block index being cleared
        clr_left = Signal(wb + 2)
        new_seq = Signal(64)
        # the bitmap is read at new_seq's word every cycle (timing: no FSM
        # decode in front of the RAM's address pins); CHECK_CMP copies the
        # full number there, so CHECK and MARK_READ find their word by it
        m.d.comb += b_rp.addr.eq(word_addr(new_seq))
        word_q = read_register(m, platform, b_wp, b_rp, name="word_q")   # a bitmap word
        # the number's byte of word_q, registered every cycle (timing: the
        # EBR's output is routed to one 4:1 select, and CHECK_BYTE's 8:1
        # select into `ok` starts at a register)
        word_byte = Signal(8)
        m.d.sync += word_byte.eq(word_q.word_select(new_seq[3:5], 8))

        init_top_zero = Signal()     # INIT: the top given is 0 (nothing to mark)
        # its 16-bit parts' zero tests, registered every cycle from `cmd`
        # (timing: the 64-bit test is two short stages, not five LUTs deep);
        # INIT has ring_words >= 2 cycles, so the last one sees this cmd's
        seq_zero = Signal(4)
        m.d.sync += seq_zero.eq(Cat(*(cmd.seq.word_select(k, 16) == 0 for k in range(4))))
        assert self.ring_words >= 2
        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += [self.cmd.ready.eq(1), idle.eq(1)]
                with m.If(self.cmd.valid):
                    m.d.sync += cmd.eq(self.cmd.payload)
                    with m.If(self.cmd.payload.op == ReplayOp.INIT):
                        m.d.sync += word_ctr.eq(0)
                        m.next = "INIT"
                    with m.Else():
                        m.next = "LOAD"
            with m.State("INIT"):
                m.d.sync += [b_w.eq(1), b_waddr.eq(Cat(word_ctr[:wb], cmd.sa)), b_wdata.eq(0)]
                m.d.sync += word_ctr.eq(word_ctr + 1)
                # the state word's address and data loaded in every INIT
                # cycle, its write enable on the last (timing: the word
                # counter's compare drives one flip-flop, not ~80 enables)
                m.d.sync += [s_waddr.eq(cmd.sa), s_wdata.eq(0), s_wdata.top.eq(cmd.seq),
                             s_wdata.esn.eq(cmd.esn), s_wdata.size.eq(cmd.size)]
                m.d.sync += [st.top.eq(cmd.seq), st.esn.eq(cmd.esn), st.size.eq(cmd.size),
                             new_seq.eq(cmd.seq)]
                # the answer (ok 0 unless MARK_WRITE marks the top) and the
                # top's zero test, in every INIT cycle (timing: INIT_DONE's
                # 64-bit test of new_seq drove resp's enables, aee168f's report;
                # cc2aa1b's: the test from cmd, five LUTs deep)
                m.d.sync += [resp.eq(0), init_top_zero.eq(seq_zero.all())]
                with m.If(word_ctr == self.ring_words - 1):
                    m.d.sync += s_w.eq(1)
                    m.next = "INIT_DONE"
            with m.State("INIT_DONE"):
                # the last word's clear lands now: MARK_READ may read that word
                with m.If(~init_top_zero):
                    m.next = "MARK_READ"
                with m.Else():
                    m.next = "RESP"
            with m.State("LOAD"):
                m.next = "LOADED"          # the state word on its way to st_q
            with m.State("LOADED"):
                # UPDATE's compare parts from the state word as it arrives
                # (timing: apart from UPDATE_CMP's block subtract, which yosys
                # merged a compare of `st` with into one long path);
                # CHECK_CMP sets `newer`
                m.d.sync += [st.eq(st_q),
                             upd_gt.eq(Cat(*(cmd.seq.word_select(k, 16) > st_q.top.word_select(k, 16)
                                             for k in range(4)))),
                             upd_eq.eq(Cat(*(cmd.seq.word_select(k, 16) == st_q.top.word_select(k, 16)
                                             for k in range(4))))]
                with m.If(cmd.op == ReplayOp.CHECK):
                    m.next = "CHECK_EDGE"
                with m.Elif(cmd.op == ReplayOp.READ):
                    m.d.sync += [resp.ok.eq(1), resp.seq.eq(st_q.top)]
                    m.next = "RESP"
                with m.Else():
                    m.next = "UPDATE_CMP"
            with m.State("CHECK_EDGE"):
                # th's all-ones / zero tests registered (timing: no 32-bit
                # reduction after CHECK_FULL's carry chain)
                m.d.sync += [lo_edge.eq(tl - st.size + 1), th_max.eq(th == MASK32), th_zero.eq(th == 0),
                             th_inc.eq(th + 1), th_dec.eq(th - 1), old_edge.eq(st.top - st.size)]
                m.next = "CHECK_GE"
            with m.State("CHECK_GE"):
                m.d.sync += ge_edge.eq(seq_low >= lo_edge[:32])
                m.next = "CHECK_FULL"
            with m.State("CHECK_FULL"):
                m.d.sync += [full.eq(Mux(st.esn, Cat(seq_low, seq_high), Cat(seq_low, Const(0, 32)))),
                             seq_ok.eq(~st.esn | valid_high)]
                m.next = "CHECK_CMP"
            with m.State("CHECK_CMP"):
                # top - full >= size (full <= top), as full <= top - size: one compare
                # new_seq from the `full` register (timing: not a second
                # copy of CHECK_FULL's inference behind its own mux)
                m.d.sync += [new_seq.eq(full),
                             newer.eq(full > st.top), is_zero.eq(full == 0), same.eq(full == cmd.seq),
                             too_old.eq(~old_edge[64] & (full <= old_edge[:64]))]
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += [resp.seq.eq(full), resp.ok.eq(0), resp.same.eq(same)]
                with m.If(~seq_ok | is_zero):
                    m.next = "RESP"
                with m.Elif(newer):
                    m.d.sync += resp.ok.eq(1)
                    m.next = "RESP"
                with m.Elif(too_old):
                    m.next = "RESP"
                with m.Else():
                    m.next = "CHECK_BIT"       # the word read at new_seq (= full)
            with m.State("CHECK_BIT"):
                # the word on its way to word_q (EBR clock-to-output)
                m.next = "CHECK_SEL"
            with m.State("CHECK_SEL"):
                m.next = "CHECK_BYTE"          # its byte on its way to word_byte
            with m.State("CHECK_BYTE"):
                m.d.sync += resp.ok.eq(~word_byte.bit_select(new_seq[:3], 1))
                m.next = "RESP"
            with m.State("UPDATE_CMP"):
                # cmd.seq > top: the highest part that differs decides
                g, e = upd_gt, upd_eq
                m.d.sync += [blocks.eq(cmd.seq[5:] - st.top[5:]),
                             clr_from.eq(st.top[5:] + 1),
                             upd_newer.eq(g[3] | e[3] & (g[2] | e[2] & (g[1] | e[1] & g[0])))]
                m.next = "UPDATE"
            with m.State("UPDATE"):
                seq = cmd.seq
                m.d.sync += new_seq.eq(seq)
                # the state word's address and data loaded whatever `newer`
                # says (timing, as in INIT); only its write enable follows it
                m.d.sync += [s_waddr.eq(cmd.sa), s_wdata.eq(st), s_wdata.top.eq(seq)]
                with m.If(upd_newer):
                    m.d.sync += [clr_left.eq(Mux(blocks >= self.ring_words, self.ring_words, blocks)),
                                 st.top.eq(seq)]
                    m.d.sync += s_w.eq(1)
                    m.next = "CLEAR"
                with m.Else():
                    m.next = "MARK_READ"
            with m.State("CLEAR"):
                with m.If(clr_left == 0):
                    m.next = "MARK_READ"
                with m.Else():
                    m.d.sync += [b_w.eq(1), b_waddr.eq(Cat(clr_from[:wb], cmd.sa)), b_wdata.eq(0)]
                    m.d.sync += [clr_from.eq(clr_from + 1), clr_left.eq(clr_left - 1)]
            with m.State("MARK_READ"):
                m.next = "MARK_DATA"           # the word read at new_seq
            with m.State("MARK_DATA"):
                m.next = "MARK_WRITE"
            with m.State("MARK_WRITE"):
                bit = Signal(32)
                m.d.comb += bit.eq(Const(1, 32) << new_seq[:5])
                m.d.sync += [b_w.eq(1), b_waddr.eq(word_addr(new_seq)), b_wdata.eq(word_q | bit)]
                m.d.sync += resp.ok.eq(1)
                m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += self.resp.valid.eq(1)
                with m.If(self.resp.ready):
                    m.next = "IDLE"
        one_hot(fsm)        # 20 states (hw/onehot.py)
        return m
