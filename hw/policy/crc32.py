"""CRC-32 (IEEE 802.3, reflected, as zlib.crc32 computes it) of the 38-byte
latch key, a few bytes per cycle.

The XOR network of one step is derived here, at elaboration, by running the
bit-serial reflected CRC over symbolic bits (each bit a set of the inputs it
XORs), so there is no hand-written table to get wrong.
"""

from __future__ import annotations

from functools import lru_cache

from amaranth.hdl import Cat, Const, Module, Signal, Value
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


def _xor_rows(src, pick):
    return Cat(*(Cat(*terms).xor() if terms else Const(0, 1)
                 for terms in ([src[k] for k in row] for row in pick)))


def crc_part(crc, nbytes):
    """Amaranth expression: what the register's own bits give after
    `nbytes` bytes (the step is linear: this XOR data_part is the step)."""
    return _xor_rows(crc, [c for c, _d in step_matrix(nbytes)])


def data_part(data, nbytes):
    """Amaranth expression: what `nbytes` bytes of `data` give to the step."""
    return _xor_rows(data, [d for _c, d in step_matrix(nbytes)])


def key_bytes_value(flow) -> "Value":
    """The 38-byte key of a flow_layout view, byte i in bits 8i..8i+7, in the
    order sim/selectors.Flow.key_bytes packs it (big-endian fields)."""
    def be(v, nbytes):
        return [v[8 * (nbytes - 1 - i):8 * (nbytes - i)] for i in range(nbytes)]
    version = Cat(Const(0, 1), flow.v6, Const(1, 1), Const(0, 5))   # 4 or 6
    return Cat(version, *be(flow.local, 16), *be(flow.remote, 16), flow.proto,
               *be(flow.local_port, 2), *be(flow.remote_port, 2))


def unadvance(crc: int, nbytes: int) -> int:
    """The register value that `nbytes` zero bytes take to `crc` (the
    reflected CRC step is invertible: the top bit tells whether POLY went in)."""
    for _ in range(8 * nbytes):
        crc = ((crc ^ POLY) << 1 | 1) & 0xFFFFFFFF if crc >> 31 & 1 else crc << 1 & 0xFFFFFFFF
    return crc


class Crc32Key(wiring.Component):
    """`start` with `key` (38 bytes, byte i at bits 8i..) -> `done` pulse with
    `crc` = zlib.crc32(key) after ceil(38 / step) + 1 cycles (a `start` while
    busy starts over with the new key).

    Timing: every cycle takes the low `step` bytes of a shift register, so
    the XOR network has no chunk multiplexer in front; a key that is not a
    whole number of steps is led by zero bytes, with the initial register
    chosen so that those bytes bring it to 0xFFFFFFFF. The step is split
    (it is linear): the data's share is registered from the shift register
    a cycle ahead (`dpart`), so the register's loop XORs its own bits and
    one flip-flop, not the chunk's 8 * step bits as well; one cycle more."""

    def __init__(self, step: int = 8):
        self.step = step
        super().__init__({"key": In(8 * KEY_BYTES), "start": In(1),
                          "crc": Out(32), "done": Out(1), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        step = self.step
        nsteps = -(-KEY_BYTES // step)
        lead = step * nsteps - KEY_BYTES
        key = Signal(8 * step * nsteps)
        reg = Signal(32)
        dpart = Signal(32)
        primed = Signal()        # dpart holds the first chunk's share
        n = Signal(range(nsteps + 1))
        m.d.comb += self.crc.eq(~reg)
        m.d.sync += self.done.eq(0)
        with m.If(self.start):      # (re)starts; not gated by busy (timing: start fans out wide)
            m.d.sync += [key.eq(Cat(Const(0, 8 * lead), self.key)), reg.eq(unadvance(0xFFFFFFFF, lead)),
                         n.eq(0), primed.eq(0), self.busy.eq(1)]
        with m.Elif(self.busy):
            m.d.sync += [dpart.eq(data_part(key[:8 * step], step)), key.eq(key[8 * step:]),
                         primed.eq(1)]
            with m.If(primed):
                m.d.sync += [reg.eq(crc_part(reg, step) ^ dpart), n.eq(n + 1)]
                with m.If(n == nsteps - 1):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        return m


# ------------------------------------------------------- IPv4 key quotient

# an IPv4 flow's key bits, LSB first: local 32 | remote 32 | proto 8 |
# local_port 16 | remote_port 16 (the rest of the 38-byte key is constant)
V4_KEY_BITS = 104


def v4_key_bytes(x: int) -> bytes:
    """The 38-byte key of the IPv4 key vector x (sim/selectors.Flow.key_bytes)."""
    f = lambda lsb, n: (x >> lsb) & ((1 << n) - 1)
    return (bytes([4]) + f(0, 32).to_bytes(16, "big") + f(32, 32).to_bytes(16, "big")
            + bytes([f(64, 8)]) + f(72, 16).to_bytes(2, "big") + f(88, 16).to_bytes(2, "big"))


@lru_cache(maxsize=None)
def v4_quotient(set_bits: int) -> tuple[tuple[int, ...], tuple[tuple[int, int, int, int], ...]]:
    """Which IPv4 key bits a table of 2^set_bits sets need not store.

    The set index is the low set_bits of CRC-32(key), an affine function of
    the key bits over GF(2). Solving it for set_bits key bits (pivots taken
    from the ports, whose 32 bits end the message and so map one to one onto
    the CRC) gives each of them as an XOR of the set index and the other key
    bits: stored key bits + set index determine the whole key, so comparing
    the stored bits within a set is an exact key match.

    Returns (rest, quotient): `rest` the key bit indexes stored, in order;
    `quotient` per derived bit (key bit index, set-index bit mask, key bit
    mask over `rest` indexes, constant)."""
    import zlib
    mask = (1 << set_bits) - 1
    c = zlib.crc32(v4_key_bytes(0)) & mask
    col = [(zlib.crc32(v4_key_bytes(1 << j)) ^ zlib.crc32(v4_key_bytes(0))) & mask
           for j in range(V4_KEY_BITS)]
    # row i: sum_j a_ij x_j = s_i ^ c_i, as [x coefficients, s coefficients, constant]
    rows = [[sum(((col[j] >> i) & 1) << j for j in range(V4_KEY_BITS)), 1 << i, (c >> i) & 1]
            for i in range(set_bits)]
    pivots = []
    for j in reversed(range(V4_KEY_BITS)):
        if len(pivots) == set_bits:
            break
        r = next((r for r in rows[len(pivots):] if r[0] >> j & 1), None)
        if r is None:
            continue
        k = rows.index(r)
        rows[len(pivots)], rows[k] = rows[k], rows[len(pivots)]
        piv = rows[len(pivots)]
        for other in rows:
            if other is not piv and other[0] >> j & 1:
                other[0] ^= piv[0]
                other[1] ^= piv[1]
                other[2] ^= piv[2]
        pivots.append(j)
    assert len(pivots) == set_bits, "CRC-32 set index not solvable for the key"
    rest = tuple(j for j in range(V4_KEY_BITS) if j not in pivots)
    quotient = tuple((j, row[1], row[0] & ~(1 << j), row[2]) for j, row in zip(pivots, rows))
    return rest, quotient
