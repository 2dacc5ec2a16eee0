"""Two model devices back to back, one per end of the wire, for every
protocol/mode/IP version: what one host sends arrives unchanged at the other,
both ends latch the connection to each other, and a third party's SA is
refused by the latches. (scapy has no AH-GMAC, so this covers AH's datapath
beside the outside checks of test_ah_gmac.py.)"""

import itertools

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from latchnic.config import parse_config
from latchnic.sim.device import ModelDevice

ADDR = {4: ("192.0.2.1", "203.0.113.5", "198.51.100.1", "198.51.100.2"),
        6: ("2001:db8::1", "2001:db8:5::5", "2001:db8:a::1", "2001:db8:a::2")}


def side(me, peer_name, peer_claim, out_spi, in_spi, out_key, in_key, proto, mode, alg, outer):
    """One end: its host's address `me`, talking to `peer_name`."""
    o_src, o_dst = outer
    sa = lambda name, d, spi, key, src, dst: f"""
[[sa]]
name = "{name}"
dir = "{d}"
spi = {spi}
proto = "{proto}"
mode = "{mode}"
alg = "{alg}"
key = "{key}"
peer = "{peer_name}"
src = "{src}"
dst = "{dst}"
"""
    return (f'[[peer]]\nname = "{peer_name}"\nclaims = ["{peer_claim}"]\n'
            + sa("out", "out", out_spi, out_key, o_src, o_dst)
            + sa("in", "in", in_spi, in_key, o_dst, o_src)
            + f"""
[[spd]]
dir = "out"
local = "{me}"
action = "protect"
sa = "out"
[[spd]]
dir = "in"
local = "{me}"
action = "protect"
[[template]]
kind = "initiator"
local = "{me}"
proto = "tcp"
[[template]]
kind = "listener"
local = "{me}"
proto = "tcp"
local_port = 80
""")


def pair(proto, mode, alg, inner_v, outer_v):
    n = 32 if alg.endswith("256") else 16
    KA, KB = "a5" * n + "01020304", "5a" * n + "05060708"
    a, b, ga, gb = ADDR[inner_v]
    oa, ob = (ADDR[outer_v][2], ADDR[outer_v][3]) if mode == "tunnel" else (a, b)
    plen = 32 if inner_v == 4 else 128
    dev_a = ModelDevice.from_config(parse_config(side(a, "b.example", f"{b}/{plen}", 0x100, 0x200, KA, KB,
                                                      proto, mode, alg, (oa, ob))))
    dev_b = ModelDevice.from_config(parse_config(side(b, "a.example", f"{a}/{plen}", 0x200, 0x100, KB, KA,
                                                      proto, mode, alg, (ob, oa))))
    return dev_a, dev_b, a, b


def frame(src, dst, sport, dport, flags, payload=b""):
    ip = IP(src=src, dst=dst) if ":" not in src else IPv6(src=src, dst=dst)
    return bytes(Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b") / ip /
                 TCP(sport=sport, dport=dport, flags=flags) / payload)


CASES = [("esp", m, alg, iv, ov) for m, alg, iv, ov in itertools.product(
    ("transport", "tunnel"), ("aes-gcm-128", "aes-gcm-256", "gmac-128", "gmac-256"), (4, 6), (4, 6))
    if m == "tunnel" or iv == ov]
CASES += [("ah", m, alg, iv, ov) for m, alg, iv, ov in itertools.product(
    ("transport", "tunnel"), ("gmac-128", "gmac-256"), (4, 6), (4, 6)) if m == "tunnel" or iv == ov]


@pytest.mark.parametrize("proto, mode, alg, inner_v, outer_v", CASES)
def test_back_to_back(proto, mode, alg, inner_v, outer_v):
    dev_a, dev_b, a, b = pair(proto, mode, alg, inner_v, outer_v)
    t = 0
    conversation = [("a", "S", b""), ("b", "SA", b""), ("a", "A", b"x" * 37), ("b", "PA", b"y" * 1200),
                    ("a", "FA", b""), ("b", "FA", b"")]
    for who, flags, data in conversation:
        src_dev, dst_dev = (dev_a, dev_b) if who == "a" else (dev_b, dev_a)
        src, dst, sport, dport = (a, b, 40000, 80) if who == "a" else (b, a, 80, 40000)
        sent = frame(src, dst, sport, dport, flags, data)
        t += 1_000_000
        wire = src_dev.process(sent, "out", t)
        assert wire.action == "forward", wire.reason
        outer = Ether(wire.frame).payload
        assert outer.proto if outer.version == 4 else outer.nh in (50, 51)
        if proto == "esp" and alg.startswith("aes") and data:
            assert data not in wire.frame                      # encrypted
        got = dst_dev.process(wire.frame, "in", t)
        assert got.action == "forward", got.reason
        assert got.frame[14:] == sent[14:]                      # the same IP packet arrives
    for dev, peer in ((dev_a, "b.example"), (dev_b, "a.example")):
        (latch,) = dev.list_latches()
        assert dev.peer_name(latch.peer) == peer and latch.state == "TIME_WAIT"
        assert latch.qop.proto == proto and latch.qop.mode == mode


@pytest.mark.parametrize("proto, alg", [("esp", "aes-gcm-128"), ("ah", "gmac-128")])
def test_back_to_back_tamper_and_replay(proto, alg):
    dev_a, dev_b, a, b = pair(proto, "transport", alg, 4, 4)
    wire = dev_a.process(frame(a, b, 40000, 80, "S"), "out", 0).frame
    assert dev_b.process(wire, "in", 0).action == "forward"
    assert dev_b.process(wire, "in", 1).reason == "replay"
    nxt = bytearray(dev_a.process(frame(a, b, 40000, 80, "A", b"data"), "out", 2).frame)
    nxt[-20] ^= 0x40                                           # payload (or ICV) bit
    assert dev_b.process(bytes(nxt), "in", 3).reason == "icv"
    assert dev_b.counters()["sa"]["in"]["drops"] == {"replay": 1, "icv": 1}
