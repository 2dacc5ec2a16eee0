"""Frame parsing and header building for the reference model.

Written by hand with struct on purpose: scapy is the project's outside check,
so the model must not share its parser. Parsing never trusts a length field:
every offset is checked against the bytes present, and anything inconsistent
raises Malformed, which the datapath turns into a counted drop.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ETH_HLEN = 14
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8)

IPPROTO_HOPOPTS = 0
IPPROTO_ICMP = 1
IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_ESP = 50
IPPROTO_AH = 51
IPPROTO_ICMPV6 = 58
IPPROTO_DSTOPTS = 60
IPV6_EXT_HEADERS = (IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS)
PORT_PROTOCOLS = (IPPROTO_TCP, IPPROTO_UDP)

TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10


class Malformed(Exception):
    """A frame whose headers cannot be trusted. The text says which check failed."""

    def __init__(self, what: str, reason: str = "malformed"):
        super().__init__(what)
        self.reason = reason


def ipv4_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass
class Packet:
    """One parsed frame. Offsets index into `frame`."""
    frame: bytes
    l2_len: int                 # Ethernet header incl. VLAN tags, up to the L3 header
    version: int                # 4 | 6
    src: int
    dst: int
    l3_end: int                 # end of the IP packet (frame may carry Ethernet padding)
    base_len: int               # IPv4 header incl. options, or the 40-byte IPv6 header
    hdr_len: int                # up to the upper-layer header (v6: incl. extension headers)
    proto: int                  # upper-layer protocol (after v6 extension headers)
    proto_field: int            # offset of the byte that carries `proto` (v4 proto / last v6 next-header)
    is_fragment: bool           # any fragment (first or later)
    first_fragment: bool        # carries the upper-layer header
    sport: int | None = None    # None: OPAQUE (absent or not a port protocol)
    dport: int | None = None
    tcp_flags: int = 0
    has_routing: bool = False

    @property
    def l3(self) -> int:
        return self.l2_len

    @property
    def payload_off(self) -> int:
        return self.l2_len + self.hdr_len

    def ip_bytes(self) -> bytes:
        return self.frame[self.l2_len:self.l3_end]


def parse_l2(frame: bytes) -> tuple[int, int]:
    """Return (ethertype, L3 offset), walking 802.1Q/802.1ad tags."""
    if len(frame) < ETH_HLEN:
        raise Malformed(f"frame of {len(frame)} bytes is shorter than an Ethernet header")
    off = 12
    (ethertype,) = struct.unpack_from("!H", frame, off)
    while ethertype in VLAN_TPIDS:
        off += 4
        if len(frame) < off + 2:
            raise Malformed("truncated VLAN tag")
        (ethertype,) = struct.unpack_from("!H", frame, off)
    return ethertype, off + 2


def parse_ip(frame: bytes, l3: int) -> Packet:
    """Parse the IP packet at offset l3 of frame (after the L2 header)."""
    avail = len(frame) - l3
    if avail < 1:
        raise Malformed("no IP header")
    version = frame[l3] >> 4
    if version == 4:
        return _parse_ipv4(frame, l3, avail)
    if version == 6:
        return _parse_ipv6(frame, l3, avail)
    raise Malformed(f"IP version {version}")


def _parse_ipv4(frame: bytes, l3: int, avail: int) -> Packet:
    if avail < 20:
        raise Malformed("truncated IPv4 header")
    vihl, _tos, total, _id, frag, _ttl, proto, _csum = struct.unpack_from("!BBHHHBBH", frame, l3)
    ihl = (vihl & 0xF) * 4
    if ihl < 20:
        raise Malformed(f"IPv4 IHL {ihl // 4} < 5")
    if ihl > avail or total < ihl or total > avail:
        raise Malformed(f"IPv4 lengths inconsistent (IHL {ihl}, total {total}, {avail} bytes present)")
    if ipv4_checksum(frame[l3:l3 + ihl]) != 0:
        raise Malformed("IPv4 header checksum")
    if frag & 0x8000:
        raise Malformed("IPv4 reserved flag set")
    offset = frag & 0x1FFF
    more = bool(frag & 0x2000)
    src, dst = struct.unpack_from("!II", frame, l3 + 12)
    pkt = Packet(frame, l3, 4, src, dst, l3 + total, ihl, ihl, proto, l3 + 9,
                 offset != 0 or more, offset == 0)
    _parse_l4(pkt)
    return pkt


def _parse_ipv6(frame: bytes, l3: int, avail: int) -> Packet:
    if avail < 40:
        raise Malformed("truncated IPv6 header")
    (plen, nh) = struct.unpack_from("!HB", frame, l3 + 4)
    if plen == 0:
        raise Malformed("IPv6 jumbograms are not supported", "unsupported")
    if 40 + plen > avail:
        raise Malformed(f"IPv6 payload length {plen} exceeds the {avail - 40} bytes present")
    end = l3 + 40 + plen
    src = int.from_bytes(frame[l3 + 8:l3 + 24], "big")
    dst = int.from_bytes(frame[l3 + 24:l3 + 40], "big")
    off = l3 + 40
    nh_field = l3 + 6
    fragment = False
    first = True
    routing = False
    while nh in IPV6_EXT_HEADERS or nh == IPPROTO_FRAGMENT:
        if off + 8 > end:
            raise Malformed("truncated IPv6 extension header")
        if nh == IPPROTO_FRAGMENT:
            (fo,) = struct.unpack_from("!H", frame, off + 2)
            fragment = True
            first = (fo >> 3) == 0
            hlen = 8
        else:
            hlen = (frame[off + 1] + 1) * 8
            routing |= nh == IPPROTO_ROUTING
        if off + hlen > end:
            raise Malformed("IPv6 extension header runs past the packet")
        nh_field = off
        nh = frame[off]
        off += hlen
        if fragment:
            break    # what follows a fragment header is opaque until reassembly
    pkt = Packet(frame, l3, 6, src, dst, end, 40, off - l3, nh, nh_field, fragment, first,
                 has_routing=routing)
    _parse_l4(pkt)
    return pkt


def _parse_l4(pkt: Packet):
    if not pkt.first_fragment or pkt.proto not in PORT_PROTOCOLS:
        return
    frame, off, end = pkt.frame, pkt.payload_off, pkt.l3_end
    if pkt.proto == IPPROTO_TCP:
        if off + 20 > end:
            if pkt.is_fragment:
                return   # a tiny first fragment: ports stay OPAQUE
            raise Malformed("truncated TCP header")
        sport, dport, _s, _a, doff_flags = struct.unpack_from("!HHIIH", frame, off)
        doff = (doff_flags >> 12) * 4
        if doff < 20 or (off + doff > end and not pkt.is_fragment):
            raise Malformed(f"TCP data offset {doff}")
        pkt.sport, pkt.dport, pkt.tcp_flags = sport, dport, doff_flags & 0x3F
    else:
        if off + 8 > end:
            if pkt.is_fragment:
                return
            raise Malformed("truncated UDP header")
        sport, dport, ulen = struct.unpack_from("!HHH", frame, off)
        if not pkt.is_fragment and ulen != end - off:
            raise Malformed(f"UDP length {ulen} vs {end - off} bytes of payload")
        pkt.sport, pkt.dport = sport, dport


def parse_frame(frame: bytes) -> Packet | None:
    """Parse an Ethernet frame; None for non-IP frames (ARP, LLDP...)."""
    ethertype, l3 = parse_l2(frame)
    if ethertype == ETHERTYPE_IPV4:
        pkt = parse_ip(frame, l3)
        if pkt.version != 4:
            raise Malformed("ethertype IPv4 carries another IP version")
        return pkt
    if ethertype == ETHERTYPE_IPV6:
        pkt = parse_ip(frame, l3)
        if pkt.version != 6:
            raise Malformed("ethertype IPv6 carries another IP version")
        return pkt
    return None


def with_ethertype(l2: bytes, version: int) -> bytes:
    """The L2 header with its (innermost) ethertype set for an IP version."""
    return l2[:-2] + struct.pack("!H", ETHERTYPE_IPV4 if version == 4 else ETHERTYPE_IPV6)


def ipv4_header(tos: int, total: int, ident: int, flags_frag: int, ttl: int, proto: int,
                src: int, dst: int, options: bytes = b"") -> bytes:
    ihl = 5 + len(options) // 4
    hdr = struct.pack("!BBHHHBBHII", 0x40 | ihl, tos, total, ident, flags_frag, ttl, proto, 0,
                      src, dst) + options
    csum = ipv4_checksum(hdr)
    return hdr[:10] + struct.pack("!H", csum) + hdr[12:]


def refresh_ipv4(hdr: bytearray, total: int, proto: int):
    """Rewrite length, protocol and checksum of an IPv4 header in place."""
    struct.pack_into("!H", hdr, 2, total)
    hdr[9] = proto
    struct.pack_into("!H", hdr, 10, 0)
    struct.pack_into("!H", hdr, 10, ipv4_checksum(bytes(hdr)))


def ipv6_header(tclass: int, flow: int, plen: int, nh: int, hlim: int, src: int, dst: int) -> bytes:
    return (struct.pack("!IHBB", (6 << 28) | (tclass << 20) | flow, plen, nh, hlim)
            + src.to_bytes(16, "big") + dst.to_bytes(16, "big"))


# ------------------------------------------------ transport / tunnel framing

def split_transport(pkt: Packet) -> tuple[bytearray, bytes]:
    """The IP header (with IPv6 extension headers) and the upper-layer bytes:
    where transport mode puts ESP/AH in between."""
    start, cut = pkt.l3, pkt.payload_off
    return bytearray(pkt.frame[start:cut]), pkt.frame[cut:pkt.l3_end]


def join_transport(pkt: Packet, hdr: bytearray, proto: int, body: bytes) -> bytes:
    """IP header `hdr` (taken from pkt) now followed by `body` of protocol `proto`."""
    if pkt.version == 4:
        refresh_ipv4(hdr, len(hdr) + len(body), proto)
    else:
        struct.pack_into("!H", hdr, 4, len(hdr) - 40 + len(body))
        hdr[pkt.proto_field - pkt.l3] = proto
    return bytes(hdr) + body


def traffic_class(pkt: Packet) -> int:
    b = pkt.frame
    if pkt.version == 4:
        return b[pkt.l3 + 1]
    return ((b[pkt.l3] & 0x0F) << 4) | (b[pkt.l3 + 1] >> 4)


TUNNEL_TTL = 64


def tunnel_header(src, dst, inner: Packet, proto: int, body_len: int, ident: int) -> bytes:
    """Outer header of a tunnel-mode packet. DSCP/ECN are copied from the inner
    header (RFC 4301 5.1.2.1, RFC 6040 normal mode); an IPv4-in-IPv4 tunnel
    copies DF; the IPv4 ID is the low 16 bits of the sequence number so that
    output is reproducible."""
    tc = traffic_class(inner)
    if src.version == 4:
        df = 0
        if inner.version == 4:
            (frag,) = struct.unpack_from("!H", inner.frame, inner.l3 + 6)
            df = frag & 0x4000
        return ipv4_header(tc, 20 + body_len, ident & 0xFFFF, df, TUNNEL_TTL, proto,
                           int(src), int(dst))
    return ipv6_header(tc, 0, body_len, proto, TUNNEL_TTL, int(src), int(dst))
