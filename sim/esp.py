"""ESP (RFC 4303) with AES-GCM (RFC 4106) and ESP-NULL-GMAC (RFC 4543).

Wire format: SPI(4) | seq low(4) | IV(8) | payload+padding+padlen+nh | ICV.
The explicit IV is the 64-bit sequence number: unique per key, as RFC 4106
requires, and deterministic so that every engine produces the same bytes.
"""

from __future__ import annotations

import struct

from .drops import Drop
from .sad import SaState

ESP_HDR = 8
IV_LEN = 8


def trailer(data_len: int, next_header: int) -> bytes:
    """Padding 1, 2, 3... so that pad length and next header end on a 4-byte
    boundary (RFC 4303 2.4; GCM itself needs no block alignment)."""
    pad = (-(data_len + 2)) % 4
    return bytes(range(1, pad + 1)) + bytes((pad, next_header))


def seal(sa: SaState, data: bytes, next_header: int, seq: int) -> bytes:
    iv = seq.to_bytes(8, "big")
    head = sa.spi_bytes + struct.pack("!I", seq & 0xFFFFFFFF)
    clear = data + trailer(len(data), next_header)
    nonce = sa.nonce(iv)
    if sa.spec.encrypts:
        return head + iv + sa.gcm.seal(nonce, clear, sa.seq_aad(seq), sa.spec.icv)
    # ESP-NULL-GMAC: everything is authenticated, nothing encrypted (RFC 4543 3.3)
    return head + iv + clear + sa.gcm.gmac(nonce, sa.seq_aad(seq) + iv + clear)


def header(esp: bytes) -> tuple[int, int]:
    """(SPI, low 32 bits of the sequence number); needs the 8 header bytes."""
    if len(esp) < ESP_HDR:
        raise Drop("malformed", "truncated ESP header")
    return struct.unpack_from("!II", esp)


def open_(sa: SaState, esp: bytes, seq: int) -> bytes:
    """Verify (and decrypt) an ESP packet; return payload+trailer in clear."""
    icv = sa.spec.icv
    if len(esp) < ESP_HDR + IV_LEN + 2 + icv:
        raise Drop("malformed", f"ESP packet of {len(esp)} bytes is too short for its SA")
    iv = esp[ESP_HDR:ESP_HDR + IV_LEN]
    body = esp[ESP_HDR + IV_LEN:len(esp) - icv]
    tag = esp[len(esp) - icv:]
    nonce = sa.nonce(iv)
    if sa.spec.encrypts:
        clear = sa.gcm.open(nonce, body, tag, sa.seq_aad(seq))
        if clear is None:
            raise Drop("icv")
        return clear
    if not sa.gcm.gmac_ok(nonce, sa.seq_aad(seq) + iv + body, tag):
        raise Drop("icv")
    return body


def strip_trailer(clear: bytes) -> tuple[bytes, int]:
    """(payload, next header); the padding must be 1, 2, 3... (RFC 4303 2.4)."""
    pad, next_header = clear[-2], clear[-1]
    if pad + 2 > len(clear):
        raise Drop("bad_padding", f"pad length {pad} exceeds the payload")
    end = len(clear) - 2 - pad
    if clear[end:end + pad] != bytes(range(1, pad + 1)):
        raise Drop("bad_padding", "pad bytes are not 1, 2, 3...")
    return clear[:end], next_header
