"""Random frames for the parser and policy benches: valid ones built with
scapy (an outside implementation of the header formats) and mutated ones
(truncated, lengths and bytes changed, IPv4 checksum sometimes recomputed so
that the length checks are reached)."""

from __future__ import annotations

import random
import struct

from latchnic.sim.packet import Malformed, ipv4_checksum, parse_frame

MACS = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def _addr4(rng):
    return rng.choice(["192.0.2.", "198.51.100.", "203.0.113."]) + str(rng.randrange(1, 255))


def _addr6(rng):
    return f"2001:db8:{rng.randrange(4):x}::{rng.randrange(1, 0xffff):x}"


def valid_frame(rng: random.Random) -> bytes:
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP
    from scapy.layers.inet6 import (IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                                    IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, ICMPv6EchoRequest)
    from scapy.layers.ipsec import AH, ESP
    from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
    from scapy.packet import Raw

    pkt = Ether(**MACS)
    for _ in range(rng.choice([0, 0, 0, 1, 2])):
        pkt = pkt / (Dot1Q(vlan=rng.randrange(4096)) if rng.random() < 0.7 else Dot1AD(vlan=5))
    if rng.random() < 0.05:
        return bytes(pkt / ARP(psrc=_addr4(rng), pdst=_addr4(rng)))
    payload = Raw(bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 7, 20, 64, 200]))))
    kind = rng.choice(["tcp", "tcp", "udp", "udp", "icmp", "esp", "ah", "other"])
    if kind == "tcp":
        l4 = TCP(sport=rng.randrange(65536), dport=rng.randrange(65536),
                 flags=rng.choice(["S", "SA", "A", "PA", "FA", "R", "F"]),
                 options=[("NOP", None)] * rng.choice([0, 4])) / payload
    elif kind == "udp":
        l4 = UDP(sport=rng.randrange(65536), dport=rng.randrange(65536)) / payload
    elif kind == "esp":
        l4 = ESP(spi=rng.getrandbits(32), seq=rng.getrandbits(32)) / payload
    elif kind == "ah":
        l4 = AH(spi=rng.getrandbits(32), seq=rng.getrandbits(32), icv=bytes(16), nh=6) / payload
    else:
        l4 = payload
    if rng.random() < 0.55:
        ip = IP(src=_addr4(rng), dst=_addr4(rng), ttl=rng.randrange(1, 255))
        if rng.random() < 0.15:
            ip.options = [IPOption_NOP()] * rng.choice([4, 8])
        if rng.random() < 0.15:
            ip.flags = "MF" if rng.random() < 0.5 else 0
            ip.frag = rng.choice([0, 0, 1, 100])
        if kind == "icmp":
            l4 = ICMP() / payload
        elif kind == "other":
            ip.proto = rng.choice([47, 132, 0, 41])
        pkt = pkt / ip / l4
    else:
        ip = IPv6(src=_addr6(rng), dst=_addr6(rng))
        chain = ip
        for _ in range(rng.choice([0, 0, 1, 2])):
            chain = chain / rng.choice([IPv6ExtHdrHopByHop(), IPv6ExtHdrDestOpt(),
                                        IPv6ExtHdrRouting(addresses=[_addr6(rng)])])
        if rng.random() < 0.15:
            chain = chain / IPv6ExtHdrFragment(offset=rng.choice([0, 0, 3]), m=rng.choice([0, 1]),
                                               id=rng.getrandbits(32))
        if kind == "icmp":
            l4 = ICMPv6EchoRequest() / payload
        elif kind == "other":
            l4 = payload
        pkt = chain / l4
        if kind == "other":
            # scapy leaves nh=59 (no next header) on a raw payload
            pass
        pkt = Ether(**MACS) / pkt if not isinstance(pkt, Ether) else pkt
    raw = bytes(pkt)
    if rng.random() < 0.2:
        raw += bytes(rng.randrange(1, 20))           # Ethernet padding after the IP packet
    return raw


def mutate(rng: random.Random, frame: bytes) -> bytes:
    b = bytearray(frame)
    l3 = 14
    while l3 + 2 <= len(b) and b[l3 - 2:l3] in (b"\x81\x00", b"\x88\xa8"):
        l3 += 4
    how = rng.choice(["truncate", "byte", "byte", "ihl", "total", "plen", "l4len", "jumbo", "version"])
    if how == "truncate" and len(b) > 1:
        return bytes(b[:rng.randrange(len(b))])
    if how == "byte":
        i = rng.randrange(min(len(b), 100))
        b[i] = rng.getrandbits(8)
    elif l3 + 20 <= len(b):
        v = b[l3] >> 4
        if how == "ihl" and v == 4:
            b[l3] = 0x40 | rng.choice([0, 3, 4, 6, 15])
        elif how == "total" and v == 4:
            struct.pack_into("!H", b, l3 + 2, rng.choice([0, 19, 20, len(b) - l3 + 1, 65535,
                                                            struct.unpack_from("!H", b, l3 + 2)[0] - 1]))
        elif how == "plen" and v == 6 and l3 + 40 <= len(b):
            struct.pack_into("!H", b, l3 + 4, rng.choice([1, 7, 8, len(b) - l3 - 39, 65535]))
        elif how == "jumbo" and v == 6 and l3 + 40 <= len(b):
            struct.pack_into("!H", b, l3 + 4, 0)
        elif how == "version":
            b[l3] = (b[l3] & 0x0F) | (rng.choice([0, 4, 5, 6, 15]) << 4)
        elif how == "l4len":
            i = l3 + (20 if v == 4 else 40) + rng.choice([4, 5, 12])
            if i < len(b):
                b[i] = rng.getrandbits(8)
    if rng.random() < 0.7 and l3 + 20 <= len(b) and b[l3] >> 4 == 4:
        ihl = (b[l3] & 15) * 4
        if 20 <= ihl and l3 + ihl <= len(b):
            struct.pack_into("!H", b, l3 + 10, 0)
            struct.pack_into("!H", b, l3 + 10, ipv4_checksum(bytes(b[l3:l3 + ihl])))
    return bytes(b)


def frames(seed: int, count: int, mutated: float = 0.4) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        f = valid_frame(rng)
        if rng.random() < mutated:
            f = mutate(rng, f)
        if not f:
            f = b"\x00"
        out.append(f)
    return out


def expected_parse(frame: bytes) -> dict:
    """What the hardware parser must report, from the reference model."""
    try:
        pkt = parse_frame(frame)
    except Malformed as e:
        return {"status": 3 if e.reason == "unsupported" else 2}
    if pkt is None:
        return {"status": 1}
    d = {"status": 0, "v6": int(pkt.version == 6), "src": pkt.src, "dst": pkt.dst,
         "proto": pkt.proto, "ports_valid": int(pkt.sport is not None),
         "is_fragment": int(pkt.is_fragment), "first_fragment": int(pkt.first_fragment),
         "has_routing": int(pkt.has_routing), "l2_len": pkt.l2_len, "hdr_len": pkt.hdr_len,
         "l3_end": pkt.l3_end, "frame_len": len(frame)}
    if pkt.sport is not None:
        d.update(sport=pkt.sport, dport=pkt.dport, tcp_flags=pkt.tcp_flags)
    off = pkt.payload_off
    if pkt.proto == 50 and not pkt.is_fragment and off + 8 <= pkt.l3_end:
        spi, seq = struct.unpack_from("!II", frame, off)
        d.update(spi_valid=1, spi=spi, seq=seq)
    elif pkt.proto == 51 and not pkt.is_fragment and off + 12 <= pkt.l3_end:
        nh, ln, _r, spi, seq = struct.unpack_from("!BBHII", frame, off)
        d.update(spi_valid=1, spi=spi, seq=seq, ah_nh=nh, ah_len=ln)
    else:
        d["spi_valid"] = 0
    return d
