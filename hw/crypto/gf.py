"""Shared constants and wiring helpers for the AES and GHASH gateware.

Byte convention everywhere in hw/crypto: a 128-bit block is a Value whose byte
i (the i-th byte on the wire, AES state byte i) sits in bits [8*i, 8*i+8), the
same little-endian lane order as hw/stream.py.
"""

from amaranth.hdl import Cat, Const, Mux, Signal


def _make_sbox():
    # Build the AES S-box from its definition (inverse in GF(2^8) + affine map)
    # instead of pasting a table, so there is one less thing to mistype.
    def mul(a, b):
        r = 0
        while b:
            if b & 1:
                r ^= a
            a = ((a << 1) ^ 0x11b) if a & 0x80 else (a << 1)
            b >>= 1
        return r
    inv = [0] * 256
    for a in range(1, 256):
        for b in range(1, 256):
            if mul(a, b) == 1:
                inv[a] = b
                break
    sbox = []
    for a in range(256):
        x = inv[a]
        s = x
        for k in range(1, 5):
            s ^= ((x << k) | (x >> (8 - k))) & 0xff
        sbox.append(s ^ 0x63)
    return sbox


SBOX = _make_sbox()


def byte(v, i):
    return v[8 * i:8 * i + 8]


def xtime(b):
    # multiply by x in GF(2^8) mod x^8+x^4+x^3+x+1: a shift and a conditional xor
    return Cat(Const(0, 1), b[0:7]) ^ Mux(b[7], Const(0x1b, 8), Const(0, 8))


def shift_rows(v):
    # state[r][c] = byte r+4c; row r rotates left by r columns
    return Cat(*[byte(v, r + 4 * ((c + r) % 4)) for c in range(4) for r in range(4)])


def mix_columns(v):
    out = []
    for c in range(4):
        a = [byte(v, 4 * c + r) for r in range(4)]
        t = a[0] ^ a[1] ^ a[2] ^ a[3]
        for r in range(4):
            # standard trick: b_r = a_r ^ t ^ xtime(a_r ^ a_{r+1})
            out.append(a[r] ^ t ^ xtime(a[r] ^ a[(r + 1) % 4]))
    return Cat(*out)


def reflect_bytes(v):
    """Byte-lane block <-> GF(2^128) polynomial (bit i = coefficient of x^i).

    GCM numbers the bits of a block from the MSB of byte 0 (= x^0), so the
    polynomial form is each byte bit-reversed in place. The map is its own
    inverse."""
    return Cat(*[v[8 * k + 7 - j] for k in range(len(v) // 8) for j in range(8)])


def gf_reduce(m, v, name="red"):
    """Reduce a polynomial of any width modulo x^128 + x^7 + x^2 + x + 1.

    The folded high part is used four times; it is bound to a signal first,
    because an Amaranth expression used twice is emitted twice (a GHASH
    multiplier would otherwise appear several times over in the netlist)."""
    level = 0
    while len(v) > 128:
        held = Signal(len(v), name=f"{name}{level}")
        m.d.comb += held.eq(v)
        lo, hi = held[:128], held[128:].as_unsigned()
        n = len(hi) + 7
        fold = (hi ^ (hi << 1) ^ (hi << 2) ^ (hi << 7))[:n]
        v = (lo.as_unsigned() ^ fold)[:max(128, n)]
        level += 1
    return v[:128]


def clmul(a, b):
    """Carry-less product of two Values (len(a)+len(b)-1 bits)."""
    width = len(a) + len(b) - 1
    terms = [(Mux(a[i], b, 0).as_unsigned() << i)[:width] for i in range(len(a))]
    return xor_tree(terms, width)


def xor_tree(terms, width):
    # balanced, so that neither synthesis nor the simulator sees a deep chain
    terms = list(terms)
    if not terms:
        return Const(0, width)
    while len(terms) > 1:
        nxt = [(terms[i] ^ terms[i + 1])[:width] for i in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return terms[0].as_unsigned()[:width] if len(terms[0]) >= width else terms[0]


def lane_mask(n, lanes):
    """Bit mask of the first `n` byte lanes (n a Value)."""
    return Cat(*[(n > j).replicate(8) for j in range(lanes)])
