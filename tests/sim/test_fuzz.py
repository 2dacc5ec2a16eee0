"""Property tests of the reference model's datapath over thousands of
generated frames (hypothesis).

Every frame, whatever its bytes, in either direction:
  - `process` returns (never raises);
  - the verdict is a forward to the right port with a frame that parses, or a
    drop whose reason is in the fixed vocabulary (latchnic.sim.drops.REASONS);
  - a drop increments exactly that reason's counter by one, nothing else;
    a forward changes no drop counter.
Safety: under a configuration whose SPD says PROTECT for a traffic class, no
forwarded outbound frame of that class is ever in clear text: its outer IP
protocol is ESP or AH and it goes to that class's peer.

Inputs: (a) arbitrary bytes, bare or behind a plausible Ethernet/IP start;
(b) sequences of mutated valid frames (bit flips, truncations, extensions,
field overwrites) of outbound clear traffic and inbound ESP/AH/clear traffic
from a realistic configuration, processed on one device so that latches and
replay windows are live; (c) correctly authenticated ESP whose plaintext is
arbitrary (the inner parser sees hostile but authentic bytes); (d) structured
outbound traffic inside and outside the protected classes.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw, raw

from latchnic.config import parse_config
from latchnic.sim.device import ModelDevice
from latchnic.sim.drops import REASONS
from latchnic.sim.packet import parse_frame

LOCAL4, ALICE4, GW4, BOB4 = "192.0.2.1", "203.0.113.5", "198.51.100.1", "203.0.113.9"
LOCAL6, ALICE6 = "2001:db8::1", "2001:db8:a::5"
TUN4, TUN6 = "10.9.0.7", "2001:db8:c::7"
DAVE4, DAVE6, DAVE_GW, LOCAL_GW6 = "10.20.0.5", "2001:db8:d::5", "2001:db8:ffff::2", "2001:db8:ffff::1"
HOST_MAC, WIRE_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"

# name: (dir, spi, proto, mode, alg, key||salt, icv, esn, peer, src, dst)
SAS = {
    "alice-in": ("in", 0x1001, "esp", "transport", "aes-gcm-128",
                 "000102030405060708090a0b0c0d0e0fcafebabe", 16, False, "alice", ALICE4, LOCAL4),
    "alice-out": ("out", 0x2001, "esp", "transport", "aes-gcm-128",
                  "101112131415161718191a1b1c1d1e1fdeadbeef", 16, False, "alice", LOCAL4, ALICE4),
    "alice-ah-in": ("in", 0x1101, "ah", "transport", "gmac-128",
                    "202122232425262728292a2b2c2d2e2f01234567", 16, False, "alice", ALICE4, LOCAL4),
    "alice-ah-out": ("out", 0x2101, "ah", "transport", "gmac-128",
                     "303132333435363738393a3b3c3d3e3f89abcdef", 16, False, "alice", LOCAL4, ALICE4),
    "alice-null-in": ("in", 0x1301, "esp", "transport", "gmac-128",
                      "404142434445464748494a4b4c4d4e4f0badf00d", 16, False, "alice", ALICE4, LOCAL4),
    "alice-null-out": ("out", 0x2301, "esp", "transport", "gmac-256",
                       "505152535455565758595a5b5c5d5e5f505152535455565758595a5b5c5d5e5f0badf00d",
                       16, False, "alice", LOCAL4, ALICE4),
    "alice6-in": ("in", 0x1601, "esp", "transport", "aes-gcm-256",
                  "606162636465666768696a6b6c6d6e6f606162636465666768696a6b6c6d6e6ffeedface",
                  12, True, "alice", ALICE6, LOCAL6),
    "alice6-out": ("out", 0x2601, "esp", "transport", "aes-gcm-256",
                   "707172737475767778797a7b7c7d7e7f707172737475767778797a7b7c7d7e7fc0ffee00",
                   12, True, "alice", LOCAL6, ALICE6),
    "alice6-ah-in": ("in", 0x1701, "ah", "transport", "gmac-128",
                     "808182838485868788898a8b8c8d8e8f11223344", 16, False, "alice", ALICE6, LOCAL6),
    "alice6-ah-out": ("out", 0x2701, "ah", "transport", "gmac-128",
                      "909192939495969798999a9b9c9d9e9f55667788", 16, False, "alice", LOCAL6, ALICE6),
    "carol-tun-in": ("in", 0x1201, "esp", "tunnel", "aes-gcm-128",
                     "a0a1a2a3a4a5a6a7a8a9aaabacadaeaffacefeed", 8, False, "carol", GW4, LOCAL4),
    "carol-tun-out": ("out", 0x2201, "esp", "tunnel", "aes-gcm-128",
                      "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfbeadbead", 8, False, "carol", LOCAL4, GW4),
    "carol-ah-tun-in": ("in", 0x1202, "ah", "tunnel", "gmac-256",
                        "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf99887766",
                        16, False, "carol", GW4, LOCAL4),
    # AH tunnel, IPv6 outer, ESN: both ends start just below 2^32
    "dave-ah-tun-in": ("in", 0x1801, "ah", "tunnel", "gmac-128",
                       "e0e1e2e3e4e5e6e7e8e9eaebecedeeef13572468", 16, True, "dave", DAVE_GW, LOCAL_GW6),
    "dave-ah-tun-out": ("out", 0x2801, "ah", "tunnel", "gmac-128",
                        "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff24681357", 16, True, "dave", LOCAL_GW6, DAVE_GW),
    "bob-in": ("in", 0x1002, "esp", "transport", "aes-gcm-128",
               "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf01234567", 16, False, "bob", "any", LOCAL4),
}

PEERS = """
[[peer]]
name = "alice"
claims = ["203.0.113.0/24", "2001:db8:a::/48"]

[[peer]]
name = "bob"
claims = ["203.0.113.0/24"]

[[peer]]
name = "carol"
claims = ["10.9.0.0/16", "2001:db8:c::/48"]

[[peer]]
name = "dave"
claims = ["10.20.0.0/16", "2001:db8:d::/48"]
"""
SEQ = {"dave-ah-tun-in": 2 ** 32 - 2, "dave-ah-tun-out": 2 ** 32 - 2}


def sa_block(name: str, direction: str | None = None) -> str:
    d, spi, proto, mode, alg, key, icv, esn, peer, src, dst = SAS[name]
    return (f'[[sa]]\nname = "{name}"\ndir = "{direction or d}"\nspi = {spi:#x}\n'
            f'proto = "{proto}"\nmode = "{mode}"\nalg = "{alg}"\nkey = "{key}"\nicv = {icv}\n'
            f'esn = {str(esn).lower()}\npeer = "{peer}"\nsrc = "{src}"\ndst = "{dst}"\n'
            f'seq = {SEQ.get(name, 0)}\n')


def rule(direction, action, local="any", remote="any", proto="any", lport="any", rport="any",
         sa=None) -> str:
    out = (f'[[spd]]\ndir = "{direction}"\naction = "{action}"\nlocal = "{local}"\n'
           f'remote = "{remote}"\nproto = "{proto}"\nlocal_port = "{lport}"\nremote_port = "{rport}"\n')
    return out + (f'sa = "{sa}"\n' if sa else "")


# The protected classes of the outbound SPD, and the peer each one goes to.
PROTECTED = [
    # (local, remote, protocols or None for any, SA)
    (LOCAL4 + "/32", "203.0.113.0/24", (6,), "alice-out"),
    (LOCAL4 + "/32", "203.0.113.0/24", (17,), "alice-ah-out"),
    (LOCAL4 + "/32", "203.0.113.0/24", (1,), "alice-null-out"),
    (LOCAL6 + "/128", "2001:db8:a::/48", (6, 58), "alice6-out"),
    (LOCAL6 + "/128", "2001:db8:a::/48", (17,), "alice6-ah-out"),
    (LOCAL4 + "/32", "10.9.0.0/16", None, "carol-tun-out"),
    (LOCAL4 + "/32", "10.20.0.0/16", None, "dave-ah-tun-out"),
    (LOCAL6 + "/128", "2001:db8:d::/48", None, "dave-ah-tun-out"),
]
PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "58", None: "any"}

DUT_TOML = "\n".join(
    ["[device]\nreplay_window = 64\nudp_idle_s = 30\ntime_wait_s = 5\n"
     "latch_capacity = 32\nlatch_ways = 4\n", PEERS]
    + [sa_block(n) for n in SAS]
    + [rule("out", "protect", local, remote, PROTO_NAMES[p], sa=sa)
       for local, remote, protos, sa in PROTECTED for p in (protos or (None,))]
    + [rule("out", "bypass", proto="udp", rport="500"),
       rule("out", "discard", remote="8.8.4.4/32"),
       rule("out", "bypass"),
       rule("in", "protect", LOCAL4 + "/32", "203.0.113.0/24"),
       rule("in", "protect", LOCAL6 + "/128", "2001:db8:a::/48"),
       rule("in", "protect", LOCAL4 + "/32", "10.9.0.0/16"),
       rule("in", "protect", LOCAL6 + "/128", "2001:db8:c::/48", sa="carol-tun-in"),
       rule("in", "protect", LOCAL4 + "/32", "10.20.0.0/16"),
       rule("in", "protect", LOCAL6 + "/128", "2001:db8:d::/48"),
       rule("in", "discard", remote="8.8.4.4/32"),
       rule("in", "bypass"),
       '[[template]]\nkind = "listener"\nlocal = "192.0.2.1"\nproto = "tcp"\nlocal_port = 22\n',
       '[[template]]\nkind = "initiator"\nlocal = "any"\nremote = "any"\nproto = "any"\n'])
DUT_CFG = parse_config(DUT_TOML, "fuzz-dut.toml")


def mirror(name: str) -> ModelDevice:
    """A device on the far side: SA `name` (inbound at the DUT) as its
    outbound SA for all its traffic."""
    text = PEERS + sa_block(name, "out") + rule("out", "protect", sa=name)
    return ModelDevice.from_config(parse_config(text, f"mirror-{name}.toml"))


def eth(l3, vlan: bool = False, src=WIRE_MAC, dst=HOST_MAC) -> bytes:
    e = Ether(src=src, dst=dst)
    if vlan:
        e = e / Dot1Q(vlan=5)
    return raw(e / l3)


def host(l3, vlan=False) -> bytes:
    return eth(l3, vlan, src=HOST_MAC, dst=WIRE_MAC)


def _outbound_frames() -> list[bytes]:
    opts = b"\x94\x04\x00\x00"              # router alert
    return [
        host(IP(src=LOCAL4, dst=ALICE4) / TCP(sport=40000, dport=443, flags="S")),
        host(IP(src=LOCAL4, dst=ALICE4) / TCP(sport=40000, dport=443, flags="A") / Raw(b"GET /")),
        host(IP(src=LOCAL4, dst=ALICE4) / TCP(sport=40000, dport=443, flags="FA")),
        host(IP(src=LOCAL4, dst=ALICE4) / TCP(sport=40000, dport=443, flags="R")),
        host(IP(src=LOCAL4, dst=ALICE4) / UDP(sport=5000, dport=53) / Raw(b"query")),
        host(IP(src=LOCAL4, dst=ALICE4) / ICMP(type=8) / Raw(b"ping")),
        host(IP(src=LOCAL4, dst=ALICE4, options=opts) / TCP(sport=40001, dport=80, flags="S")),
        host(IP(src=LOCAL4, dst=ALICE4) / TCP(sport=40002, dport=443, flags="S"), vlan=True),
        host(IP(src=LOCAL4, dst=ALICE4, flags="MF") / UDP(sport=5001, dport=53) / Raw(b"x" * 16)),
        host(IP(src=LOCAL4, dst=TUN4) / TCP(sport=40003, dport=80, flags="S")),
        host(IP(src=LOCAL4, dst=TUN4, frag=4) / Raw(b"frag")),
        host(IP(src=LOCAL4, dst=GW4) / UDP(sport=500, dport=500) / Raw(b"ike")),
        host(IP(src=LOCAL4, dst=DAVE4) / TCP(sport=40010, dport=80, flags="S")),
        host(IPv6(src=LOCAL6, dst=DAVE6) / UDP(sport=40011, dport=53) / Raw(b"d")),
        host(IP(src=LOCAL4, dst="8.8.8.8") / TCP(sport=40004, dport=53, flags="S")),
        host(IP(src=LOCAL4, dst="8.8.4.4") / UDP(sport=40005, dport=53)),
        host(IPv6(src=LOCAL6, dst=ALICE6) / TCP(sport=40000, dport=443, flags="S")),
        host(IPv6(src=LOCAL6, dst=ALICE6) / UDP(sport=5000, dport=53) / Raw(b"six")),
        host(IPv6(src=LOCAL6, dst=ALICE6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
             / UDP(sport=5002, dport=53)),
        host(IPv6(src=LOCAL6, dst=ALICE6) / IPv6ExtHdrFragment(nh=17, m=1) / UDP(sport=1, dport=2)),
        host(IPv6(src=LOCAL6, dst="2001:db8:ff::1") / UDP(sport=1, dport=2)),
        raw(Ether(src=HOST_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=LOCAL4, pdst=ALICE4)),
    ]


def _inbound_frames() -> list[bytes]:
    frames = []
    clear = {
        "alice-in": [IP(src=ALICE4, dst=LOCAL4) / TCP(sport=443, dport=40000, flags="SA"),
                     IP(src=ALICE4, dst=LOCAL4) / TCP(sport=50000, dport=22, flags="S"),
                     IP(src=ALICE4, dst=LOCAL4) / TCP(sport=443, dport=40000, flags="A") / Raw(b"200 OK")],
        "alice-ah-in": [IP(src=ALICE4, dst=LOCAL4) / UDP(sport=53, dport=5000) / Raw(b"answer"),
                        IP(src=ALICE4, dst=LOCAL4, options=b"\x94\x04\x00\x00")
                        / UDP(sport=53, dport=5000)],
        "alice-null-in": [IP(src=ALICE4, dst=LOCAL4) / ICMP(type=0) / Raw(b"pong")],
        "alice6-in": [IPv6(src=ALICE6, dst=LOCAL6) / TCP(sport=443, dport=40000, flags="SA")],
        "alice6-ah-in": [IPv6(src=ALICE6, dst=LOCAL6) / UDP(sport=53, dport=5000),
                         IPv6(src=ALICE6, dst=LOCAL6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
                         / UDP(sport=53, dport=5002)],
        "carol-tun-in": [IP(src=TUN4, dst=LOCAL4) / TCP(sport=80, dport=40003, flags="SA"),
                         IPv6(src=TUN6, dst=LOCAL6) / UDP(sport=7, dport=9)],
        "carol-ah-tun-in": [IP(src=TUN4, dst=LOCAL4) / UDP(sport=7, dport=9) / Raw(b"ah tunnel")],
        "dave-ah-tun-in": [IP(src=DAVE4, dst=LOCAL4) / TCP(sport=80, dport=40010, flags="SA"),
                           IPv6(src=DAVE6, dst=LOCAL6) / UDP(sport=53, dport=40011) / Raw(b"D")],
        "bob-in": [IP(src=ALICE4, dst=LOCAL4) / TCP(sport=443, dport=40000, flags="A"),
                   IP(src=BOB4, dst=LOCAL4) / UDP(sport=53, dport=5000)],
    }
    for name, packets in clear.items():
        peer = mirror(name)
        for i, p in enumerate(packets):
            for _ in range(2):                      # two sequence numbers each
                v = peer.process(eth(p, src=HOST_MAC, dst=WIRE_MAC), "out", 1)
                assert v.action == "forward", (name, v)
                frames.append(Ether(v.frame).build())
    frames += [
        eth(IP(src=ALICE4, dst=LOCAL4) / TCP(sport=443, dport=40000, flags="SA")),   # clear: spd_clear
        eth(IP(src="8.8.8.8", dst=LOCAL4) / UDP(sport=53, dport=40005) / Raw(b"dns"), vlan=True),
        eth(IP(src=ALICE4, dst=LOCAL4, proto=50, flags="MF") / Raw(bytes(40))),
        eth(IPv6(src=ALICE6, dst=LOCAL6) / IPv6ExtHdrFragment(nh=51, offset=3) / Raw(bytes(40))),
    ]
    return frames


OUT_FRAMES = _outbound_frames()
IN_FRAMES = _inbound_frames()
BASES = [(f, "out") for f in OUT_FRAMES] + [(f, "in") for f in IN_FRAMES]


def fresh() -> ModelDevice:
    return ModelDevice.from_config(DUT_CFG)


# ------------------------------------------------------------- the properties

def in_protected_class(frame: bytes) -> tuple[str, str] | None:
    """(SA whose PROTECT rule covers this outbound frame, the outer destination
    it must go to), or None. Parsed
    here, independently of the model (only frames the model forwarded are
    asked about, so their headers are consistent)."""
    off, et = 12, frame[12:14] if len(frame) >= 14 else b""
    while et in (b"\x81\x00", b"\x88\xa8") and len(frame) >= off + 6:
        off += 4
        et = frame[off:off + 2]
    l3 = off + 2
    if et == b"\x08\x00" and len(frame) >= l3 + 20:
        proto = frame[l3 + 9]
        src = ipaddress.ip_address(frame[l3 + 12:l3 + 16])
        dst = ipaddress.ip_address(frame[l3 + 16:l3 + 20])
    elif et == b"\x86\xdd" and len(frame) >= l3 + 40:
        src = ipaddress.ip_address(frame[l3 + 8:l3 + 24])
        dst = ipaddress.ip_address(frame[l3 + 24:l3 + 40])
        proto = None                      # the v6 classes below take their protocol from the chain
    else:
        return None
    for local, remote, protos, sa in PROTECTED:
        lnet, rnet = ipaddress.ip_network(local), ipaddress.ip_network(remote)
        if src.version != lnet.version or src not in lnet or dst not in rnet:
            continue
        if src.version == 6:
            proto = _v6_upper(frame, l3)
        if protos is None or proto in protos:
            # where it must go: the tunnel end, or (transport) the packet's own destination
            return sa, (SAS[sa][10] if SAS[sa][3] == "tunnel" else str(dst))
    return None


def _v6_upper(frame: bytes, l3: int) -> int:
    nh, off = frame[l3 + 6], l3 + 40
    while nh in (0, 43, 60) and off + 2 <= len(frame):
        nh, off = frame[off], off + (frame[off + 1] + 1) * 8
    if nh == 44 and off + 1 <= len(frame):
        nh = frame[off]
    return nh


def outer_protocol(frame: bytes) -> tuple[int, str]:
    """(outer IP protocol after IPv6 extension headers, outer destination)."""
    off, et = 12, frame[12:14]
    while et in (b"\x81\x00", b"\x88\xa8"):
        off += 4
        et = frame[off:off + 2]
    l3 = off + 2
    if et == b"\x08\x00":
        return frame[l3 + 9], str(ipaddress.ip_address(frame[l3 + 16:l3 + 20]))
    if et != b"\x86\xdd":
        return None, None
    nh, off = frame[l3 + 6], l3 + 40
    while nh in (0, 43, 60):
        nh, off = frame[off], off + (frame[off + 1] + 1) * 8
    return nh, str(ipaddress.ip_address(frame[l3 + 24:l3 + 40]))


def check(dev: ModelDevice, frame: bytes, direction: str, t: int):
    before = dict(dev.counters()["drops"])
    v = dev.process(frame, direction, t)          # must not raise
    after = dict(dev.counters()["drops"])
    assert v.action in ("forward", "drop"), v
    if v.action == "drop":
        assert v.reason in REASONS, v
        assert v.frame is None
        want = dict(before)
        want[v.reason] = want.get(v.reason, 0) + 1
        assert after == want, (v, before, after)
    else:
        assert after == before
        assert v.reason is None
        assert v.port == ("wire" if direction == "out" else "host")
        assert isinstance(v.frame, bytes)
        parse_frame(v.frame)                       # what the device emits is well formed
        if direction == "out":
            cls = in_protected_class(frame)
            if cls is not None:
                sa, dst = cls
                proto, outer_dst = outer_protocol(v.frame)
                assert proto in (50, 51), f"class of {sa} left in clear text: {frame.hex()}"
                assert outer_dst == dst, f"class of {sa} sent to {outer_dst}, not {dst}"
                assert v.sa == sa
    return v


def fuzz(examples: int):
    return settings(deadline=None, max_examples=examples,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_base_frames_are_meaningful():
    """The corpus the mutations start from exercises the real paths: most
    valid frames are forwarded (protected outbound where policy says so)."""
    dev = fresh()
    verdicts = [check(dev, f, d, i * 1000) for i, (f, d) in enumerate(BASES)]
    forwarded = [v for v in verdicts if v.action == "forward"]
    assert len(forwarded) >= len(BASES) * 2 // 3
    protected = [v for (f, d), v in zip(BASES, verdicts)
                 if d == "out" and v.action == "forward" and outer_protocol(v.frame)[0] in (50, 51)]
    assert len(protected) >= 10
    assert {v.sa for v in forwarded if v.port == "host"} >= {
        "alice-in", "alice-ah-in", "alice-null-in", "alice6-in", "alice6-ah-in", "carol-tun-in",
        "carol-ah-tun-in", "dave-ah-tun-in"}
    assert dev.list_latches(), "templates should have latched some flows"


# (a) arbitrary bytes ---------------------------------------------------------

@fuzz(700)
@given(frame=st.binary(max_size=160), direction=st.sampled_from(["in", "out"]))
def test_arbitrary_bytes(frame, direction):
    check(fresh(), frame, direction, 1)


_ETHERTYPES = [b"\x08\x00", b"\x86\xdd", b"\x81\x00", b"\x88\xa8", b"\x08\x06"]


@st.composite
def plausible_frames(draw):
    """Ethernet + optional tags + a start that looks like IP: the parser's
    checks are reached instead of failing at the first byte."""
    frame = bytearray(b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01")
    for _ in range(draw(st.integers(0, 2))):
        frame += draw(st.sampled_from([b"\x81\x00", b"\x88\xa8"])) + draw(st.binary(min_size=2, max_size=2))
    version = draw(st.sampled_from([4, 6]))
    frame += b"\x08\x00" if version == 4 else b"\x86\xdd"
    if draw(st.booleans()):
        frame[-2:] = draw(st.sampled_from(_ETHERTYPES))
    body = bytearray(draw(st.binary(min_size=0, max_size=120)))
    if version == 4 and len(body) >= 20:
        body[0] = 0x40 | draw(st.integers(0, 15))
        if draw(st.booleans()):
            struct.pack_into("!H", body, 2, len(body) - draw(st.integers(0, 4)))
        body[9] = draw(st.sampled_from([6, 17, 1, 50, 51, 4, 41, body[9]]))
        if draw(st.booleans()):
            struct.pack_into("!H", body, 10, 0)
            ihl = (body[0] & 0xF) * 4
            if 20 <= ihl <= len(body):
                words = struct.unpack(f"!{ihl // 2}H", body[:ihl])
                s = sum(words)
                while s >> 16:
                    s = (s & 0xFFFF) + (s >> 16)
                struct.pack_into("!H", body, 10, ~s & 0xFFFF)
    elif version == 6 and len(body) >= 40:
        body[0] = 0x60 | (body[0] & 0x0F)
        if draw(st.booleans()):
            struct.pack_into("!H", body, 4, len(body) - 40 - draw(st.integers(0, 3)))
        body[6] = draw(st.sampled_from([0, 43, 44, 60, 6, 17, 50, 51, 58, 59, body[6]]))
    return bytes(frame + body)


@fuzz(700)
@given(frame=plausible_frames(), direction=st.sampled_from(["in", "out"]))
def test_plausible_garbage(frame, direction):
    check(fresh(), frame, direction, 1)


# (b) mutated valid frames ---------------------------------------------------

@st.composite
def mutated(draw):
    frame, direction = draw(st.sampled_from(BASES))
    b = bytearray(frame)
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["flip", "truncate", "extend", "byte", "word", "delete", "insert"]))
        n = len(b)
        if op == "flip" and n:
            i = draw(st.integers(0, n * 8 - 1))
            b[i // 8] ^= 1 << (i % 8)
        elif op == "truncate":
            del b[draw(st.integers(0, n)):]
        elif op == "extend":
            b += draw(st.binary(min_size=1, max_size=24))
        elif op == "byte" and n:
            b[draw(st.integers(0, n - 1))] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF,
                                                                    4, 6, 17, 41, 44, 50, 51]))
        elif op == "word" and n >= 2:
            i = draw(st.integers(0, min(n - 2, 80)))          # header fields live up front
            struct.pack_into("!H", b, i, draw(st.sampled_from([0, 1, 0xFFFF, 0x8000, 0x2000,
                                                                0x1FFF, 20, 40, n, n - 14])) & 0xFFFF)
        elif op == "delete" and n:
            i = draw(st.integers(0, n - 1))
            del b[i:i + draw(st.integers(1, 8))]
        elif op == "insert":
            i = draw(st.integers(0, n))
            b[i:i] = draw(st.binary(min_size=1, max_size=8))
    return bytes(b), direction


@fuzz(800)
@given(frames=st.lists(mutated(), min_size=1, max_size=8))
def test_mutated_frames(frames):
    dev = fresh()
    for i, (frame, direction) in enumerate(frames):
        check(dev, frame, direction, i * 400_000_000)     # 0.4 s apart: timers run out too


# (c) authentic ESP, hostile plaintext ------------------------------------------

ESP_IN = [n for n, s in SAS.items() if s[0] == "in" and s[2] == "esp"]


def esp_packet(name: str, seq: int, payload: bytes, nh: int, pad: bytes | None) -> bytes:
    """Ethernet + outer IP + ESP for SA `name`, built with `cryptography`."""
    _d, spi, _p, _m, alg, keyhex, icv, esn, _peer, src, dst = SAS[name]
    keymat = bytes.fromhex(keyhex)
    key, salt = keymat[:-4], keymat[-4:]
    if pad is None:
        pad = bytes(range(1, (-(len(payload) + 2)) % 4 + 1))
    clear = payload + pad + bytes([len(pad) & 0xFF, nh])
    head = struct.pack("!II", spi, seq)
    aad = struct.pack("!III", spi, 0, seq) if esn else head
    iv = struct.pack("!Q", seq * 7919)
    if alg.startswith("aes-gcm"):
        sealed = AESGCM(key).encrypt(salt + iv, clear, aad)
        esp = head + iv + sealed[:len(clear)] + sealed[len(clear):len(clear) + icv]
    else:
        esp = head + iv + clear + AESGCM(key).encrypt(salt + iv, b"", aad + iv + clear)[:icv]
    src = BOB4 if src == "any" else src
    outer = IP(src=src, dst=dst, proto=50) if ":" not in src else IPv6(src=src, dst=dst, nh=50)
    return eth(outer / Raw(esp))


def _inner_seeds() -> list[bytes]:
    return [raw(p) for p in (
        IP(src=ALICE4, dst=LOCAL4) / TCP(sport=443, dport=40000, flags="S"),
        IP(src=TUN4, dst=LOCAL4) / UDP(sport=7, dport=9) / Raw(b"data"),
        IPv6(src=TUN6, dst=LOCAL6) / TCP(sport=80, dport=40000, flags="SA"),
        IPv6(src=ALICE6, dst=LOCAL6) / IPv6ExtHdrHopByHop() / UDP(sport=1, dport=2),
        TCP(sport=443, dport=40000, flags="S"),
        UDP(sport=53, dport=5000) / Raw(b"answer"),
        ICMP(type=0),
    )]


INNER_SEEDS = _inner_seeds()


@st.composite
def authentic_esp(draw):
    name = draw(st.sampled_from(ESP_IN))
    if draw(st.booleans()):
        payload = bytearray(draw(st.sampled_from(INNER_SEEDS)))
        for _ in range(draw(st.integers(0, 3))):
            if payload and draw(st.booleans()):
                payload[draw(st.integers(0, len(payload) - 1))] = draw(st.integers(0, 255))
            else:
                del payload[draw(st.integers(0, len(payload))):]
        payload = bytes(payload)
    else:
        payload = draw(st.binary(max_size=80))
    nh = draw(st.sampled_from([4, 41, 6, 17, 1, 58, 59, 50, 51, 0, 44]) | st.integers(0, 255))
    pad = draw(st.none() | st.binary(max_size=12))
    return name, payload, nh, pad


@fuzz(500)
@given(packets=st.lists(authentic_esp(), min_size=1, max_size=3),
       first_seq=st.integers(1, 200))
def test_authentic_esp_with_hostile_plaintext(packets, first_seq):
    dev = fresh()
    for i, (name, payload, nh, pad) in enumerate(packets):
        # rising sequence numbers: with ESN a number far behind the window is
        # (rightly) taken for the next epoch and fails the ICV
        v = check(dev, esp_packet(name, first_seq + i, payload, nh, pad), "in", i)
        assert v.reason not in ("icv", "no_sa", "replay"), "the packet was genuine"


def test_authentic_esp_builder_is_right():
    """esp_packet() is a real peer: a well-formed payload goes through."""
    dev = fresh()
    inner = raw(IP(src=TUN4, dst=LOCAL4) / UDP(sport=7, dport=9) / Raw(b"data"))
    v = check(dev, esp_packet("carol-tun-in", 1, inner, 4, None), "in", 1)
    assert v.action == "forward" and v.frame[14:] == inner
    tcp = raw(IPv6(src=ALICE6, dst=LOCAL6) / TCP(sport=443, dport=40000, flags="SA"))[40:]
    v = check(dev, esp_packet("alice6-in", 1, tcp, 6, None), "in", 2)
    assert v.action == "forward", v.reason


# (d) structured outbound traffic: the safety property ------------------------

_DSTS4 = [ALICE4, BOB4, "203.0.113.200", TUN4, "10.9.255.1", GW4, "8.8.8.8", "8.8.4.4", "10.10.0.1",
          DAVE4]
_DSTS6 = [ALICE6, "2001:db8:a::ffff", TUN6, "2001:db8:ff::1", DAVE6]


@st.composite
def host_traffic(draw):
    version = draw(st.sampled_from([4, 6]))
    proto = draw(st.sampled_from([6, 17, 1, 58, 50, 51, 47, 4]) | st.integers(0, 255))
    sport, dport = draw(st.integers(0, 65535)), draw(st.sampled_from([22, 53, 443, 500, 40000])
                                                     | st.integers(0, 65535))
    if proto == 6:
        l4 = raw(TCP(sport=sport, dport=dport, flags=draw(st.integers(0, 63))))
    elif proto == 17:
        l4 = raw(UDP(sport=sport, dport=dport, len=8 + 0))
    else:
        l4 = b""
    l4 += draw(st.binary(max_size=40))
    if proto == 17:
        l4 = l4[:4] + struct.pack("!H", len(l4)) + l4[6:]
    src4 = draw(st.sampled_from([LOCAL4, LOCAL4, LOCAL4, "192.0.2.2"]))
    src6 = draw(st.sampled_from([LOCAL6, LOCAL6, "2001:db8::2"]))
    frag = draw(st.sampled_from([None, None, None, "first", "later"]))
    if version == 4:
        ip = IP(src=src4, dst=draw(st.sampled_from(_DSTS4)), proto=proto, tos=draw(st.integers(0, 255)),
                flags="MF" if frag == "first" else 0, frag=5 if frag == "later" else 0)
        if draw(st.booleans()):
            ip.options = draw(st.sampled_from([b"\x94\x04\x00\x00", b"\x01\x01\x01\x00",
                                               b"\x07\x07\x04\x00\x00\x00\x00\x00"]))
        pkt = ip / Raw(l4)
    else:
        ip = IPv6(src=src6, dst=draw(st.sampled_from(_DSTS6)), tc=draw(st.integers(0, 255)))
        exts = draw(st.lists(st.sampled_from(["hbh", "dst"]), max_size=2))
        pkt = ip
        for x in exts:
            pkt = pkt / (IPv6ExtHdrHopByHop() if x == "hbh" else IPv6ExtHdrDestOpt())
        if frag:
            pkt = pkt / IPv6ExtHdrFragment(offset=0 if frag == "first" else 5, m=frag == "first")
        pkt = pkt / Raw(l4)
        last = pkt
        while last.payload and not isinstance(last.payload, Raw):
            last = last.payload
        last.nh = proto
    return host(pkt, vlan=draw(st.booleans()))


@fuzz(900)
@given(frames=st.lists(host_traffic(), min_size=1, max_size=4))
def test_protected_classes_never_leave_in_clear(frames):
    dev = fresh()
    for i, frame in enumerate(frames):
        check(dev, frame, "out", i * 1000)


def test_safety_check_can_fail():
    """The safety assertion is real: a device whose SPD is rewritten to
    BYPASS a protected class is caught by check()."""
    text = DUT_TOML.replace('action = "protect"\nlocal = "192.0.2.1/32"\nremote = "203.0.113.0/24"\n'
                            'proto = "tcp"', 'action = "bypass"\nlocal = "192.0.2.1/32"\n'
                            'remote = "203.0.113.0/24"\nproto = "tcp"', 1)
    text = text.replace('local_port = "any"\nremote_port = "any"\nsa = "alice-out"\n',
                        'local_port = "any"\nremote_port = "any"\n', 1)
    dev = ModelDevice.from_config(parse_config(text, "leaky.toml"))
    with pytest.raises(AssertionError, match="clear text"):
        check(dev, OUT_FRAMES[0], "out", 1)
