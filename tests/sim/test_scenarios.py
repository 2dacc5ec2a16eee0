"""The latching scenarios, each run through `latchnic run` as a user would:
pcaps in, pcaps/JSONL out, scapy playing the remote peers."""

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from scenario_kit import (ALICE, HOST, config, host_tcp, host_udp, is_esp, peer_for, peer_tcp,
                          peer_udp, reasons, run_runner)


def handshake(cfg, alice):
    """Host 192.0.2.1:40000 connects to alice 203.0.113.5:443."""
    return [(0.0, "host", host_tcp(flags="S")),
            (0.1, "wire", alice.seal(peer_tcp(flags="SA"))),
            (0.2, "host", host_tcp(flags="A"))]


def states(outcome):
    return [(e["old"], e["new"], e["cause"]) for e in outcome.events]


def test_latched_connection_flows_both_ways(tmp_path, capsys):
    cfg = config()
    alice = peer_for(cfg, "alice-in", "alice-out")
    frames = handshake(cfg, alice) + [
        (0.3, "host", host_tcp(payload=b"GET / HTTP/1.0\r\n\r\n")),
        (0.4, "wire", alice.seal(peer_tcp(payload=b"HTTP/1.0 200 OK\r\n\r\n")))]
    out = run_runner(tmp_path, cfg, frames, capsys=capsys)
    assert out.drops == []
    assert len(out.wire_out) == 3 and all(is_esp(f) for _, f in out.wire_out)
    opened = [alice.open(f) for _, f in out.wire_out]
    assert bytes(opened[2][TCP].payload) == b"GET / HTTP/1.0\r\n\r\n"
    assert [bytes(Ether(f)[TCP].payload) for _, f in out.host_out] == [b"", b"HTTP/1.0 200 OK\r\n\r\n"]
    assert states(out) == [("free", "ESTABLISHED", "clone")]
    assert "alice@example.org" in out.events[0]["peer"]
    # output frames keep the timestamps of their inputs
    assert [round(t, 6) for t, _ in out.wire_out] == [0.0, 0.2, 0.3]


def test_flow_stealing_injection_is_dropped(tmp_path, capsys):
    """bob may claim alice's address (shared pool); the latch still says alice."""
    cfg = config()
    alice = peer_for(cfg, "alice-in", "alice-out")
    bob = peer_for(cfg, "bob-in")
    frames = handshake(cfg, alice) + [
        (0.3, "wire", bob.seal(peer_tcp(payload=b"evil"))),
        (0.4, "wire", bob.seal(peer_tcp(flags="R"))),
        (0.5, "wire", alice.seal(peer_tcp(payload=b"good")))]
    out = run_runner(tmp_path, cfg, frames, capsys=capsys)
    assert reasons(out) == ["latch_peer", "latch_peer"]
    assert [d["sa"] for d in out.drops] == ["bob-in", "bob-in"]
    delivered = [bytes(Ether(f)[TCP].payload) for _, f in out.host_out]
    assert b"evil" not in delivered and delivered[-1] == b"good"
    assert states(out) == [("free", "ESTABLISHED", "clone")]     # bob's RST did not close it


def test_flow_stealing_without_latching_succeeds(tmp_path, capsys):
    """The attack is real: with no templates, bob's injection reaches the host."""
    cfg = config(templates=False)
    alice = peer_for(cfg, "alice-in", "alice-out")
    bob = peer_for(cfg, "bob-in")
    frames = handshake(cfg, alice) + [(0.3, "wire", bob.seal(peer_tcp(payload=b"evil")))]
    out = run_runner(tmp_path, cfg, frames, capsys=capsys)
    assert out.drops == []
    assert bytes(Ether(out.host_out[-1][1])[TCP].payload) == b"evil"


def test_flow_stealing_outbound_reroute_breaks_latch(tmp_path, capsys):
    """The SPD is changed to send alice's address through bob's SA: nothing of
    the latched flow goes to bob; the latch goes BROKEN; new flows do use bob."""
    cfg = config()
    alice = peer_for(cfg, "alice-in", "alice-out")
    frames = handshake(cfg, alice) + [
        (1.1, "host", host_tcp(payload=b"secret")),
        (1.2, "host", host_tcp(payload=b"secret2")),
        (1.3, "host", host_tcp(sport=40001, flags="S"))]       # a new connection
    out = run_runner(tmp_path, cfg, frames, applies=[(1.0, config(out_sa="bob-out"))], capsys=capsys)
    assert reasons(out) == ["latch_broken", "latch_broken"]
    assert ("ESTABLISHED", "BROKEN", "config_applied") in states(out)
    # wire: the 2 handshake frames under alice's SPI, then only the new flow's SYN under bob's
    spis = [Ether(f)[IP].payload.spi for _, f in out.wire_out]
    assert spis == [0x2001, 0x2001, 0x2003]
    bob = peer_for(config(out_sa="bob-out"), "bob-in", "bob-out")
    assert bob.open(out.wire_out[2][1])[TCP].sport == 40001


def test_policy_drift_to_bypass_leaks_nothing_and_recovers(tmp_path, capsys):
    cfg = config()
    bypass = config(out_action="bypass", in_action="bypass")
    alice = peer_for(cfg, "alice-in", "alice-out")
    frames = handshake(cfg, alice) + [
        (1.1 + i / 10, "host", host_tcp(payload=b"payload%d" % i)) for i in range(5)] + [
        (1.7, "wire", bytes(Ether() / peer_tcp(payload=b"clear reply"))),
        (2.1, "host", host_tcp(payload=b"after restore")),
        (2.2, "host", host_tcp(sport=50000, dport=80, flags="S"))]  # unlatched: bypass applies to it? no, restored
    out = run_runner(tmp_path, cfg, frames, applies=[(1.0, bypass), (2.0, cfg)], capsys=capsys)
    # not one clear-text frame of the latched flow left the device
    for _, f in out.wire_out:
        p = Ether(f)
        assert is_esp(f), p.summary()
    assert reasons(out) == ["latch_broken"] * 6
    assert states(out) == [("free", "ESTABLISHED", "clone"), ("ESTABLISHED", "BROKEN", "config_applied"),
                           ("BROKEN", "ESTABLISHED", "config_applied"), ("free", "ESTABLISHED", "clone")]
    assert bytes(alice.open(out.wire_out[2][1])[TCP].payload) == b"after restore"


def test_policy_drift_unlatched_flow_does_go_clear(tmp_path, capsys):
    """Contrast: a flow that no template latched follows the SPD into clear text."""
    cfg = config(templates=False)
    frames = [(0.0, "host", host_tcp(flags="S")), (1.1, "host", host_tcp(payload=b"x"))]
    out = run_runner(tmp_path, cfg, frames, applies=[(1.0, config(out_action="bypass", templates=False))],
                     capsys=capsys)
    assert [is_esp(f) for _, f in out.wire_out] == [True, False]


def test_rekey_to_equivalent_sa_keeps_latch(tmp_path, capsys):
    sas = [("alice-in", "alice@example.org", "in"), ("alice-out", "alice@example.org", "out"),
           ("alice-out2", "alice@example.org", "out"), ("bob-in", "bob@example.org", "in")]
    cfg = config(sas=sas)
    rekeyed = config(out_sa="alice-out2", sas=[s for s in sas if s[0] != "alice-out"])
    alice = peer_for(cfg, "alice-in", "alice-out")
    frames = handshake(cfg, alice) + [(1.1, "host", host_tcp(payload=b"after rekey")),
                                      (1.2, "wire", alice.seal(peer_tcp(payload=b"ok")))]
    out = run_runner(tmp_path, cfg, frames, applies=[(1.0, rekeyed)], capsys=capsys)
    assert out.drops == []
    assert states(out) == [("free", "ESTABLISHED", "clone")]       # never BROKEN
    last = out.wire_out[-1][1]
    assert Ether(last)[IP].payload.spi == 0x2002
    assert bytes(peer_for(rekeyed, "alice-in", "alice-out2").open(last)[TCP].payload) == b"after rekey"


def test_rekey_to_weaker_sa_breaks_latch(tmp_path, capsys):
    sas = [("alice-in", "alice@example.org", "in"), ("alice-out", "alice@example.org", "out"),
           ("alice-out2", "alice@example.org", "out")]
    cfg = config(sas=sas)
    weaker = config(out_sa="alice-out2", sas=sas, sa_extra={"alice-out2": "icv = 8"})
    alice = peer_for(cfg, "alice-in", "alice-out")
    frames = handshake(cfg, alice) + [(1.1, "host", host_tcp(payload=b"x"))]
    out = run_runner(tmp_path, cfg, frames, applies=[(1.0, weaker)], capsys=capsys)
    assert reasons(out) == ["latch_broken"]
    assert ("ESTABLISHED", "BROKEN", "config_applied") in states(out)


def test_deleting_peer_sa_breaks_and_new_sa_repairs(tmp_path, capsys):
    cfg = config()
    no_alice_in = config(sas=[("alice-out", "alice@example.org", "out"), ("bob-in", "bob@example.org", "in")])
    alice = peer_for(cfg, "alice-in", "alice-out")
    frames = handshake(cfg, alice) + [(1.1, "host", host_tcp(payload=b"x")),
                                      (2.1, "host", host_tcp(payload=b"y"))]
    out = run_runner(tmp_path, cfg, frames, applies=[(1.0, no_alice_in), (2.0, cfg)], capsys=capsys)
    assert reasons(out) == ["latch_broken"]
    assert states(out)[1:] == [("ESTABLISHED", "BROKEN", "config_applied"),
                               ("BROKEN", "ESTABLISHED", "config_applied")]
    # the replay window of the re-added SA starts afresh; alice's payload y still goes out
    assert bytes(alice.open(out.wire_out[-1][1])[TCP].payload) == b"y"


def test_tcp_fin_both_ways_time_wait_then_free(tmp_path, capsys):
    cfg = config(device="")
    alice = peer_for(cfg, "alice-in", "alice-out")
    bob = peer_for(cfg, "bob-in")
    frames = handshake(cfg, alice) + [
        (1.0, "host", host_tcp(flags="FA")),
        (1.1, "wire", alice.seal(peer_tcp(flags="FA"))),
        (1.2, "host", host_tcp(flags="A")),
        (30.0, "wire", bob.seal(peer_tcp(payload=b"late injection"))),   # TIME_WAIT still enforces
        (61.0, "host", host_tcp(flags="A")),                             # before expiry: still latched
        (61.2, "host", host_udp())]                                      # after 1.1 + 60 s: freed
    out = run_runner(tmp_path, cfg, frames, capsys=capsys)
    assert reasons(out) == ["latch_peer"]
    assert states(out)[:3] == [("free", "ESTABLISHED", "clone"), ("ESTABLISHED", "TIME_WAIT", "fin"),
                               ("TIME_WAIT", "free", "timer")]
    tw = out.events[1]["time_ns"] / 1e9
    freed = out.events[2]["time_ns"] / 1e9
    assert round(tw, 6) == 1.1 and round(freed, 6) == 61.2


def test_tcp_rst_moves_to_time_wait(tmp_path, capsys):
    cfg = config()
    alice = peer_for(cfg, "alice-in", "alice-out")
    frames = handshake(cfg, alice) + [(1.0, "wire", alice.seal(peer_tcp(flags="R")))]
    out = run_runner(tmp_path, cfg, frames, capsys=capsys)
    assert states(out) == [("free", "ESTABLISHED", "clone"), ("ESTABLISHED", "TIME_WAIT", "rst")]


def test_udp_latch_idle_expiry(tmp_path, capsys):
    cfg = config()
    alice = peer_for(cfg, "alice-in", "alice-out")
    bob = peer_for(cfg, "bob-in")
    frames = [(0.0, "host", host_udp()),
              (20.0, "wire", alice.seal(peer_udp())),      # refreshes the idle timer
              (45.0, "wire", bob.seal(peer_udp())),        # 25 s idle: still latched to alice
              (80.0, "wire", bob.seal(peer_udp()))]        # 60 s idle: freed, bob's datagram clones
    out = run_runner(tmp_path, cfg, frames, capsys=capsys)
    assert reasons(out) == ["latch_peer"]
    assert [(e["new"], e["cause"]) for e in out.events] == [
        ("ESTABLISHED", "clone"), ("free", "timer"), ("ESTABLISHED", "clone")]
    assert out.events[1]["time_ns"] == 80_000_000_000
    assert "bob@example.org" in out.events[2]["peer"]


def test_latch_table_full_fails_closed(tmp_path, capsys):
    cfg = config(device="latch_capacity = 4\nlatch_ways = 4")
    alice = peer_for(cfg, "alice-in", "alice-out")
    frames = [(i / 10, "host", host_tcp(sport=41000 + i, flags="S")) for i in range(6)]
    frames.append((1.0, "host", host_tcp(sport=41000, payload=b"old flow still works")))
    out = run_runner(tmp_path, cfg, frames, capsys=capsys)
    assert reasons(out) == ["latch_table_full", "latch_table_full"]
    assert [d["index"] for d in out.drops] == [4, 5]
    assert len(out.wire_out) == 5 and all(is_esp(f) for _, f in out.wire_out)
    assert sum(1 for e in out.events if e["cause"] == "clone") == 4
    assert bytes(alice.open(out.wire_out[-1][1])[TCP].payload) == b"old flow still works"


def test_split_latch_table_ipv4_flows_stay_in_their_table(tmp_path, capsys):
    """latch_capacity_v6: 4 IPv4 slots (one set) then 4 IPv6 slots; the free
    IPv6 slots do not take IPv4 flows: the 5th and 6th SYN fail closed."""
    cfg = config(device="latch_capacity = 8\nlatch_ways = 4\nlatch_capacity_v6 = 4")
    frames = [(i / 10, "host", host_tcp(sport=41000 + i, flags="S")) for i in range(6)]
    out = run_runner(tmp_path, cfg, frames, capsys=capsys)
    assert reasons(out) == ["latch_table_full", "latch_table_full"]
    assert [e["slot"] for e in out.events if e["cause"] == "clone"] == [0, 1, 2, 3]


def test_replay_is_dropped_and_forgery_does_not_move_window(tmp_path, capsys):
    cfg = config()
    alice = peer_for(cfg, "alice-in", "alice-out")
    forged = bytearray(alice.seal(peer_tcp(payload=b"forged"), seq=1000))
    forged[-1] ^= 1
    frames = handshake(cfg, alice) + [
        (1.0, "wire", alice.seal(peer_tcp(payload=b"a"), seq=10)),
        (1.1, "wire", alice.seal(peer_tcp(payload=b"a again"), seq=10)),     # replayed number
        (1.2, "wire", bytes(forged)),                                          # bad ICV at 1000
        (1.3, "wire", alice.seal(peer_tcp(payload=b"b"), seq=9)),             # in window, fresh
        (1.4, "wire", alice.seal(peer_tcp(payload=b"c"), seq=80)),
        (1.5, "wire", alice.seal(peer_tcp(payload=b"too old"), seq=16)),      # 80 - 16 >= 64
        (1.6, "wire", alice.seal(peer_tcp(payload=b"d"), seq=17))]            # 80 - 17 < 64
    out = run_runner(tmp_path, cfg, frames, capsys=capsys)
    assert reasons(out) == ["replay", "icv", "replay"]
    payloads = [bytes(Ether(f)[TCP].payload) for _, f in out.host_out]
    assert payloads == [b"", b"a", b"b", b"c", b"d"]


def test_esn_across_the_32_bit_boundary(tmp_path, capsys):
    start = 0xFFFFFFF0
    extra = f"esn = true\nseq = {start}"
    cfg = config(sa_extra={"alice-in": extra, "alice-out": extra})
    alice = peer_for(cfg, "alice-in", "alice-out")
    frames = handshake(cfg, alice)
    seqs = [start + 5, 0xFFFFFFFF, 1 << 32, (1 << 32) + 1, (1 << 32) + 40, 0xFFFFFFFE]
    for i, s in enumerate(seqs):
        frames.append((1 + i / 10, "wire", alice.seal(peer_tcp(payload=b"in%d" % i), seq=s)))
    for i in range(20):
        frames.append((2 + i / 100, "host", host_tcp(payload=b"out%d" % i)))
    out = run_runner(tmp_path, cfg, frames, capsys=capsys)
    assert out.drops == []
    assert len(out.host_out) == 1 + len(seqs)
    # our outbound numbers run from start+1 across 2^32; scapy verifies each with the high half
    for n, (_, f) in enumerate(out.wire_out):
        seq = start + 1 + n
        assert Ether(f)[IP].payload.seq == seq & 0xFFFFFFFF
        alice.open(f, seq_high=seq >> 32)
    assert n + 1 == 22 and (start + 22) >> 32 == 1


def test_esn_wrong_high_half_is_an_icv_failure(tmp_path, capsys):
    """A number far ahead of the window is taken as the next epoch's; the
    sender meant another, so the authenticated high half differs."""
    extra = "esn = true\nseq = 100"
    cfg = config(sa_extra={"alice-in": extra})
    alice = peer_for(cfg, "alice-in", "alice-out")
    frames = [(0.0, "wire", alice.seal(peer_udp(), seq=(5 << 32) + 50))]
    out = run_runner(tmp_path, cfg, frames, capsys=capsys)
    assert reasons(out) == ["icv"]


def test_sequence_number_exhaustion_stops_the_sa(tmp_path, capsys):
    cfg = config(sa_extra={"alice-out": "seq = 4294967293"})
    alice = peer_for(cfg, "alice-in", "alice-out")
    frames = [(i / 10, "host", host_udp(payload=b"%d" % i)) for i in range(4)]
    out = run_runner(tmp_path, cfg, frames, capsys=capsys)
    assert [Ether(f)[IP].payload.seq for _, f in out.wire_out] == [0xFFFFFFFE, 0xFFFFFFFF]
    assert reasons(out) == ["seq_exhausted", "seq_exhausted"]
    assert bytes(alice.open(out.wire_out[1][1])[UDP].payload) == b"1"


def test_clear_text_to_latched_flow_and_to_protect_policy(tmp_path, capsys):
    cfg = config()
    alice = peer_for(cfg, "alice-in", "alice-out")
    frames = handshake(cfg, alice) + [
        (1.0, "wire", bytes(Ether() / peer_tcp(payload=b"clear into latch"))),
        (1.1, "wire", bytes(Ether() / peer_tcp(sport=9, dport=9, payload=b"clear, no latch")))]
    out = run_runner(tmp_path, cfg, frames, capsys=capsys)
    assert reasons(out) == ["latch_clear", "spd_clear"]


def test_pad_claims_limit_what_a_peer_may_speak_for(tmp_path, capsys):
    """alice may only claim the pool; a packet from an address outside it,
    even under her valid SA, is refused by the PAD."""
    # alice-in becomes an (SPI, dst) SAD entry: any outer source may use it
    cfg = config().replace('remote = "203.0.113.0/24"\naction = "protect"\n',
                           'remote = "any"\naction = "protect"\n'
                           ).replace('src = "203.0.113.5"\ndst = "192.0.2.1"', 'dst = "192.0.2.1"', 1)
    alice = peer_for(cfg, "alice-in", "alice-out")
    frames = [(0.0, "wire", alice.seal(peer_udp(src="198.51.100.7"))),
              (0.1, "wire", alice.seal(peer_udp(src="203.0.113.77")))]
    out = run_runner(tmp_path, cfg, frames, capsys=capsys)
    assert reasons(out) == ["pad_claim"]
    assert len(out.host_out) == 1


def test_listener_template_latches_inbound_connection(tmp_path, capsys):
    cfg = config()
    alice = peer_for(cfg, "alice-in", "alice-out")
    bob = peer_for(cfg, "bob-in")
    frames = [(0.0, "wire", alice.seal(peer_tcp(sport=50000, dport=22, flags="S"))),
              (0.1, "host", host_tcp(sport=22, dport=50000, flags="SA")),
              (0.2, "wire", bob.seal(peer_tcp(sport=50000, dport=22, payload=b"x"))),
              (0.3, "wire", alice.seal(peer_tcp(sport=50000, dport=22, payload=b"y")))]
    out = run_runner(tmp_path, cfg, frames, capsys=capsys)
    assert reasons(out) == ["latch_peer"]
    assert out.events[0]["flow"] == f"tcp {HOST}:22 <-> {ALICE}:50000"
    assert len(out.host_out) == 2 and len(out.wire_out) == 1


def test_readme_main_job_demo_runs_from_the_console_script(tmp_path):
    """`latchnic demo`, exactly as the README gives it, through the installed entry point."""
    import json
    import shutil
    import subprocess
    exe = shutil.which("latchnic")
    assert exe, "the latchnic console script is not installed"
    proc = subprocess.run([exe, "demo", "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 in clear text" in proc.stdout and "injected by bob" not in proc.stdout.split("host-out")[1]
    drops = [json.loads(l) for l in (tmp_path / "drops.jsonl").read_text().splitlines()]
    assert [d["reason"] for d in drops] == ["latch_peer", "latch_broken", "latch_broken", "latch_broken"]
