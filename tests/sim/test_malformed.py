"""Malformed and hostile input to the reference model: every bad frame must
become exactly one counted drop with the documented reason (sim/drops.py),
never an exception and never a forwarded frame.

Frames are built with scapy (the project's outside tool); valid ESP comes from
scapy's SecurityAssociation, and the packets scapy cannot make (correctly
authenticated ESP with a broken trailer or a garbage inner packet, AH-GMAC)
are built here with `cryptography` directly, independent of the model's own
ESP/AH code.
"""

from __future__ import annotations

import random
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Raw, raw

from latchnic.config import parse_config
from latchnic.sim.device import ModelDevice
from latchnic.sim.drops import REASONS

LOCAL4, ALICE4, GW4 = "192.0.2.1", "203.0.113.5", "198.51.100.1"
LOCAL6, ALICE6 = "2001:db8::1", "2001:db8:a::5"
HOST_MAC, WIRE_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"

# name: (dir, spi, proto, mode, alg, key, salt, icv, src, dst)
SAS = {
    "alice-in":     ("in", 0x1001, "esp", "transport", "aes-gcm-128",
                     "000102030405060708090a0b0c0d0e0f", "cafebabe", 16, ALICE4, LOCAL4),
    "alice-out":    ("out", 0x2001, "esp", "transport", "aes-gcm-128",
                     "101112131415161718191a1b1c1d1e1f", "deadbeef", 16, LOCAL4, ALICE4),
    "alice-ah-in":  ("in", 0x1101, "ah", "transport", "gmac-128",
                     "202122232425262728292a2b2c2d2e2f", "01234567", 16, ALICE4, LOCAL4),
    "alice-ah-out": ("out", 0x2101, "ah", "transport", "gmac-128",
                     "303132333435363738393a3b3c3d3e3f", "89abcdef", 16, LOCAL4, ALICE4),
    "alice-null-in": ("in", 0x1301, "esp", "transport", "gmac-128",
                      "404142434445464748494a4b4c4d4e4f", "0badf00d", 16, ALICE4, LOCAL4),
    "alice6-in":    ("in", 0x1601, "esp", "transport", "aes-gcm-256",
                     "505152535455565758595a5b5c5d5e5f505152535455565758595a5b5c5d5e5f",
                     "feedface", 12, ALICE6, LOCAL6),
    "alice6-out":   ("out", 0x2601, "esp", "transport", "aes-gcm-256",
                     "606162636465666768696a6b6c6d6e6f606162636465666768696a6b6c6d6e6f",
                     "c0ffee00", 12, LOCAL6, ALICE6),
    "alice6-ah-out": ("out", 0x2701, "ah", "transport", "gmac-128",
                      "909192939495969798999a9b9c9d9e9f", "55667788", 16, LOCAL6, ALICE6),
    "carol-tun-in": ("in", 0x1201, "esp", "tunnel", "aes-gcm-128",
                     "707172737475767778797a7b7c7d7e7f", "facefeed", 16, GW4, LOCAL4),
    "carol-tun-out": ("out", 0x2201, "esp", "tunnel", "aes-gcm-128",
                      "808182838485868788898a8b8c8d8e8f", "beadbead", 16, LOCAL4, GW4),
}


def sa_toml() -> str:
    out = []
    for name, (d, spi, proto, mode, alg, key, salt, icv, src, dst) in SAS.items():
        peer = "carol@example.org" if name.startswith("carol") else "alice@example.org"
        out.append(f'[[sa]]\nname = "{name}"\ndir = "{d}"\nspi = {spi:#x}\nproto = "{proto}"\n'
                   f'mode = "{mode}"\nalg = "{alg}"\nkey = "{key}{salt}"\nicv = {icv}\n'
                   f'peer = "{peer}"\nsrc = "{src}"\ndst = "{dst}"\n')
    return "\n".join(out)


CONFIG = f"""
[device]
replay_window = 128

[[peer]]
name = "alice@example.org"
claims = ["203.0.113.0/24", "2001:db8:a::/48"]

[[peer]]
name = "carol@example.org"
claims = ["10.9.0.0/16", "2001:db8:c::/48"]

{sa_toml()}

[[spd]]
dir = "out"
local = "192.0.2.1/32"
remote = "203.0.113.0/24"
proto = "tcp"
action = "protect"
sa = "alice-out"

[[spd]]
dir = "out"
local = "192.0.2.1/32"
remote = "203.0.113.0/24"
proto = "udp"
action = "protect"
sa = "alice-ah-out"

[[spd]]
dir = "out"
local = "2001:db8::1/128"
remote = "2001:db8:a::/48"
action = "protect"
sa = "alice6-out"

[[spd]]
dir = "out"
local = "192.0.2.1/32"
remote = "10.9.0.0/16"
action = "protect"
sa = "carol-tun-out"

[[spd]]
dir = "out"
action = "bypass"

[[spd]]
dir = "in"
local = "192.0.2.1/32"
remote = "203.0.113.0/24"
action = "protect"

[[spd]]
dir = "in"
local = "2001:db8::1/128"
remote = "2001:db8:a::/48"
action = "protect"

[[spd]]
dir = "in"
local = "192.0.2.1/32"
remote = "10.9.0.0/16"
action = "protect"
sa = "carol-tun-in"

[[spd]]
dir = "in"
local = "2001:db8::1/128"
remote = "2001:db8:c::/48"
action = "protect"
sa = "carol-tun-in"

[[spd]]
dir = "in"
action = "bypass"
"""

CFG = parse_config(CONFIG, "malformed.toml")


@pytest.fixture
def dev() -> ModelDevice:
    return ModelDevice.from_config(CFG)


def key_of(name: str) -> tuple[bytes, bytes]:
    s = SAS[name]
    return bytes.fromhex(s[5]), bytes.fromhex(s[6])


def eth(l3, vlan: bool = False) -> bytes:
    """An Ethernet frame around an IP packet (scapy layer or bytes)."""
    e = Ether(src=WIRE_MAC, dst=HOST_MAC)
    if vlan:
        e = e / Dot1Q(vlan=7)
    if isinstance(l3, (bytes, bytearray)):
        version = l3[0] >> 4 if l3 else 4
        if vlan:
            e[Dot1Q].type = 0x86DD if version == 6 else 0x0800
        else:
            e.type = 0x86DD if version == 6 else 0x0800
        return raw(e) + bytes(l3)
    return raw(e / l3)


# ------------------------------------------------ independent ESP / AH builders

def esp_bytes(name: str, seq: int, payload: bytes, nh: int, *, pad: bytes | None = None,
              pad_len: int | None = None, iv: bytes | None = None) -> bytes:
    """An ESP packet (RFC 4106 / RFC 4543) for SA `name`, built with
    `cryptography`; pad/pad_len override the RFC 4303 trailer."""
    _d, spi, _p, _m, alg, *_ = SAS[name]
    key, salt = key_of(name)
    icv = SAS[name][7]
    iv = iv if iv is not None else struct.pack("!Q", seq ^ 0x5A5A)
    if pad is None:
        pad = bytes(range(1, (-(len(payload) + 2)) % 4 + 1))
    clear = payload + pad + bytes([len(pad) if pad_len is None else pad_len, nh])
    head = struct.pack("!II", spi, seq)
    nonce = salt + iv
    if alg.startswith("aes-gcm"):
        sealed = AESGCM(key).encrypt(nonce, clear, head)
        return head + iv + sealed[:len(clear)] + sealed[len(clear):len(clear) + icv]
    tag = AESGCM(key).encrypt(nonce, b"", head + iv + clear)
    return head + iv + clear + tag[:icv]


def ah_v4(name: str, seq: int, src: str, dst: str, payload: bytes, nh: int, *,
          ident: int = 7, ttl: int = 64, tos: int = 0, length_words: int | None = None) -> bytes:
    """IPv4 + AH-GMAC (RFC 4543 3.5, RFC 4302 3.3.3) built here: the ICV
    covers the header with TOS/flags/offset/TTL/checksum zeroed, the AH header
    with the ICV zeroed, and the payload."""
    _d, spi, *_ = SAS[name]
    key, salt = key_of(name)
    iv = struct.pack("!Q", seq * 3 + 1)
    ah_len = 12 + 8 + 16
    words = ah_len // 4 - 2 if length_words is None else length_words
    fixed = struct.pack("!BBHII", nh, words, 0, spi, seq) + iv
    total = 20 + ah_len + len(payload)
    ip_hdr = raw(IP(src=src, dst=dst, proto=51, len=total, id=ident, ttl=ttl, tos=tos))
    zeroed = bytearray(ip_hdr)
    zeroed[1] = 0
    zeroed[6:8] = b"\0\0"
    zeroed[8] = 0
    zeroed[10:12] = b"\0\0"
    icv = AESGCM(key).encrypt(salt + iv, b"", bytes(zeroed) + fixed + bytes(16) + payload)
    return ip_hdr + fixed + icv + payload


def scapy_sa(name: str, tunnel=None) -> SecurityAssociation:
    _d, spi, _p, _m, alg, *_ = SAS[name]
    key, salt = key_of(name)
    algo = "AES-GCM" if alg.startswith("aes-gcm") else "AES-NULL-GMAC"
    return SecurityAssociation(ESP, spi=spi, crypt_algo=algo, crypt_key=key + salt,
                               crypt_icv_size=SAS[name][7] if algo == "AES-GCM" else None,
                               tunnel_header=tunnel)


def alice_esp(seq: int = 1, payload=None) -> IP:
    inner = IP(src=ALICE4, dst=LOCAL4) / (payload if payload is not None else
                                          TCP(sport=443, dport=40000, flags="SA") / Raw(b"hello"))
    return scapy_sa("alice-in").encrypt(inner, seq_num=seq, iv=struct.pack("!Q", seq))


# --------------------------------------------------------------- assertions

def drop_state(dev):
    c = dev.counters()
    return dict(c["drops"]), c["frames"].get("in_forwarded", 0) + c["frames"].get("out_forwarded", 0)


def expect_drop(dev, frame: bytes, direction: str, reason: str, t: int = 1000):
    assert reason in REASONS
    drops, fwd = drop_state(dev)
    v = dev.process(frame, direction, t)
    assert v.action == "drop", f"forwarded: {v}"
    assert v.frame is None
    assert v.reason == reason, f"expected {reason}, got {v.reason} ({v.detail})"
    after, fwd_after = drop_state(dev)
    want = dict(drops)
    want[reason] = want.get(reason, 0) + 1
    assert after == want
    assert fwd_after == fwd
    return v


def expect_forward(dev, frame: bytes, direction: str, t: int = 1000):
    drops, _ = drop_state(dev)
    v = dev.process(frame, direction, t)
    assert v.action == "forward", f"dropped: {v.reason} {v.detail}"
    assert drop_state(dev)[0] == drops
    return v


BOTH = pytest.mark.parametrize("direction", ["in", "out"])


# ---------------------------------------------------------- sanity of the set-up

def test_valid_scapy_esp_is_accepted(dev):
    v = expect_forward(dev, eth(alice_esp(1)), "in")
    inner = Ether(v.frame)
    assert inner[IP].proto == 6 and inner[TCP].dport == 40000 and bytes(inner[TCP].payload) == b"hello"


def test_valid_independent_esp_and_ah_are_accepted(dev):
    tcp = raw(TCP(sport=443, dport=40001, flags="A") / Raw(b"data!"))
    esp = esp_bytes("alice-in", 5, tcp, 6)
    expect_forward(dev, eth(raw(IP(src=ALICE4, dst=LOCAL4, proto=50) / Raw(esp))), "in")
    udp = raw(UDP(sport=53, dport=5353) / Raw(b"q"))
    ah = ah_v4("alice-ah-in", 1, ALICE4, LOCAL4, udp, 17)
    v = expect_forward(dev, eth(ah), "in")
    assert Ether(v.frame)[UDP].dport == 5353
    # the ICV does not cover TTL/TOS: a router may change them
    expect_forward(dev, eth(ah_v4("alice-ah-in", 2, ALICE4, LOCAL4, udp, 17, ttl=3, tos=0x10)), "in")


# ----------------------------------------------------------- truncated headers

def _frames_truncated():
    tcp4 = raw(IP(src=ALICE4, dst=LOCAL4) / TCP(sport=1, dport=2))
    udp6 = raw(IPv6(src=ALICE6, dst=LOCAL6) / UDP(sport=1, dport=2))
    return {
        "empty": b"",
        "short_ethernet": raw(Ether(src=WIRE_MAC, dst=HOST_MAC))[:13],
        "vlan_tag_cut": raw(Ether(src=WIRE_MAC, dst=HOST_MAC, type=0x8100)) + b"\x00\x07",
        "qinq_inner_tag_cut": raw(Ether(src=WIRE_MAC, dst=HOST_MAC) / Dot1AD(vlan=1)
                                  / Dot1Q(vlan=2))[:20],
        "ipv4_header_cut": eth(tcp4[:19]),
        "ipv4_header_cut_vlan": eth(tcp4[:12], vlan=True),
        "ipv4_no_ip_bytes": eth(b""),
        "ipv6_header_cut": eth(udp6[:39]),
        "tcp_header_cut": eth(IP(src=ALICE4, dst=LOCAL4, proto=6) / Raw(raw(TCP())[:12])),
        "tcp6_header_cut": eth(IPv6(src=ALICE6, dst=LOCAL6, nh=6) / Raw(raw(TCP())[:19])),
        "tcp_data_offset_small": eth(IP(src=ALICE4, dst=LOCAL4) / TCP(dataofs=4)),
        "tcp_data_offset_past_end": eth(IP(src=ALICE4, dst=LOCAL4) / TCP(dataofs=15)),
        "udp_header_cut": eth(IP(src=ALICE4, dst=LOCAL4, proto=17) / Raw(b"\x00\x35\x00")),
        "udp6_header_cut": eth(IPv6(src=ALICE6, dst=LOCAL6, nh=17) / Raw(b"\x00" * 7)),
        "udp_length_wrong": eth(IP(src=ALICE4, dst=LOCAL4) / UDP(sport=1, dport=2, len=30) / Raw(b"x")),
    }


@BOTH
@pytest.mark.parametrize("case", sorted(_frames_truncated()))
def test_truncated_headers(dev, direction, case):
    expect_drop(dev, _frames_truncated()[case], direction, "malformed")


# -------------------------------------------------------- inconsistent IP headers

def _bad_checksum():
    pkt = IP(raw(IP(src=ALICE4, dst=LOCAL4) / UDP(sport=1, dport=2)))
    pkt.chksum ^= 0x0100
    return raw(pkt)


def _frames_bad_ip():
    ok = dict(src=ALICE4, dst=LOCAL4)
    return {
        "ipv4_total_too_long": eth(IP(len=200, **ok) / UDP(sport=1, dport=2) / Raw(b"x" * 10)),
        "ipv4_total_below_ihl": eth(IP(len=16, **ok) / UDP(sport=1, dport=2)),
        "ipv4_total_below_ihl_options": eth(IP(len=22, options=b"\x01\x01\x01\x00", **ok)
                                            / UDP(sport=1, dport=2)),
        "ipv4_ihl_below_5": eth(IP(ihl=4, **ok) / UDP(sport=1, dport=2)),
        "ipv4_ihl_zero": eth(IP(ihl=0, **ok) / UDP(sport=1, dport=2)),
        "ipv4_ihl_past_frame": eth(IP(ihl=15, **ok) / Raw(b"y" * 8)),
        "ipv4_bad_checksum": eth(_bad_checksum()),
        "ipv4_reserved_flag": eth(IP(flags=4, **ok) / UDP(sport=1, dport=2)),
        "ip_version_5": eth(b"\x55" + bytes(39)),
        "ethertype_v4_carries_v6": raw(Ether(src=WIRE_MAC, dst=HOST_MAC, type=0x0800)
                                       / IPv6(src=ALICE6, dst=LOCAL6) / UDP()),
        "ethertype_v6_carries_v4": raw(Ether(src=WIRE_MAC, dst=HOST_MAC, type=0x86DD)
                                       / IP(**ok) / UDP()),
        "ipv6_plen_past_frame": eth(IPv6(src=ALICE6, dst=LOCAL6, plen=500) / UDP(sport=1, dport=2)),
        "ipv6_ext_header_cut": eth(IPv6(src=ALICE6, dst=LOCAL6, nh=0) / Raw(b"\x11\x00\x01\x04")),
        "ipv6_ext_header_len_past_end": eth(IPv6(src=ALICE6, dst=LOCAL6)
                                            / IPv6ExtHdrHopByHop(len=4, nh=17, autopad=0)
                                            / Raw(bytes(6))),
        "ipv6_ext_chain_runs_out": eth(IPv6(src=ALICE6, dst=LOCAL6)
                                       / IPv6ExtHdrHopByHop(nh=60) / Raw(bytes(4))),
    }


@BOTH
@pytest.mark.parametrize("case", sorted(_frames_bad_ip()))
def test_inconsistent_ip_headers(dev, direction, case):
    expect_drop(dev, _frames_bad_ip()[case], direction, "malformed")


@BOTH
def test_ipv6_jumbogram_is_unsupported(dev, direction):
    """Payload length 0 announces a jumbogram (RFC 2675): valid, but outside
    the datapath; the vocabulary files it under `unsupported`."""
    frame = eth(IPv6(src=ALICE6, dst=LOCAL6, plen=0, nh=0) / Raw(bytes(8) + b"x" * 32))
    expect_drop(dev, frame, direction, "unsupported")


@BOTH
@pytest.mark.parametrize("seed", range(12))
def test_random_garbage(dev, direction, seed):
    rng = random.Random(seed)
    l3 = bytearray(rng.randbytes(rng.randrange(20, 200)))
    l3[0] = 0x45 if seed % 2 else 0x60
    frame = eth(bytes(l3), vlan=bool(seed % 3 == 0))
    v = dev.process(frame, direction, 5)
    assert v.action == "drop" and v.reason in REASONS
    expect_drop(dev, frame, direction, v.reason)     # and it is counted, every time


@BOTH
@pytest.mark.parametrize("ethertype", [0x0800, 0x86DD, 0x8100])
def test_random_garbage_is_malformed(dev, direction, ethertype):
    rng = random.Random(ethertype)
    for n in range(40):
        frame = raw(Ether(src=WIRE_MAC, dst=HOST_MAC, type=ethertype)) + rng.randbytes(n)
        if ethertype == 0x8100:
            frame = frame[:14] + b"\x00\x01\x08\x00" + frame[18:]
        expect_drop(dev, frame, direction, "malformed")


# -------------------------------------------------------------- fragments

def test_esp_ipv4_fragments(dev):
    body = raw(alice_esp(1)[ESP])
    for flags, frag in (("MF", 0), (0, 64), ("MF", 8)):
        frame = eth(IP(src=ALICE4, dst=LOCAL4, proto=50, flags=flags, frag=frag) / Raw(body))
        expect_drop(dev, frame, "in", "fragment")
    # the SA was never touched: the same packet unfragmented is not a replay
    expect_forward(dev, eth(alice_esp(1)), "in")


def test_ah_ipv4_fragments(dev):
    udp = raw(UDP(sport=53, dport=5353) / Raw(b"q"))
    pkt = bytearray(ah_v4("alice-ah-in", 1, ALICE4, LOCAL4, udp, 17))
    for flags_frag in (0x2000, 0x0010, 0x2010):
        frag = IP(bytes(pkt))
        frag.flags, frag.frag = flags_frag >> 13, flags_frag & 0x1FFF
        del frag.chksum
        expect_drop(dev, eth(raw(frag)), "in", "fragment")


@pytest.mark.parametrize("nh", [50, 51])
@pytest.mark.parametrize("offset,more", [(0, 1), (16, 0), (16, 1)])
def test_esp_ah_ipv6_fragments(dev, nh, offset, more):
    body = esp_bytes("alice6-in", 1, raw(UDP(sport=1, dport=2)), 17) if nh == 50 else bytes(40)
    frame = eth(IPv6(src=ALICE6, dst=LOCAL6) / IPv6ExtHdrFragment(nh=nh, offset=offset, m=more, id=9)
                / Raw(body))
    expect_drop(dev, frame, "in", "fragment")


# ---------------------------------------------------------------- ESP trailer

def _tcp_payload():
    return raw(TCP(sport=443, dport=40002, flags="A") / Raw(b"abc"))   # 23 bytes: pad 3


@pytest.mark.parametrize("pad,pad_len", [
    (b"\x01\x02\x04", None),          # wrong pad byte
    (b"\x00\x00\x00", None),          # zero padding
    (b"\x02\x03\x04", None),          # does not start at 1
    (b"\x01\x02\x03", 200),           # pad length past the payload
    (b"\x01\x02\x03", 7),             # pad length disagrees with the pad bytes
    (b"\x01\x02\x03\x04\x05\x06\x07", None),   # more padding than needed: valid
])
def test_bad_padding(dev, pad, pad_len):
    esp = esp_bytes("alice-in", 3, _tcp_payload(), 6, pad=pad, pad_len=pad_len)
    frame = eth(IP(src=ALICE4, dst=LOCAL4, proto=50) / Raw(esp))
    if pad == bytes(range(1, len(pad) + 1)) and pad_len is None:
        # RFC 4303 allows more padding than needed (up to 255): 1..7 is fine
        expect_forward(dev, frame, "in")
    else:
        expect_drop(dev, frame, "in", "bad_padding")


def test_bad_padding_null_gmac_and_ipv6(dev):
    payload = raw(ICMP(type=8) / Raw(b"ping"))     # 12 bytes: pad 2
    esp = esp_bytes("alice-null-in", 1, payload, 1, pad=b"\x01\x01")
    expect_drop(dev, eth(IP(src=ALICE4, dst=LOCAL4, proto=50) / Raw(esp)), "in", "bad_padding")
    udp = raw(UDP(sport=1, dport=2) / Raw(b"12345"))   # 13 bytes: pad 1
    esp6 = esp_bytes("alice6-in", 1, udp, 17, pad=b"\x07")
    expect_drop(dev, eth(IPv6(src=ALICE6, dst=LOCAL6, nh=50) / Raw(esp6)), "in", "bad_padding")
    # the whole packet as padding: pad length = everything before it
    esp6 = esp_bytes("alice6-in", 2, b"", 17, pad=b"", pad_len=1)
    expect_drop(dev, eth(IPv6(src=ALICE6, dst=LOCAL6, nh=50) / Raw(esp6)), "in", "bad_padding")


# ------------------------------------------------------------ integrity and SAD

def _flip(b: bytes, bit: int) -> bytes:
    out = bytearray(b)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize("where", ["iv", "ciphertext", "icv_first", "icv_last", "seq_high_bit"])
def test_flipped_bit_fails_icv(dev, where):
    frame = eth(alice_esp(9))
    esp_off = 14 + 20
    esp_len = len(frame) - esp_off
    bit = {"iv": (esp_off + 8) * 8 + 3, "ciphertext": (esp_off + 20) * 8,
           "icv_first": (esp_off + esp_len - 16) * 8 + 7, "icv_last": (len(frame) - 1) * 8,
           "seq_high_bit": (esp_off + 4) * 8 + 7}[where]
    expect_drop(dev, _flip(frame, bit), "in", "icv")
    # a forgery does not move the window: the genuine packet still passes
    expect_forward(dev, frame, "in")


def test_flipped_bit_null_gmac_and_ah(dev):
    esp = esp_bytes("alice-null-in", 4, raw(ICMP(type=0) / Raw(b"pong")), 1)
    frame = eth(IP(src=ALICE4, dst=LOCAL4, proto=50) / Raw(esp))
    expect_drop(dev, _flip(frame, (14 + 20 + 18) * 8), "in", "icv")     # clear payload byte
    expect_forward(dev, frame, "in")
    udp = raw(UDP(sport=53, dport=5353) / Raw(b"answer"))
    ah = ah_v4("alice-ah-in", 4, ALICE4, LOCAL4, udp, 17)
    expect_drop(dev, eth(_flip(ah, (len(ah) - 1) * 8)), "in", "icv")    # payload
    expect_drop(dev, eth(_flip(ah, (20 + 24) * 8)), "in", "icv")        # AH ICV
    tampered = IP(ah)
    tampered.id ^= 1                                                    # immutable field
    del tampered.chksum
    expect_drop(dev, eth(raw(tampered)), "in", "icv")
    expect_forward(dev, eth(ah), "in")


def test_replayed_packet(dev):
    frame = eth(alice_esp(2))
    expect_forward(dev, frame, "in")
    expect_drop(dev, frame, "in", "replay")


def test_unknown_spi(dev):
    sa = scapy_sa("alice-in")
    sa.spi = 0x9999
    frame = eth(sa.encrypt(IP(src=ALICE4, dst=LOCAL4) / UDP(sport=1, dport=2), seq_num=1))
    expect_drop(dev, frame, "in", "no_sa")
    # the right SPI towards the wrong destination: the SA names its dst
    frame = eth(IP(src=ALICE4, dst="192.0.2.2", proto=50) / Raw(raw(alice_esp(1)[ESP])))
    expect_drop(dev, frame, "in", "no_sa")
    udp = raw(UDP(sport=53, dport=5353))
    ah = bytearray(ah_v4("alice-ah-in", 1, ALICE4, LOCAL4, udp, 17))
    ah[20 + 4:20 + 8] = struct.pack("!I", 0x1001)     # an ESP SPI under AH
    expect_drop(dev, eth(bytes(ah)), "in", "no_sa")


@pytest.mark.parametrize("esp_len", [0, 4, 7, 8, 16, 20, 8 + 8 + 2 + 15])
def test_esp_too_short(dev, esp_len):
    body = raw(alice_esp(1)[ESP])[:esp_len]
    frame = eth(IP(src=ALICE4, dst=LOCAL4, proto=50) / Raw(body))
    expect_drop(dev, frame, "in", "malformed")


def test_esp_too_short_for_truncated_icv(dev):
    # alice6-in has a 12-byte ICV: 8 + 8 + 2 + 11 bytes cannot be a packet
    body = esp_bytes("alice6-in", 1, b"", 59)[:8 + 8 + 2 + 11]
    expect_drop(dev, eth(IPv6(src=ALICE6, dst=LOCAL6, nh=50) / Raw(body)), "in", "malformed")


@pytest.mark.parametrize("words", [0, 1, 6, 8, 255])
def test_ah_wrong_length_field(dev, words):
    udp = raw(UDP(sport=53, dport=5353) / Raw(b"q"))
    ah = ah_v4("alice-ah-in", 1, ALICE4, LOCAL4, udp, 17, length_words=words)
    expect_drop(dev, eth(ah), "in", "malformed")


@pytest.mark.parametrize("n", [0, 11, 12, 35])
def test_ah_truncated(dev, n):
    udp = raw(UDP(sport=53, dport=5353))
    ah = ah_v4("alice-ah-in", 1, ALICE4, LOCAL4, udp, 17)
    pkt = IP(src=ALICE4, dst=LOCAL4, proto=51) / Raw(ah[20:20 + n])
    expect_drop(dev, eth(pkt), "in", "malformed")


# --------------------------------------------------- authenticated garbage inside

@pytest.mark.parametrize("inner,nh", [
    (b"", 4),
    (b"\x45" + bytes(10), 4),                                  # inner IPv4 header cut
    (b"\x60" + bytes(20), 41),                                 # inner IPv6 header cut
    (b"\x99" * 40, 4),                                         # not IP at all
    (b"hello world!", 6),                                      # tunnel SA says TCP
    ("v4_longer", 4),                                          # inner total length < payload
    ("v4_badsum", 4),
    ("v6_in_v4_nh", 4),                                        # nh says IPv4, inner is IPv6
    ("v4_in_v6_nh", 41),                                       # nh says IPv6, inner is IPv4
])
def test_tunnel_inner_garbage(dev, inner, nh):
    if inner == "v4_longer":
        inner = raw(IP(src="10.9.0.7", dst=LOCAL4) / UDP(sport=1, dport=2)) + b"trailing"
    elif inner == "v4_badsum":
        p = IP(raw(IP(src="10.9.0.7", dst=LOCAL4) / UDP(sport=1, dport=2)))
        p.chksum ^= 0xFFFF
        inner = raw(p)
    elif inner == "v6_in_v4_nh":
        inner = raw(IPv6(src="2001:db8:c::7", dst=LOCAL6) / UDP(sport=1, dport=2))
    elif inner == "v4_in_v6_nh":
        inner = raw(IP(src="10.9.0.7", dst=LOCAL4) / UDP(sport=1, dport=2))
    esp = esp_bytes("carol-tun-in", 1, inner, nh)
    expect_drop(dev, eth(IP(src=GW4, dst=LOCAL4, proto=50) / Raw(esp)), "in", "malformed")


def test_tunnel_valid_inner_is_delivered(dev):
    inner = IP(src="10.9.0.7", dst=LOCAL4) / UDP(sport=7, dport=9) / Raw(b"tunnelled")
    pkt = scapy_sa("carol-tun-in", tunnel=IP(src=GW4, dst=LOCAL4)).encrypt(inner, seq_num=1)
    v = expect_forward(dev, eth(pkt), "in")
    assert Ether(v.frame)[IP].src == "10.9.0.7" and Ether(v.frame)[Raw].load == b"tunnelled"
    esp = esp_bytes("carol-tun-in", 2, raw(inner), 4)
    expect_forward(dev, eth(IP(src=GW4, dst=LOCAL4, proto=50) / Raw(esp)), "in")
    inner6 = raw(IPv6(src="2001:db8:c::7", dst=LOCAL6) / UDP(sport=7, dport=9) / Raw(b"six"))
    esp = esp_bytes("carol-tun-in", 3, inner6, 41)
    v = expect_forward(dev, eth(IP(src=GW4, dst=LOCAL4, proto=50) / Raw(esp)), "in")
    assert Ether(v.frame).type == 0x86DD and Ether(v.frame)[IPv6].src == "2001:db8:c::7"


@pytest.mark.parametrize("payload,nh", [
    (b"\x00\x01\x00", 6),                     # TCP header cut
    (b"\x00\x01\x00\x02\x00\x09", 17),        # UDP header cut
    (raw(UDP(sport=1, dport=2, len=99)), 17),  # UDP length wrong
    (raw(TCP(dataofs=2)), 6),
])
def test_transport_inner_garbage(dev, payload, nh):
    esp = esp_bytes("alice-in", 1, payload, nh)
    expect_drop(dev, eth(IP(src=ALICE4, dst=LOCAL4, proto=50) / Raw(esp)), "in", "malformed")


# ----------------------------------------------------- too big to protect

@pytest.mark.parametrize("dst,version", [(ALICE4, 4), ("10.9.0.7", 4), (ALICE6, 6)])
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_packet_too_big_to_protect(dev, dst, version, proto):
    """A maximal IP packet cannot grow by the ESP/AH overhead: its length
    field would overflow. The datapath drops it (unsupported), it must not
    crash or send a corrupt length, and the SA spends no sequence number."""
    l4 = TCP(sport=40000, dport=443, flags="A") if proto == "tcp" else UDP(sport=40000, dport=443)
    if version == 4:
        pkt = IP(src=LOCAL4, dst=dst) / l4
        pkt = pkt / Raw(b"z" * (65535 - len(raw(pkt))))
    else:
        pkt = IPv6(src=LOCAL6, dst=dst) / l4
        pkt = pkt / Raw(b"z" * (65535 + 40 - len(raw(pkt))))
    frame = raw(Ether(src=HOST_MAC, dst=WIRE_MAC) / pkt)
    seqs = {n: s.get("seq") for n, s in dev.counters()["sa"].items()}
    expect_drop(dev, frame, "out", "unsupported")
    assert {n: s.get("seq") for n, s in dev.counters()["sa"].items()} == seqs
    assert dev.list_latches() == []
    # a packet of the same flow that fits still goes out, protected
    small = IP(src=LOCAL4, dst=dst) if version == 4 else IPv6(src=LOCAL6, dst=dst)
    v = expect_forward(dev, raw(Ether(src=HOST_MAC, dst=WIRE_MAC) / small / l4 / Raw(b"ok")), "out")
    out = Ether(v.frame)
    assert (out[IP].proto if version == 4 else out[IPv6].nh) in (50, 51)


@pytest.mark.parametrize("dst,version", [(ALICE4, 4), ("10.9.0.7", 4), (ALICE6, 6)])
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_largest_packet_that_fits_is_protected(dev, dst, version, proto):
    """At the boundary: the biggest packet whose protected form fits 65535 goes
    out with a consistent length field; one byte more is dropped."""
    ip = (IP(src=LOCAL4, dst=dst) if version == 4 else IPv6(src=LOCAL6, dst=dst))
    l4 = TCP(sport=40000, dport=443, flags="A") if proto == "tcp" else UDP(sport=40000, dport=443)
    room = 65535 + (40 if version == 6 else 0) - len(raw(ip / l4))    # largest clear payload
    fits = None
    for n in range(room - 100, room + 1):
        frame = raw(Ether(src=HOST_MAC, dst=WIRE_MAC) / ip / l4 / Raw(b"z" * n))
        v = dev.process(frame, "out", 1)
        assert v.reason in (None, "unsupported")
        if v.action == "forward":
            assert fits is None or fits == n - 1, "forwarding is not monotonic in size"
            fits = n
            out = v.frame[14:]
            length = struct.unpack_from("!H", out, 2 if version == 4 else 4)[0]
            assert length == (len(out) if version == 4 else len(out) - 40)
        elif fits is not None:
            break
    assert fits is not None and v.action == "drop"
    out_len = len(out) - (0 if version == 4 else 40)
    assert out_len > 65535 - 4, f"packets up to {out_len} bytes should fit"


# the CONFIG plus: IPv6 UDP to alice under AH, and UDP latches everywhere
AH_REFUSAL_CONFIG = CONFIG.replace('[[spd]]\ndir = "out"\nlocal = "2001:db8::1/128"\n',
                                   '[[spd]]\ndir = "out"\nlocal = "2001:db8::1/128"\n'
                                   'remote = "2001:db8:a::/48"\nproto = "udp"\naction = "protect"\n'
                                   'sa = "alice6-ah-out"\n\n'
                                   '[[spd]]\ndir = "out"\nlocal = "2001:db8::1/128"\n', 1) + """
[[template]]
kind = "initiator"
proto = "udp"
"""


@pytest.mark.parametrize("case", ["v4_option_length_zero", "v4_option_past_header", "v6_routing"])
def test_outbound_ah_refusal_changes_no_state(case):
    """A host packet AH cannot protect (an IPv4 option whose length is broken,
    an IPv6 routing header) is dropped before anything changes: no sequence
    number spent, no latch cloned for a datagram that never left."""
    dev = ModelDevice.from_config(parse_config(AH_REFUSAL_CONFIG, "ah-refusal.toml"))
    udp = UDP(sport=5555, dport=53) / Raw(b"q")
    sa, reason = "alice-ah-out", "malformed"
    if case == "v4_option_length_zero":
        pkt = IP(src=LOCAL4, dst=ALICE4, options=b"\x07\x00\x00\x00") / udp
    elif case == "v4_option_past_header":
        pkt = IP(src=LOCAL4, dst=ALICE4, options=b"\x01\x07\x09\x00") / udp
    else:
        pkt = IPv6(src=LOCAL6, dst=ALICE6) / IPv6ExtHdrRouting(addresses=["2001:db8:a::9"]) / udp
        sa, reason = "alice6-ah-out", "unsupported"
    v = expect_drop(dev, raw(Ether(src=HOST_MAC, dst=WIRE_MAC) / pkt), "out", reason)
    assert v.sa == sa
    assert dev.counters()["sa"][sa]["seq"] == 0
    assert dev.list_latches() == [] and dev.drain_events() == []
    # the same datagram without the offending header is protected and latched
    ok = (IP(src=LOCAL4, dst=ALICE4) if sa == "alice-ah-out" else IPv6(src=LOCAL6, dst=ALICE6)) / udp
    v = expect_forward(dev, raw(Ether(src=HOST_MAC, dst=WIRE_MAC) / ok), "out")
    assert v.sa == sa and dev.counters()["sa"][sa]["seq"] == 1 and len(dev.list_latches()) == 1


# -------------------------------------------- clear-text fragments: OPAQUE ports

FRAG_CONFIG = """
[[spd]]
dir = "{dir}"
local = "{local}"
remote = "{remote}"
proto = "udp"
remote_port = "{rport}"
local_port = "{lport}"
action = "bypass"

[[spd]]
dir = "{dir}"
action = "discard"
"""


def _udp_frames(direction: str, version: int):
    """(unfragmented, first fragment, non-first fragment) UDP to/from port 1500."""
    if version == 4:
        local, remote = LOCAL4, ALICE4
        src, dst = (local, remote) if direction == "out" else (remote, local)
        udp = raw(UDP(sport=1500, dport=1500) / Raw(b"x" * 24))
        whole = eth(IP(src=src, dst=dst, id=5) / Raw(udp))
        whole = eth(IP(src=src, dst=dst, id=5, proto=17) / Raw(udp))
        first = eth(IP(src=src, dst=dst, id=5, proto=17, flags="MF") / Raw(udp[:16]))
        later = eth(IP(src=src, dst=dst, id=5, proto=17, frag=2) / Raw(udp[16:]))
    else:
        local, remote = LOCAL6, ALICE6
        src, dst = (local, remote) if direction == "out" else (remote, local)
        udp = raw(IPv6(src=src, dst=dst) / UDP(sport=1500, dport=1500) / Raw(b"x" * 24))[40:]
        whole = eth(IPv6(src=src, dst=dst, nh=17) / Raw(udp))
        first = eth(IPv6(src=src, dst=dst) / IPv6ExtHdrFragment(nh=17, offset=0, m=1, id=5)
                    / Raw(udp[:16]))
        later = eth(IPv6(src=src, dst=dst) / IPv6ExtHdrFragment(nh=17, offset=2, m=0, id=5)
                    / Raw(udp[16:]))
    return local, remote, whole, first, later


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("direction", ["in", "out"])
@pytest.mark.parametrize("ports", ["range", "opaque", "any"])
def test_clear_fragments_have_opaque_ports(direction, version, ports):
    local, remote, whole, first, later = _udp_frames(direction, version)
    rport = {"range": "1000-2000", "opaque": "opaque", "any": "any"}[ports]
    lport = {"range": "1500", "opaque": "opaque", "any": "any"}[ports]
    text = FRAG_CONFIG.format(dir=direction, local=local, remote=remote, rport=rport, lport=lport)
    d = ModelDevice.from_config(parse_config(text, "frag.toml"))
    # whole datagrams and first fragments carry ports: only a port rule or ANY matches
    for frame in (whole, first):
        if ports == "opaque":
            expect_drop(d, frame, direction, "spd_discard")
        else:
            v = expect_forward(d, frame, direction)
            assert v.frame == frame
    # a non-first fragment has OPAQUE ports: a port range cannot match it
    if ports == "range":
        expect_drop(d, later, direction, "spd_discard")
    else:
        v = expect_forward(d, later, direction)
        assert v.frame == later
