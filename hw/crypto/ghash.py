"""GHASH: Y <- (Y xor X) * H in GF(2^128), digit-serial.

The product A*H is built by Horner's rule over `digit`-bit digits of A, top
digit first: Z <- Z*x^d + A_j*H (mod P). Each step is a d x 128 carry-less
product plus two small reductions, so the logic grows with `digit` and a block
takes 128/digit cycles (the next block waits in an input register meanwhile).
digit=32 is the compact choice (4 cycles per block, the rate of the compact
AES ring for AES-128); digit=128 is a fully parallel single-cycle multiplier
(kept for reference; the wide configuration uses ghash_pipe.GHASHPipe).

Blocks come in as byte-lane blocks (hw/stream.py order); `start` clears Y and
loads H (also byte-lane order) for a new packet. `y` is Y in byte-lane order,
valid whenever `busy` is low.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .gf import clmul, gf_reduce, reflect_bytes


class GHASH(wiring.Component):
    i: In(stream.Signature(128))
    start: In(1)
    h: In(128)
    y: Out(128)
    busy: Out(1)

    def __init__(self, digit=32):
        if 128 % digit:
            raise ValueError("digit must divide 128")
        self.digit = digit
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        d = self.digit
        steps = 128 // d
        hpoly = Signal(128)
        z = Signal(128)          # running product / finished Y

        def step(zv, digit_v):
            shifted = Cat(Const(0, d), zv)            # z * x^d, 128+d bits
            return gf_reduce(m, shifted, "zx") ^ gf_reduce(m, clmul(digit_v, hpoly), "dh")

        m.d.comb += self.y.eq(reflect_bytes(z))
        if d == 128:
            # single cycle: multiply straight from the incoming block
            m.d.comb += [self.busy.eq(0), self.i.ready.eq(~self.start)]
            accept = self.i.valid & self.i.ready
            with m.If(self.start):
                m.d.sync += [hpoly.eq(reflect_bytes(self.h)), z.eq(0)]
            with m.Elif(accept):
                m.d.sync += z.eq(step(Const(0, 128), z ^ reflect_bytes(self.i.payload)))
            return m

        # The block is registered first (xr), so the multiplier sits between
        # flip-flops (aligner and keystream logic stay out of its path). The
        # first step of a block reads its top digit from z ^ xr, while z is
        # final, and keeps the rest in `a`; the next block can wait in xr
        # meanwhile, so a block takes 128/d cycles.
        xr = Signal(128)
        pend = Signal()          # xr holds a block not yet started
        a = Signal(128)          # remaining digits of (Y xor X), top digit first
        cnt = Signal(range(steps))   # steps still to do for the current block
        begin = pend & (cnt == 0)
        v = z ^ xr
        nxt = step(Mux(begin, 0, z), Mux(begin, v[128 - d:], a[128 - d:]))
        m.d.comb += [self.busy.eq(pend | (cnt != 0)),
                     self.i.ready.eq((~pend | begin) & ~self.start)]
        accept = self.i.valid & self.i.ready
        with m.If(self.start):
            m.d.sync += [hpoly.eq(reflect_bytes(self.h)), z.eq(0), cnt.eq(0), pend.eq(0)]
        with m.Else():
            with m.If(begin):
                m.d.sync += [z.eq(nxt), a.eq(Cat(Const(0, d), v[:128 - d])),
                             cnt.eq(steps - 1)]
            with m.Elif(cnt != 0):
                m.d.sync += [z.eq(nxt), a.eq(Cat(Const(0, d), a[:128 - d])),
                             cnt.eq(cnt - 1)]
            with m.If(accept):
                m.d.sync += [xr.eq(reflect_bytes(self.i.payload)), pend.eq(1)]
            with m.Elif(begin):
                m.d.sync += pend.eq(0)
        return m
