"""The policy and latching core: one decision per frame.

    frames -> HeaderParser -> decision FSM -> verdict
                                 |  LatchTable (lookup / clone / update)
                                 |  SpdEngine (SPD, both directions)
                                 |  SpdEngine (templates: first match)
                                 |  SA table (peer, QoP, sequence counter)
    AXI4-Lite -> RegisterFile -> table commits, knobs, counters, event FIFO

It decides exactly as `latchnic.sim.device.ModelDevice` does for
* every outbound frame (malformed, non-IP, latch enforcement with the latch
  outranking the SPD, BROKEN on a failing latched flow, SPD first match,
  sequence exhaustion, transport-mode fragments, the 64 KiB size check,
  cloning from templates with expected peer, fail-closed on a full set,
  TCP FIN/RST/SYN and UDP idle timers), and
* inbound clear-text frames (latch_broken / latch_clear, SPD in-rules),
* inbound ESP/AH in two passes. First pass (the ESP/AH frame): fragment,
  header checks, SAD lookup (no_sa), anti-replay check (replay); a frame
  that passes leaves with action CRYPTO, its SA and full sequence number.
  The crypto path verifies the ICV, decapsulates and sends the inner frame
  back with `meta.decap` (SA, sequence number, SA generation, DecapStatus).
  Second pass: no_sa when the SA slot was deleted, turned outbound or
  re-committed (generation changed) since the first pass,
  icv / malformed / bad_padding as the crypto path says, anti-replay window
  update (after a re-check: fail closed if another frame of the same number
  got there first), the inner packet's parse, then latch enforcement
  (latch_broken / latch_peer / latch_qop) or SPD in-rules (spd_mismatch),
  the PAD claim check (pad_claim), cloning from templates, TCP/UDP timers.
Per-SA and per-latch packet/byte/drop counters live in block RAM (CTR_READ);
per-latch counters are a build option (`Params.latch_counters`, CAPS_COUNTERS).

Frames are decided one at a time (no overlap between frames yet); within a
frame with ports the latch, SPD and template lookups run at the same time
(a second pass issues them before its anti-replay steps). Every table
request passes a ValidSlice and frames enter through a SkidBuffer (timing,
docs/policy-core.md "Whole core, second round"). `meta` (direction, timer
tick, decap result) is queued at each frame's first beat.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from latchnic.hw.axil import AxiLiteRegisters, axil_members
from latchnic.hw.onehot import one_hot
from latchnic.hw.ram import BlockFifo, block_ram, read_register
from latchnic.hw.regmap import READ_WORDS, STAGE_WORDS, TABLES, Params, RegisterFile
from latchnic.hw.skid import SkidBuffer
from latchnic.hw.valid_slice import ValidSlice
from latchnic.hw.stream import packet_layout, packet_signature
from latchnic.sim.drops import REASON_CODES

from .latch_table import LatchState, LatchTable, Op, entry_layout
from .pad import PadClaims, claim_layout
from .parser import HeaderParser, Status
from .program import CLEAR, READ, RECHECK, RELEASE, SWAP, latch_read_layout, sa_layout, sad_stage_layout
from .replay import ReplayOp, ReplayWindows
from .sad import SadLookup
from .selectors import flow_layout
from .spd import Action, SpdEngine, rule_layout


# Per-SA-slot generation: every SAD commit to a slot (write or clear) adds
# 1 to its generation. The first pass of an inbound ESP/AH frame hands the
# slot's generation out with CRYPTO (verdict.gen), the crypto path hands it
# back (meta.gen) and the second pass drops `no_sa` when the slot's
# generation moved: the SA the frame was verified with is no longer the one
# in that slot (deleted, or replaced by another SA, perhaps of another peer).
# Gateware only: ModelDevice decides both passes in one call. Modulo 2**8:
# 256 commits to one slot (or a multiple of 256) while one frame is in the
# crypto path look like none (each commit is its staged words plus
# TBL_COMMIT over AXI4-Lite, so thousands of bus writes within one frame's
# crypto latency); not guarded further.
GEN_BITS = 8


class Verdict(enum.Enum, shape=2):
    FORWARD = 0
    DROP = 1
    CRYPTO = 2       # inbound ESP/AH: on to SAD lookup, replay check and ICV


class Cause(enum.IntEnum):
    CLONE = 0
    FIN = 1
    RST = 2
    SYN = 3
    TIMER = 4
    RELEASE = 5
    RECHECK = 6      # re-check after table changes (TBL_COMMIT op 3)
    REASON = 8       # 8 + drop reason code: BROKEN because of that reason


verdict_layout = data.StructLayout({
    "action": Verdict,
    "reason": 5,
    "latch_valid": 1,
    "latch": 16,
    "sa_valid": 1,
    "sa": 16,
    "seq": 64,
    "gen": GEN_BITS,     # CRYPTO: the SA slot's generation at the SAD hit
})

event_layout = data.StructLayout({
    "time": 32, "slot": 16, "peer": 8, "old": LatchState, "new": LatchState, "cause": 6,
})

class DecapStatus(enum.Enum, shape=3):
    """What the crypto path found in an inbound ESP/AH frame (second pass)."""
    OK = 0            # ICV verified, trailer fine: the inner frame follows
    ICV_FAIL = 1      # drop `icv`; the window does not move
    MALFORMED = 2     # refused before the ICV (too short for the SA's ICV, bad AH
                      # IPv4 option lengths): `malformed`, the window does not move
    BAD_PADDING = 3   # ICV verified, ESP pad length/bytes wrong: window moves, `bad_padding`
    BAD_INNER = 4     # ICV verified, tunnel next header not IPv4/IPv6 or not the
                      # inner packet's version: window moves, `malformed`


# decap = 1: the frame is the decapsulated inner frame of an inbound ESP/AH
# frame whose first pass said CRYPTO (always inbound); sa, seq (the full
# sequence number the first pass gave), gen (the first pass's verdict.gen)
# and status come from the crypto path
meta_layout = data.StructLayout({"inbound": 1, "now": 32, "decap": 1, "sa": 16, "seq": 64,
                                 "status": DecapStatus, "gen": GEN_BITS})

# per-latch counters (CTR_READ view too)
ctr_layout = data.StructLayout({"packets_in": 32, "packets_out": 32, "bytes_in": 48,
                                "bytes_out": 48, "drops": 32})
# per-SA counters: an SA counts only in the direction it protects (inbound SA:
# decapsulated frames in, outbound SA: frames out), so one packet and one byte
# count are enough; CTR_READ puts them in *_IN or *_OUT by the SA's direction.
# 112 bits: 4 EBRs for 64 SAs where the 192-bit entry took 6
sa_ctr_layout = data.StructLayout({"packets": 32, "bytes": 48, "drops": 32})

R = REASON_CODES
TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10


def qop_satisfies(sa, latched):
    """sim: QoP.satisfies. sa: sa_layout view; latched: latch qop view."""
    return ((sa.ah == latched.ah) & (sa.tunnel == latched.tunnel)
            & (sa.encrypts | ~latched.encrypts) & (sa.key256 >= latched.key256)
            & (sa.icv >= latched.icv))


class _NoPort:
    """Stands for a counter RAM's port in a build without that RAM: what the
    FSM drives goes nowhere (optimised away), `data` reads 0."""
    def __init__(self, shape):
        self.en, self.addr, self.data = Signal(), Signal(16), Signal(shape)


class PolicyCore(wiring.Component):
    def __init__(self, params: Params = Params()):
        self.params = params
        self.regs = AxiLiteRegisters(RegisterFile(params))
        super().__init__({
            **axil_members(),
            "i": In(packet_signature(64)),
            "meta": In(meta_layout),           # sampled with each frame's first beat
            "verdict": Out(stream.Signature(verdict_layout)),
            "irq": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.regs = regs = self.regs
        for name in axil_members():
            a, b = getattr(self, name), getattr(regs, name)
            m.d.comb += (b.eq(a) if regs.signature.members[name].flow == In else a.eq(b))

        m.submodules.parser = parser = HeaderParser()
        # two banks per direction: TBL_COMMIT writes the shadow, op swap makes it live (spd.py)
        m.submodules.spd = spd = SpdEngine(p.spd_rules, rows=p.spd_rows, banks=2)
        m.submodules.tpl = tpl = SpdEngine(p.templates, directions=1)
        m.submodules.latch = latch = LatchTable(p.latch_capacity, p.latch_ways,
                                                 capacity_v6=p.latch_capacity_v6)
        m.submodules.sad = sad = SadLookup(p.sas, rows=p.sad_rows)
        m.submodules.replay = replay = ReplayWindows(p.sas, p.replay_window_max)
        m.submodules.events = events = BlockFifo(width=event_layout.size, depth=p.event_depth)
        m.submodules.metaq = metaq = fifo.SyncFIFOBuffered(width=meta_layout.size, depth=4)
        # RAM words are registered before any logic uses them (hw/ram.py;
        # timing: the EBR's 5.61 ns clock-to-output leaves no room for a
        # compare after it). The SA, counter and latch counter RAMs are
        # written in cycles whose read word is never used: the cycle after
        # COMMIT, SEND, COUNT_WRITE or a CLEAR_CTR step (their writes are
        # registered), and CLONE_WAIT / CLEAR_CTR for the latch counters
        m.submodules.sadmem = sadmem = block_ram(sa_layout, p.sas)
        sa_wp = sadmem.write_port()
        sa_rp = sadmem.read_port()
        # an address presented in cycle t is in sa_q from cycle t+2
        sa_q = read_register(m, platform, sa_wp, sa_rp, name="sa_q")
        m.submodules.pad = pad = PadClaims(p.pad_claims, rows=p.pad_rows)
        # counters: read-modify-write after each verdict; host reads go
        # through the FSM too (CTR_READ), so one read port each is enough
        m.submodules.sactr = sactr = block_ram(sa_ctr_layout, p.sas)
        sactr_wp, sactr_rp = sactr.write_port(), sactr.read_port()
        if p.latch_counters:
            m.submodules.lctr = lctr = block_ram(ctr_layout, p.latch_capacity)
            lctr_wp, lctr_rp = lctr.write_port(), lctr.read_port()
        else:
            # no RAM: the FSM's writes go nowhere, CTR_READ of a latch reads 0
            lctr_wp, lctr_rp = _NoPort(ctr_layout), _NoPort(ctr_layout)

        # frames in (through a register slice: the parser's `ready` is deep
        # FSM logic, the meta queue writes on the input handshake); meta
        # queued at each first beat. The queue's write is registered (timing:
        # 70f03fc's 25F report, the slice's `ready` -> the handshake -> the
        # queue's level enables, two LUTs and 7 ns of routing). A cycle late
        # is safe: IDLE waits for both the parser's result and the meta, and
        # the queue holds every frame in flight (each is in the slice, the
        # parser, or this register)
        m.submodules.in_slice = in_slice = SkidBuffer(packet_layout(64))
        wiring.connect(m, wiring.flipped(self.i), in_slice.i)
        wiring.connect(m, in_slice.o, parser.i)
        meta_w, meta_wen = Signal(meta_layout.size), Signal()
        m.d.sync += [meta_w.eq(self.meta.as_value()),
                     meta_wen.eq(self.i.valid & self.i.ready & self.i.payload.first)]
        m.d.comb += [metaq.w_data.eq(meta_w), metaq.w_en.eq(meta_wen)]

        # ---- registers
        stage = Cat(*[getattr(regs, f"tbl_stage{i}") for i in range(STAGE_WORDS)])
        commit = regs.tbl_commit
        commit_pending = Signal()
        busy = Signal()
        commits = Signal(32)
        rd_data = Signal(32 * READ_WORDS)      # TBL_COMMIT op read: the entry read back
        assert latch_read_layout().size <= len(rd_data) and sa_layout.size <= len(rd_data)
        m.d.comb += Cat(*[getattr(regs, f"tbl_read{i}") for i in range(READ_WORDS)]).eq(rd_data)
        with m.If(regs.tbl_commit_stb):
            m.d.sync += commit_pending.eq(1)
        # the bus is held while the FSM works for the host; registered
        # (timing): the slave's next access after a write starts two cycles
        # after its strobe at the earliest (WRITE -> WRESP -> IDLE), by which
        # time `hold` has seen the strobe
        hold = Signal()
        m.d.sync += regs.hold.eq(hold)
        m.d.comb += hold.eq(commit_pending | regs.tbl_commit_stb)
        ctr_pending = Signal()          # CTR_READ waiting for the FSM
        ctr_out = Signal(ctr_layout)
        # the counter entries, registered out of their RAMs every cycle: an
        # address presented in COUNT / CTR_HOST is here two cycles later
        ctr_sa_r = read_register(m, platform, sactr_wp, sactr_rp, name="ctr_sa_r")
        ctr_l_r = read_register(m, platform, lctr_wp, lctr_rp, name="ctr_l_r")
        with m.If(regs.ctr_read_stb):
            m.d.sync += ctr_pending.eq(1)
        with m.If(ctr_pending | regs.ctr_read_stb):
            m.d.comb += hold.eq(1)       # a read after CTR_READ sees its result
        m.d.comb += [regs.ctr_packets_in.eq(ctr_out.packets_in),
                     regs.ctr_packets_out.eq(ctr_out.packets_out),
                     regs.ctr_bytes_in_lo.eq(ctr_out.bytes_in[:32]),
                     regs.ctr_bytes_in_hi.eq(ctr_out.bytes_in[32:]),
                     regs.ctr_bytes_out_lo.eq(ctr_out.bytes_out[:32]),
                     regs.ctr_bytes_out_hi.eq(ctr_out.bytes_out[32:]),
                     regs.ctr_drops.eq(ctr_out.drops)]
        ctr_seq = Signal(64)            # CTR_READ of an SA: last sent / window top
        m.d.comb += [regs.ctr_seq_lo.eq(ctr_seq[:32]), regs.ctr_seq_hi.eq(ctr_seq[32:])]
        evt_lost = Signal(16)
        m.d.comb += [
            regs.tbl_commits.eq(commits),
            regs.status.eq(Cat(busy, commit_pending)),
            regs.evt_level.eq(Cat(events.level, Const(0, 16 - len(events.level)), evt_lost)),
            events.r_en.eq(regs.evt_pop_stb),
            regs.irq_status.eq(Cat(events.r_rdy, evt_lost != 0)),
            self.irq.eq((regs.irq_enable[0] & events.r_rdy) | (regs.irq_enable[1] & (evt_lost != 0))),
        ]
        # the head event, registered every cycle (timing: the FIFO's block
        # RAM output into the register file's read mux was one period). It
        # lags the FIFO by a cycle; a bus read comes at least four cycles
        # after the EVT_POP write or the EVT_LEVEL read before it. No reset:
        # the register becomes the EBR's output register (boards/ecp5_outreg.py)
        evt_head = Signal(event_layout.size, reset_less=True)
        m.d.sync += evt_head.eq(events.r_data)
        m.d.comb += Cat(regs.evt_data0, regs.evt_data1, regs.evt_data2, regs.evt_data3).eq(evt_head)
        tick = Signal(32)
        # the divider counts down from TICK_DIV - 1 (0 for 0) to 0, and its
        # zero is a flip-flop (tick_zero) that enables `now`: no compare or
        # carry chain sits in front of the 32 enables (timing; an up-counter
        # compared with the limit was -1.59 ns on the 25F). A TICK_DIV write
        # restarts the tick period from the new limit (tick_reload: the
        # strobe, a cycle later, when tick_limit holds the new value)
        tick_left = Signal(32)
        tick_zero = Signal(init=1)
        tick_reload = Signal()
        tick_limit = Signal(32)
        tick_limit_zero = Signal(init=1)
        m.d.sync += [tick_limit.eq(Mux(regs.tick_div == 0, 0, regs.tick_div - 1)),
                     tick_limit_zero.eq(regs.tick_div <= 1),
                     tick_reload.eq(regs.tick_div_stb)]
        with m.If(tick_zero | tick_reload):
            m.d.sync += [tick_left.eq(tick_limit), tick_zero.eq(tick_limit_zero)]
        with m.Else():
            m.d.sync += [tick_left.eq(tick_left - 1), tick_zero.eq(tick_left == 1)]
        with m.If(tick_zero):
            m.d.sync += tick.eq(tick + 1)
        m.d.comb += regs.now.eq(tick)

        # counters: per drop reason, frames per direction, forwarded, non-IP.
        # The DROP_* counters are one LUT RAM (one incrementer, and the
        # register file reads them through one indexed port, not a mux input
        # each); a reason's entry counts from 0 until its bit in drop_live is
        # set, so reset and CTRL.clear_counters clear them all in one cycle
        m.submodules.drop_mem = drop_mem = Memory(shape=32, depth=len(R), init=[])
        drop_wp = drop_mem.write_port()
        drop_rp_bus = drop_mem.read_port(domain="comb")
        drop_rp_inc = drop_mem.read_port(domain="comb")
        drop_live = Signal(len(R))
        drop_raw = Signal(32)           # the reason's RAM word (FINISH -> COUNT)
        drop_raw_live = Signal()        # ... and whether it counts since the last clear
        m.d.comb += [drop_rp_bus.addr.eq(regs.drop_index),
                     regs.drop_data.eq(Mux(drop_live.bit_select(regs.drop_index, 1),
                                           drop_rp_bus.data, 0))]
        frames_in, frames_out, forwarded, non_ip = (Signal(32, name=n) for n in
                                                    ("frames_in", "frames_out", "forwarded", "non_ip"))
        m.d.comb += [regs.frames_in.eq(frames_in), regs.frames_out.eq(frames_out),
                     regs.forwarded.eq(forwarded), regs.non_ip.eq(non_ip)]
        with m.If(regs.ctrl[1]):
            m.d.sync += [c.eq(0) for c in [drop_live, frames_in, frames_out, forwarded, non_ip]]
        # ... and its rising edge clears the counter RAMs (state CLEAR_CTR):
        # max(sas, latch slots with counters) cycles
        clr_prev = Signal()
        clr_edge = Signal()
        clr_req = Signal()              # a sweep is wanted or running
        clr_entries = max(p.sas, p.latch_capacity if p.latch_counters else 0)
        clr_idx = Signal(range(clr_entries + 1))
        clr_last = clr_entries - 1
        m.d.sync += clr_prev.eq(regs.ctrl[1])
        m.d.comb += clr_edge.eq(regs.ctrl[1] & ~clr_prev)
        with m.If(clr_edge):
            m.d.sync += clr_req.eq(1)
        with m.If(clr_edge | clr_req):
            m.d.comb += hold.eq(1)       # a read after the CTRL write sees the counters cleared

        # ---- per-frame state
        res = Signal.like(parser.o.payload)
        meta = Signal(meta_layout)
        flow = Signal(flow_layout)
        lres = Signal.like(latch.resp.payload)
        sres = Signal.like(spd.resp.payload)
        tres = Signal.like(tpl.resp.payload)
        sa = Signal(sa_layout)
        sa_valid = Signal()
        sa_idx = Signal(16)
        sad_hit = Signal()                      # the SAD's answer, for SAD_GOT
        v = Signal(verdict_layout)
        # per-SA-slot generation (GEN_BITS above): LUT RAM (an asynchronous
        # read port: no block RAM, the 25F has none to spare), in two copies
        # written alike (a few LUTs each): one read at the frame's SA slot
        # into gen_f, one at the TBL_COMMIT index into gen_c (timing:
        # d9f828d's 25F report, sa_idx through one copy's address mux into
        # its output register, -0.54). COMMIT writes gen_c + 1 back; the
        # commit word is written two cycles or more before COMMIT. The
        # frame's copy is read at a registered address: the second pass's
        # slot (meta.sa) from TAKE on, the first pass's (sa_idx, set by
        # SAD_WAIT) from RP_REQ on, so gen_f holds the slot's generation
        # from two cycles after: in RP_WAIT's answer (the replay windows
        # take longer), and long before DC_SA_GOT registers its compare
        # (gen_ok) for DC_SA_CHECK.
        gen_wps = []
        gen_f, gen_c = Signal(GEN_BITS), Signal(GEN_BITS)
        gen_addr = Signal(16)
        m.d.sync += gen_addr.eq(Mux(meta.decap, meta.sa, sa_idx))
        for name, addr, out in (("genmem", gen_addr, gen_f), ("genmem_c", commit[0:16], gen_c)):
            mem = Memory(shape=GEN_BITS, depth=p.sas, init=[])
            m.submodules[name] = mem
            gen_wps.append(mem.write_port())
            rp = mem.read_port(domain="comb")
            m.d.comb += rp.addr.eq(addr)
            m.d.sync += out.eq(rp.data)
        gen_ok = Signal()
        m.d.comb += self.verdict.payload.eq(v)
        entry = Signal(entry_layout)            # the latch being tracked / written

        def load_entry(src=None):
            """`entry`'s fields but flow from `src` (None: zero, a FREE slot)."""
            return [getattr(entry, n).eq(0 if src is None else getattr(src, n))
                    for n, _f in entry_layout if n != "flow"]
        slot = Signal(16)
        # `entry` and `slot` are taken from every latch answer, whatever the
        # state (timing: no FSM-decoded enable on their ~370 flip-flops;
        # d9f828d's 25F report, the answer's `valid` through the next-state
        # logic into those enables, 7.3 ns of routing, -0.79). Every answer
        # is the slot the FSM works on next (a READ or WRITE answers its
        # command's slot): a swept or released slot is written back with its
        # own flow, an INSERT keys on cmd.flow. The FSM's own loads below (a
        # new latch, a slot written FREE, TRACK's and the sweep's changes)
        # come later in the code and win. Answers taken by FINISH (a frame
        # dropped with its lookups in flight) leave have_latch clear, so the
        # verdict does not read `slot`.
        with m.If(latch.resp.valid):
            m.d.sync += [entry.eq(latch.resp.payload.entry), slot.eq(latch.resp.payload.slot)]
        have_latch = Signal()                   # latch_seen (verdict.latch)
        ev = Signal(event_layout)
        # ev_push: a register, set by event() for the *_EV state that follows
        # every call (timing: no state decode in front of the event FIFO's
        # write side)
        ev_push = Signal()
        m.d.sync += ev_push.eq(0)
        m.d.comb += [events.w_data.eq(ev.as_value()), events.w_en.eq(ev_push)]
        with m.If(ev_push & ~events.w_rdy):
            m.d.sync += evt_lost.eq(evt_lost + 1)

        # the event's time is the frame's, loaded every cycle (timing: 32 of
        # the FIFO's write bits without the OR of every event() site as
        # their enable); meta holds still from TAKE to the next TAKE, so the
        # push, a cycle after event(), writes the frame's time
        m.d.sync += ev.time.eq(meta.now)

        def event(old, new, cause, slot_v=None, peer=None):
            m.d.sync += [ev.slot.eq(slot if slot_v is None else slot_v),
                         ev.peer.eq(entry.peer if peer is None else peer), ev.old.eq(old),
                         ev.new.eq(new), ev.cause.eq(cause), ev_push.eq(1)]

        def drop(reason):
            """Drop on `reason`: a reason's name, or a Value that picks its code."""
            m.d.sync += [v.action.eq(Verdict.DROP), v.reason.eq(R[reason] if isinstance(reason, str)
                                                                  else reason)]
            m.next = "FINISH"

        def forward():
            m.d.sync += v.action.eq(Verdict.FORWARD)

        def first_drop(name, cases):
            """A state's drop tests as two registers, loaded every cycle: whether
            any of `cases` ((condition, reason name), first one wins) holds,
            and the reason of the first that does (timing: the state acts on
            flip-flops, not on a priority chain; its inputs must hold still
            a cycle before it)."""
            any_ = Signal(name=f"{name}_drop")
            reason = Signal.like(v.reason, name=f"{name}_reason")
            code = R[cases[-1][1]]
            for cond, r in reversed(cases[:-1]):
                code = Mux(cond, R[r], code)
            m.d.sync += [any_.eq(Cat(*(c for c, _r in cases)).any()), reason.eq(code)]
            return any_, reason

        out_dir = ~meta.inbound
        # the second pass's tests of the crypto path's status and SA index,
        # registered from `meta` every cycle: DECAP's outcome (drop, its
        # reason, whether the frame counts on no SA) and DC_INNER's two flags
        # after the ICV (timing: the 16-bit compare's carry chain ended at the
        # drop reason; then three flags in a priority chain drove the next
        # state and the request slices, 29af562's seed-2 report); meta is
        # loaded in TAKE, DECAP comes after TIMERS and CLASSIFY. A status the
        # core does not know is `malformed`: fail closed
        dc_no_sa, dc_bad_padding, dc_bad_inner = (
            Signal(name=n) for n in ("dc_no_sa", "dc_bad_padding", "dc_bad_inner"))
        known = [DecapStatus.OK, DecapStatus.ICV_FAIL, DecapStatus.BAD_PADDING, DecapStatus.BAD_INNER]
        icv_fail = meta.status == DecapStatus.ICV_FAIL
        unknown = ~Cat(*(meta.status == k for k in known)).any()
        sa_beyond = meta.sa >= p.sas
        dc_drop, dc_reason = first_drop("dc", [(icv_fail, "icv"), (unknown, "malformed"),
                                               (sa_beyond, "no_sa")])
        m.d.sync += [dc_no_sa.eq(sa_beyond & ~icv_fail & ~unknown),
                     dc_bad_padding.eq(meta.status == DecapStatus.BAD_PADDING),
                     dc_bad_inner.eq(meta.status == DecapStatus.BAD_INNER)]
        # the frame's protocol and TCP flag tests, registered from `res` every
        # cycle (timing: no compare between `res` and the FSM's enables);
        # their users (PAD_WAIT, SA_CHECKS, TRACK) come long after TAKE
        is_udp, syn_only, clone_trigger, tcp_fin, tcp_rst = (
            Signal(name=n) for n in ("is_udp", "syn_only", "clone_trigger", "tcp_fin", "tcp_rst"))
        flags = res.tcp_flags
        syn_v = (flags & (TCP_SYN | TCP_ACK)) == TCP_SYN
        m.d.sync += [is_udp.eq(res.proto == 17), syn_only.eq(syn_v),
                     clone_trigger.eq(Mux(res.proto == 6, syn_v, res.proto == 17)),
                     tcp_fin.eq(flags[0]), tcp_rst.eq((flags & TCP_RST).any())]
        latched = have_latch
        lentry = lres.entry
        # TRACK's tests (ModelDevice._track), registered every cycle: TRACK
        # comes only from SEND, which changes none of their inputs, so in
        # TRACK they hold the frame's (timing: d9f828d's 25F report, the
        # direction and the TCP flags through TRACK's next state, -0.72)
        trk_reopen, trk_close, trk_fin_in, trk_fin_out = (
            Signal(name=n) for n in ("trk_reopen", "trk_close", "trk_fin_in", "trk_fin_out"))
        fin_out_v = entry.fin_out | (out_dir & tcp_fin)
        fin_in_v = entry.fin_in | (meta.inbound & tcp_fin)
        m.d.sync += [trk_reopen.eq((entry.state == LatchState.TIME_WAIT) & syn_only),
                     trk_fin_out.eq(fin_out_v), trk_fin_in.eq(fin_in_v),
                     trk_close.eq((entry.state != LatchState.TIME_WAIT)
                                  & (tcp_rst | (fin_in_v & fin_out_v)))]

        # protected size (ModelDevice._protected_len) for the 64 KiB check
        # registered (timing): res is loaded in TAKE, the first user
        # (IN_IPSEC) comes two cycles later; prot_hdr / prot_body follow
        # `sa` a cycle behind, too_big a cycle after them (see SA_GOT)
        ip_len = Signal(20)
        payload_len = Signal(20)
        m.d.sync += [ip_len.eq(res.l3_end - res.l2_len),
                     payload_len.eq(res.l3_end - res.l2_len - res.hdr_len)]
        # the SA-independent parts of the protected sizes, a cycle later
        # (timing: one adder, the ICV's, after the SA's muxes): per data
        # length (tunnel: the IP packet, transport: its payload) the ESP body
        # without the ICV (16 + the padded data) and the AH body for an IPv4
        # and an IPv6 outer header
        esp_ip, esp_pl, ah_ip4, ah_ip6, ah_pl4, ah_pl6 = (Signal(21, name=n) for n in (
            "esp_ip", "esp_pl", "ah_ip4", "ah_ip6", "ah_pl4", "ah_pl6"))
        m.d.sync += [esp_ip.eq(16 + Cat(Const(0, 2), (ip_len + 5)[2:])),
                     esp_pl.eq(16 + Cat(Const(0, 2), (payload_len + 5)[2:])),
                     ah_ip4.eq(ip_len + 36), ah_ip6.eq(ip_len + 40),
                     ah_pl4.eq(payload_len + 36), ah_pl6.eq(payload_len + 40)]

        def protected_size(s):
            """(header, body) of the frame protected by SA `s` (sa_layout view)."""
            hdr_len = Mux(s.tunnel, Mux(s.outer_v6, 0, 20), Mux(res.v6, res.hdr_len - 40, res.hdr_len))
            outer_v6 = Mux(s.tunnel, s.outer_v6, res.v6)
            esp_body = Mux(s.tunnel, esp_ip, esp_pl) + s.icv_bytes
            ah_body = Mux(s.tunnel, Mux(outer_v6, ah_ip6, ah_ip4), Mux(outer_v6, ah_pl6, ah_pl4))
            return hdr_len, Mux(s.ah, ah_body, esp_body)
        # the frame's own header checks, registered every cycle (timing: no
        # compare between `res` and the FSM): an AH header that is not the
        # AH-GMAC layout (IN_IPSEC, which comes at least three cycles after
        # TAKE loaded res, two after payload_len), an inner packet that is
        # not IP or whose length disagrees with the ESP/AH payload (DC_INNER)
        ah_bad, inner_bad = Signal(), Signal()
        ah_len = Mux(res.v6, 40, 36)
        m.d.sync += [ah_bad.eq((res.proto == 51) & (((res.ah_len + 2) * 4 != ah_len)
                                                    | (payload_len < ah_len))),
                     inner_bad.eq((res.status != Status.OK) | (res.l3_end != res.frame_len))]
        # CLASSIFY's, DC_INNER's and RP_WAIT's tests of the frame as flags,
        # registered every cycle the same way (CLASSIFY comes two cycles
        # after TAKE loaded res: TIMERS between)
        res_malformed, res_unsupported, res_non_ip, in_ipsec, ah_routing = (
            Signal(name=n) for n in ("res_malformed", "res_unsupported", "res_non_ip", "in_ipsec",
                                     "ah_routing"))
        m.d.sync += [res_malformed.eq(res.status == Status.MALFORMED),
                     res_unsupported.eq(res.status == Status.UNSUPPORTED),
                     res_non_ip.eq(res.status == Status.NON_IP),
                     in_ipsec.eq(meta.inbound & ((res.proto == 50) | (res.proto == 51))),
                     ah_routing.eq((res.proto == 51) & res.has_routing)]
        # DC_INNER's outcome, a stage after its four flags (timing: inner_bad
        # was routed across the chip into a priority chain that picked the
        # next state, the drop reason and the request slices; f7e1793's
        # report). DC_INNER comes many cycles after TAKE loaded res and meta
        dc_inner_drop, dc_inner_reason = first_drop(
            "dc_inner", [(dc_bad_padding, "bad_padding"), (dc_bad_inner, "malformed"),
                         (res_unsupported, "unsupported"), (inner_bad, "malformed")])
        prot_hdr = Signal(17)
        prot_body = Signal(22)
        too_big = Signal()
        m.d.sync += too_big.eq(prot_hdr + prot_body > 0xFFFF)

        def exhausted(s):
            # seq >= 2^32 - 1 as AND/OR trees (no 64-bit carry chain)
            low_full = s.seq[:32].all()
            return Mux(s.esn, low_full & s.seq[32:].all(), low_full | s.seq[32:].any())
        # DECIDE / SA_CHECKS act on these, registered in SA_GOT (timing: no
        # 64-bit or QoP compare in the cycle that picks the next state)
        seq_limit_hit = Signal()
        peer_differs = Signal()         # the SA's peer is not the latch's
        qop_short = Signal()            # the SA's QoP does not satisfy the latch's
        pin_differs = Signal()          # a pinned SA / peer of the SPD rule differs
        tpl_peer_differs = Signal()     # the template expects another peer (TPL)
        # registered every cycle from the loaded SA (timing: no FSM decode and
        # no SA mux in front of the adders and compares). Their users, DECIDE,
        # SA_CHECKS and TPL, come at least one / two cycles after `sa`, `sa_idx`,
        # `lres` and `sres` were last loaded (LATCH_WAIT / SA_LOAD / DC_SA_GOT,
        # then SA_GOT)
        hdr_v, body_v = protected_size(sa)
        m.d.sync += [prot_hdr.eq(hdr_v), prot_body.eq(body_v),
                     seq_limit_hit.eq(exhausted(sa)),
                     peer_differs.eq(sa.peer != lentry.peer),
                     qop_short.eq(~qop_satisfies(sa, lentry.qop)),
                     pin_differs.eq((sres.pin_sa & (sres.sa != sa_idx))
                                    | (sres.pin_peer & (sres.peer != sa.peer))),
                     tpl_peer_differs.eq(tres.pin_peer & (tres.peer != sa.peer))]
        # TPL's outcomes as flags, a stage after tpl_peer_differs
        # (timing: the template answer, the peer test and the table-full bit
        # reached FINISH's next-state OR tree through five LUT levels). TPL
        # comes at least three cycles after `sa`, `lres` and `tres` were last
        # loaded (SA_GOT, DECIDE, then SA_CHECKS or PAD and PAD_WAIT)
        tpl_send, tpl_drop = Signal(name="tpl_send"), Signal(name="tpl_drop")
        m.d.sync += [tpl_send.eq(~tres.hit), tpl_drop.eq(tres.hit & (tpl_peer_differs | lres.full))]
        # DECIDE's outcome, registered every cycle from its flags (timing: a
        # priority tree over a dozen flags picked the next state and the drop
        # reason in one cycle, in every report since f5e4085). Its inputs are
        # loaded by SA_GOT (`sa`, `lres`, `sres`) or registered in it
        # (peer_differs, qop_short, pin_differs); SA_FLAGS is the cycle this
        # tree sees them, DECIDE acts on its answer. The model's order:
        # inbound, a latch outranks the SPD; outbound, a latched flow whose
        # policy changed goes BROKEN (BREAK, with the reason)
        d_drop, d_break, d_forward, d_pad, d_send = (
            Signal(name=n) for n in ("d_drop", "d_break", "d_forward", "d_pad", "d_send"))
        d_reason = Signal.like(v.reason)

        def outcome(kind=None, reason=None):
            """DECIDE's answer: one of the d_* flags (None: SA_CHECKS), a reason."""
            m.d.sync += [f.eq(f is kind) for f in (d_drop, d_break, d_forward, d_pad, d_send)]
            if reason is not None:
                m.d.sync += d_reason.eq(R[reason])
        broken = lentry.state == LatchState.BROKEN
        with m.If(meta.inbound):
            # clear text, or the inner packet of a decapsulated frame (its SA
            # in sa / sa_idx); a latched flow skips the SPD
            with m.If(latched):
                with m.If(broken):
                    outcome(d_drop, "latch_broken")
                with m.Elif(~meta.decap):
                    outcome(d_drop, "latch_clear")
                with m.Elif(peer_differs):
                    outcome(d_drop, "latch_peer")      # flow stealing: another peer's SA
                with m.Elif(qop_short):
                    outcome(d_drop, "latch_qop")
                with m.Else():
                    outcome(d_send)
            with m.Elif(~sres.hit):
                outcome(d_drop, "no_policy")
            with m.Elif(sres.action == Action.DISCARD):
                outcome(d_drop, "spd_discard")
            with m.Elif(~meta.decap):
                with m.If(sres.action == Action.PROTECT):
                    outcome(d_drop, "spd_clear")
                with m.Else():
                    outcome(d_forward)
            with m.Elif((sres.action == Action.BYPASS) | pin_differs):
                outcome(d_drop, "spd_mismatch")        # protected traffic where none is expected
            with m.Else():
                outcome(d_pad)
        with m.Elif(latched):
            with m.If(broken):
                outcome(d_drop, "latch_broken")
            with m.Elif(~sres.hit):
                outcome(d_break, "no_policy")
            with m.Elif(sres.action == Action.DISCARD):
                outcome(d_drop, "spd_discard")
            with m.Elif(sres.action == Action.BYPASS):
                outcome(d_break, "latch_clear")
            with m.Elif(~sa.valid):
                outcome(d_break, "no_sa")
            with m.Elif(peer_differs):
                outcome(d_break, "latch_peer")
            with m.Elif(qop_short):
                outcome(d_break, "latch_qop")
            with m.Else():
                outcome()
        with m.Else():
            with m.If(~sres.hit):
                outcome(d_drop, "no_policy")
            with m.Elif(sres.action == Action.DISCARD):
                outcome(d_drop, "spd_discard")
            with m.Elif(sres.action == Action.BYPASS):
                outcome(d_forward)
            with m.Elif(~sa.valid):
                outcome(d_drop, "no_sa")
            with m.Else():
                outcome()
        # SA_CHECKS's outcome the same way, registered every cycle: it comes
        # after DECIDE, a cycle after too_big (SA_FLAGS' prot_hdr / prot_body)
        sc_drop, sc_reason = first_drop("sc", [(seq_limit_hit, "seq_exhausted"),
                                               (~sa.tunnel & res.is_fragment, "fragment"),
                                               (too_big, "unsupported")])
        sc_tpl = Signal(name="sc_tpl")
        m.d.sync += sc_tpl.eq(~latched & flow.ports_valid & clone_trigger)
        rc_found = Signal()
        rc_healthy_out = Signal()
        rc_sa = Signal(range(p.sas + 2))
        rc_pipe = Signal(4)
        rc_idx = [Signal(range(p.sas + 2), name=f"rc_idx{i}") for i in range(2)]
        rc_match, rc_last = Signal(), Signal()
        rc_mparts, rc_last0 = Signal(3), Signal()
        rc_out_parts = Signal(4)
        m.d.sync += rc_healthy_out.eq(rc_out_parts.all())
        # timer events (CTRL.timer_events): the earliest deadline armed since
        # the last sweep (conservative: a deadline cleared later leaves it
        # early, which costs an empty sweep, never a missed event)
        next_deadline = Signal(32)
        timed_any = Signal()
        tv_emit = Signal()              # pass 2+: free the entries whose age is tv_target
        tv_target = Signal(32)          # age (now - deadline) of the deadline being freed
        tv_next = Signal(32)
        tv_next_have = Signal()
        tv_future = Signal(32)          # earliest (deadline - now) still ahead
        tv_future_have = Signal()
        # the slot being swept, registered (TV_WAIT) and compared (TV_CMP)
        tv_age, tv_ahead = Signal(32), Signal(32)
        tv_state, tv_peer, tv_used = Signal(LatchState), Signal(8), Signal()
        tv_at_target, tv_before, tv_older, tv_sooner = Signal(), Signal(), Signal(), Signal()
        # the slot's age sign as flags, registered in TV_CMP (timing: tv_age's
        # sign bit drove the event's and the entry's enables through TV_DECIDE's
        # chain, f7e1793's report)
        tv_expired, tv_ahead_used = Signal(), Signal()
        # the sweep's last slot, registered every cycle (timing: no 16-bit
        # compare in front of slot's and next_deadline's enables); slot
        # holds still from TV_READ to TV_NEXT
        tv_slot_last = Signal()
        m.d.sync += tv_slot_last.eq(slot == p.latch_capacity - 1)

        # the two deadlines TRACK can set, and whether each is earlier than
        # next_deadline, registered every cycle (timing: TRACK does not add
        # and subtract in one cycle). meta.now is loaded in IDLE and
        # next_deadline last changes in TV_NEXT, both more than two cycles
        # before TRACK; a host write of the knobs takes effect 2 cycles later
        udp_deadline, tw_deadline = Signal(32), Signal(32)
        udp_earlier, tw_earlier = Signal(), Signal()
        m.d.sync += [udp_deadline.eq(meta.now + regs.udp_idle), tw_deadline.eq(meta.now + regs.time_wait),
                     udp_earlier.eq((udp_deadline - next_deadline)[31]),
                     tw_earlier.eq((tw_deadline - next_deadline)[31])]

        # A latch deadline was set (TRACK): keep the earliest one, a cycle
        # later from the flags TRACK registers (timing: TRACK's TCP flag and
        # FIN tests do not reach next_deadline's enables). The next user is
        # the next frame's TAKE (not_due)
        arm_udp, arm_tw = Signal(), Signal()
        m.d.sync += [arm_udp.eq(0), arm_tw.eq(0)]
        for armed, deadline, earlier in ((arm_udp, udp_deadline, udp_earlier),
                                         (arm_tw, tw_deadline, tw_earlier)):
            with m.If(armed):
                with m.If(~timed_any | earlier):
                    m.d.sync += next_deadline.eq(deadline)
                m.d.sync += timed_any.eq(1)
        # SAD_INIT's window request, from the commit's stage every cycle (no
        # FSM decode in its enable: the stage holds still while COMMIT runs)
        rp_init = Signal(replay.cmd.payload.shape())
        # the commit word's fields (TBL_COMMIT) and the staged SAD entry
        c_index, c_table, c_op = commit[0:16], commit[16:20], commit[24:27]
        sv = data.View(sad_stage_layout(), stage[:sad_stage_layout().size])
        m.d.sync += [rp_init.sa.eq(c_index), rp_init.seq.eq(sv.sa.seq), rp_init.esn.eq(sv.sa.esn),
                     rp_init.size.eq(sv.window), rp_init.op.eq(ReplayOp.INIT)]

        # each table request goes through a ValidSlice: the FSM's decode
        # reaches only its `valid` and tag flip-flops (the latch op, the
        # SPD's flow source, the replay command), the table sees it a cycle
        # later; the rest of a request comes from registers that hold still
        # until the answer (hw/valid_slice.py). The SAD, PAD and replay
        # requests are each asked once and answered before the next: their
        # slices are `answered` (always ready, the states that ask move on)
        slices = {}
        for name, port, tag in [("lq", latch.cmd, Op), ("sq", spd.req, 1), ("tq", tpl.req, 1),
                                ("aq", sad.req, 1), ("pq", pad.req, 1),
                                ("rq", replay.cmd, replay.cmd.payload.shape())]:
            sl = ValidSlice(tag, answered=name in ("aq", "pq", "rq"))
            m.submodules[name + "_slice"] = sl
            m.d.comb += [port.valid.eq(sl.o.valid), sl.o.ready.eq(port.ready)]
            slices[name] = sl
        lq, sq, tq, aq, pq, rq = (slices[n].i for n in ("lq", "sq", "tq", "aq", "pq", "rq"))
        m.d.comb += [latch.cmd.payload.op.eq(slices["lq"].o.payload),
                     replay.cmd.payload.eq(slices["rq"].o.payload)]
        spd_from_entry = slices["sq"].o.payload     # the re-check sweep: the latch's flow, outbound
        m.d.comb += [spd.req.payload.flow.eq(Mux(spd_from_entry, entry.flow, flow)),
                     spd.req.payload.inbound.eq(~spd_from_entry & meta.inbound)]
        # the table requests' payloads do not depend on the FSM state (timing:
        # no state-decoded mux in front of the tables' request registers);
        # each state that asks says only `valid` and the latch op. A slot
        # written FREE (TV_FREE, RELEASE_WRITE) has `entry` cleared before
        m.d.comb += [latch.cmd.payload.flow.eq(flow), latch.cmd.payload.now.eq(meta.now),
                     latch.cmd.payload.slot.eq(slot), latch.cmd.payload.entry.eq(entry),
                     tpl.req.payload.flow.eq(flow),
                     sad.req.payload.ah.eq(res.proto == 51), sad.req.payload.spi.eq(res.spi),
                     sad.req.payload.v6.eq(res.v6), sad.req.payload.dst.eq(res.dst),
                     sad.req.payload.src.eq(res.src),
                     pad.req.payload.peer.eq(sa.peer), pad.req.payload.v6.eq(flow.v6),
                     pad.req.payload.addr.eq(flow.remote)]
        # LATCH / LATCH_WAIT / FINISH: which of the three lookups (latch,
        # SPD, templates) is taken / answered, and whether the SPD's rule's
        # SA word has reached sa_q
        l_done, s_done, t_done, sa_ready = Signal(), Signal(), Signal(), Signal()
        lk_out = Signal()               # lookups issued, answers not all taken

        def each_once(sides):
            """One handshake on each of the three lookups, in any order:
            `sides` gives, per lookup, the signal this side drives while its
            flag is clear and the other side's answer. Returns whether all
            three are done by the end of this cycle; the caller clears the
            flags when it moves on."""
            done = []
            for flag, (drive, answer) in zip((l_done, s_done, t_done), sides):
                m.d.comb += drive.eq(~flag)
                m.d.sync += flag.eq(flag | answer)
                done.append(flag | answer)
            return Cat(*done).all()

        def clear_each():
            m.d.sync += [l_done.eq(0), s_done.eq(0), t_done.eq(0)]

        issue = [(lq.valid, lq.ready), (sq.valid, sq.ready), (tq.valid, tq.ready)]
        collect = [(latch.resp.ready, latch.resp.valid), (spd.resp.ready, spd.resp.valid),
                   (tpl.resp.ready, tpl.resp.valid)]

        taking = Signal()
        # IDLE -> TAKE: the parser's result and the frame's meta are taken a
        # cycle after IDLE chose them (timing: the parser's `ready`, the meta
        # queue's read and the load enables of res / meta / flow are the
        # register `taking`, not the IDLE decode); both hold still until taken
        m.d.comb += [parser.o.ready.eq(taking), metaq.r_en.eq(taking)]
        # a frame is waiting: the parser's result and its meta, registered
        # (timing: IDLE's next state tests one flip-flop, not the parser's
        # and the queue's flags, each routed from afar). A cycle late, which
        # is safe: both hold still until taken (TAKE), and IDLE is two states
        # at least (TIMERS, CLASSIFY) past TAKE, when this has seen the
        # parser leave OUT
        waiting = Signal()
        m.d.sync += waiting.eq(parser.o.valid & metaq.r_rdy)
        # the earliest latch deadline not reached yet at the frame's time:
        # the 32-bit subtract from the meta queue's registered output, every
        # cycle; TIMERS, right after TAKE, reads the one taken with the frame
        # (next_deadline changes only in TV_NEXT and after TRACK)
        pm = data.View(meta_layout, metaq.r_data)
        not_due = Signal()
        m.d.sync += not_due.eq((pm.now - next_deadline)[31])
        with m.If(taking):
            r = parser.o.payload
            m.d.sync += [res.eq(r), meta.eq(metaq.r_data), v.eq(0), have_latch.eq(0),
                         sa_valid.eq(0), lres.eq(0), sres.eq(0), tres.eq(0)]
            with m.If(pm.inbound | pm.decap):
                # a decapsulated frame was counted at its first pass
                m.d.sync += [flow.local.eq(r.dst),
                             flow.remote.eq(r.src), flow.local_port.eq(r.dport),
                             flow.remote_port.eq(r.sport), meta.inbound.eq(1)]
            with m.Else():
                m.d.sync += [flow.local.eq(r.src),
                             flow.remote.eq(r.dst), flow.local_port.eq(r.sport),
                             flow.remote_port.eq(r.dport)]
            m.d.sync += [flow.v6.eq(r.v6), flow.proto.eq(r.proto),
                         flow.ports_valid.eq(r.ports_valid)]
        # the frame counters count a cycle after TAKE, from two flags
        # (timing: d9f828d's 25F report, the meta queue's output through the
        # counters' enables, 6.7 ns of routing, -1.00). A decapsulated frame
        # was counted at its first pass
        count_in, count_out = Signal(), Signal()
        m.d.sync += [count_in.eq(taking & pm.inbound & ~pm.decap),
                     count_out.eq(taking & ~pm.inbound & ~pm.decap)]
        with m.If(count_in):
            m.d.sync += frames_in.eq(frames_in + 1)
        with m.If(count_out):
            m.d.sync += frames_out.eq(frames_out + 1)

        # host commits reach the tables a cycle after COMMIT decided them
        # (timing: the FSM state and the commit word's decode reach only
        # these flags, never a RAM's write pins). The index and the entry
        # (the stage, 0 for a clear) are registered every cycle: the bus is
        # held from a commit's strobe until it is done, so they hold still
        cw_index = Signal(16)
        cw_data = Signal(len(stage))
        cw_inbound = Signal()
        cw_gen = Signal(GEN_BITS)       # the committed SA slot's next generation (gen_c in COMMIT)
        cw_spd, cw_tpl, cw_pad, cw_sad, cw_swap = (Signal(name=f"cw_{n}")
                                                   for n in ("spd", "tpl", "pad", "sad", "swap"))
        # CLEAR writes zeros; its test is registered first (timing:
        # the commit word's 3-bit compare fanned out to every entry bit). The
        # op is written at least two cycles before COMMIT (strobe ->
        # commit_pending -> IDLE -> COMMIT), so the flag is settled by then
        # and COMMIT reads it too
        cw_clear = Signal()
        m.d.sync += cw_clear.eq(c_op == CLEAR)
        m.d.sync += [cw_index.eq(c_index), cw_data.eq(Mux(cw_clear, 0, stage)),
                     cw_inbound.eq(c_table == TABLES["spd_in"]), cw_gen.eq(gen_c + 1),
                     cw_spd.eq(0), cw_tpl.eq(0), cw_pad.eq(0), cw_sad.eq(0), cw_swap.eq(0)]
        cw_sad_stage = data.View(sad_stage_layout(), cw_data[:sad_stage_layout().size])
        m.d.comb += [spd.w_en.eq(cw_spd), spd.w_inbound.eq(cw_inbound), spd.w_index.eq(cw_index),
                     spd.w_data.eq(cw_data[:rule_layout.size]),
                     spd.swap.eq(cw_swap), spd.swap_inbound.eq(cw_inbound),
                     tpl.w_en.eq(cw_tpl), tpl.w_index.eq(cw_index), tpl.w_data.eq(cw_data[:rule_layout.size]),
                     pad.w_en.eq(cw_pad), pad.w_index.eq(cw_index), pad.w_data.eq(cw_data[:claim_layout.size]),
                     sad.w_en.eq(cw_sad), sad.w_index.eq(cw_index), sad.w_data.eq(cw_sad_stage.sel.as_value())]
        for wp in gen_wps:              # both generation copies, written alike
            m.d.comb += [wp.en.eq(cw_sad), wp.addr.eq(cw_index), wp.data.eq(cw_gen)]
        # the SA word written back, a cycle after the state that decided it
        # (timing): a commit's, or SEND's with the next sequence number
        sa_next = Signal(sa_layout)     # `sa` with seq + 1, every cycle
        seq_w = Signal()
        m.d.sync += [sa_next.eq(sa), sa_next.seq.eq(sa.seq + 1), seq_w.eq(0)]
        m.d.comb += [sa_wp.en.eq(cw_sad | seq_w), sa_wp.addr.eq(Mux(cw_sad, cw_index, sa_idx)),
                     sa_wp.data.eq(Mux(cw_sad, cw_sad_stage.sa.as_value(), sa_next.as_value()))]
        # the SA counter entry written, registered the same way: a commit's
        # or CLEAR_CTR's zero, COUNT_WRITE's sums (from ctr_sa_r, every cycle)
        sc_w, sc_zero, sc_addr = Signal(), Signal(), Signal(16)
        sc_sum = Signal(sa_ctr_layout)
        m.d.sync += [sc_w.eq(0), sc_sum.eq(ctr_sa_r)]
        with m.If(v.action == Verdict.FORWARD):
            m.d.sync += [sc_sum.packets.eq(ctr_sa_r.packets + 1),
                         sc_sum.bytes.eq(ctr_sa_r.bytes + payload_len)]
        with m.Else():
            m.d.sync += sc_sum.drops.eq(ctr_sa_r.drops + 1)
        m.d.comb += [sactr_wp.en.eq(sc_w), sactr_wp.addr.eq(sc_addr),
                     sactr_wp.data.eq(Mux(sc_zero, 0, sc_sum.as_value()))]
        # the reason's count before the frame, registered every cycle
        # (timing: no FSM decode in the enables): v.reason is final in
        # FINISH, so in COUNT these hold its RAM word and its live bit (read
        # side by side; COUNT chooses between the word and 0)
        m.d.comb += drop_rp_inc.addr.eq(v.reason)
        m.d.sync += [drop_raw.eq(drop_rp_inc.data), drop_raw_live.eq(drop_live.bit_select(v.reason, 1))]
        # the counter RAMs' read address: the frame's SA / latch, or the
        # host's CTR_READ index from IDLE's choice of CTR_HOST to its end
        # (a register, not a state decode, selects: timing)
        ctr_host = Signal()
        # what CTR_READ names, registered every cycle (timing: no index
        # compare into the FSM); CTR_HOST_DATA comes three cycles after the
        # write at the earliest
        ctr_of_latch, ctr_of_sa = Signal(), Signal()
        m.d.sync += [ctr_of_latch.eq(regs.ctr_read[16] & (regs.ctr_read[:16] < p.latch_capacity)),
                     ctr_of_sa.eq(~regs.ctr_read[16] & (regs.ctr_read[:16] < p.sas))]
        # CTR_HOST_NEXT's test: an inbound SA, whose window top is read from
        # the replay windows (meaningful the cycle after CTR_HOST_DATA)
        ctr_top_needed = Signal()
        m.d.sync += ctr_top_needed.eq(ctr_of_sa & sa_q.valid & ~sa_q.out)
        m.d.comb += [sactr_rp.addr.eq(Mux(ctr_host, regs.ctr_read[:16], sa_idx)),
                     lctr_rp.addr.eq(Mux(ctr_host, regs.ctr_read[:16], slot))]

        # the SPD's and the templates' answers are taken whenever one is
        # there (timing: no FSM decode in these registers' enables). Each
        # answer comes to a request of the state that waits for it, and the
        # FSM takes every answer (FINISH too), so none is left for TAKE's clear
        with m.If(spd.resp.valid):
            m.d.sync += sres.eq(spd.resp.payload)
        with m.If(tpl.resp.valid):
            m.d.sync += tres.eq(tpl.resp.payload)

        with m.FSM() as fsm:
            m.d.comb += busy.eq(~fsm.ongoing("IDLE"))
            with m.State("IDLE"):
                with m.If(clr_edge | clr_req):
                    m.d.sync += [clr_idx.eq(0), clr_req.eq(1)]
                    m.next = "CLEAR_CTR"
                with m.Elif(commit_pending):
                    # a SAD / PAD entry takes 4 write cycles (folded.py): wait
                    # for the last one's rows, never two writes at once
                    with m.If(~sad.w_busy & ~pad.w_busy):
                        m.next = "COMMIT"
                with m.Elif(ctr_pending):
                    m.d.sync += ctr_host.eq(1)
                    m.next = "CTR_HOST"
                with m.Elif(waiting):
                    m.d.sync += taking.eq(1)
                    m.next = "TAKE"
            with m.State("TAKE"):
                # the parser's result and the frame's meta are loaded (below,
                # on `taking`) a cycle after IDLE chose them
                m.d.sync += taking.eq(0)
                m.next = "TIMERS"

            with m.State("TIMERS"):
                # a cycle of its own (timing): `not_due` was registered in
                # TAKE, the FSM sees one flip-flop
                with m.If(regs.ctrl[2] & timed_any & ~not_due):
                    # ModelDevice.advance: free expired latches first
                    m.d.sync += [slot.eq(0), tv_emit.eq(0), tv_next_have.eq(0),
                                 tv_future_have.eq(0)]
                    m.next = "TV_READ"
                with m.Else():
                    m.next = "CLASSIFY"

            with m.State("COMMIT"):
                table, index, op = c_table, c_index, c_op
                clear = cw_clear
                # release is the latch table's; on another table it
                # changes nothing (it is not taken as a write of the stage)
                stray_release = (op == RELEASE) & (table != TABLES["latch"])
                # swap (op 5): an SPD direction's shadow bank goes live, between
                # frames; on another table nothing changes (fail closed)
                m.d.sync += cw_swap.eq((op == SWAP) & ((table == TABLES["spd_out"])
                                                       | (table == TABLES["spd_in"])))
                m.d.sync += [commit_pending.eq(0), commits.eq(commits + 1)]
                with m.If((op >= RECHECK) | (table == TABLES["latch"])):
                    # release, re-check and read keep the bus held until they
                    # are done (CMD_DONE): an access after them sees their result
                    m.d.sync += [commit_pending.eq(1), commits.eq(commits)]
                with m.Switch(Mux((op >= RECHECK) | stray_release, 0xF, table)):
                    # each write lands a cycle later, from the cw_* registers
                    with m.Case(TABLES["spd_out"], TABLES["spd_in"]):
                        m.d.sync += cw_spd.eq(1)
                    with m.Case(TABLES["template"]):
                        m.d.sync += cw_tpl.eq(1)
                    with m.Case(TABLES["pad"]):
                        m.d.sync += cw_pad.eq(1)
                    with m.Case(TABLES["sad"]):
                        # the SA word, its selectors, its generation (write or
                        # clear) and its counters (from 0, as the model's new SaState)
                        m.d.sync += [cw_sad.eq(1), sc_w.eq(1), sc_zero.eq(1), sc_addr.eq(index)]
                        with m.If(~clear & sv.sa.valid & ~sv.sa.out):
                            m.next = "SAD_INIT"
                    with m.Case(TABLES["latch"]):
                        m.d.sync += slot.eq(index)
                        m.next = "RELEASE"
                with m.If(op == RECHECK):
                    m.d.sync += slot.eq(0)
                    m.next = "RC_READ"
                with m.Elif(op == READ):
                    m.d.sync += slot.eq(index)
                    with m.If(table == TABLES["latch"]):
                        m.next = "RD_LATCH"
                    with m.Elif(table == TABLES["sad"]):
                        m.next = "RD_SA"
                    with m.Else():
                        m.d.sync += rd_data.eq(0)
                        m.next = "CMD_DONE"
                with m.Elif(op > READ):
                    m.next = "CMD_DONE"          # swap (above), ops 6, 7: nothing else changes
                with m.Elif(stray_release):
                    m.next = "IDLE"
                with m.Elif((table != TABLES["latch"]) & (table != TABLES["sad"])):
                    m.next = "IDLE"
                with m.Elif(table == TABLES["sad"]):
                    with m.If(clear | ~sv.sa.valid | sv.sa.out):
                        m.next = "IDLE"

            # a new inbound SA starts with a clear window (top = its `seq`)
            with m.State("SAD_INIT"):
                m.d.comb += [rq.valid.eq(1), rq.payload.eq(rp_init)]
                m.next = "SAD_INIT_WAIT"
            with m.State("SAD_INIT_WAIT"):
                m.d.comb += replay.resp.ready.eq(1)
                with m.If(replay.resp.valid):
                    m.next = "IDLE"

            # ---- re-check sweep (ModelDevice._recheck_latches): every live
            # ESTABLISHED/BROKEN latch is healthy when the out-SPD selects a
            # compatible, not exhausted SA of its peer and some inbound SA of
            # that peer has a compatible QoP
            with m.State("RC_READ"):
                m.d.comb += [lq.valid.eq(1), lq.payload.eq(Op.READ)]
                with m.If(lq.ready):
                    m.next = "RC_READ_WAIT"
            with m.State("RC_READ_WAIT"):
                m.d.comb += latch.resp.ready.eq(1)
                with m.If(latch.resp.valid):
                    with m.If(~latch.resp.payload.hit
                              | (latch.resp.payload.entry.state == LatchState.TIME_WAIT)):
                        m.next = "RC_NEXT"
                    with m.Else():
                        m.next = "RC_SPD"
            with m.State("RC_SPD"):
                m.d.comb += [sq.valid.eq(1), sq.payload.eq(1)]     # entry.flow, outbound
                with m.If(sq.ready):
                    m.next = "RC_SPD_WAIT"
            with m.State("RC_SPD_WAIT"):
                m.d.comb += [spd.resp.ready.eq(1), sa_rp.addr.eq(spd.resp.payload.sa)]
                with m.If(spd.resp.valid):
                    m.next = "RC_SA_READ"
            with m.State("RC_SA_READ"):
                m.next = "RC_SA_GOT"             # the SA word on its way to sa_q
            with m.State("RC_SA_GOT"):
                # the out-SA's tests registered apart, their AND (rc_healthy_out,
                # every cycle) ready long before RC_DECIDE: the inbound scan
                # takes at least three cycles (timing: the SA RAM's output)
                d = sa_q
                m.d.sync += [rc_out_parts.eq(Cat(sres.hit & (sres.action == Action.PROTECT) & d.valid,
                                                 ~exhausted(d), d.peer == entry.peer,
                                                 qop_satisfies(d, entry.qop))),
                             rc_sa.eq(0), rc_found.eq(0), rc_pipe.eq(0)]
                m.next = "RC_IN_SCAN"
            with m.State("RC_IN_SCAN"):
                # one inbound SA read per cycle; rc_pipe[1] / rc_idx[1] say
                # which SA sa_q holds (two cycles behind the address); its
                # tests are registered in three parts (rc_mparts: timing,
                # f1e913d's 25F report, the whole test from the RAM's output
                # was five LUTs, -1.23), combined into rc_match a cycle
                # later and decided the cycle after (rc_pipe[3])
                m.d.comb += sa_rp.addr.eq(rc_sa)
                d = sa_q
                m.d.sync += [rc_sa.eq(rc_sa + 1), rc_pipe.eq(Cat(rc_sa < p.sas, rc_pipe[:3])),
                             rc_idx[0].eq(rc_sa), rc_idx[1].eq(rc_idx[0]),
                             rc_mparts.eq(Cat(d.valid & ~d.out, d.peer == entry.peer,
                                              qop_satisfies(d, entry.qop))),
                             rc_match.eq(rc_mparts.all()),
                             rc_last0.eq(rc_idx[1] == p.sas - 1), rc_last.eq(rc_last0)]
                with m.If(rc_pipe[3]):
                    with m.If(rc_match):
                        m.d.sync += rc_found.eq(1)
                        m.next = "RC_DECIDE"
                    with m.Elif(rc_last):
                        m.next = "RC_DECIDE"
            with m.State("RC_DECIDE"):
                healthy = rc_healthy_out & rc_found
                with m.If((entry.state == LatchState.ESTABLISHED) & ~healthy):
                    m.d.sync += entry.state.eq(LatchState.BROKEN)
                    event(LatchState.ESTABLISHED, LatchState.BROKEN, Cause.RECHECK)
                    m.next = "RC_EV"
                with m.Elif((entry.state == LatchState.BROKEN) & healthy):
                    m.d.sync += entry.state.eq(LatchState.ESTABLISHED)
                    event(LatchState.BROKEN, LatchState.ESTABLISHED, Cause.RECHECK)
                    m.next = "RC_EV"
                with m.Else():
                    m.next = "RC_NEXT"
            with m.State("RC_EV"):
                # the event goes to the FIFO now (ev_push, set by event())
                m.next = "RC_WRITE"
            with m.State("RC_WRITE"):
                m.d.comb += [lq.valid.eq(1), lq.payload.eq(Op.WRITE)]
                with m.If(lq.ready):
                    m.next = "RC_WRITE_WAIT"
            with m.State("RC_WRITE_WAIT"):
                m.d.comb += latch.resp.ready.eq(1)
                with m.If(latch.resp.valid):
                    m.next = "RC_NEXT"
            with m.State("RC_NEXT"):
                with m.If(slot == p.latch_capacity - 1):
                    m.next = "CMD_DONE"
                with m.Else():
                    m.d.sync += slot.eq(slot + 1)
                    m.next = "RC_READ"

            with m.State("RELEASE"):
                # host release: read the slot (a live latch leaves with a
                # `release` event, as in the model), then write it FREE
                m.d.comb += [lq.valid.eq(1), lq.payload.eq(Op.READ)]
                with m.If(lq.ready):
                    m.next = "RELEASE_READ_WAIT"
            with m.State("RELEASE_READ_WAIT"):
                m.d.comb += latch.resp.ready.eq(1)
                with m.If(latch.resp.valid):
                    got = latch.resp.payload.entry
                    m.d.sync += load_entry()       # RELEASE_WRITE writes the slot FREE
                    with m.If(latch.resp.payload.hit):
                        event(got.state, LatchState.FREE, Cause.RELEASE, peer=got.peer)
                        m.next = "RELEASE_EV"
                    with m.Else():
                        m.next = "RELEASE_WRITE"
            with m.State("RELEASE_EV"):
                # the event goes to the FIFO now (ev_push, set by event())
                m.next = "RELEASE_WRITE"
            with m.State("RELEASE_WRITE"):
                m.d.comb += [lq.valid.eq(1), lq.payload.eq(Op.WRITE)]
                with m.If(lq.ready):
                    m.next = "RELEASE_ACK"
            with m.State("RELEASE_ACK"):
                m.d.comb += latch.resp.ready.eq(1)
                with m.If(latch.resp.valid):
                    m.next = "CMD_DONE"

            # TBL_COMMIT op read: one latch slot (with its live bit) or SAD entry
            with m.State("RD_LATCH"):
                m.d.comb += [lq.valid.eq(1), lq.payload.eq(Op.READ)]
                with m.If(lq.ready):
                    m.next = "RD_LATCH_WAIT"
            with m.State("RD_LATCH_WAIT"):
                m.d.comb += latch.resp.ready.eq(1)
                with m.If(latch.resp.valid):
                    m.d.sync += rd_data.eq(Cat(latch.resp.payload.hit, latch.resp.payload.entry))
                    m.next = "CMD_DONE"
            with m.State("RD_SA"):
                m.d.comb += sa_rp.addr.eq(slot)
                m.next = "RD_SA_Q"
            with m.State("RD_SA_Q"):
                m.next = "RD_SA_GOT"
            with m.State("RD_SA_GOT"):
                m.d.sync += rd_data.eq(sa_q)
                m.next = "CMD_DONE"
            with m.State("CMD_DONE"):
                # the held commit is done: count it and let the bus go
                m.d.sync += [commit_pending.eq(0), commits.eq(commits + 1)]
                m.next = "IDLE"

            # ---- host read of one SA's or latch's counters (CTR_READ)
            with m.State("CTR_HOST"):
                # the counter RAMs read regs.ctr_read while ctr_host is set
                m.d.comb += sa_rp.addr.eq(regs.ctr_read[:16])
                m.next = "CTR_HOST_Q"
            with m.State("CTR_HOST_Q"):
                # the counter words reach ctr_sa_r / ctr_l_r, the SA word sa_q
                m.next = "CTR_HOST_DATA"
            with m.State("CTR_HOST_DATA"):
                # ctr_pending stays set until CTR_HOST_NEXT or CTR_TOP_WAIT
                m.d.sync += [ctr_out.eq(0), ctr_seq.eq(0), ctr_host.eq(0)]
                m.next = "CTR_HOST_NEXT"
                with m.If(ctr_of_latch):
                    if p.latch_counters:
                        m.d.sync += ctr_out.eq(ctr_l_r)
                with m.Elif(ctr_of_sa):
                    sc = ctr_sa_r
                    m.d.sync += ctr_out.drops.eq(sc.drops)
                    with m.If(sa_q.out):
                        m.d.sync += [ctr_out.packets_out.eq(sc.packets), ctr_out.bytes_out.eq(sc.bytes)]
                    with m.Else():
                        m.d.sync += [ctr_out.packets_in.eq(sc.packets), ctr_out.bytes_in.eq(sc.bytes)]
                    with m.If(sa_q.valid & sa_q.out):
                        m.d.sync += ctr_seq.eq(sa_q.seq)
            with m.State("CTR_HOST_NEXT"):
                # an inbound SA's window top lives in the replay windows
                # (ctr_top_needed: registered from sa_q in CTR_HOST_DATA;
                # timing: no SA word test in front of the FSM)
                with m.If(ctr_top_needed):
                    m.next = "CTR_TOP"
                with m.Else():
                    m.d.sync += ctr_pending.eq(0)
                    m.next = "IDLE"
            with m.State("CTR_TOP"):
                m.d.comb += [rq.valid.eq(1), rq.payload.op.eq(ReplayOp.READ),
                             rq.payload.sa.eq(regs.ctr_read[:16])]
                m.next = "CTR_TOP_WAIT"
            with m.State("CTR_TOP_WAIT"):
                m.d.comb += replay.resp.ready.eq(1)
                with m.If(replay.resp.valid):
                    m.d.sync += [ctr_seq.eq(replay.resp.payload.seq), ctr_pending.eq(0)]
                    m.next = "IDLE"

            # ---- timer sweep before a frame (CTRL.timer_events): every latch
            # whose deadline is at or before now is freed with a `timer` event,
            # in (deadline, slot) order as the model frees them: pass 1 finds
            # the earliest expired deadline, each further pass frees the
            # entries of one deadline in slot order and finds the next one
            with m.State("TV_READ"):
                m.d.comb += [lq.valid.eq(1), lq.payload.eq(Op.READ)]
                with m.If(lq.ready):
                    m.next = "TV_WAIT"
            # three steps a slot (timing): the entry's age and time ahead
            # (32-bit subtracts) into registers, then the 32-bit compares,
            # then what they decide
            with m.State("TV_WAIT"):
                m.d.comb += latch.resp.ready.eq(1)
                e = latch.resp.payload.entry
                with m.If(latch.resp.valid):
                    m.d.sync += [tv_age.eq(meta.now - e.deadline), tv_ahead.eq(e.deadline - meta.now),
                                 tv_state.eq(e.state), tv_peer.eq(e.peer),
                                 tv_used.eq((e.state != LatchState.FREE) & e.timed)]
                    m.next = "TV_CMP"
            with m.State("TV_CMP"):
                m.d.sync += [tv_at_target.eq(tv_age == tv_target), tv_before.eq(tv_age < tv_target),
                             tv_older.eq(~tv_next_have | (tv_age > tv_next)),
                             tv_sooner.eq(~tv_future_have | (tv_ahead < tv_future)),
                             tv_expired.eq(tv_used & ~tv_age[31]), tv_ahead_used.eq(tv_used & tv_age[31])]
                m.next = "TV_DECIDE"
            with m.State("TV_DECIDE"):
                m.next = "TV_NEXT"
                with m.If(tv_expired & tv_emit & tv_at_target):
                    event(tv_state, LatchState.FREE, Cause.TIMER, peer=tv_peer)
                    m.next = "TV_EV"
                with m.Elif(tv_expired & (~tv_emit | tv_before)):
                    with m.If(tv_older):
                        m.d.sync += [tv_next.eq(tv_age), tv_next_have.eq(1)]
                with m.Elif(tv_ahead_used):
                    with m.If(tv_sooner):
                        m.d.sync += [tv_future.eq(tv_ahead), tv_future_have.eq(1)]
            with m.State("TV_EV"):
                # the event goes to the FIFO now (ev_push, set by event());
                # the entry is cleared here, not in TV_DECIDE (timing: the
                # 357-bit enable is this state's flip-flop alone)
                m.d.sync += load_entry()           # TV_FREE writes the slot FREE
                m.next = "TV_FREE"
            with m.State("TV_FREE"):
                m.d.comb += [lq.valid.eq(1), lq.payload.eq(Op.WRITE)]
                with m.If(lq.ready):
                    m.next = "TV_FREE_WAIT"
            with m.State("TV_FREE_WAIT"):
                m.d.comb += latch.resp.ready.eq(1)
                with m.If(latch.resp.valid):
                    m.next = "TV_NEXT"
            with m.State("TV_NEXT"):
                with m.If(~tv_slot_last):
                    m.d.sync += slot.eq(slot + 1)
                    m.next = "TV_READ"
                with m.Elif(tv_next_have):
                    m.d.sync += [slot.eq(0), tv_emit.eq(1), tv_target.eq(tv_next),
                                 tv_next_have.eq(0), tv_future_have.eq(0)]
                    m.next = "TV_READ"
                with m.Else():
                    m.d.sync += [next_deadline.eq(meta.now + tv_future), timed_any.eq(tv_future_have)]
                    m.next = "CLASSIFY"

            with m.State("CLASSIFY"):
                with m.If(meta.decap):
                    m.next = "DECAP"
                with m.Elif(res_malformed):
                    drop("malformed")
                with m.Elif(res_unsupported):
                    drop("unsupported")
                with m.Elif(res_non_ip):
                    forward()
                    m.d.sync += non_ip.eq(non_ip + 1)
                    m.next = "FINISH"
                with m.Elif(in_ipsec):
                    with m.If(res.is_fragment):
                        drop("fragment")
                    with m.Else():
                        m.next = "IN_IPSEC"
                with m.Elif(flow.ports_valid):
                    m.next = "LATCH"
                with m.Else():
                    m.next = "SPD"

            # ---- inbound ESP/AH up to the ICV: header, SAD lookup, replay check
            with m.State("IN_IPSEC"):
                with m.If(~res.spi_valid):
                    drop("malformed")             # truncated ESP/AH header
                with m.Elif(ah_bad):
                    drop("malformed")             # not the AH-GMAC layout
                with m.Else():
                    m.next = "SAD_REQ"
            with m.State("SAD_REQ"):
                m.d.comb += aq.valid.eq(1)
                m.next = "SAD_WAIT"
            with m.State("SAD_WAIT"):
                m.d.comb += sad.resp.ready.eq(1)
                # the index is taken every cycle here, answer or not (timing:
                # no SAD-state-decoded enable); it counts only with sa_valid
                m.d.sync += [sa_idx.eq(sad.resp.payload.index), sad_hit.eq(sad.resp.payload.hit)]
                with m.If(sad.resp.valid):
                    m.next = "SAD_GOT"
            with m.State("SAD_GOT"):
                # the answer decided a cycle after it came (timing: f1e913d's
                # 25F report, the SAD's answer 4.6 ns away through the drop
                # and next-state logic, -1.27)
                with m.If(~sad_hit):
                    drop("no_sa")
                with m.Else():
                    m.d.sync += sa_valid.eq(1)
                    m.next = "RP_REQ"
            with m.State("RP_REQ"):
                m.d.comb += [rq.valid.eq(1), rq.payload.op.eq(ReplayOp.CHECK),
                             rq.payload.sa.eq(sa_idx), rq.payload.seq.eq(res.seq)]
                m.next = "RP_WAIT"
            with m.State("RP_WAIT"):
                m.d.comb += replay.resp.ready.eq(1)
                # seq and gen taken every cycle here (timing: no replay-state-
                # decoded enable); a verdict's seq/gen mean something only
                # with CRYPTO (and an outbound FORWARD's seq, set in SEND)
                m.d.sync += [v.seq.eq(replay.resp.payload.seq), v.gen.eq(gen_f)]
                with m.If(replay.resp.valid):
                    with m.If(~replay.resp.payload.ok):
                        drop("replay")
                    with m.Elif(ah_routing):
                        # AH over an IPv6 routing header: its ICV input cannot be
                        # built (sim/ah.py), refused before the ICV as the model does
                        drop("unsupported")
                    with m.Else():
                        # on to the ICV; the window moves only after it verified
                        m.d.sync += v.action.eq(Verdict.CRYPTO)    # gen: the slot's at the SAD hit
                        m.next = "FINISH"

            # ---- inbound second pass: the decapsulated inner frame
            with m.State("DECAP"):
                m.d.comb += sa_rp.addr.eq(meta.sa)
                m.d.sync += [sa_idx.eq(meta.sa), sa_valid.eq(1)]
                # an ICV failure (the window does not move), then a status
                # the core does not know, then an SA index beyond the table
                with m.If(dc_drop):
                    m.d.sync += sa_valid.eq(~dc_no_sa)
                    drop(dc_reason)
                with m.Else():
                    m.next = "DC_SA_READ"
            with m.State("DC_SA_READ"):
                m.next = "DC_SA_GOT"             # the SA word on its way to sa_q
            with m.State("DC_SA_GOT"):
                m.d.sync += [sa.eq(sa_q), gen_ok.eq(gen_f == meta.gen)]
                m.next = "DC_SA_CHECK"
            with m.State("DC_SA_CHECK"):
                with m.If(~gen_ok | ~sa.valid | sa.out):
                    # the SA went away between the passes: deleted, turned
                    # outbound, or replaced in its slot (generation moved;
                    # the frame was verified with the old SA's key). Fail
                    # closed before the window; the frame counts on no SA,
                    # so a new SA in the slot keeps its counters
                    m.d.sync += sa_valid.eq(0)
                    drop("no_sa")
                with m.Elif(flow.ports_valid):
                    m.next = "LATCH"              # the lookups run during the window steps
                with m.Else():
                    m.next = "DC_RECHECK"
            # RFC 4303 3.4.3: update only after the ICV. The first pass checked
            # already; checking again here keeps a duplicate that overtook
            # this frame in the crypto path from being delivered twice.
            with m.State("DC_RECHECK"):
                m.d.comb += [rq.valid.eq(1), rq.payload.op.eq(ReplayOp.CHECK),
                             rq.payload.sa.eq(meta.sa), rq.payload.seq.eq(meta.seq)]
                m.next = "DC_RECHECK_WAIT"
            with m.State("DC_RECHECK_WAIT"):
                m.d.comb += replay.resp.ready.eq(1)
                with m.If(replay.resp.valid):
                    # (`same`: the replay windows compare the 64-bit numbers)
                    with m.If(~replay.resp.payload.ok | ~replay.resp.payload.same):
                        drop("replay")
                    with m.Else():
                        m.next = "DC_UPDATE"
            with m.State("DC_UPDATE"):
                m.d.comb += [rq.valid.eq(1), rq.payload.op.eq(ReplayOp.UPDATE),
                             rq.payload.sa.eq(meta.sa), rq.payload.seq.eq(meta.seq)]
                m.next = "DC_UPDATE_WAIT"
            with m.State("DC_UPDATE_WAIT"):
                m.d.comb += replay.resp.ready.eq(1)
                with m.If(replay.resp.valid):
                    m.next = "DC_INNER"
            with m.State("DC_INNER"):
                # the ICV verified: the window moved; now the inner packet
                # bad padding, then a bad inner header, an unsupported one,
                # an inner packet that is not IP or whose length disagrees
                # with the ESP/AH payload (dc_inner_reason, in that order)
                with m.If(dc_inner_drop):
                    drop(dc_inner_reason)
                with m.Elif(flow.ports_valid):
                    m.next = "LATCH_WAIT"         # issued before DC_RECHECK
                with m.Else():
                    m.next = "SPD"

            with m.State("PAD"):
                # PAD child-SA authorisation: may the SA's peer claim the remote address?
                m.d.comb += pq.valid.eq(1)
                m.next = "PAD_WAIT"
            with m.State("PAD_WAIT"):
                m.d.comb += pad.resp.ready.eq(1)
                with m.If(pad.resp.valid):
                    with m.If(~pad.resp.payload.hit):
                        drop("pad_claim")
                    with m.Elif(flow.ports_valid & clone_trigger):
                        m.next = "TPL"
                    with m.Else():
                        m.next = "SEND"

            # a frame with ports: the latch, SPD and template lookups run at
            # the same time (they only read; DECIDE and TPL weigh them in
            # the model's order; a frame that clones nothing ignores the
            # template's answer), then the SPD rule's SA word. A second pass
            # issues them before its window steps and collects them after
            # (lk_out: FINISH takes the answers of a frame dropped meanwhile)
            with m.State("LATCH"):
                m.d.comb += lq.payload.eq(Op.LOOKUP)
                with m.If(each_once(issue)):
                    clear_each()
                    m.d.sync += [sa_ready.eq(0), lk_out.eq(1)]
                    with m.If(meta.decap):
                        m.next = "DC_RECHECK"
                    with m.Else():
                        m.next = "LATCH_WAIT"
            with m.State("LATCH_WAIT"):
                # the SA word of the SPD's rule: its address from the
                # response onwards, in sa_q from two cycles after (sa_ready)
                m.d.comb += sa_rp.addr.eq(Mux(s_done, sres.sa, spd.resp.payload.sa))
                each_once(collect)
                with m.If(latch.resp.valid & ~l_done):
                    m.d.sync += [lres.eq(latch.resp.payload), have_latch.eq(latch.resp.payload.hit)]
                with m.If(s_done):
                    m.d.sync += sa_ready.eq(1)
                with m.If(l_done & s_done & t_done & sa_ready):
                    clear_each()
                    m.d.sync += lk_out.eq(0)
                    with m.If(~meta.decap):      # a decapsulated frame keeps its own SA
                        m.d.sync += [sa.eq(sa_q), sa_idx.eq(sres.sa)]
                    m.next = "SA_GOT"

            with m.State("SPD"):
                m.d.comb += sq.valid.eq(1)
                with m.If(sq.ready):
                    m.next = "SPD_WAIT"
            with m.State("SPD_WAIT"):
                m.d.comb += [spd.resp.ready.eq(1), sa_rp.addr.eq(spd.resp.payload.sa)]
                with m.If(spd.resp.valid):
                    m.next = "SA_READ"
            with m.State("SA_READ"):
                m.next = "SA_LOAD"               # the rule's SA word on its way to sa_q
            with m.State("SA_LOAD"):
                with m.If(~meta.decap):          # a decapsulated frame keeps its own SA
                    m.d.sync += [sa.eq(sa_q), sa_idx.eq(sres.sa)]
                m.next = "SA_GOT"
            with m.State("SA_GOT"):
                # `sa` was loaded the cycle before: the flags DECIDE acts on
                # are registered from it now (always on, no state decode
                # between the SA register and them)
                m.next = "SA_FLAGS"
            with m.State("SA_FLAGS"):
                # DECIDE's outcome is registered from those flags now (d_*)
                m.next = "DECIDE"

            with m.State("DECIDE"):
                # the outcome picked a cycle ago by the tree below (d_*)
                with m.If(d_drop):
                    drop(d_reason)
                with m.Elif(d_break):
                    m.next = "BREAK"
                    m.d.sync += v.reason.eq(d_reason)
                with m.Elif(d_forward):
                    forward()
                    m.next = "FINISH"
                with m.Elif(d_pad):
                    m.next = "PAD"
                with m.Elif(d_send):
                    m.next = "SEND"
                with m.Else():
                    m.d.sync += sa_valid.eq(1)
                    m.next = "SA_CHECKS"

            with m.State("BREAK"):
                # the latch outranks the SPD: drop, and the latch goes BROKEN
                m.d.sync += v.action.eq(Verdict.DROP)
                with m.If(lentry.state != LatchState.BROKEN):
                    m.d.sync += entry.state.eq(LatchState.BROKEN)
                    event(lentry.state, LatchState.BROKEN, Cause.REASON + v.reason)
                    m.next = "WRITE_LATCH_EV"
                with m.Else():
                    m.next = "FINISH"

            with m.State("SA_CHECKS"):
                # the outcome registered in DECIDE (sc_*)
                with m.If(sc_drop):
                    drop(sc_reason)
                with m.Elif(sc_tpl):
                    m.next = "TPL"
                with m.Else():
                    m.next = "SEND"

            with m.State("TPL"):
                # the template lookup ran with the latch lookup (LATCH)
                t = tres
                with m.If(tpl_send):                  # no template matches
                    m.next = "SEND"
                with m.Elif(tpl_drop):
                    drop(Mux(tpl_peer_differs, R["latch_peer"], R["latch_table_full"]))
                with m.Else():
                    new = Signal(entry_layout)
                    m.d.comb += [new.state.eq(LatchState.ESTABLISHED), new.peer.eq(sa.peer),
                                 new.qop.ah.eq(sa.ah), new.qop.tunnel.eq(sa.tunnel),
                                 new.qop.encrypts.eq(sa.encrypts), new.qop.key256.eq(sa.key256),
                                 new.qop.icv.eq(sa.icv),
                                 new.template.eq(t.sa)]      # the template's id (program.py)
                    m.d.sync += load_entry(new)
                    m.next = "CLONE"

            with m.State("CLONE"):
                # the new latch's entry was put in `entry` by TPL
                m.d.comb += [lq.valid.eq(1), lq.payload.eq(Op.INSERT)]
                with m.If(lq.ready):
                    m.next = "CLONE_WAIT"
            with m.State("CLONE_WAIT"):
                m.d.comb += latch.resp.ready.eq(1)
                with m.If(latch.resp.valid):
                    lr = latch.resp.payload
                    m.d.sync += have_latch.eq(1)
                    # a new latch counts from 0
                    m.d.comb += [lctr_wp.en.eq(1), lctr_wp.addr.eq(lr.slot), lctr_wp.data.eq(0)]
                    event(LatchState.FREE, LatchState.ESTABLISHED, Cause.CLONE, slot_v=lr.slot,
                          peer=sa.peer)
                    m.next = "CLONE_EV"
            with m.State("CLONE_EV"):
                # the event goes to the FIFO now (ev_push, set by event())
                m.next = "SEND"

            with m.State("SEND"):
                with m.If(meta.inbound):
                    # delivered decapsulated (its window moved in DC_UPDATE)
                    m.d.sync += [v.action.eq(Verdict.FORWARD), v.seq.eq(meta.seq)]
                with m.Else():
                    # the SA's next sequence number (sa_next) is written back
                    # a cycle later (seq_w)
                    m.d.sync += [seq_w.eq(1), v.action.eq(Verdict.FORWARD), v.seq.eq(sa_next.seq)]
                with m.If(have_latch):
                    m.next = "TRACK"
                with m.Else():
                    m.next = "FINISH"

            with m.State("TRACK"):
                # (its tests come from trk_*, registered in SEND)
                # ModelDevice._track: UDP idle timer; TCP SYN re-open, FIN, RST
                with m.If(is_udp):
                    m.d.sync += [entry.timed.eq(1), entry.deadline.eq(udp_deadline)]
                    m.d.sync += arm_udp.eq(1)
                    m.next = "WRITE_LATCH"
                with m.Elif(trk_reopen):
                    m.d.sync += [entry.fin_in.eq(0), entry.fin_out.eq(0), entry.timed.eq(0),
                                 entry.state.eq(LatchState.ESTABLISHED)]
                    event(LatchState.TIME_WAIT, LatchState.ESTABLISHED, Cause.SYN)
                    m.next = "WRITE_LATCH_EV"
                with m.Else():
                    m.d.sync += [entry.fin_out.eq(trk_fin_out), entry.fin_in.eq(trk_fin_in)]
                    with m.If(trk_close):
                        m.d.sync += [entry.state.eq(LatchState.TIME_WAIT), entry.timed.eq(1),
                                     entry.deadline.eq(tw_deadline)]
                        m.d.sync += arm_tw.eq(1)
                        event(entry.state, LatchState.TIME_WAIT,
                              Mux(tcp_rst, Cause.RST, Cause.FIN))
                        m.next = "WRITE_LATCH_EV"
                    with m.Else():
                        m.next = "WRITE_LATCH"

            with m.State("WRITE_LATCH_EV"):
                # the event goes to the FIFO now (ev_push, set by event())
                m.next = "WRITE_LATCH"
            with m.State("WRITE_LATCH"):
                m.d.comb += [lq.valid.eq(1), lq.payload.eq(Op.WRITE)]
                with m.If(lq.ready):
                    m.next = "WRITE_WAIT"
            with m.State("WRITE_WAIT"):
                m.d.comb += latch.resp.ready.eq(1)
                with m.If(latch.resp.valid):
                    m.next = "FINISH"

            with m.State("FINISH"):
                # a second pass dropped with its lookups in flight: take
                # their answers first (the tables are idle for the next frame)
                with m.If(lk_out):
                    with m.If(each_once(collect)):
                        clear_each()
                        m.d.sync += lk_out.eq(0)
                m.d.comb += self.verdict.valid.eq(~lk_out)
                with m.If(self.verdict.ready & ~lk_out):
                    with m.If(v.action == Verdict.DROP):
                        # the reason's counter is written in COUNT (timing:
                        # no 32-bit add behind the LUT RAM read)
                        m.d.sync += drop_live.bit_select(v.reason, 1).eq(1)
                    with m.Elif(v.action == Verdict.FORWARD):
                        m.d.sync += forwarded.eq(forwarded + 1)
                    m.next = "COUNT"

            # per-SA and per-latch counters (ModelDevice: sa.counters, latch
            # packets/bytes/drops): read, then write back the sums
            with m.State("COUNT"):
                m.d.comb += [drop_wp.addr.eq(v.reason), drop_wp.en.eq(v.action == Verdict.DROP),
                             drop_wp.data.eq(Mux(drop_raw_live, drop_raw, 0) + 1)]
                with m.If(v.action == Verdict.CRYPTO):
                    m.next = "IDLE"               # counted when it comes back decapsulated
                with m.Else():
                    m.next = "COUNT_READ"
            with m.State("COUNT_READ"):
                # the entries on their way to ctr_sa_r / ctr_l_r (timing: no
                # 48-bit add between a RAM's output and its input)
                m.next = "COUNT_WRITE"
            with m.State("COUNT_WRITE"):
                fwd = v.action == Verdict.FORWARD
                # CTRL.clear_counters held at 1: nothing counts (the frame
                # counts as if it came before the clear, as the model's)
                counting = ~regs.ctrl[1]
                # the SA's sums (sc_sum, registered from ctr_sa_r now) land a cycle later
                m.d.sync += [sc_w.eq(sa_valid & counting), sc_zero.eq(0), sc_addr.eq(sa_idx)]
                c = ctr_l_r
                m.d.comb += [lctr_wp.en.eq(have_latch & counting), lctr_wp.addr.eq(slot),
                             lctr_wp.data.eq(c)]
                with m.If(~fwd):
                    m.d.comb += lctr_wp.data.drops.eq(c.drops + 1)
                with m.Elif(meta.inbound):
                    m.d.comb += [lctr_wp.data.packets_in.eq(c.packets_in + 1),
                                 lctr_wp.data.bytes_in.eq(c.bytes_in + payload_len)]
                with m.Else():
                    m.d.comb += [lctr_wp.data.packets_out.eq(c.packets_out + 1),
                                 lctr_wp.data.bytes_out.eq(c.bytes_out + payload_len)]
                m.next = "IDLE"

            # CTRL.clear_counters 0 -> 1: every per-SA and per-latch counter
            # entry written 0, one entry per cycle, between frames (frames
            # wait in the parser's input; the bus is held until done)
            with m.State("CLEAR_CTR"):
                m.d.sync += [sc_w.eq(clr_idx < p.sas), sc_zero.eq(1), sc_addr.eq(clr_idx)]
                m.d.comb += [lctr_wp.en.eq(clr_idx < p.latch_capacity), lctr_wp.addr.eq(clr_idx),
                             lctr_wp.data.eq(0)]
                m.d.sync += clr_idx.eq(clr_idx + 1)
                with m.If(clr_idx == clr_last):
                    m.d.sync += clr_req.eq(0)
                    m.next = "IDLE"

        one_hot(fsm)        # 85 states: 85 flip-flops in synthesis (hw/onehot.py)

        # verdict's latch / SA fields
        m.d.comb += [self.verdict.payload.latch_valid.eq(have_latch),
                     self.verdict.payload.latch.eq(slot),
                     self.verdict.payload.sa_valid.eq(sa_valid),
                     self.verdict.payload.sa.eq(sa_idx)]
        return m
