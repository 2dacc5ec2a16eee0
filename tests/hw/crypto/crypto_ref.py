"""Small Python references for AES rounds, key expansion and GF(2^128).

Checked against `cryptography` (full AES) in the tests themselves, so that a
bug here cannot hide a bug in the gateware.
"""

from latchnic.hw.crypto.gf import SBOX


def xtime(b):
    b <<= 1
    return (b ^ 0x11b) if b & 0x100 else b


def aes_round(state: bytes, rk: bytes, final: bool) -> bytes:
    s = [SBOX[b] for b in state]
    s = [s[r + 4 * ((c + r) % 4)] for c in range(4) for r in range(4)]
    if not final:
        out = []
        for c in range(4):
            a = s[4 * c:4 * c + 4]
            t = a[0] ^ a[1] ^ a[2] ^ a[3]
            out += [a[r] ^ t ^ xtime(a[r] ^ a[(r + 1) % 4]) for r in range(4)]
        s = out
    return bytes(x ^ y for x, y in zip(s, rk))


def key_schedule(key: bytes) -> list[bytes]:
    nk = len(key) // 4
    nr = nk + 6
    w = [key[4 * i:4 * i + 4] for i in range(nk)]
    rcon = 1
    for i in range(nk, 4 * (nr + 1)):
        t = w[i - 1]
        if i % nk == 0:
            t = bytes(SBOX[b] for b in t[1:] + t[:1])
            t = bytes([t[0] ^ rcon]) + t[1:]
            rcon = xtime(rcon)
        elif nk == 8 and i % 8 == 4:
            t = bytes(SBOX[b] for b in t)
        w.append(bytes(x ^ y for x, y in zip(w[i - nk], t)))
    return [b"".join(w[4 * r:4 * r + 4]) for r in range(nr + 1)]


def aes_encrypt(key: bytes, block: bytes) -> bytes:
    rks = key_schedule(key)
    s = bytes(x ^ y for x, y in zip(block, rks[0]))
    for r in range(1, len(rks)):
        s = aes_round(s, rks[r], r == len(rks) - 1)
    return s


def gf_mul(x: int, y: int) -> int:
    """GCM multiplication on blocks as big-endian integers (NIST SP 800-38D 6.3)."""
    R = 0xE1 << 120
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ R if v & 1 else v >> 1
    return z


def ghash(h: bytes, blocks: list[bytes]) -> bytes:
    y = 0
    hi = int.from_bytes(h, "big")
    for b in blocks:
        y = gf_mul(y ^ int.from_bytes(b, "big"), hi)
    return y.to_bytes(16, "big")
