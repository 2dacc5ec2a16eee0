"""CRC-32 (IEEE 802.3, reflected, as zlib.crc32 computes it) of the 38-byte
latch key, a few bytes per cycle.

The XOR network of one step is derived here, at elaboration, by running the
bit-serial reflected CRC over symbolic bits (each bit a set of the inputs it
XORs), so there is no hand-written table to get wrong.
"""

from __future__ import annotations

from functools import lru_cache

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

POLY = 0xEDB88320
KEY_BYTES = 38


@lru_cache(maxsize=None)
def step_matrix(nbytes: int) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """For each output bit: (crc input bits, data input bits) it XORs.
    Data bit 8*i + j is bit j of byte i (bytes in stream order)."""
    crc = [frozenset([("c", j)]) for j in range(32)]
    for i in range(nbytes):
        for j in range(8):
            crc[j] = crc[j] ^ frozenset([("d", 8 * i + j)])
        for _ in range(8):
            lsb = crc[0]
            crc = crc[1:] + [frozenset()]
            for j in range(32):
                if POLY >> j & 1:
                    crc[j] = crc[j] ^ lsb
    return tuple((tuple(sorted(k for t, k in s if t == "c")), tuple(sorted(k for t, k in s if t == "d")))
                 for s in crc)


def crc_step(crc, data, nbytes):
    """Amaranth expression: the CRC register after `nbytes` bytes of `data`."""
    bits = []
    for cbits, dbits in step_matrix(nbytes):
        terms = [crc[k] for k in cbits] + [data[k] for k in dbits]
        bits.append(Cat(*terms).xor() if terms else Const(0, 1))
    return Cat(*bits)


def key_bytes_value(flow) -> "Value":
    """The 38-byte key of a flow_layout view, byte i in bits 8i..8i+7, in the
    order sim/selectors.Flow.key_bytes packs it (big-endian fields)."""
    def be(v, nbytes):
        return [v[8 * (nbytes - 1 - i):8 * (nbytes - i)] for i in range(nbytes)]
    version = Cat(Const(0, 1), flow.v6, Const(1, 1), Const(0, 5))   # 4 or 6
    return Cat(version, *be(flow.local, 16), *be(flow.remote, 16), flow.proto,
               *be(flow.local_port, 2), *be(flow.remote_port, 2))


class Crc32Key(wiring.Component):
    """`start` with `key` (38 bytes, byte i at bits 8i..) -> `done` pulse with
    `crc` = zlib.crc32(key) after ceil(38 / step) cycles."""

    def __init__(self, step: int = 8):
        self.step = step
        super().__init__({"key": In(8 * KEY_BYTES), "start": In(1),
                          "crc": Out(32), "done": Out(1), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        step = self.step
        nsteps = -(-KEY_BYTES // step)
        tail = KEY_BYTES - step * (nsteps - 1)
        key = Signal(8 * KEY_BYTES)
        reg = Signal(32)
        n = Signal(range(nsteps + 1))
        m.d.comb += self.crc.eq(~reg)
        m.d.sync += self.done.eq(0)
        chunk = Signal(8 * step)
        m.d.comb += chunk.eq(key.word_select(n, 8 * step) if KEY_BYTES % step == 0 else
                             Cat(key, Const(0, 8 * (step * nsteps - KEY_BYTES))).word_select(n, 8 * step))
        with m.If(self.start & ~self.busy):
            m.d.sync += [key.eq(self.key), reg.eq(0xFFFFFFFF), n.eq(0), self.busy.eq(1)]
        with m.Elif(self.busy):
            with m.If(n == nsteps - 1):
                m.d.sync += [reg.eq(crc_step(reg, chunk, tail)), self.busy.eq(0), self.done.eq(1)]
            with m.Else():
                m.d.sync += [reg.eq(crc_step(reg, chunk, step)), n.eq(n + 1)]
        return m
