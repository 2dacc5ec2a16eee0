"""Every `latchnic` driver subcommand against the reference model served on a
control socket, with the exact error for bad input and proof that a refused
command leaves the device unchanged."""

from __future__ import annotations

import json
import threading

from driver_kit import ALICE, HOST, SA_ARGS, from_alice, run, run_json, snapshot, syn


def refused(device, argv, message):
    """The command fails with status 2, prints exactly `message`, changes nothing."""
    before = snapshot(device)
    rc, out, err = run(*argv)
    assert (rc, out, err.strip()) == (2, "", message)
    assert snapshot(device) == before


# ------------------------------------------------------------------- peers

def test_peer_add_list_del(device):
    rc, out, err = run("peer", "add", "name", "carol@example.org", "claims", "198.51.100.0/24,198.51.100.128/25")
    assert (rc, err) == (0, "")
    peers = {p["name"]: p for p in run_json("peer", "list")}
    assert peers["carol@example.org"] == {"name": "carol@example.org", "index": 2,
                                          "claims": ["198.51.100.0/24", "198.51.100.128/25"]}
    rc, out, _ = run("peer", "list")
    assert "peer carol@example.org index 2 claims 198.51.100.0/24,198.51.100.128/25" in out
    assert run("peer", "del", "carol@example.org")[0] == 0
    assert "carol@example.org" not in {p["name"] for p in device.peers()}


def test_peer_errors(device):
    refused(device, ["peer", "add", "name", "x", "claims", "198.51.100.300/24"],
            "latchnic peer add: argument 'claims': bad address selector '198.51.100.300/24': "
            "'198.51.100.300/24' does not appear to be an IPv4 or IPv6 network")
    refused(device, ["peer", "add", "name", "alice@example.org"],
            "latchnic peer add: peer 'alice@example.org' exists")
    refused(device, ["peer", "add", "claims", "198.51.100.0/24"],
            "latchnic peer add: argument 'name': missing (required)")
    refused(device, ["peer", "del", "alice@example.org"],
            "latchnic peer del: peer 'alice@example.org' is still used by alice-in, alice-out")
    refused(device, ["peer", "del", "nobody"], "latchnic peer del: no peer named 'nobody'")


# --------------------------------------------------------------------- SAs

def test_sa_add_list_del(device):
    rc, out, err = run("sa", "add", "name", "alice-in2", *SA_ARGS, "icv", "12", "esn", "true")
    assert (rc, err) == (0, "")
    sas = {s["name"]: s for s in run_json("sa", "list")}
    new = sas["alice-in2"]
    assert "key" not in new
    assert (new["spi"], new["icv"], new["esn"], new["src"], new["counters"]["packets"]) == (
        0x1003, 12, True, "203.0.113.6", 0)
    keyed = {s["name"]: s for s in run_json("sa", "list", "--keys")}
    assert keyed["alice-in2"]["key"] == "303132333435363738393a3b3c3d3e3f0badf00d"
    rc, out, _ = run("sa", "list")
    assert ("sa alice-in2 dir in spi 0x00001003 proto esp mode transport alg aes-gcm-128 icv 12 "
            "esn true peer alice@example.org src 203.0.113.6 dst 192.0.2.1 seq 0") in out
    assert run("sa", "del", "alice-in2")[0] == 0
    assert "alice-in2" not in {s["name"] for s in device.sas()}


def test_sa_errors(device):
    refused(device, ["sa", "add", "name", "n", *SA_ARGS[:-2], "dst", "192.0.2.300"],
            "latchnic sa add: argument 'dst': '192.0.2.300' does not appear to be an IPv4 or IPv6 address")
    bad_key = list(SA_ARGS)
    bad_key[bad_key.index("key") + 1] = "00" * 16
    refused(device, ["sa", "add", "name", "n", *bad_key],
            "latchnic sa add: argument 'key': aes-gcm-128 needs 20 bytes (key || 4-byte salt), got 16")
    dup = list(SA_ARGS)
    dup[dup.index("spi") + 1] = "0x1001"
    dup[dup.index("src") + 1] = "203.0.113.5"
    refused(device, ["sa", "add", "name", "n", *dup],
            "latchnic sa add: argument 'spi': duplicate inbound SPI 0x1001 (same as 'alice-in')")
    refused(device, ["sa", "add", "name", "n", *SA_ARGS, "colour", "blue"],
            "latchnic sa add: argument 'colour': unknown field")
    bad_spi = list(SA_ARGS)
    bad_spi[bad_spi.index("spi") + 1] = "lots"
    refused(device, ["sa", "add", "name", "n", *bad_spi],
            "latchnic sa add: argument 'spi': expected int, got str 'lots'")
    refused(device, ["sa", "add", "name", "n", *SA_ARGS[:-1]],
            "latchnic sa add: argument 'dst' needs a value")
    refused(device, ["sa", "add", "name", "alice-in", *SA_ARGS],
            "latchnic sa add: SA 'alice-in' exists")
    refused(device, ["sa", "del", "nothing"], "latchnic sa del: no SA named 'nothing'")


def test_sa_table_full(device):
    assert run("sa", "add", "name", "fourth", *SA_ARGS)[0] == 0          # capacity 4
    more = list(SA_ARGS)
    more[more.index("spi") + 1] = "0x1004"
    refused(device, ["sa", "add", "name", "fifth", *more],
            "latchnic sa add: SAD full: 5 SAs, capacity 4")


# --------------------------------------------------------------------- SPD

def test_spd_add_list_del(device):
    rc, out, err = run("spd", "add", "dir", "out", "local", "192.0.2.1/32", "remote", "198.51.100.0/24",
                       "proto", "udp", "remote_port", "53", "action", "bypass", "index", "0")
    assert (rc, err) == (0, "")
    rules = run_json("spd", "list")
    assert rules[0] == {"dir": "out", "action": "bypass", "local": "192.0.2.1/32",
                        "remote": "198.51.100.0/24", "proto": "udp", "local_port": "any",
                        "remote_port": 53, "index": 0}
    assert rules[1]["sa"] == "alice-out" and rules[1]["index"] == 1
    rc, out, _ = run("spd", "list")
    assert "spd out 0: action bypass local 192.0.2.1/32 remote 198.51.100.0/24 proto udp" in out
    assert run("spd", "del", "out", "0")[0] == 0
    assert [r["action"] for r in device.spd()] == ["protect", "protect"]


def test_spd_errors(device):
    refused(device, ["spd", "add", "dir", "out", "action", "protect", "sa", "nope"],
            "latchnic spd add: argument 'sa': no SA named 'nope'")
    refused(device, ["spd", "add", "dir", "out", "action", "protect", "sa", "alice-in"],
            "latchnic spd add: argument 'sa': SA 'alice-in' is dir=in, the rule dir=out")
    refused(device, ["spd", "add", "dir", "in", "action", "bypass", "remote_port", "70000"],
            "latchnic spd add: argument 'remote_port': bad port '70000': ports are 0..65535, low to high")
    refused(device, ["spd", "add", "dir", "in", "action", "bypass", "local", "10.0.0.1/8"],
            "latchnic spd add: argument 'local': bad address selector '10.0.0.1/8': "
            "10.0.0.1/8 has host bits set")
    refused(device, ["spd", "add", "dir", "in", "action", "bypass", "index", "5"],
            "latchnic spd add: SPD in index 5 outside 0..1")
    refused(device, ["spd", "del", "out", "3"], "latchnic spd del: no SPD out rule at index 3")
    refused(device, ["spd", "del", "out", "first"],
            "latchnic spd del: argument 'index': expected an integer, got 'first'")


# --------------------------------------------------------------- templates

def test_template_add_list_del(device):
    rc, out, err = run("template", "add", "kind", "listener", "local", "192.0.2.1", "proto", "tcp",
                       "local_port", "22", "peer", "alice@example.org")
    assert (rc, out, err) == (0, "template 1\n", "")
    assert run_json("template", "add", "kind", "initiator", "proto", "udp") == {"id": 2}
    rows = run_json("template", "list")
    assert [r["id"] for r in rows] == [0, 1, 2]
    assert rows[1] == {"id": 1, "kind": "listener", "local": "192.0.2.1/32", "proto": "tcp",
                       "local_port": 22, "peer": "alice@example.org"}
    rc, out, _ = run("template", "list")
    assert "template 1: kind listener local 192.0.2.1/32 proto tcp local_port 22 peer alice@example.org" in out
    assert run("template", "del", "1")[0] == 0
    assert [t["id"] for t in device.templates()] == [0, 2]


def test_template_errors(device):
    assert run("template", "add", "kind", "listener", "local_port", "22")[0] == 0
    assert run("template", "add", "kind", "listener", "local_port", "23")[0] == 0   # capacity 3
    refused(device, ["template", "add", "kind", "listener", "local_port", "24"],
            "latchnic template add: template table full (3)")
    device.del_template(2)
    refused(device, ["template", "add", "kind", "listener", "remote", "203.0.113.0/24"],
            "latchnic template add: argument 'remote': a listener template is a 3-tuple "
            "(local, proto, local_port)")
    refused(device, ["template", "add", "kind", "initiator", "proto", "icmp"],
            "latchnic template add: argument 'proto': protocol 'icmp' not allowed here (tcp, udp or any)")
    refused(device, ["template", "add", "kind", "initiator", "peer", "mallory"],
            "latchnic template add: no peer named 'mallory'")
    refused(device, ["template", "del", "9"], "latchnic template del: no template with id 9")


# ----------------------------------------------------------------- latches

def _latch(device):
    v = device.process(syn(), "out", 1_000)
    assert v.action == "forward" and v.latch is not None
    return v.latch


def test_latch_list_show_release(device):
    slot = _latch(device)
    device.process(from_alice(), "in", 2_000)
    rows = run_json("latch", "list")
    assert len(rows) == 1
    l = rows[0]
    assert (l["slot"], l["peer"], l["state"], l["qop"], l["flow"]) == (
        slot, "alice@example.org", "ESTABLISHED", "esp/transport/aes-gcm-128/icv16",
        f"tcp {HOST}:40000 <-> {ALICE}:443")
    assert l["packets"] == {"in": 1, "out": 1}
    rc, out, _ = run("latch", "list")
    assert out.startswith(f"latch {slot} tcp {HOST}:40000 <-> {ALICE}:443 peer alice@example.org "
                          "qop esp/transport/aes-gcm-128/icv16 state ESTABLISHED packets in 1 out 1")
    rc, out, _ = run("latch", "show", slot)
    assert rc == 0 and "peer     alice@example.org (PAD index 0)" in out
    assert run_json("latch", "show", slot)["slot"] == slot
    assert run("latch", "release", slot)[0] == 0
    assert device.latches() == []


def test_latch_errors(device):
    _latch(device)
    refused(device, ["latch", "show", "1023"], "latchnic latch show: argument 'slot': no latch in slot 1023")
    refused(device, ["latch", "release", "1023"], "latchnic latch release: no latch in slot 1023")
    refused(device, ["latch", "release", "x"],
            "latchnic latch release: argument 'slot': expected an integer, got 'x'")


def test_latch_peer_shows_through_injection(device):
    """bob's valid SA for alice's address cannot reach the latched flow."""
    slot = _latch(device)
    v = device.process(from_alice(sa="bob-in"), "in", 3_000)
    assert (v.action, v.reason, v.latch) == ("drop", "latch_peer", slot)
    stats = run_json("stats")
    assert stats["drops"] == {"latch_peer": 1}
    assert stats["latch"][str(slot)]["drops"] == 1


# ------------------------------------------------------------- observation

def test_stats_and_caps(device):
    _latch(device)
    c = run_json("stats")
    assert c["frames"]["out_forwarded"] == 1 and c["sa"]["alice-out"]["seq"] == 1
    rc, out, _ = run("stats")
    assert rc == 0 and "out_forwarded      1" in out
    caps = run_json("caps")
    assert (caps["engine"], caps["sas"], caps["templates"], caps["replay_window"]) == ("model", 4, 3, 128)
    assert "aes-gcm-256" in caps["algorithms"]
    rc, out, _ = run("caps")
    assert "algorithms         aes-gcm-128, aes-gcm-256, gmac-128, gmac-256" in out


def test_monitor_streams_events(device):
    timer = threading.Timer(0.3, lambda: (_latch(device), device.del_sa("alice-out")))
    timer.start()
    try:
        rc, out, err = run("monitor", "-j", "--count", "2", "--timeout", "10")
    finally:
        timer.join()
    assert rc == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["old"], e["new"], e["cause"], e["peer"]) for e in events] == [
        ("free", "ESTABLISHED", "clone", "alice@example.org"),
        ("ESTABLISHED", "BROKEN", "sa_deleted", "alice@example.org")]
    rc, out, _ = run("monitor", "--all", "--count", "1", "--timeout", "2")
    assert " free -> ESTABLISHED (clone) tcp 192.0.2.1:40000 <-> 203.0.113.5:443 peer alice@example.org" in out


# ------------------------------------------------------------------- apply

def test_apply_whole_config(device, short_dir):
    from driver_kit import CONFIG
    path = f"{short_dir}/new.toml"
    with open(path, "w") as f:
        f.write(CONFIG.replace('remote = "203.0.113.0/24"\nproto = "tcp"', 'remote = "203.0.113.0/24"\nproto = "udp"'))
    rc, out, err = run("apply", path)
    assert (rc, err) == (0, "")
    assert out == f"{path}: applied 2 peers, 3 SAs, 2 SPD rules, 1 templates\n"
    assert device.templates()[0]["proto"] == "udp"


def test_apply_bad_file_changes_nothing(device, short_dir):
    from driver_kit import CONFIG
    path = f"{short_dir}/bad.toml"
    with open(path, "w") as f:
        f.write(CONFIG.replace('key = "101112131415161718191a1b1c1d1e1fdeadbeef"', 'key = "1011"'))
    refused(device, ["apply", path],
            f"latchnic apply: {path}: sa[1] ('alice-out'), field 'key': aes-gcm-128 needs 20 bytes "
            "(key || 4-byte salt), got 2")
    with open(path, "w") as f:
        f.write(CONFIG.replace("replay_window = 128", "replay_window = 256"))
    refused(device, ["apply", path],
            f"latchnic apply: {path}: [device] replay_window/latch_capacity/latch_ways/"
            "latch_capacity_v6 cannot change on a live device")
    with open(path, "w") as f:
        f.write(CONFIG + '\n[[template]]\nkind = "listener"\n[[template]]\nkind = "listener"\n'
                '[[template]]\nkind = "listener"\n')
    refused(device, ["apply", path], "latchnic apply: template table full: capacity 3")
    refused(device, ["apply", f"{short_dir}/missing.toml"],
            f"latchnic apply: {short_dir}/missing.toml: cannot read: No such file or directory")


# -------------------------------------------------------------- who, misc

def test_who_by_flow(device):
    slot = _latch(device)
    rc, out, _ = run("who", "tcp", f"{HOST}:40000", f"{ALICE}:443")
    assert rc == 0
    assert out == (f"tcp {HOST}:40000 -> {ALICE}:443: peer alice@example.org "
                   f"qop esp/transport/aes-gcm-128/icv16 state ESTABLISHED latch {slot}\n")
    rc, out, _ = run("who", "tcp", f"{HOST}:40001", f"{ALICE}:443")
    assert rc == 1 and "not latched" in out
    rc, out, err = run("who", "tcp", f"{HOST}", f"{ALICE}:443")
    assert (rc, err.strip()) == (2, "latchnic who: argument 'local': expected ADDRESS:PORT, got '192.0.2.1'")


def test_no_device(monkeypatch, short_dir):
    monkeypatch.delenv("LATCHNIC_DEVICE", raising=False)
    rc, out, err = run("sa", "list")
    assert (rc, err.strip()) == (2, "latchnic sa list: no device: give --device PATH or set LATCHNIC_DEVICE")
    rc, out, err = run("caps", "--device", f"{short_dir}/nothing.sock")
    assert rc == 2 and err.startswith(f"latchnic caps: cannot reach device at {short_dir}/nothing.sock")


def test_model_and_remote_backends_agree(device, short_dir):
    """One code path: the same operations through the in-process backend and
    the control socket leave identical devices."""
    from latchnic.config import parse_config
    from latchnic.driver.control import ControlServer
    from latchnic.driver.model_backend import ModelBackend
    from latchnic.driver.remote_backend import RemoteBackend
    from driver_kit import CONFIG, cfg
    local = ModelBackend.from_config(cfg(), sa_capacity=4, template_capacity=3)
    served = ModelBackend.from_config(cfg(), sa_capacity=4, template_capacity=3)
    with ControlServer(served, f"{short_dir}/b.sock"), RemoteBackend(f"{short_dir}/b.sock") as remote:
        extra = parse_config(CONFIG.replace('proto = "tcp"', 'proto = "udp"'), "x")
        carol = parse_config('[[peer]]\nname = "carol"\nclaims = ["198.51.100.0/24"]', "y").peers[0]
        for b in (local, remote):
            b.add_template(extra.templates[0])
            b.add_spd(extra.spd[0], 0)
            b.del_spd("in", 0)
            b.add_peer(carol)
            b.del_sa("bob-in")
        assert snapshot(local) == snapshot(served)
        for b in (local, remote):
            b.apply(extra)
        assert snapshot(local) == snapshot(served)


def test_control_protocol_refusals(device):
    """The control socket is a trust boundary: malformed requests and bad
    entries are refused with a message, and change nothing."""
    import os
    import socket as so
    before = snapshot(device)
    s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    s.settimeout(5)
    s.connect(os.environ["LATCHNIC_DEVICE"])
    f = s.makefile("rwb")

    def ask(raw: bytes):
        f.write(raw + b"\n")
        f.flush()
        return json.loads(f.readline())

    assert ask(b"{not json")["ok"] is False
    assert ask(b"[1, 2]") == {"ok": False, "error": "a request is a JSON object"}
    assert ask(b'{"op": "format_disk"}') == {"ok": False, "error": "unknown operation 'format_disk'"}
    assert ask(b'{"op": "del_sa"}') == {"ok": False, "error": "missing request field 'name'"}
    r = ask(json.dumps({"op": "add_sa", "table": {"name": "x", "spi": "0x1001"}}).encode())
    assert r == {"ok": False, "error": "sa[0] ('x'), field 'dir': missing (required)"}
    r = ask(json.dumps({"op": "add_spd", "table": {"dir": "in", "action": "bypass"}, "index": "0"}).encode())
    assert r == {"ok": False, "error": "argument 'index': expected int, got '0'"}
    r = ask(json.dumps({"op": "apply", "text": "[[sa]]\nname = 1\n", "source": "remote.toml"}).encode())
    assert r == {"ok": False, "error": "remote.toml: sa[0], field 'name': expected str, got int 1"}
    assert ask(b'{"op": "caps"}')["result"]["sas"] == 4
    s.close()
    assert snapshot(device) == before
