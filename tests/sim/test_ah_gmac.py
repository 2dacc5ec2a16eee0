"""AH with AES-GMAC (RFC 4302 + RFC 4543) checked against an independent
computation: scapy's AH layer and its `zero_mutable_fields` (RFC 4302 3.3.3.1)
build the authenticated bytes, cryptography's AESGCM computes the GMAC. scapy
has no AH-GMAC algorithm of its own, so this is the outside check.

The wire layout the model documents (sim/ah.py): NH | len | reserved | SPI |
seq | IV(8) | ICV(16) [| 4 pad bytes on IPv6 for 8-byte alignment]; the IV is
the 64-bit sequence number; nonce = salt || IV; the GMAC covers the IP header
with mutable fields zeroed, the AH header with the ICV zeroed but the IV in
place, the padding as transmitted (RFC 4302 3.3.3.2.1: "These padding bytes
are included in the ICV calculation ... and transmitted at the end of the ICV
field to enable the receiver to perform the ICV calculation"; their content is
chosen by the sender), the payload, and with ESN the high 32 bits of the
sequence number appended at the end (RFC 4302 2.5.1 / Figure in section 2).

scapy's AH layer sees IV || ICV || pad as one `icv` field (its length comes
from the payload-length byte); zero_mutable_fields zeroes that whole field, so
the independent computation puts the IV and the padding back afterwards.
"""

from __future__ import annotations

import itertools
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from scapy.all import Raw, raw
from scapy.layers.inet import IP, TCP, UDP, IPOption_Router_Alert, IPOption_Timestamp
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import AH, zero_mutable_fields
from scapy.layers.l2 import Ether

from latchnic.config import parse_config
from latchnic.sim.device import ModelDevice

MAC_HOST, MAC_GW = "02:00:00:00:00:01", "02:00:00:00:00:02"
LOCAL = {4: "192.0.2.1", 6: "2001:db8:1::1"}
REMOTE = {4: "198.51.100.7", 6: "2001:db8:2::7"}
REMOTE_NET = {4: "198.51.100.0/24", 6: "2001:db8:2::/48"}
LOCAL_GW = {4: "203.0.113.1", 6: "2001:db8:ffff::1"}
REMOTE_GW = {4: "203.0.113.2", 6: "2001:db8:ffff::2"}
SPI_OUT, SPI_IN = 0x00003001, 0x00004001
ESN_START, PLAIN_START = 0xFFFFFFFB, 0x00000100
PAYLOADS = [("udp", 0), ("tcp", 0), ("udp", 1), ("tcp", 3), ("udp", 6), ("tcp", 37), ("udp", 500)]

ALGS = [("gmac-128", 16), ("gmac-256", 32)]
LAYOUTS = [("transport", 4, 4), ("transport", 6, 6),
           ("tunnel", 4, 4), ("tunnel", 4, 6), ("tunnel", 6, 4), ("tunnel", 6, 6)]


def _id(alg, layout, esn):
    mode, iv, ov = layout
    lay = f"transport-v{iv}" if mode == "transport" else f"tunnel-v{iv}in{ov}"
    return f"{alg[0]}-{lay}-{'esn' if esn else 'noesn'}"


COMBOS = [pytest.param(a, l, e, id=_id(a, l, e))
          for a, l, e in itertools.product(ALGS, LAYOUTS, (False, True))]


def keymat(nbytes: int, tag: int) -> bytes:
    return bytes((tag * 53 + i * 29 + nbytes) & 0xFF for i in range(nbytes + 4))


# ------------------------------------------------- the independent AH-GMAC

def ah_len(version: int) -> int:
    return 12 + 8 + 16 + (4 if version == 6 else 0)


def independent_icv(pkt, key: bytes, salt: bytes, esn_high: int | None) -> bytes:
    """GMAC over the RFC 4302 ICV input of a dissected IP/IPv6 + AH packet."""
    field = bytes(pkt[AH].icv)
    assert len(field) == ah_len(pkt.version) - 12
    iv, pad = field[:8], field[24:]
    z = zero_mutable_fields(pkt.copy(), sending=False)
    z[AH].icv = iv + bytes(16) + pad
    aad = raw(z) + (struct.pack("!I", esn_high) if esn_high is not None else b"")
    return AESGCM(key).encrypt(salt + iv, b"", aad)


def build_ah(outer, nh: int, body: bytes, spi: int, seq: int, key: bytes, salt: bytes,
             esn: bool, iv: bytes, pad: bytes | None = None):
    """Independently built AH-GMAC packet: outer is an IP/IPv6 header (scapy
    layer, fields as they will be sent), body the protected payload bytes."""
    v = outer.version
    if pad is None:
        pad = bytes(4) if v == 6 else b""
    n = ah_len(v)
    pkt = outer / AH(nh=nh, payloadlen=n // 4 - 2, reserved=0, spi=spi, seq=seq & 0xFFFFFFFF,
                     icv=iv + bytes(16) + pad) / Raw(body)
    pkt = outer.__class__(raw(pkt))          # lengths, protocol, checksum filled in
    tag = independent_icv(pkt, key, salt, seq >> 32 if esn else None)
    pkt[AH].icv = iv + tag + pad
    return pkt.__class__(raw(pkt))


def test_independent_computation_is_sensitive():
    """The outside check itself: flipping the IV or a payload byte changes the
    GMAC, changing TTL does not."""
    key, salt = keymat(16, 9)[:16], keymat(16, 9)[16:]
    ip = IP(src=REMOTE[4], dst=LOCAL[4], ttl=9)
    p = build_ah(ip, 17, raw(UDP(sport=1, dport=2) / b"abc"), 0x999, 5, key, salt, False, bytes(8))
    good = independent_icv(p, key, salt, None)
    assert bytes(p[AH].icv)[8:24] == good
    q = p.copy()
    q[AH].icv = b"\x01" + bytes(p[AH].icv)[1:]
    assert independent_icv(q, key, salt, None) != good
    q = p.copy()
    q.ttl = 200
    assert independent_icv(q, key, salt, None) == good
    q = p.copy()
    load = bytes(q[Raw].load)
    q[Raw].load = bytes([load[0] ^ 1]) + load[1:]
    assert independent_icv(q, key, salt, None) != good
    assert independent_icv(p, key, salt, 0) != good


# --------------------------------------------------------------- the device

class Setup:
    def __init__(self, alg, layout, esn, replay_window=64):
        self.alg, self.klen = alg
        self.mode, self.iv, self.ov = layout
        self.esn = esn
        self.start = ESN_START if esn else PLAIN_START
        out_km, in_km = keymat(self.klen, 1), keymat(self.klen, 2)
        self.key_out, self.salt_out = out_km[:self.klen], out_km[self.klen:]
        self.key_in, self.salt_in = in_km[:self.klen], in_km[self.klen:]
        iv, ov = self.iv, self.ov
        if self.mode == "tunnel":
            self.out_ends, self.in_ends = (LOCAL_GW[ov], REMOTE_GW[ov]), (REMOTE_GW[ov], LOCAL_GW[ov])
        else:
            self.out_ends, self.in_ends = (LOCAL[iv], REMOTE[iv]), (REMOTE[iv], LOCAL[iv])
        plen = 32 if iv == 4 else 128
        toml = f"""
[device]
replay_window = {replay_window}

[[peer]]
name = "peer@example.org"
claims = ["{REMOTE_NET[iv]}"]
"""
        for name, d, spi, km, (src, dst) in (("ah-out", "out", SPI_OUT, out_km, self.out_ends),
                                            ("ah-in", "in", SPI_IN, in_km, self.in_ends)):
            toml += f"""
[[sa]]
name = "{name}"
dir = "{d}"
spi = {spi}
proto = "ah"
mode = "{self.mode}"
alg = "{self.alg}"
key = "{km.hex()}"
icv = 16
esn = {'true' if esn else 'false'}
seq = {self.start}
peer = "peer@example.org"
src = "{src}"
dst = "{dst}"
"""
        toml += f"""
[[spd]]
dir = "out"
local = "{LOCAL[iv]}/{plen}"
remote = "{REMOTE[iv]}/{plen}"
action = "protect"
sa = "ah-out"

[[spd]]
dir = "in"
local = "{LOCAL[iv]}/{plen}"
remote = "{REMOTE[iv]}/{plen}"
action = "protect"
"""
        self.dev = ModelDevice.from_config(parse_config(toml, "ah-gmac.toml"))
        self.t = 0

    def process(self, frame: bytes, direction: str):
        self.t += 1000
        return self.dev.process(frame, direction, self.t)

    # an independently protected inbound packet
    def wire(self, inner, seq: int, *, outer_fields=None, pad=None, iv=None):
        if iv is None:   # any IV will do for the receiver; deliberately not the seq
            iv = ((seq * 0x9E3779B97F4A7C15) & (2**64 - 1)).to_bytes(8, "big")
        f = dict(outer_fields or {})
        if self.mode == "tunnel":
            src, dst = self.in_ends
            outer = IP(src=src, dst=dst, **f) if self.ov == 4 else IPv6(src=src, dst=dst, **f)
            nh, body = (4 if self.iv == 4 else 41), raw(inner)
        else:
            hdr = inner.copy()
            hdr.remove_payload()
            for k, val in f.items():
                setattr(hdr, k, val)
            if self.iv == 4:
                del hdr.len, hdr.chksum, hdr.proto
            else:
                del hdr.plen, hdr.nh
            outer = hdr
            nh, body = (inner.proto if self.iv == 4 else inner.nh), raw(inner.payload)
        return build_ah(outer, nh, body, SPI_IN, seq, self.key_in, self.salt_in, self.esn, iv, pad)


def inner_packet(version, src, dst, l4, n, k, **ipf):
    data = bytes((k * 5 + i * 3) & 0xFF for i in range(n))
    ip = IP(src=src, dst=dst, ttl=60, tos=0x28, id=0x2000 + k, **ipf) if version == 4 else \
        IPv6(src=src, dst=dst, hlim=60, tc=0x28, fl=0x12345, **ipf)
    l4hdr = TCP(sport=41000 + k, dport=22, flags="PA", seq=k) if l4 == "tcp" else \
        UDP(sport=51000 + k, dport=123)
    return (IP if version == 4 else IPv6)(raw(ip / l4hdr / data if n else ip / l4hdr))


def ether(pkt, src=MAC_GW, dst=MAC_HOST, version=None) -> bytes:
    """An Ethernet frame around a scapy packet, or around raw IP bytes whose
    ethertype is that of IP version `version`."""
    if version is not None:
        return raw(Ether(src=src, dst=dst, type=0x0800 if version == 4 else 0x86DD) / Raw(bytes(pkt)))
    return raw(Ether(src=src, dst=dst) / pkt)


# ------------------------------------------------ model -> independent check

def check_model_packet(s: Setup, inner, frame: bytes, seq: int):
    eth = Ether(frame)
    assert raw(eth) == frame
    out = eth.payload
    assert out.version == s.ov and (out.src, out.dst) == s.out_ends
    assert (out.proto if s.ov == 4 else out.nh) == 51
    ah = out[AH]
    n = ah_len(s.ov)
    field = bytes(ah.icv)
    assert ah.payloadlen == n // 4 - 2 and len(field) == n - 12
    assert ah.reserved == 0 and ah.spi == SPI_OUT and ah.seq == seq & 0xFFFFFFFF
    assert field[:8] == seq.to_bytes(8, "big")                  # IV = sequence number
    assert field[24:] == (bytes(4) if s.ov == 6 else b"")       # zero pad, IPv6 only
    if s.ov == 6:
        assert n % 8 == 0
    ah_bytes = raw(ah)
    if s.mode == "tunnel":
        assert ah.nh == (4 if s.iv == 4 else 41)
        assert ah_bytes[n:] == raw(inner)
    else:
        assert ah.nh == (inner.proto if s.iv == 4 else inner.nh)
        assert ah_bytes[n:] == raw(inner.payload)
        # the transport header is the original one, apart from length/protocol
        if s.iv == 4:
            assert (out.ttl, out.tos, out.id, out.flags, out.options) == \
                (inner.ttl, inner.tos, inner.id, inner.flags, inner.options)
            assert out.len == inner.len + n
        else:
            assert (out.hlim, out.tc, out.fl) == (inner.hlim, inner.tc, inner.fl)
            assert out.plen == inner.plen + n
    high = seq >> 32 if s.esn else None
    icv = field[8:24]
    assert independent_icv(out, s.key_out, s.salt_out, high) == icv
    if s.esn:   # the high half is authenticated although not sent
        assert independent_icv(out, s.key_out, s.salt_out, high ^ 1) != icv
    # a router may change the mutable fields; the ICV still verifies
    mod = out.copy()
    if s.ov == 4:
        mod.ttl, mod.tos, mod.flags = 1, 0xB8, "DF"
    else:
        mod.hlim, mod.tc, mod.fl = 1, 0xB8, 0xABCDE
    assert independent_icv(mod, s.key_out, s.salt_out, high) == icv
    return out


@pytest.mark.parametrize("alg,layout,esn", COMBOS)
def test_model_ah_verifies_independently(alg, layout, esn):
    s = Setup(alg, layout, esn)
    seq = s.start
    for k, (l4, n) in enumerate(PAYLOADS):
        seq += 1
        inner = inner_packet(s.iv, LOCAL[s.iv], REMOTE[s.iv], l4, n, k)
        v = s.process(ether(inner, MAC_HOST, MAC_GW), "out")
        assert v.action == "forward" and v.port == "wire", v
        check_model_packet(s, inner, v.frame, seq)
    if esn:
        assert seq > 0xFFFFFFFF


def test_model_ah_ipv4_options_verify_independently():
    """IPv4 transport with an immutable (Router Alert) and a mutable
    (Timestamp) option: the mutable one is zeroed whole for the ICV."""
    s = Setup(ALGS[0], LAYOUTS[0], False)
    opts = [IPOption_Router_Alert(), IPOption_Timestamp(flg=0, timestamp=[12345])]
    inner = inner_packet(4, LOCAL[4], REMOTE[4], "tcp", 11, 3, options=opts)
    assert inner.ihl > 5
    v = s.process(ether(inner, MAC_HOST, MAC_GW), "out")
    assert v.action == "forward", v
    out = check_model_packet(s, inner, v.frame, s.start + 1)
    icv = bytes(out[AH].icv)[8:24]
    hdr = bytearray(raw(out))
    ts = raw(out)[20:out.ihl * 4].index(bytes([68])) + 20       # timestamp option type
    assert hdr[ts + 1] == 8                                      # type, len, ptr, flags, 1 stamp
    hdr[ts + 5] ^= 0xFF                                          # its timestamp data: mutable
    assert independent_icv(IP(bytes(hdr)), s.key_out, s.salt_out, None) == icv
    hdr = bytearray(raw(out))
    hdr[20 + 2] ^= 0x01                                          # router alert value: immutable
    assert independent_icv(IP(bytes(hdr)), s.key_out, s.salt_out, None) != icv


# ------------------------------------------------ independent -> model

def deliver_ok(s: Setup, inner, wire, *, exact=True):
    v = s.process(ether(wire), "in")
    assert v.action == "forward" and v.port == "host", v
    assert v.sa == "ah-in"
    if exact:
        assert v.frame[14:] == raw(inner)
    else:   # mutable fields of a transport header were changed in transit
        got = (IP if s.iv == 4 else IPv6)(v.frame[14:])
        assert (got.src, got.dst) == (inner.src, inner.dst)
        assert raw(got.payload) == raw(inner.payload)
    return v


@pytest.mark.parametrize("alg,layout,esn", COMBOS)
def test_independent_ah_accepted_by_model(alg, layout, esn):
    s = Setup(alg, layout, esn)
    seq = s.start
    for k, (l4, n) in enumerate(PAYLOADS):
        seq += 1
        inner = inner_packet(s.iv, REMOTE[s.iv], LOCAL[s.iv], l4, n, k)
        deliver_ok(s, inner, s.wire(inner, seq))
    if esn:
        assert seq > 0xFFFFFFFF
    assert s.dev.sad.by_name["ah-in"].window.top == seq
    # replay of the last one
    v = s.process(ether(s.wire(inner, seq)), "in")
    assert (v.action, v.reason) == ("drop", "replay")
    if esn:
        # wrong high half of the ESN: the ICV does not verify
        seq += 1
        bad = s.wire(inner, seq + (1 << 32))
        bad[AH].seq = seq & 0xFFFFFFFF
        v = s.process(ether(bad), "in")
        assert (v.action, v.reason) == ("drop", "icv")


def _csum(hdr: bytes) -> int:
    total = sum(struct.unpack(f"!{len(hdr) // 2}H", hdr))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _fix_v4_checksum(pkt: bytearray, ihl: int):
    pkt[10:12] = b"\0\0"
    pkt[10:12] = struct.pack("!H", _csum(bytes(pkt[:ihl])))


@pytest.mark.parametrize("alg,layout,esn", COMBOS)
def test_every_bit_flip_is_dropped(alg, layout, esn):
    """Every single-bit change of every immutable bit of the packet (outer
    header, AH header, IV, ICV, padding, payload) is dropped, as `icv` wherever
    only the ICV can tell; a forger fixes the IPv4 header checksum. Then the
    genuine packet is still accepted: no forgery moved the replay window."""
    s = Setup(alg, layout, esn)
    seq = s.start + 1
    inner = inner_packet(s.iv, REMOTE[s.iv], LOCAL[s.iv], "tcp", 9, 1)
    good = raw(s.wire(inner, seq))
    ov = s.ov
    hl = 20 if ov == 4 else 40
    n = ah_len(ov)
    if ov == 4:
        mutable = {1, 6, 7, 8, 10, 11}              # TOS, flags+offset, TTL, checksum
        icv_only = {4, 5}                           # identification
    else:
        mutable = {1, 2, 3, 7}                      # TC, flow label, hop limit
        icv_only = set()
    # AH: next header and reserved, IV, ICV, padding; then the whole payload
    icv_only |= {hl, hl + 2, hl + 3} | set(range(hl + 12, len(good)))
    ah_seq = set(range(hl + 8, hl + 12))
    counts = {}
    for off in range(len(good)):
        for bit in range(8):
            if off in mutable or (ov == 6 and off == 0 and bit < 4):
                continue                             # IPv6 byte 0 low nibble: TC
            pkt = bytearray(good)
            pkt[off] ^= 1 << bit
            if ov == 4 and off < hl:
                _fix_v4_checksum(pkt, hl)
            v = s.process(ether(pkt, version=ov), "in")
            where = f"byte {off} bit {bit}"
            assert v.action == "drop", f"{where}: accepted a modified packet"
            if off in icv_only:
                assert v.reason == "icv", f"{where}: {v.reason}"
            elif off in ah_seq:
                assert v.reason in ("icv", "replay"), f"{where}: {v.reason}"
            counts[v.reason] = counts.get(v.reason, 0) + 1
    assert counts["icv"] > 8 * (len(good) - hl - 12)
    deliver_ok(s, inner, (IP if ov == 4 else IPv6)(good))
    assert s.dev.sad.by_name["ah-in"].counters.packets == 1


@pytest.mark.parametrize("alg,layout,esn", COMBOS)
def test_mutable_fields_may_change(alg, layout, esn):
    """TTL/hop limit, TOS/traffic class, DF and the flow label are zeroed for
    the ICV (RFC 4302 3.3.3.1): changing them in transit still verifies."""
    s = Setup(alg, layout, esn)
    seq = s.start
    if s.ov == 4:
        changes = [{"ttl": 1}, {"ttl": 255}, {"tos": 0xFC}, {"tos": 0x03}, {"flags": "DF"},
                   {"ttl": 2, "tos": 0xB8, "flags": "DF"}]
    else:
        changes = [{"hlim": 1}, {"hlim": 255}, {"tc": 0xFC}, {"tc": 0x03}, {"fl": 0xFFFFF},
                   {"hlim": 2, "tc": 0xB8, "fl": 0x1}]
    for k, ch in enumerate(changes):
        seq += 1
        inner = inner_packet(s.iv, REMOTE[s.iv], LOCAL[s.iv], "udp", 7 + k, k)
        wire = s.wire(inner, seq)
        for name, val in ch.items():
            setattr(wire, name, val)
        if s.ov == 4:
            del wire.chksum
        wire = wire.__class__(raw(wire))
        deliver_ok(s, inner, wire, exact=s.mode == "tunnel")
        # and an immutable change of the same packet is caught
        seq += 1
        wire = s.wire(inner, seq)
        if s.ov == 4:
            wire.id ^= 0x0100
            del wire.chksum
        else:
            wire.src = "2001:db8:ffff::3" if s.mode == "tunnel" else "2001:db8:2::8"
        v = s.process(ether(wire.__class__(raw(wire))), "in")
        assert v.action == "drop" and v.reason in ("icv", "no_sa"), v


@pytest.mark.parametrize("layout", [l for l in LAYOUTS if l[2] == 6],
                         ids=lambda l: f"{l[0]}-v{l[1]}in{l[2]}")
def test_ipv6_padding_is_authenticated_as_sent(layout):
    """RFC 4302 3.3.3.2.1: the sender chooses the padding bytes, they are
    included in the ICV and sent so that the receiver can compute it. A sender
    that pads with non-zero bytes is accepted, and changing them is caught."""
    s = Setup(ALGS[0], layout, False)
    inner = inner_packet(s.iv, REMOTE[s.iv], LOCAL[s.iv], "tcp", 5, 7)
    wire = s.wire(inner, s.start + 1, pad=b"\xa5\x5a\xff\x01")
    deliver_ok(s, inner, wire)
    wire = s.wire(inner, s.start + 2, pad=b"\xa5\x5a\xff\x01")
    field = bytes(wire[AH].icv)
    wire[AH].icv = field[:24] + b"\xa5\x5a\xff\x00"
    v = s.process(ether(wire), "in")
    assert (v.action, v.reason) == ("drop", "icv")
