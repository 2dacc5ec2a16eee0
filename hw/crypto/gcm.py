"""AES-GCM / GMAC engine processing whole packets as streams.

Per packet the host (or the ESP datapath) sends a command, then the packet's
bytes on `i` (hw/stream.py layout):
  encrypt      i = AAD || P          o = AAD || C || ICV
  decrypt      i = AAD || C || ICV   o = AAD || P        (tag.ok = ICV match)
  gmac         i = A (all AAD)       o = A || ICV
  gmac+decrypt i = A || ICV          o = A               (tag.ok = ICV match)
For gmac, the AAD is aad_len + payload_len bytes. Every packet also produces
one `tag` transfer (tag masked to icv_len bytes, and ok). Plaintext leaves
before the tag is checked (cut-through); the consumer drops the packet when
`ok` is 0. A packet whose output is empty (decrypt with no AAD and no
payload) is a single beat with keep = 0.

Blocks: command -> counter generator -> AES core -> keystream FIFO; the
sequencer takes 16-byte blocks from the block aligner, xors keystream, feeds
GHASH, pushes to the beat packer, then the length block, ICV and tag.
H = E(K, 0^128) is computed once per key slot when the key is written.

Configurations (one design, parameters only):
  compact: 64-bit stream, 3-unit AES ring of 2-cycle rounds, GHASH 32-bit digits
  wide:    128-bit stream, 14-stage AES pipeline of 2-cycle rounds, GHASH
           through a 3-cycle pipelined multiplier (3 interleaved lanes)
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..stream import packet_signature
from .aes_core import AESCore
from .block_in import BlockAligner
from .block_out import BeatPacker
from .gf import lane_mask
from .ghash import GHASH
from .ghash_pipe import GHASHPipe
from .h_powers import HPowers
from .key_expand import KeyExpand, key_layout
from .length_check import LengthCheck

CONFIGS = {
    # ghash_latency 0: digit-serial GHASH (`digit` bits per step); N > 0:
    # pipelined GHASH, N-cycle multiplier, N lanes, H^1..H^N kept per slot
    "compact": dict(width=64, units=3, round_latency=2, digit=32, ghash_latency=0,
                    n_slots=16, ksq_depth=8),
    "wide": dict(width=128, units=14, round_latency=2, digit=128, ghash_latency=3,
                 n_slots=16, ksq_depth=64),
}

MODE_ENCRYPT, MODE_DECRYPT, MODE_GMAC, MODE_GMAC_VERIFY = 0, 1, 2, 3


def cmd_layout(slot_bits):
    return data.StructLayout({
        "slot": slot_bits,
        "nonce": 96,          # salt || explicit IV, byte 0 in bits [0:8]
        "aad_len": 16,        # bytes
        "payload_len": 16,    # bytes
        "decrypt": 1,         # verify the trailing ICV instead of appending one
        "gmac": 1,            # authenticate only: no keystream, all bytes are AAD
        "icv_len": 5,         # 1..16 bytes (ESP: 8, 12 or 16)
    })


# len_err: the packet's stream length did not match its command (ok is 0)
tag_layout = data.StructLayout({"tag": 128, "ok": 1, "len_err": 1})

TAG_KS, TAG_H = 0, 1


def be_bytes(v, n):
    """n-byte big-endian image of v in byte-lane order."""
    return Cat(*[v[8 * (n - 1 - j):8 * (n - j)] for j in range(n)])


class GCMEngine(wiring.Component):
    def __init__(self, config="compact", **overrides):
        p = dict(CONFIGS[config])
        p.update(overrides)
        self.config = config
        self.width = p["width"]
        self.units = p["units"]
        self.round_latency = p["round_latency"]
        self.digit = p["digit"]
        self.ghash_latency = p["ghash_latency"]
        self.n_slots = p["n_slots"]
        self.ksq_depth = p["ksq_depth"]
        self.slot_bits = max(1, (self.n_slots - 1).bit_length())
        super().__init__({
            "key": In(stream.Signature(key_layout(self.slot_bits))),
            "cmd": In(stream.Signature(cmd_layout(self.slot_bits))),
            "i": In(packet_signature(self.width)),
            "o": Out(packet_signature(self.width)),
            "tag": Out(stream.Signature(tag_layout)),
            "len_errors": Out(16),     # packets with a length mismatch (saturating)
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self.width // 8
        sb = self.slot_bits

        m.submodules.kx = kx = KeyExpand(slot_bits=sb)
        m.submodules.aes = aes = AESCore(units=self.units, n_slots=self.n_slots, tag_bits=1,
                                           round_latency=self.round_latency)
        npow = max(1, self.ghash_latency)      # H powers kept per slot
        if self.ghash_latency:
            m.submodules.ghash = gh = GHASHPipe(self.ghash_latency)
        else:
            m.submodules.ghash = gh = GHASH(digit=self.digit)
        m.submodules.ksq = ksq = SyncFIFOBuffered(width=128, depth=self.ksq_depth)
        m.submodules.seqq = seqq = SyncFIFOBuffered(width=cmd_layout(sb).size, depth=4)
        m.submodules.ingb = ingb = BlockAligner(lanes)
        # stream packet lengths against the commands (length_check.py)
        m.submodules.lenq = lenq = SyncFIFOBuffered(width=18, depth=4)
        m.submodules.lchk = lchk = LengthCheck(lanes)
        m.submodules.errq = errq = SyncFIFOBuffered(width=1, depth=4)
        m.submodules.outgb = outgb = BeatPacker(lanes)

        # ---- key loading: expand into the core, then H = E(K, 0) into hmem ----
        # packets per slot between command and tag: a key write waits until its
        # slot has none, so no packet sees half of an old and half of a new key
        pipe = bool(self.ghash_latency)
        # wide: seqq (4) + the packet in the sequencer + tag queue (4) per slot
        in_use = Array(Signal(range(16 if pipe else 8), name=f"in_use{k}")
                       for k in range(self.n_slots))
        slot_idle = in_use[self.key.payload.slot] == 0
        pkt_in = Signal()
        pkt_out = Signal()
        pkt_out_slot = Signal(sb)
        for k in range(self.n_slots):
            up = pkt_in & (self.cmd.payload.slot == k)
            down = pkt_out & (pkt_out_slot == k)
            m.d.sync += in_use[k].eq(in_use[k] + up - down)
        m.submodules.hmem = hmem = Memory(shape=128 * npow, depth=self.n_slots, init=[])
        slot_aes256 = Signal(self.n_slots)
        h_pending = Signal()     # H request not yet issued
        h_busy = Signal()        # key loading in progress (until H is written)
        h_slot = Signal(sb)
        h_aes256 = Signal()
        ld_slot = Signal(sb)     # slot whose round keys / H are being rewritten
        m.d.comb += [kx.key.payload.eq(self.key.payload),
                     kx.key.valid.eq(self.key.valid & ~h_busy & slot_idle),
                     self.key.ready.eq(kx.key.ready & ~h_busy & slot_idle),
                     aes.rk_we.eq(kx.rk_we), aes.rk_slot.eq(kx.rk_slot),
                     aes.rk_round.eq(kx.rk_round), aes.rk_data.eq(kx.rk_data)]
        with m.If(self.key.valid & self.key.ready):
            m.d.sync += [h_busy.eq(1), ld_slot.eq(self.key.payload.slot)]
        with m.If(kx.done):
            m.d.sync += [h_pending.eq(1), h_slot.eq(kx.done_slot), h_aes256.eq(kx.done_aes256)]
            m.d.sync += slot_aes256.bit_select(kx.done_slot, 1).eq(kx.done_aes256)
        hw = hmem.write_port()
        h_out = aes.resp_valid & (aes.resp.tag == TAG_H)
        if self.ghash_latency:
            m.submodules.hpow = hpow = HPowers(npow, sb)
            m.d.comb += [hpow.h_valid.eq(h_out), hpow.h.eq(aes.resp.block),
                         hpow.slot.eq(h_slot),
                         hw.addr.eq(hpow.slot_o), hw.data.eq(hpow.data), hw.en.eq(hpow.we)]
        else:
            m.d.comb += [hw.addr.eq(h_slot), hw.data.eq(aes.resp.block), hw.en.eq(h_out)]
        with m.If(hw.en):
            m.d.sync += h_busy.eq(0)

        # ---- counter generator: J0 then inc32 blocks, ahead of the data ----
        cmd = self.cmd.payload
        g_valid = Signal()
        g_nonce = Signal(96)
        g_ctr = Signal(32)
        g_left = Signal(13)      # counter blocks still to issue after J0
        g_slot = Signal(sb)
        g_aes256 = Signal()
        outstanding = Signal(range(self.ksq_depth + 1))
        ks_credit = outstanding < self.ksq_depth
        g_issue = Signal()
        ks_pop = Signal()

        # a packet for the slot being (re)keyed waits; other slots flow on
        m.d.comb += self.cmd.ready.eq(~g_valid & seqq.w_rdy & lenq.w_rdy &
                                      ~(h_busy & (cmd.slot == ld_slot)))
        m.d.comb += pkt_in.eq(self.cmd.valid & self.cmd.ready)
        m.d.comb += [lenq.w_en.eq(self.cmd.valid & self.cmd.ready),
                     lenq.w_data.eq(cmd.aad_len + cmd.payload_len +
                                    Mux(cmd.decrypt, cmd.icv_len, 0))]
        m.d.comb += [seqq.w_data.eq(cmd.as_value()),
                     seqq.w_en.eq(self.cmd.valid & self.cmd.ready)]
        with m.If(self.cmd.valid & self.cmd.ready):
            nblocks = Mux(cmd.gmac, 0, (cmd.payload_len + 15) >> 4)
            m.d.sync += [g_valid.eq(1), g_nonce.eq(cmd.nonce), g_ctr.eq(1),
                         g_left.eq(nblocks), g_slot.eq(cmd.slot),
                         g_aes256.eq(slot_aes256.bit_select(cmd.slot, 1))]
        with m.If(h_pending):
            m.d.comb += [aes.req.valid.eq(1), aes.req.payload.block.eq(0),
                         aes.req.payload.slot.eq(h_slot),
                         aes.req.payload.aes256.eq(h_aes256),
                         aes.req.payload.tag.eq(TAG_H)]
            with m.If(aes.req.ready):
                m.d.sync += h_pending.eq(0)
        with m.Else():
            m.d.comb += [aes.req.valid.eq(g_valid & ks_credit),
                         aes.req.payload.block.eq(Cat(g_nonce, be_bytes(g_ctr, 4))),
                         aes.req.payload.slot.eq(g_slot),
                         aes.req.payload.aes256.eq(g_aes256),
                         aes.req.payload.tag.eq(TAG_KS),
                         g_issue.eq(aes.req.valid & aes.req.ready)]
        with m.If(g_issue):
            m.d.sync += [g_ctr.eq(g_ctr + 1), g_left.eq(g_left - 1)]
            with m.If(g_left == 0):
                m.d.sync += g_valid.eq(0)
        m.d.sync += outstanding.eq(outstanding + g_issue - ks_pop)
        m.d.comb += [ksq.w_data.eq(aes.resp.block),
                     ksq.w_en.eq(aes.resp_valid & (aes.resp.tag == TAG_KS)),
                     ksq.r_en.eq(ks_pop)]

        # ---- input stream -> block aligner (bytes located by packet offset;
        # the command's lengths, not keep/last, say where segments end) ----
        m.d.comb += [lchk.length.valid.eq(lenq.r_rdy), lchk.length.payload.eq(lenq.r_data),
                     lenq.r_en.eq(lchk.length.ready),
                     lchk.i_valid.eq(self.i.valid), lchk.i_data.eq(self.i.payload.data),
                     lchk.i_keep.eq(self.i.payload.keep), lchk.i_last.eq(self.i.payload.last),
                     self.i.ready.eq(lchk.i_ready),
                     ingb.push_valid.eq(lchk.o_valid), ingb.push_data.eq(lchk.o_data),
                     lchk.o_ready.eq(ingb.push_ready),
                     errq.w_data.eq(lchk.err.payload), errq.w_en.eq(lchk.err.valid),
                     lchk.err.ready.eq(errq.w_rdy)]

        # ---- beat packer -> output stream ----
        o_first = Signal(init=1)
        m.d.comb += [self.o.valid.eq(outgb.o_valid),
                     self.o.payload.data.eq(outgb.o_data),
                     self.o.payload.keep.eq(Cat(*[outgb.o_n > j for j in range(lanes)])),
                     self.o.payload.first.eq(o_first),
                     self.o.payload.last.eq(outgb.o_last),
                     outgb.o_ready.eq(self.o.ready)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += o_first.eq(outgb.o_last)

        # ---- sequencer ----
        c = Signal(cmd_layout(sb))
        nxt = Signal(cmd_layout(sb))
        m.d.comb += nxt.as_value().eq(seqq.r_data)
        if pipe:
            # wide: the command is taken out of seqq into a register when the
            # packet starts, so that the next one can be loaded at the last
            # block of this one
            load = Signal()
            with m.If(load):
                m.d.sync += c.eq(nxt)
        else:
            m.d.comb += c.eq(nxt)
        aad_rem = Signal(17)
        pay_rem = Signal(16)
        # min(16, remaining) kept in registers: the block size feeds the
        # aligner's compare and pointer adders, so it must not be a subtract
        # and compare itself
        aad_k = Signal(5)
        pay_k = Signal(5)
        aad_bits = Signal(64)
        pay_bits = Signal(64)
        ekj0 = Signal(128)
        icv = Signal(128)
        tag_valid = Signal()
        tag_out = Signal(tag_layout)
        m.d.comb += [self.tag.valid.eq(tag_valid), self.tag.payload.eq(tag_out)]
        with m.If(self.tag.valid & self.tag.ready):
            m.d.sync += tag_valid.eq(0)

        hr = hmem.read_port()
        m.d.comb += [hr.addr.eq(nxt.slot), gh.h.eq(hr.data)]
        n_blocks = Signal(14)
        if self.ghash_latency:
            m.d.comb += gh.n_blocks.eq(n_blocks)

        kblk = Signal(5)         # bytes in the block being moved
        blk_mask = lane_mask(kblk, 16)
        in_blk = ingb.pop_data & blk_mask
        have_in = ingb.avail
        m.d.comb += ingb.pop_n.eq(kblk)
        icv_mask = lane_mask(c.icv_len, 16)
        full_tag = (gh.y ^ ekj0) & icv_mask

        if pipe:
            self._wide_sequencer(m, locals())
            return m

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += hr.en.eq(1)
                with m.If(seqq.r_rdy):
                    total = c.aad_len + c.payload_len
                    a_len = Mux(c.gmac, total, c.aad_len)
                    p_len = Mux(c.gmac, 0, c.payload_len)
                    m.d.sync += [aad_rem.eq(a_len), pay_rem.eq(p_len),
                                 aad_k.eq(Mux(a_len > 16, 16, a_len)),
                                 pay_k.eq(Mux(p_len > 16, 16, p_len)),
                                 aad_bits.eq(Mux(c.gmac, total, c.aad_len) << 3),
                                 pay_bits.eq(Mux(c.gmac, 0, c.payload_len) << 3)]
                    if self.ghash_latency:
                        # AAD blocks + payload blocks + length block
                        m.d.sync += n_blocks.eq(((a_len + 15) >> 4) + ((p_len + 15) >> 4) + 1)
                    m.next = "START"
            with m.State("START"):
                # H for this slot was read in IDLE; E(K, J0) is usually waiting
                m.d.comb += gh.start.eq(1)
                with m.If(ksq.r_rdy):
                    m.d.comb += ks_pop.eq(1)
                    m.d.sync += ekj0.eq(ksq.r_data)
                    m.next = "AAD"
                with m.Else():
                    m.next = "J0"
            with m.State("J0"):
                with m.If(ksq.r_rdy):
                    m.d.comb += ks_pop.eq(1)
                    m.d.sync += ekj0.eq(ksq.r_data)
                    m.next = "AAD"
            with m.State("AAD"):
                m.d.comb += kblk.eq(aad_k)
                with m.If(aad_k == 0):
                    m.next = "PAY"
                with m.Elif(have_in & outgb.push_ready & gh.i.ready):
                    m.d.comb += [ingb.pop.eq(1),
                                 outgb.push_valid.eq(1), outgb.push_data.eq(in_blk),
                                 outgb.push_n.eq(kblk),
                                 gh.i.valid.eq(1), gh.i.payload.eq(in_blk)]
                    left = aad_rem - aad_k
                    m.d.sync += [aad_rem.eq(left), aad_k.eq(Mux(left > 16, 16, left))]
            with m.State("PAY"):
                m.d.comb += kblk.eq(pay_k)
                out_blk = (in_blk ^ ksq.r_data) & blk_mask
                with m.If(pay_k == 0):
                    m.next = "LEN"
                with m.Elif(have_in & outgb.push_ready & gh.i.ready & ksq.r_rdy):
                    m.d.comb += [ingb.pop.eq(1), ks_pop.eq(1),
                                 outgb.push_valid.eq(1), outgb.push_data.eq(out_blk),
                                 outgb.push_n.eq(kblk),
                                 gh.i.valid.eq(1),
                                 gh.i.payload.eq(Mux(c.decrypt, in_blk, out_blk))]
                    left = pay_rem - pay_k
                    m.d.sync += [pay_rem.eq(left), pay_k.eq(Mux(left > 16, 16, left))]
            with m.State("LEN"):
                m.d.comb += [gh.i.valid.eq(1),
                             gh.i.payload.eq(Cat(be_bytes(aad_bits, 8), be_bytes(pay_bits, 8)))]
                with m.If(gh.i.ready):
                    with m.If(c.decrypt):
                        m.next = "ICV"
                    with m.Else():
                        m.next = "FIN"
            with m.State("ICV"):
                m.d.comb += kblk.eq(c.icv_len)
                with m.If(have_in):
                    m.d.comb += ingb.pop.eq(1)
                    m.d.sync += icv.eq(in_blk)
                    m.next = "FIN"
            with m.State("FIN"):
                # all ICV bytes are compared at once: no data-dependent timing
                # a length mismatch fails the packet whatever its mode
                with m.If(~gh.busy & ~tag_valid & outgb.push_ready & errq.r_rdy):
                    m.d.comb += [outgb.push_valid.eq(1), outgb.push_eop.eq(1),
                                 outgb.push_data.eq(Mux(c.decrypt, 0, full_tag)),
                                 outgb.push_n.eq(Mux(c.decrypt, 0, c.icv_len)),
                                 ingb.align.eq(1), seqq.r_en.eq(1), errq.r_en.eq(1),
                                 pkt_out.eq(1), pkt_out_slot.eq(c.slot)]
                    m.d.sync += [tag_valid.eq(1), tag_out.tag.eq(full_tag),
                                 tag_out.len_err.eq(errq.r_data),
                                 tag_out.ok.eq(~errq.r_data &
                                               (~c.decrypt | ((full_tag ^ icv) == 0)))]
                    with m.If(errq.r_data & (self.len_errors != 0xffff)):
                        m.d.sync += self.len_errors.eq(self.len_errors + 1)
                    m.next = "IDLE"
        return m

    def _wide_sequencer(self, m, v):
        """Wide sequencer: packets overlap. The sequencer moves a packet's
        blocks into the output queue `dq` and the GHASH, then a placeholder
        for its ICV and a tag job (E(K,J0), ICV, mode) into `tq`, and starts
        the next packet while this one's GHASH lanes drain. The tag stage
        forms the tag when the GHASH result arrives (`yq`) and puts the ICV
        where the placeholder is, so output order is kept."""
        sb = self.slot_bits
        c, nxt, load, hr, gh, ksq, seqq, ingb, outgb, errq = (
            v[k] for k in ("c", "nxt", "load", "hr", "gh", "ksq", "seqq", "ingb", "outgb",
                           "errq"))
        aad_rem, pay_rem, aad_k, pay_k = v["aad_rem"], v["pay_rem"], v["aad_k"], v["pay_k"]
        aad_bits, pay_bits, n_blocks, ekj0 = v["aad_bits"], v["pay_bits"], v["n_blocks"], v["ekj0"]
        kblk, blk_mask, in_blk, have_in = v["kblk"], v["blk_mask"], v["in_blk"], v["have_in"]
        ks_pop, tag_valid, tag_out = v["ks_pop"], v["tag_valid"], v["tag_out"]
        pkt_out, pkt_out_slot = v["pkt_out"], v["pkt_out_slot"]

        dq_layout = data.StructLayout({"data": 128, "n": 5, "icv": 1})
        tq_layout = data.StructLayout({"ekj0": 128, "icv": 128, "decrypt": 1, "icv_len": 5,
                                       "slot": sb})
        m.submodules.dq = dq = SyncFIFOBuffered(width=dq_layout.size, depth=8)
        m.submodules.tq = tq = SyncFIFOBuffered(width=tq_layout.size, depth=4)
        # at most one GHASH result per tq entry (a LEN block needs room in tq)
        m.submodules.yq = yq = SyncFIFOBuffered(width=128, depth=4)
        dw = Signal(dq_layout)
        tw = Signal(tq_layout)
        m.d.comb += [dq.w_data.eq(dw.as_value()), tq.w_data.eq(tw.as_value()),
                     tw.ekj0.eq(ekj0), tw.decrypt.eq(c.decrypt), tw.icv_len.eq(c.icv_len),
                     tw.slot.eq(c.slot),
                     yq.w_en.eq(gh.done), yq.w_data.eq(gh.y_done)]
        # H is read only when a command is taken: seqq's head moves on to the
        # packet after (a read port's enable is 1 unless driven)
        m.d.comb += hr.en.eq(load)
        aad_last = Signal()      # aad_rem <= 16: this AAD block is the last
        pay_last = Signal()

        def start_next():
            # take the next command, if any, and prepare its lengths; H for its
            # slot is read now and used in START
            with m.If(seqq.r_rdy):
                total = nxt.aad_len + nxt.payload_len
                a_len = Mux(nxt.gmac, total, nxt.aad_len)
                p_len = Mux(nxt.gmac, 0, nxt.payload_len)
                m.d.comb += [load.eq(1), seqq.r_en.eq(1)]
                m.d.sync += [aad_rem.eq(a_len), pay_rem.eq(p_len),
                             aad_k.eq(Mux(a_len > 16, 16, a_len)),
                             pay_k.eq(Mux(p_len > 16, 16, p_len)),
                             aad_last.eq(a_len <= 16), pay_last.eq(p_len <= 16),
                             aad_bits.eq(a_len << 3), pay_bits.eq(p_len << 3),
                             n_blocks.eq(((a_len + 15) >> 4) + ((p_len + 15) >> 4) + 1)]
                m.next = "START"
            with m.Else():
                m.next = "IDLE"

        def after_aad():
            with m.If(pay_k != 0):
                m.next = "PAY"
            with m.Else():
                m.next = "LEN"

        def finish(icv):
            # ICV placeholder into the output queue, tag job into tq
            m.d.comb += [dw.icv.eq(1), dq.w_en.eq(1), tw.icv.eq(icv), tq.w_en.eq(1)]
            start_next()

        with m.FSM():
            with m.State("IDLE"):
                start_next()
            with m.State("START"):
                # the previous packet's input ends here: its last beat's rest
                # is skipped (no pop in this state)
                m.d.comb += ingb.align.eq(1)
                # E(K,J0) is the keystream head when the packet starts; taken
                # in every START cycle (the last one counts), so its 128
                # enables are the state, not the start condition
                m.d.sync += ekj0.eq(ksq.r_data)
                with m.If(gh.can_start & ksq.r_rdy):
                    m.d.comb += [gh.start.eq(1), ks_pop.eq(1)]
                    with m.If(aad_k != 0):
                        m.next = "AAD"
                    with m.Else():
                        after_aad()
            with m.State("AAD"):
                m.d.comb += kblk.eq(aad_k)
                with m.If(have_in & dq.w_rdy & gh.i.ready):
                    m.d.comb += [ingb.pop.eq(1),
                                 dq.w_en.eq(1), dw.data.eq(in_blk), dw.n.eq(kblk),
                                 gh.i.valid.eq(1), gh.i.payload.eq(in_blk)]
                    left = aad_rem - aad_k
                    m.d.sync += [aad_rem.eq(left), aad_k.eq(Mux(left > 16, 16, left)),
                                 aad_last.eq(left <= 16)]
                    with m.If(aad_last):
                        after_aad()
            with m.State("PAY"):
                m.d.comb += kblk.eq(pay_k)
                out_blk = (in_blk ^ ksq.r_data) & blk_mask
                with m.If(have_in & dq.w_rdy & gh.i.ready & ksq.r_rdy):
                    m.d.comb += [ingb.pop.eq(1), ks_pop.eq(1),
                                 dq.w_en.eq(1), dw.data.eq(out_blk), dw.n.eq(kblk),
                                 gh.i.valid.eq(1),
                                 gh.i.payload.eq(Mux(c.decrypt, in_blk, out_blk))]
                    left = pay_rem - pay_k
                    m.d.sync += [pay_rem.eq(left), pay_k.eq(Mux(left > 16, 16, left)),
                                 pay_last.eq(left <= 16)]
                    with m.If(pay_last):
                        m.next = "LEN"
            with m.State("LEN"):
                with m.If(tq.w_rdy & dq.w_rdy):
                    m.d.comb += [gh.i.valid.eq(1),
                                 gh.i.payload.eq(Cat(be_bytes(aad_bits, 8),
                                                     be_bytes(pay_bits, 8)))]
                    with m.If(gh.i.ready):
                        with m.If(c.decrypt):
                            m.next = "ICV"
                        with m.Else():
                            finish(0)
            with m.State("ICV"):
                m.d.comb += kblk.eq(c.icv_len)
                with m.If(have_in & tq.w_rdy & dq.w_rdy):
                    m.d.comb += ingb.pop.eq(1)
                    finish(in_blk)

        # ---- output merger and tag stage ----
        head = Signal(dq_layout)
        job = Signal(tq_layout)
        m.d.comb += [head.as_value().eq(dq.r_data), job.as_value().eq(tq.r_data)]
        full_tag = (yq.r_data ^ job.ekj0) & lane_mask(job.icv_len, 16)
        with m.If(dq.r_rdy & ~head.icv):
            m.d.comb += [outgb.push_valid.eq(1), outgb.push_data.eq(head.data),
                         outgb.push_n.eq(head.n), dq.r_en.eq(outgb.push_ready)]
        # The tag is formed in two registered steps (timing): the ICV goes
        # out and the tag and its difference to the received ICV are
        # registered (t1); the next step reduces the difference to `ok`.
        t1_valid = Signal()
        t1_tag = Signal(128, reset_less=True)
        t1_diff = Signal(128, reset_less=True)
        t1_decrypt = Signal()
        t1_err = Signal()
        with m.If(dq.r_rdy & head.icv & tq.r_rdy & yq.r_rdy & errq.r_rdy & ~t1_valid &
                  outgb.push_ready):
            m.d.comb += [outgb.push_valid.eq(1), outgb.push_eop.eq(1),
                         outgb.push_data.eq(Mux(job.decrypt, 0, full_tag)),
                         outgb.push_n.eq(Mux(job.decrypt, 0, job.icv_len)),
                         dq.r_en.eq(1), tq.r_en.eq(1), yq.r_en.eq(1), errq.r_en.eq(1),
                         pkt_out.eq(1), pkt_out_slot.eq(job.slot)]
            m.d.sync += [t1_valid.eq(1), t1_tag.eq(full_tag), t1_diff.eq(full_tag ^ job.icv),
                         t1_decrypt.eq(job.decrypt), t1_err.eq(errq.r_data)]
            with m.If(errq.r_data & (self.len_errors != 0xffff)):
                m.d.sync += self.len_errors.eq(self.len_errors + 1)
        # all ICV bytes are compared at once: no data-dependent timing;
        # a length mismatch fails the packet whatever its mode
        with m.If(t1_valid & ~tag_valid):
            m.d.sync += [t1_valid.eq(0), tag_valid.eq(1), tag_out.tag.eq(t1_tag),
                         tag_out.len_err.eq(t1_err),
                         tag_out.ok.eq(~t1_err & (~t1_decrypt | (t1_diff == 0)))]
