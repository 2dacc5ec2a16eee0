"""AES-128/256 key expansion, one 32-bit word every two cycles.

Key loading is a host operation done once per key slot, so it is built to be
small rather than fast: one 4-byte S-box (2 EBR read ports x 2) and a shift
register of the last eight words. Every fourth word completes a round key,
which is written out through `rk_*` into the round-key memories of the core.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .gf import SBOX, xtime


def key_layout(slot_bits):
    # key bytes in lane order (byte 0 = key[0:8]); AES-128 uses bytes 0..15
    return data.StructLayout({"key": 256, "aes256": 1, "slot": slot_bits})


class KeyExpand(wiring.Component):
    def __init__(self, slot_bits=4):
        self.slot_bits = slot_bits
        super().__init__({
            "key": In(stream.Signature(key_layout(slot_bits))),
            # round-key write port (one round key per write)
            "rk_we": Out(1),
            "rk_slot": Out(slot_bits),
            "rk_round": Out(4),
            "rk_data": Out(128),
            # pulses once all round keys of `done_slot` are written
            "done": Out(1),
            "done_slot": Out(slot_bits),
            "done_aes256": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        sr = [Signal(32, name=f"w{k}") for k in range(8)]   # sr[7] = w[i-1]
        idx = Signal(6)          # index i of the word being made
        nwords = Signal(6)       # 4 * (Nr + 1)
        aes256 = Signal()
        slot = Signal(self.slot_bits)
        rcon = Signal(8)
        phase = Signal()         # 0: S-box address out, 1: S-box data back

        m.d.comb += [self.rk_slot.eq(slot), self.done_slot.eq(slot),
                     self.done_aes256.eq(aes256)]

        nk_mod = Mux(aes256, idx[0:3], idx[0:2])          # i mod Nk
        rot_step = nk_mod == 0
        sub_step = rot_step | (aes256 & (idx[0:3] == 4))
        prev = sr[7]
        sub_in = Mux(rot_step, Cat(prev[8:32], prev[0:8]), prev)

        m.submodules.sbox = rom = Memory(shape=8, depth=256, init=SBOX, attrs={"ram_style": "block"})
        m.submodules.sbox2 = rom2 = Memory(shape=8, depth=256, init=SBOX, attrs={"ram_style": "block"})
        ports = [rom.read_port(), rom.read_port(), rom2.read_port(), rom2.read_port()]
        for k, p in enumerate(ports):
            m.d.comb += p.addr.eq(sub_in[8 * k:8 * k + 8])
        subbed = Cat(*[p.data for p in ports])
        t = Mux(rot_step, Cat(subbed[0:8] ^ rcon, subbed[8:32]), subbed)
        back = Mux(aes256, sr[0], sr[4])                   # w[i - Nk]
        new = back ^ Mux(sub_step, t, prev)

        with m.FSM():
            with m.State("IDLE"):
                # the offered key is taken into the registers in every IDLE
                # cycle and only the state change waits for `valid`: the
                # valid gating (slot guard in gcm.py) then reaches one
                # flip-flop, not 300 enables
                m.d.comb += self.key.ready.eq(1)
                k = self.key.payload.key
                words = [k[32 * j:32 * j + 32] for j in range(8)]
                with m.If(self.key.payload.aes256):
                    m.d.sync += [sr[j].eq(words[j]) for j in range(8)]
                    m.d.sync += [idx.eq(8), nwords.eq(60)]
                with m.Else():
                    m.d.sync += [sr[4 + j].eq(words[j]) for j in range(4)]
                    m.d.sync += [idx.eq(4), nwords.eq(44)]
                m.d.sync += [aes256.eq(self.key.payload.aes256),
                             slot.eq(self.key.payload.slot),
                             rcon.eq(1), phase.eq(0)]
                with m.If(self.key.valid):
                    m.next = "RK0"
            with m.State("RK0"):
                # the key itself is round key 0 (and 1 for AES-256)
                m.d.comb += [self.rk_we.eq(1), self.rk_round.eq(0),
                             self.rk_data.eq(Mux(aes256, Cat(*sr[0:4]), Cat(*sr[4:8])))]
                with m.If(aes256):
                    m.next = "RK1"
                with m.Else():
                    m.next = "GEN"
            with m.State("RK1"):
                m.d.comb += [self.rk_we.eq(1), self.rk_round.eq(1),
                             self.rk_data.eq(Cat(*sr[4:8]))]
                m.next = "GEN"
            with m.State("GEN"):
                m.d.sync += phase.eq(~phase)
                with m.If(phase):
                    m.d.sync += [sr[j].eq(sr[j + 1]) for j in range(7)]
                    m.d.sync += [sr[7].eq(new), idx.eq(idx + 1)]
                    with m.If(rot_step):
                        m.d.sync += rcon.eq(xtime(rcon))
                    with m.If(idx[0:2] == 3):
                        m.d.comb += [self.rk_we.eq(1), self.rk_round.eq(idx[2:6]),
                                     self.rk_data.eq(Cat(sr[5], sr[6], sr[7], new))]
                    with m.If(idx + 1 == nwords):
                        m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        return m
