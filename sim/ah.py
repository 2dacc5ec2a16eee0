"""AH (RFC 4302) with AES-GMAC (RFC 4543 section 3.5).

Wire format: NH(1) | payload len(1) | reserved(2) | SPI(4) | seq low(4) |
IV(8) | ICV(16) [| 4 pad bytes on IPv6, for 8-byte alignment: sent as
zeros, covered by the ICV as received (RFC 4302 3.3.3.2.1)].
The ICV is GMAC with nonce = salt || IV over: the IP header with mutable
fields zeroed (RFC 4302 3.3.3), the AH header with the ICV field zeroed
(the IV is covered), the payload, and with ESN the high 32 bits of the
sequence number (RFC 4302 2.5.1).
"""

from __future__ import annotations

import struct

from .drops import Drop
from .packet import IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ROUTING
from .sad import SaState

AH_FIXED = 12
IV_LEN = 8
ICV_LEN = 16

# IPv4 options whose content does not change in transit (RFC 4302 appendix A.1);
# every other option is zeroed whole for the ICV.
IMMUTABLE_V4_OPTIONS = {0, 1, 130, 133, 134, 148, 149}


def ah_len(version: int) -> int:
    return AH_FIXED + IV_LEN + ICV_LEN + (4 if version == 6 else 0)


def _zero_v4(hdr: bytes) -> bytearray:
    out = bytearray(hdr)
    out[1] = 0                       # TOS
    out[6:8] = b"\0\0"               # flags, fragment offset
    out[8] = 0                       # TTL
    out[10:12] = b"\0\0"             # checksum
    i = 20
    while i < len(out):
        kind = out[i]
        if kind == 0:                # end of options list
            break
        if kind == 1:                # NOP
            i += 1
            continue
        if i + 1 >= len(out) or out[i + 1] < 2 or i + out[i + 1] > len(out):
            raise Drop("malformed", "bad IPv4 option length")
        olen = out[i + 1]
        if kind not in IMMUTABLE_V4_OPTIONS:
            out[i:i + olen] = bytes(olen)
        i += olen
    return out


def _zero_v6(hdr: bytes) -> bytearray:
    out = bytearray(hdr)
    out[0] &= 0xF0                   # traffic class and flow label
    out[1:4] = b"\0\0\0"
    out[7] = 0                       # hop limit
    nh, off = out[6], 40
    while off < len(out):
        if nh == IPPROTO_ROUTING:
            raise Drop("unsupported", "AH over an IPv6 routing header")
        if nh == IPPROTO_FRAGMENT:
            raise Drop("fragment", "AH with an IPv6 fragment header")
        if nh not in (IPPROTO_HOPOPTS, IPPROTO_DSTOPTS):
            raise Drop("malformed", f"unexpected IPv6 header {nh} before AH")
        hlen = (out[off + 1] + 1) * 8
        i = off + 2
        while i < off + hlen:
            otype = out[i]
            if otype == 0:           # Pad1
                i += 1
                continue
            if i + 1 >= off + hlen or i + 2 + out[i + 1] > off + hlen:
                raise Drop("malformed", "bad IPv6 option length")
            olen = out[i + 1]
            if otype & 0x20:         # option data may change en route
                out[i + 2:i + 2 + olen] = bytes(olen)
            i += 2 + olen
        nh = out[off]
        off += hlen
    return out


def check_header(version: int, ip_hdr: bytes):
    """Raise the Drop that sealing under this IP header would raise (broken
    IPv4 option, IPv6 routing or fragment header), so that the datapath can
    refuse the packet before it spends a sequence number or clones a latch."""
    _zero_v4(ip_hdr) if version == 4 else _zero_v6(ip_hdr)


def _icv_input(version: int, ip_hdr: bytes, ah_zeroed: bytes, body: bytes, sa: SaState, seq: int) -> bytes:
    zeroed = _zero_v4(ip_hdr) if version == 4 else _zero_v6(ip_hdr)
    tail = struct.pack("!I", seq >> 32) if sa.spec.esn else b""
    return bytes(zeroed) + ah_zeroed + body + tail


def _header(next_header: int, version: int, sa: SaState, seq: int, iv: bytes) -> bytes:
    words = ah_len(version) // 4 - 2
    return (struct.pack("!BBH", next_header, words, 0) + sa.spi_bytes
            + struct.pack("!I", seq & 0xFFFFFFFF) + iv)


def seal(sa: SaState, version: int, ip_hdr: bytes, next_header: int, body: bytes, seq: int) -> bytes:
    """The AH header for a packet whose final IP header (lengths, protocol 51
    already set) is ip_hdr and whose protected payload is body."""
    iv = seq.to_bytes(8, "big")
    fixed = _header(next_header, version, sa, seq, iv)
    pad = bytes(ah_len(version) - len(fixed) - ICV_LEN)
    icv = sa.gcm.gmac(sa.nonce(iv), _icv_input(version, ip_hdr, fixed + bytes(ICV_LEN) + pad, body, sa, seq))
    return fixed + icv + pad


def header(ah: bytes, version: int) -> tuple[int, int, int]:
    """(next header, SPI, low 32 bits of seq); checks the AH length field."""
    if len(ah) < AH_FIXED:
        raise Drop("malformed", "truncated AH header")
    nh, words, _res, spi, seq = struct.unpack_from("!BBHII", ah)
    if (words + 2) * 4 != ah_len(version) or len(ah) < ah_len(version):
        raise Drop("malformed", f"AH length {(words + 2) * 4} is not the GMAC layout's {ah_len(version)}")
    return nh, spi, seq


def verify(sa: SaState, version: int, ip_hdr: bytes, ah: bytes, body: bytes, seq: int):
    n = ah_len(version)
    fixed = ah[:AH_FIXED + IV_LEN]
    icv = ah[AH_FIXED + IV_LEN:AH_FIXED + IV_LEN + ICV_LEN]
    # only the ICV itself is zeroed: the padding after it is covered as sent,
    # whatever the sender chose (RFC 4302 3.3.3.2.1)
    pad = ah[AH_FIXED + IV_LEN + ICV_LEN:n]
    zeroed = fixed + bytes(ICV_LEN) + pad
    iv = fixed[AH_FIXED:]
    if not sa.gcm.gmac_ok(sa.nonce(iv), _icv_input(version, ip_hdr, zeroed, body, sa, seq), icv):
        raise Drop("icv")
