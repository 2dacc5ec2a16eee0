"""GHASH: Y <- (Y xor X) * H in GF(2^128), digit-serial.

The product A*H is built by Horner's rule over `digit`-bit digits of A, top
digit first: Z <- Z*x^d + A_j*H (mod P). Each step is a d x 128 carry-less
product plus two small reductions, so the logic grows with `digit` and a block
takes 1 + 128/digit cycles. digit=32 is the compact choice (5 cycles per block,
the rate of the compact AES ring for AES-128); digit=128 is a fully
parallel multiplier (1 block per cycle) for the wide configuration.

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
        a = Signal(128)          # remaining digits of (Y xor X), top digit first
        cnt = Signal(range(steps + 1))

        def step(zv, digit_v):
            shifted = Cat(Const(0, d), zv)            # z * x^d, 128+d bits
            return gf_reduce(m, shifted, "zx") ^ gf_reduce(m, clmul(digit_v, hpoly), "dh")

        m.d.comb += [self.busy.eq(cnt != 0), self.y.eq(reflect_bytes(z)),
                     self.i.ready.eq((cnt == 0) & ~self.start)]
        accept = self.i.valid & self.i.ready
        av = z ^ reflect_bytes(self.i.payload)
        first = Signal()
        if d == 128:
            # single cycle: multiply straight from the incoming block
            nxt = step(Const(0, 128), av)
        else:
            # the block is registered first, so the multiplier sits between
            # flip-flops (aligner and keystream logic stay out of its path);
            # a block takes 1 + 128/d cycles
            nxt = step(Mux(first, 0, z), a[128 - d:128])
        with m.If(self.start):
            m.d.sync += [hpoly.eq(reflect_bytes(self.h)), z.eq(0), cnt.eq(0)]
        with m.Elif(accept):
            if d == 128:
                m.d.sync += z.eq(nxt)
            else:
                m.d.sync += [a.eq(av), cnt.eq(steps), first.eq(1)]
        with m.Elif(cnt != 0):
            m.d.sync += [z.eq(nxt), a.eq(Cat(Const(0, d), a[0:128 - d]) if d < 128 else 0),
                         cnt.eq(cnt - 1), first.eq(0)]
        return m
