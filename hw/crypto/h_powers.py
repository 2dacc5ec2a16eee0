"""H^1..H^N for one key slot, for the pipelined GHASH (ghash_pipe.py).

Runs once per key load, after H = E(K, 0) comes out of the AES core, so it
is small and slow: a digit-serial GHASH (ghash.GHASH, 32-bit digits) with H
as its key is fed H once (Y = H^2) and then zero blocks (Y = H^3, H^4, ...).
All powers are written together (`we`, `data` = Cat(H^1, ..., H^N) in
byte-lane blocks) for `slot_o`.
"""

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .ghash import GHASH


class HPowers(wiring.Component):
    def __init__(self, n, slot_bits=4):
        assert n >= 1
        self.n = n
        super().__init__({
            "h_valid": In(1),        # strobe: `h` is H of `slot`
            "h": In(128),
            "slot": In(slot_bits),
            "we": Out(1),
            "slot_o": Out(slot_bits),
            "data": Out(128 * n),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.n
        m.submodules.gh = gh = GHASH(digit=32)
        pw = Array(Signal(128, name=f"p{k + 1}") for k in range(n))
        k = Signal(range(n + 1))     # power being made, minus 1
        m.d.comb += [self.data.eq(Cat(*pw)), gh.h.eq(pw[0])]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.h_valid):
                    m.d.sync += [pw[0].eq(self.h), self.slot_o.eq(self.slot), k.eq(1)]
                    m.next = "START" if n > 1 else "WRITE"
            with m.State("START"):
                m.d.comb += gh.start.eq(1)
                m.next = "FEED"
            with m.State("FEED"):
                m.d.comb += [self.busy.eq(1), gh.i.valid.eq(1),
                             gh.i.payload.eq(Mux(k == 1, pw[0], 0))]
                with m.If(gh.i.ready):
                    m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += self.busy.eq(1)
                with m.If(~gh.busy):
                    m.d.sync += [pw[k].eq(gh.y), k.eq(k + 1)]
                    with m.If(k == n - 1):
                        m.next = "WRITE"
                    with m.Else():
                        m.next = "FEED"
            with m.State("WRITE"):
                m.d.comb += [self.we.eq(1), self.busy.eq(1)]
                m.next = "IDLE"
        return m
