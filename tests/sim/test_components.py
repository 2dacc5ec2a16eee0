"""Component tests of the model: replay window, SAD lookup, selectors, latch
table, pcap files, control operations."""

import ipaddress
import zlib

import pytest

from latchnic.config import PortSel, parse_config
from latchnic.sim.device import DeviceError, ModelDevice
from latchnic.sim.latch import LatchTable
from latchnic.sim.pcap import PcapError, PcapWriter, read_pcap
from latchnic.sim.replay import ReplayWindow
from latchnic.sim.selectors import Flow

from scenario_kit import config, host_tcp, host_udp


# ------------------------------------------------------------------ replay

def test_replay_window_basic():
    w = ReplayWindow(64, esn=False)
    assert not w.check(0)
    for s in (1, 3, 2, 64):
        assert w.check(s)
        w.update(s)
        assert not w.check(s)
    assert w.check(4) and w.check(63)
    w.update(200)
    assert not w.check(136) and w.check(137)       # 200 - 137 = 63 < 64


def test_replay_window_big_window_and_sliding():
    w = ReplayWindow(4096, esn=False)
    w.update(5000)
    assert w.check(5000 - 4095) and not w.check(5000 - 4096)
    w.update(1000)
    assert not w.check(1000)
    w.update(9000)                                  # slides past 1000
    assert not w.check(1000) and w.check(9000 - 10)


@pytest.mark.parametrize("top, low, expect", [
    ((1 << 32) + 10, 5, (1 << 32) + 5),              # case B, same epoch
    ((1 << 32) + 10, 0xFFFFFFF0, 0xFFFFFFF0),        # case B, previous epoch, in window
    (0xFFFFFFF0, 2, (1 << 32) + 2),                  # case A, next epoch
    (0xFFFFFFF0, 0xFFFFFFC0, 0xFFFFFFC0),            # case A, same epoch, 48 behind
    (0xFFFFFFF0, 0xFFFFFFA0, (1 << 32) + 0xFFFFFFA0), # case A, 80 behind: outside, next epoch
    (10, 0xFFFFFFF0, None),                          # would be epoch -1
])
def test_esn_inference(top, low, expect):
    w = ReplayWindow(64, esn=True, top=top)
    assert w.infer(low) == expect


# --------------------------------------------------------------------- SAD

def _sad_cfg(entries):
    text = '[[peer]]\nname = "p"\nclaims = ["203.0.113.0/24"]\n'
    for name, src, dst in entries:
        text += f'[[sa]]\nname = "{name}"\ndir = "in"\nspi = 0x5000\nproto = "esp"\nmode = "transport"\n' \
                f'alg = "aes-gcm-128"\nkey = "{"00" * 20}"\npeer = "p"\n'
        text += (f'src = "{src}"\n' if src else "") + (f'dst = "{dst}"\n' if dst else "")
    return parse_config(text)


def test_sad_three_level_longest_match():
    cfg = _sad_cfg([("spi-only", None, None), ("spi-dst", None, "192.0.2.1"),
                    ("spi-dst-src", "203.0.113.5", "192.0.2.1")])
    dev = ModelDevice.from_config(cfg)
    ip = lambda a: int(ipaddress.ip_address(a))
    look = lambda dst, src: dev.sad.lookup_in("esp", 0x5000, 4, ip(dst), ip(src)).name
    assert look("192.0.2.1", "203.0.113.5") == "spi-dst-src"
    assert look("192.0.2.1", "203.0.113.6") == "spi-dst"
    assert look("192.0.2.2", "203.0.113.5") == "spi-only"
    assert dev.sad.lookup_in("ah", 0x5000, 4, ip("192.0.2.1"), ip("203.0.113.5")) is None
    assert dev.sad.lookup_in("esp", 0x5001, 4, ip("192.0.2.1"), ip("203.0.113.5")) is None


# --------------------------------------------------------------- selectors

def test_port_selector_any_range_opaque():
    rng, opaque = PortSel(80, 443), PortSel(opaque=True)
    assert rng.matches(80) and rng.matches(443) and not rng.matches(444)
    assert not rng.matches(None)                    # OPAQUE ports match no range
    assert opaque.matches(None) and not opaque.matches(80)


def test_address_range_selector_and_first_match():
    cfg = parse_config("""
[[spd]]
dir = "out"
remote = "198.51.100.10-198.51.100.20"
proto = "udp"
remote_port = "50-60"
action = "discard"
[[spd]]
dir = "out"
action = "bypass"
""")
    dev = ModelDevice.from_config(cfg)
    assert dev.process(host_udp(dst="198.51.100.15", dport=53), "out", 0).reason == "spd_discard"
    assert dev.process(host_udp(dst="198.51.100.21", dport=53), "out", 0).action == "forward"
    assert dev.process(host_udp(dst="198.51.100.15", dport=61), "out", 0).action == "forward"
    assert dev.process(host_tcp(dst="198.51.100.15", dport=53), "out", 0).action == "forward"


def test_no_matching_rule_is_discard():
    dev = ModelDevice.from_config(parse_config(""))
    v = dev.process(host_udp(), "out", 0)
    assert (v.action, v.reason) == ("drop", "no_policy")
    assert dev.counters()["drops"] == {"no_policy": 1}


# ------------------------------------------------------------- latch table

def test_latch_table_set_is_crc32_of_key_and_full_set_refuses():
    table = LatchTable(capacity=8, ways=2)
    flows = [Flow(4, 0xC0000201, 0xCB007105, 6, 40000 + i, 443) for i in range(64)]
    for f in flows:
        assert table.set_of(f) == zlib.crc32(f.key_bytes()) % 4
    by_set = {}
    for f in flows:
        by_set.setdefault(table.set_of(f), []).append(f)
    s, members = next((s, m) for s, m in by_set.items() if len(m) >= 3)
    a = table.insert(members[0], peer=0, qop=None, template=0, created_ns=0)
    b = table.insert(members[1], peer=0, qop=None, template=0, created_ns=0)
    assert (a.slot, b.slot) == (2 * s, 2 * s + 1)
    assert table.insert(members[2], peer=0, qop=None, template=0, created_ns=0) is None
    table.free(a)
    assert table.insert(members[2], peer=0, qop=None, template=0, created_ns=0).slot == 2 * s


def test_split_latch_table_slots_and_sets_fill_independently():
    """capacity_v6: IPv4 flows in slots 0..7 (4 sets of 2), IPv6 flows in
    slots 8..11 (2 sets of 2); each table's set is the CRC-32 of the 38-byte
    key modulo its own sets, and a full set refuses only its own flows."""
    table = LatchTable(capacity=12, ways=2, capacity_v6=4)
    v4 = [Flow(4, 0xC0000201, 0xCB007105, 6, 40000 + i, 443) for i in range(64)]
    v6 = [Flow(6, 0x20010DB8 << 96 | 1, 0x20010DB8 << 96 | 5, 17, 5000 + i, 53) for i in range(64)]
    for f in v4:
        assert table.set_of(f) == zlib.crc32(f.key_bytes()) % 4
        assert table.first_slot(f) == 2 * table.set_of(f)
    for f in v6:
        assert table.set_of(f) == zlib.crc32(f.key_bytes()) % 2
        assert table.first_slot(f) == 8 + 2 * table.set_of(f)
    new = lambda f: table.insert(f, peer=0, qop=None, template=0, created_ns=0)
    s6 = table.set_of(v6[0])
    same6 = [f for f in v6 if table.set_of(f) == s6]
    a, b = new(same6[0]), new(same6[1])
    assert (a.slot, b.slot) == (8 + 2 * s6, 9 + 2 * s6)
    assert new(same6[2]) is None                  # the IPv6 set is full ...
    s4 = table.set_of(v4[0])
    same4 = [f for f in v4 if table.set_of(f) == s4]
    c = new(same4[0])                              # ... IPv4 flows still clone
    assert c.slot == 2 * s4 and table.lookup(same4[0]) is c and table.lookup(same6[1]) is b
    assert new(same4[1]).slot == 2 * s4 + 1 and new(same4[2]) is None
    other6 = next(f for f in v6 if table.set_of(f) != s6)
    assert new(other6).slot == 8 + 2 * table.set_of(other6)
    table.free(a)
    assert new(same6[2]).slot == 8 + 2 * s6


def test_key_bytes_layout():
    f = Flow(4, 0xC0000201, 0xCB007105, 17, 5000, 53)
    k = f.key_bytes()
    assert len(k) == 38 and k[0] == 4 and k[13:17] == bytes([192, 0, 2, 1]) and k[33] == 17
    assert k[34:36] == (5000).to_bytes(2, "big") and k[36:] == (53).to_bytes(2, "big")


# -------------------------------------------------------------------- pcap

def test_pcap_roundtrip_keeps_nanoseconds(tmp_path):
    p = tmp_path / "x.pcap"
    with PcapWriter(p, nanos=True) as w:
        w.write(1_700_000_000_123_456_789, b"\x01" * 60)
        w.write(5, b"\x02" * 14)
    records, nanos = read_pcap(p)
    assert nanos and [(r.time_ns, r.frame) for r in records] == [
        (1_700_000_000_123_456_789, b"\x01" * 60), (5, b"\x02" * 14)]


def test_pcap_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"\x0a\x0d\x0d\x0a" + bytes(40))       # pcapng
    with pytest.raises(PcapError, match="bad.pcap.*pcapng"):
        read_pcap(bad)
    with pytest.raises(PcapError, match="missing.pcap"):
        read_pcap(tmp_path / "missing.pcap")
    p = tmp_path / "trunc.pcap"
    with PcapWriter(p) as w:
        w.write(0, b"\x00" * 60)
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(PcapError, match="runs past the end"):
        read_pcap(p)


# -------------------------------------------------------- control operations

def test_control_errors_leave_device_unchanged():
    cfg = parse_config(config())
    dev = ModelDevice.from_config(cfg)
    before = (dict(dev.sad.by_name), dev.spd.all(), dict(dev.pad.peers))
    dup = cfg.sas[0]
    with pytest.raises(DeviceError, match="exists"):
        dev.add_sa(dup)
    from dataclasses import replace
    with pytest.raises(DeviceError, match="duplicate inbound SPI"):
        dev.add_sa(replace(dup, name="other"))
    with pytest.raises(DeviceError, match="no peer named 'carol'"):
        dev.add_sa(replace(dup, name="c", spi=0x9999, peer="carol"))
    with pytest.raises(DeviceError, match="no SA named 'nope'"):
        dev.add_spd(replace(cfg.spd[0], sa="nope"))
    with pytest.raises(DeviceError, match="still used"):
        dev.del_peer("alice@example.org")
    with pytest.raises(DeviceError, match="no latch in slot 3"):
        dev.release_latch(3)
    assert (dict(dev.sad.by_name), dev.spd.all(), dict(dev.pad.peers)) == before


def test_apply_keeps_the_index_of_every_peer_that_stays():
    """A new peer listed first takes the lowest index no staying peer holds;
    alice and bob keep theirs (written into SAs and latches), so alice's
    latch still names her and stays ESTABLISHED through the re-check."""
    dev = ModelDevice.from_config(parse_config(config()))
    v = dev.process(host_tcp(flags="S"), "out", 0)
    assert v.latch is not None
    before = dict(dev.pad.index)
    text = config()
    top = text.index("[[peer]]")
    carol = '[[peer]]\nname = "carol@example.org"\nclaims = ["198.51.100.0/24"]\n\n'
    dev.apply(parse_config(text[:top] + carol + text[top:]))
    assert list(dev.pad.peers) == ["carol@example.org", *before]
    assert {n: dev.pad.index[n] for n in before} == before
    assert dev.pad.index["carol@example.org"] == max(before.values()) + 1
    (latch,) = dev.list_latches()
    assert (dev.peer_name(latch.peer), latch.state) == ("alice@example.org", "ESTABLISHED")


def test_pad_full_of_pinned_indexes_is_an_error_that_changes_nothing():
    """A 2-peer PAD: alice's latch pins index 0 after she leaves, bob holds 1.
    An apply or add_peer that needs a third index is refused with a
    DeviceError (not an OverflowError half-way through), the tables as they were."""
    cfg = parse_config(config())
    dev = ModelDevice(cfg.device, peer_capacity=2)
    dev.apply(cfg)
    assert dev.process(host_tcp(flags="S"), "out", 0).latch is not None
    text = config(sas=[("bob-in", "bob@example.org", "in"), ("bob-out", "bob@example.org", "out")],
                  out_sa="bob-out")
    carol = text.replace('name = "alice@example.org"', 'name = "carol@example.org"', 1)
    state = lambda: (dict(dev.pad.index), dict(dev.pad.history), list(dev.sad.by_name), dev.spd.all(),
                     dev.knobs)
    before = state()
    with pytest.raises(DeviceError, match=r"^two.toml: PAD full \(2 peers\)$"):
        dev.apply(parse_config(carol.replace("time_wait_s = 60", "time_wait_s = 61"), "two.toml"))
    assert state() == before
    bob_only = text[:text.index('[[peer]]\nname = "alice')] + text[text.index('[[peer]]\nname = "bob'):]
    dev.apply(parse_config(bob_only, "bob.toml"))
    assert dev.pad.index == {"bob@example.org": 1}
    with pytest.raises(DeviceError, match=r"^PAD full \(2 peers\)$"):
        dev.add_peer(parse_config(carol).peers[0])
    assert dev.pad.index == {"bob@example.org": 1}


def test_host_release_frees_latch_and_reports_event():
    dev = ModelDevice.from_config(parse_config(config()))
    v = dev.process(host_tcp(flags="S"), "out", 0)
    assert v.latch is not None and len(dev.list_latches()) == 1
    dev.release_latch(v.latch)
    assert dev.list_latches() == []
    assert [(e.old, e.new, e.cause) for e in dev.drain_events()] == [
        ("free", "ESTABLISHED", "clone"), ("ESTABLISHED", "free", "release")]
    assert dev.drain_events() == []


def test_template_expected_peer_refuses_other_peer():
    text = config(templates=False) + """
[[template]]
kind = "initiator"
remote = "203.0.113.5"
proto = "tcp"
remote_port = 443
peer = "bob@example.org"
"""
    dev = ModelDevice.from_config(parse_config(text))
    v = dev.process(host_tcp(flags="S"), "out", 0)       # the SPD selects alice's SA
    assert (v.action, v.reason) == ("drop", "latch_peer")
    assert dev.list_latches() == [] and dev.sad.by_name["alice-out"].seq == 0


def test_non_ip_frames_pass_unchanged():
    dev = ModelDevice.from_config(parse_config(config()))
    arp = bytes.fromhex("ffffffffffff020000000001" "0806") + bytes(28)
    for d in ("out", "in"):
        v = dev.process(arp, d, 0)
        assert v.action == "forward" and v.frame == arp


def test_bypassed_frames_lose_ethernet_padding_like_protected_ones():
    cfg = parse_config('[[spd]]\ndir = "out"\naction = "bypass"\n[[spd]]\ndir = "in"\naction = "bypass"\n')
    dev = ModelDevice.from_config(cfg)
    frame = host_tcp(flags="S")
    padded = frame + bytes(60 - len(frame)) if len(frame) < 60 else frame + bytes(6)
    for direction in ("out", "in"):
        v = dev.process(padded, direction, 0)
        assert v.action == "forward" and v.frame == frame


def test_two_packets_at_one_instant_on_a_udp_latch_expire_once():
    dev = ModelDevice.from_config(parse_config(config()))
    dev.process(host_udp(), "out", 0)
    dev.process(host_udp(), "out", 0)            # same timestamp: same deadline pushed twice
    dev.advance(31 * 10**9)
    assert dev.list_latches() == []
    assert [(e.new, e.cause) for e in dev.drain_events()] == [("ESTABLISHED", "clone"), ("free", "timer")]
