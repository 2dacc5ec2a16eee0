"""Builds ordinary host frames (Ethernet/IP/TCP|UDP) with correct checksums,
for the demo and the benchmarks. Tests craft their packets with scapy
instead, so that the model's own builders are checked from outside."""

from __future__ import annotations

import ipaddress
import struct

from .packet import IPPROTO_TCP, IPPROTO_UDP, ipv4_header, ipv6_header

MAC_HOST = bytes.fromhex("020000000001")
MAC_GW = bytes.fromhex("020000000002")


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo(version, src, dst, proto, length):
    if version == 4:
        return struct.pack("!IIBBH", src, dst, 0, proto, length)
    return src.to_bytes(16, "big") + dst.to_bytes(16, "big") + struct.pack("!IxxxB", length, proto)


def ip_frame(src: str, dst: str, proto: int, l4: bytes, ident: int = 0) -> bytes:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version == 4:
        ip = ipv4_header(0, 20 + len(l4), ident, 0x4000, 64, proto, int(s), int(d))
        return MAC_GW + MAC_HOST + b"\x08\x00" + ip + l4
    ip = ipv6_header(0, 0, len(l4), proto, 64, int(s), int(d))
    return MAC_GW + MAC_HOST + b"\x86\xdd" + ip + l4


def tcp_frame(src, dst, sport, dport, flags="A", seq=0, ack=0, payload=b"", ident=0) -> bytes:
    bits = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10}
    fl = sum(bits[c] for c in flags)
    hdr = struct.pack("!HHIIHHHH", sport, dport, seq, ack, (5 << 12) | fl, 65535, 0, 0)
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    seg = hdr + payload
    c = _csum(_pseudo(s.version, int(s), int(d), IPPROTO_TCP, len(seg)) + seg)
    seg = seg[:16] + struct.pack("!H", c) + seg[18:]
    return ip_frame(src, dst, IPPROTO_TCP, seg, ident)


def udp_frame(src, dst, sport, dport, payload=b"", ident=0) -> bytes:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    dg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    c = _csum(_pseudo(s.version, int(s), int(d), IPPROTO_UDP, len(dg)) + dg) or 0xFFFF
    dg = dg[:6] + struct.pack("!H", c) + dg[8:]
    return ip_frame(src, dst, IPPROTO_UDP, dg, ident)
