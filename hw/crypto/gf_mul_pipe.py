"""Pipelined GF(2^128) multiplier: o = a * b mod x^128 + x^7 + x^2 + x + 1.

Polynomial form (bit i = coefficient of x^i, gf.reflect_bytes of a block).
One product enters per cycle and leaves `latency` cycles later:
  latency 2: Karatsuba operands registered -> whole product and reduction -> output
  latency 3: ... -> three 64x64 Karatsuba products registered -> combine and
             reduce -> output
  latency 4: ... the Karatsuba products themselves are built from 64x16
             slices that are registered first
Karatsuba (one level) needs 3 instead of 4 64x64 products (~25 % fewer
AND/XOR terms). Every register stage divides the long XOR trees, which set
the clock of the single-cycle multiplier it replaces.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .gf import clmul, gf_reduce, xor_tree


class GFMulPipe(wiring.Component):
    a: In(128)
    b: In(128)
    o: Out(128)

    def __init__(self, latency=3, reset_less=False):
        if latency not in (2, 3, 4):
            raise ValueError("latency must be 2, 3 or 4")
        self.latency = latency
        self.reset_less = reset_less
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        rl = self.reset_less
        a, b = self.a, self.b
        # Karatsuba operand pairs: lo*lo, hi*hi, (lo^hi)*(lo^hi). Each pair has
        # its own operand registers with the pre-add done before them: every
        # 64x64 product then reads only its own 128 flip-flops (the placer can
        # keep the three apart) and an AND term of the middle product needs 2
        # inputs, not 4.
        pairs = []
        for k, (x, y) in enumerate([(a[:64], b[:64]), (a[64:], b[64:]),
                                    (a[:64] ^ a[64:], b[:64] ^ b[64:])]):
            xr = Signal(64, name=f"ka{k}", reset_less=rl)
            yr = Signal(64, name=f"kb{k}", reset_less=rl)
            m.d.sync += [xr.eq(x), yr.eq(y)]
            pairs.append((xr, yr))
        if self.latency == 4:
            prods = []
            for k, (x, y) in enumerate(pairs):
                xs = Signal(64, name=f"kx{k}")
                m.d.comb += xs.eq(x)
                sl = []
                for j in range(4):
                    s = Signal(79, name=f"slice{k}_{j}", reset_less=rl)
                    m.d.sync += s.eq(clmul(xs[16 * j:16 * j + 16], y))
                    sl.append(s)
                prods.append(xor_tree([(s.as_unsigned() << 16 * j)[:127]
                                       for j, s in enumerate(sl)], 127))
        else:
            prods = [clmul(x, y) for x, y in pairs]
        if self.latency >= 3:
            regs = [Signal(127, name=f"kp{k}", reset_less=rl) for k in range(3)]
            m.d.sync += [r.eq(p) for r, p in zip(regs, prods)]
            prods = regs
        p0, p2, p1 = prods
        mid = Signal(127)
        m.d.comb += mid.eq(p0 ^ p1 ^ p2)
        full = xor_tree([p0.as_unsigned(), (mid.as_unsigned() << 64)[:255],
                         (p2.as_unsigned() << 128)[:255]], 255)
        o_r = Signal(128, reset_less=rl)
        m.d.sync += o_r.eq(gf_reduce(m, full, "mred"))
        m.d.comb += self.o.eq(o_r)
        return m
