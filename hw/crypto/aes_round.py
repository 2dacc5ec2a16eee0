"""One AES encryption round with its S-boxes in block RAM.

The S-box lookup is a synchronous ROM read, so the ROM output register *is*
the round's state register: a value presented on `i` in cycle t comes out of
`o` in cycle t+1 as ShiftRows/MixColumns/AddRoundKey(SubBytes(i)), using the
`rk` and `final` presented in cycle t+1. Chaining `o` of one round into `i` of
the next therefore gives one round per cycle with no extra flip-flops.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .gf import SBOX, byte, mix_columns, shift_rows


class AESRound(wiring.Component):
    """`latency` 1: `o` in cycle t+1 (ROM output is the state register).
    `latency` 2: the ROM data is registered once more (the EBR's own output
    register): its 5.8 ns clock-to-out on an ECP5 -6 then no longer sits in
    the round's logic path; a ring of such units holds twice the blocks."""
    i: In(128)       # state before SubBytes (sampled at the clock edge)
    rk: In(128)      # round key for the round whose result is on `o` now
    final: In(1)     # last round: no MixColumns
    o: Out(128)

    def __init__(self, latency=1, reset_less=False):
        assert latency in (1, 2)
        self.latency = latency
        self.reset_less = reset_less
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        sub = []
        # A 256x8 ROM has two read ports in one EBR (DP16KD): 8 ROMs serve 16 bytes.
        for n in range(8):
            rom = Memory(shape=8, depth=256, init=SBOX, attrs={"ram_style": "block"})
            m.submodules[f"sbox{n}"] = rom
            for k in range(2):
                rp = rom.read_port()
                m.d.comb += rp.addr.eq(byte(self.i, 2 * n + k))
                if self.latency == 2:
                    held = Signal(8, name=f"sb{2 * n + k}", reset_less=self.reset_less)
                    m.d.sync += held.eq(rp.data)
                    sub.append(held)
                else:
                    sub.append(rp.data)
        sb = Cat(*sub)
        sr = shift_rows(sb)
        m.d.comb += self.o.eq(Mux(self.final, sr, mix_columns(sr)) ^ self.rk)
        return m
