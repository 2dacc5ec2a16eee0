"""End to end with real Linux TCP: plain Python sockets in two network
namespaces, each host behind its own software NIC (`latchnic nic`, reference
model), the wire between them captured.

Needs root (network namespaces); skips cleanly otherwise. Every namespace is
deleted at the end, also after a failure; every wait has a timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from latchnic.config import parse_config
from latchnic.sim.scapy_peer import ScapyPeer

from driver_kit import run

from latchnic.driver.netns import PAIR_A as A, PAIR_B as B, pair_configs

PORT = 5000
CLIENT_CFG, SERVER_CFG = pair_configs(port=PORT)


def _sa(cfg_text, name):
    return {s.name: s for s in parse_config(cfg_text).sas}[name]


@pytest.fixture(scope="module")
def net():
    from latchnic.driver.netns import Harness, namespaces_available
    why = namespaces_available()
    if why:
        pytest.skip(why)
    work = tempfile.mkdtemp(prefix="ln-e2e-")
    h = None
    try:
        for name, text in (("client.toml", CLIENT_CFG), ("server.toml", SERVER_CFG)):
            with open(os.path.join(work, name), "w") as f:
                f.write(text)
        h = Harness.create(work, a=f"{A}/24", b=f"{B}/24", rogue=True)
        h.start_nics({"a": os.path.join(work, "client.toml"), "b": os.path.join(work, "server.toml")})
        # the server's listener template, through the CLI as an operator would
        rc, out, err = run("template", "add", "kind", "listener", "local", B, "proto", "tcp",
                           "local_port", PORT, "--device", h.hosts["b"].control)
        assert rc == 0, err
        yield h
    finally:
        if h is not None:
            h.close()
        shutil.rmtree(work, ignore_errors=True)


class Conn:
    """A plain TCP connection from host a to a plain server on host b."""

    def __init__(self, net, port=PORT):
        from latchnic.driver.netns import inside
        with inside(net.hosts["b"].ns):
            self.listener = socket.create_server((B, port))
        self.listener.settimeout(10)
        with inside(net.hosts["a"].ns):
            self.client = socket.create_connection((B, port), timeout=10)
        self.server, _ = self.listener.accept()
        self.server.settimeout(10)
        self.cport = self.client.getsockname()[1]

    @staticmethod
    def recv_exactly(sock, n, timeout=10.0) -> bytes:
        sock.settimeout(timeout)
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def close(self):
        for s in (self.client, self.server, self.listener):
            s.close()


def _ip_frames(cap):
    for t, outgoing, frame in list(cap.frames):
        e = Ether(frame)
        if IP in e and {e[IP].src, e[IP].dst} == {A, B}:
            yield t, e


def _assert_only_esp(*caps):
    for cap in caps:
        clear = [e.summary() for _, e in _ip_frames(cap) if e[IP].proto != 50]
        assert clear == [], f"clear text on the wire: {clear[:5]}"


def _flow_payload(cap, src, sa_spec, sport, dport) -> bytes:
    """Decrypt with scapy (the configured keys) and join the TCP payloads of one direction."""
    peer = ScapyPeer(None, sa_spec)
    segs = {}
    for _, e in _ip_frames(cap):
        if e[IP].src != src:
            continue
        inner = peer.open(bytes(e))
        tcp = inner[TCP]
        if (tcp.sport, tcp.dport) == (sport, dport) and len(tcp.payload):
            segs[tcp.seq] = bytes(tcp.payload)
    return b"".join(segs[k] for k in sorted(segs))


def _latch_of(net, side, cport):
    with net.device(side) as dev:
        for l in dev.latches():
            if cport in (l["local_port"], l["remote_port"]):
                return l
    return None


def test_latched_connection_esp_only_and_scapy_decrypts(net):
    cap_a, cap_b = net.capture("a"), net.capture("b")
    c = Conn(net)
    try:
        c.client.sendall(b"hello from a " * 200)
        assert Conn.recv_exactly(c.server, 13 * 200) == b"hello from a " * 200
        c.server.sendall(b"reply from b " * 300)
        assert Conn.recv_exactly(c.client, 13 * 300) == b"reply from b " * 300
        time.sleep(0.2)
    finally:
        cap_a.close()
        cap_b.close()
    try:
        # latched on both sides, the peer shown by name (the real command, as a user runs it)
        for side, peer in (("a", "server@example.org"), ("b", "client@example.org")):
            out = subprocess.run([sys.executable, "-m", "latchnic", "latch", "list",
                                  "--device", net.hosts[side].control],
                                 capture_output=True, text=True, timeout=30).stdout
            line = [x for x in out.splitlines() if f":{c.cport} " in x]
            assert len(line) == 1 and f"peer {peer} " in line[0] and "state ESTABLISHED" in line[0], out
        # who: the Python call for a socket object, and the CLI for the 5-tuple
        from latchnic.driver.who import who_socket
        w = who_socket(c.client, net.hosts["a"].control)
        assert (w["peer"], w["qop"], w["state"]) == ("server@example.org",
                                                      "esp/transport/aes-gcm-128/icv16", "ESTABLISHED")
        rc, out, _ = run("who", "tcp", f"{B}:{PORT}", f"{A}:{c.cport}", "--device", net.hosts["b"].control)
        assert rc == 0 and "peer client@example.org" in out
        # the wire: only ESP for this connection, and scapy opens it with the configured keys
        _assert_only_esp(cap_a, cap_b)
        assert any(True for _ in _ip_frames(cap_a))
        assert _flow_payload(cap_a, A, _sa(CLIENT_CFG, "to-b"), c.cport, PORT) == b"hello from a " * 200
        assert _flow_payload(cap_a, B, _sa(SERVER_CFG, "to-a"), PORT, c.cport) == b"reply from b " * 300
    finally:
        c.close()


def test_rogue_peer_injection_dropped_as_latch_peer(net):
    cap_b = net.capture("b")
    c = Conn(net)
    try:
        c.client.sendall(b"ping")
        assert Conn.recv_exactly(c.server, 4) == b"ping"
        time.sleep(0.1)
        # the rogue holds a valid SA for the client's address (shared pool) and
        # injects an in-window segment into the live connection
        last = [e for _, e in _ip_frames(cap_b) if e[IP].src == A][-1]
        tcp = ScapyPeer(None, _sa(CLIENT_CFG, "to-b")).open(bytes(last))[TCP]
        seq = tcp.seq + len(tcp.payload)
        rogue = ScapyPeer(_sa(SERVER_CFG, "from-rogue"))
        with net.device("b") as dev:
            before = dev.counters()["drops"].get("latch_peer", 0)
        for _ in range(3):          # three segments, each with its own sequence number
            sealed = rogue.seal(IP(src=A, dst=B) / TCP(sport=c.cport, dport=PORT, flags="PA", seq=seq,
                                                        ack=tcp.ack) / b"EVIL")
            net.rogue_send(bytes(Ether(src="02:00:00:00:0e:01", dst=net.hosts["b"].mac, type=0x0800))
                           + sealed[14:])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with net.device("b") as dev:
                if dev.counters()["drops"].get("latch_peer", 0) >= before + 3:
                    break
            time.sleep(0.05)
        with net.device("b") as dev:
            assert dev.counters()["drops"].get("latch_peer", 0) == before + 3
            assert dev.counters()["sa"]["from-rogue"]["drops"] == {"latch_peer": 3}
        drops = [json.loads(l) for l in open(net.hosts["b"].drops)]
        latch = _latch_of(net, "b", c.cport)
        assert sum(1 for d in drops if d["reason"] == "latch_peer" and d["latch"] == latch["slot"]) == 3
        assert latch["peer"] == "client@example.org" and latch["state"] == "ESTABLISHED"
        # the connection keeps working, and the server never saw the rogue's bytes
        c.client.sendall(b"still-here")
        assert Conn.recv_exactly(c.server, 10) == b"still-here"
        c.server.sendall(b"ack")
        assert Conn.recv_exactly(c.client, 3) == b"ack"
    finally:
        cap_b.close()
        c.close()
    _assert_only_esp(cap_b)


def test_spd_bypass_mid_connection_never_clear_and_recovers(net):
    dev_a = net.hosts["a"].control
    cap_a, cap_b = net.capture("a"), net.capture("b")
    c = Conn(net)
    try:
        c.client.sendall(b"before")
        assert Conn.recv_exactly(c.server, 6) == b"before"
        slot = _latch_of(net, "a", c.cport)["slot"]
        # policy drift: the client's SPD now says BYPASS for this traffic
        rc, _, err = run("spd", "add", "dir", "out", "local", f"{A}/32", "remote", f"{B}/32",
                         "proto", "tcp", "action", "bypass", "index", 0, "--device", dev_a)
        assert rc == 0, err
        assert _latch_of(net, "a", c.cport)["state"] == "BROKEN"
        c.client.sendall(b"during-bypass")
        c.server.settimeout(1.5)
        with pytest.raises(socket.timeout):
            c.server.recv(100)
        with net.device("a") as dev:
            drops = dev.counters()["drops"]
        assert drops.get("latch_broken", 0) >= 1
        # restored: the latch is ESTABLISHED again and TCP's retransmission gets through
        rc, _, err = run("spd", "del", "out", 0, "--device", dev_a)
        assert rc == 0, err
        assert _latch_of(net, "a", c.cport)["state"] == "ESTABLISHED"
        assert Conn.recv_exactly(c.server, 13, timeout=15) == b"during-bypass"
        c.server.sendall(b"recovered")
        assert Conn.recv_exactly(c.client, 9) == b"recovered"
        rc, out, _ = run("monitor", "--all", "-j", "--timeout", "0.2", "--device", dev_a)
        causes = [(e["old"], e["new"], e["cause"]) for e in map(json.loads, out.splitlines())
                  if e["slot"] == slot]
        assert ("ESTABLISHED", "BROKEN", "spd_changed") in causes
        assert ("BROKEN", "ESTABLISHED", "spd_changed") in causes
        time.sleep(0.1)
    finally:
        cap_a.close()
        cap_b.close()
        c.close()
    _assert_only_esp(cap_a, cap_b)
    sent = _flow_payload(cap_a, A, _sa(CLIENT_CFG, "to-b"), c.cport, PORT)
    assert sent == b"before" + b"during-bypass"


def test_unmodified_apps_latched_by_daemon(net):
    """`latchnic daemon` on both hosts: the server's listening socket gets a
    listener template before any client shows up; the client's daemon keeps its
    safety net (policy-wide initiator templates: the SYN leaves before any
    poll sees the socket, and the client config has no template for port
    6000); the connection is latched on
    both sides; `who --pid` names the peer; closing the sockets releases the
    latches early (TIME_WAIT would otherwise hold them 60 s)."""
    port = 6000
    procs = []
    try:
        for side in ("a", "b"):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "latchnic", "daemon", "--netns", net.hosts[side].ns,
                 "--device", net.hosts[side].control, "--interval", "0.1",
                 *(["--local", f"{A}/32"] if side == "a" else ["--no-safety-net"])],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        server = subprocess.Popen([sys.executable, "-c", _APP.format(ns=net.hosts["b"].ns, role="server",
                                                                       addr=B, port=port)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(server)
        assert _wait(lambda: any(t.get("local_port") == port and t["kind"] == "listener"
                                 for t in _templates(net, "b")), 10), "no listener template"
        assert _wait(lambda: any(t["kind"] == "initiator" and t["local"] == f"{A}/32" and
                                 t["remote"] == "any" for t in _templates(net, "a")), 10), "no safety net"
        client = subprocess.Popen([sys.executable, "-c", _APP.format(ns=net.hosts["a"].ns, role="client",
                                                                       addr=B, port=port)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(client)
        assert client.stdout.readline().strip() == "echo:hello", client.stderr.read() if client.poll() else ""
        cport = _wait(lambda: (_latch_of(net, "a", port) or {}).get("local_port"), 10)
        assert cport
        for side, peer in (("a", "server@example.org"), ("b", "client@example.org")):
            assert _latch_of(net, side, cport)["peer"] == peer
        # who --pid: the client process's connection, looked up in its namespace
        rc, out, err = run("who", "--pid", client.pid, "--device", net.hosts["a"].control)
        assert rc == 0, err
        assert f"-> {B}:{port}: peer server@example.org qop esp/transport/aes-gcm-128/icv16 state ESTABLISHED" in out
        # the daemon saw the connecting socket and added its initiator template
        assert _wait(lambda: any(t.get("remote_port") == port for t in _templates(net, "a")), 10)
        client.send_signal(15)
        client.wait(timeout=10)
        assert _wait(lambda: _latch_of(net, "a", cport) is None and _latch_of(net, "b", cport) is None, 10), \
            "latches not released after close"
        assert _wait(lambda: not any(t.get("remote_port") == port for t in _templates(net, "a")), 10)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
    # the daemon removed its templates on exit
    assert not any(t.get("local_port") == port for t in _templates(net, "b"))


_APP = """
import socket, sys, time
from pyroute2 import netns
netns.setns({ns!r}, flags=0)
if {role!r} == "server":
    l = socket.create_server(({addr!r}, {port}))
    l.settimeout(20)
    while True:
        s, _ = l.accept()
        s.settimeout(20)
        data = s.recv(100)
        s.sendall(b"echo:" + data + b"\\n")
        s.close()
else:
    s = socket.create_connection(({addr!r}, {port}), timeout=10)
    s.sendall(b"hello")
    print(s.makefile().readline().strip(), flush=True)
    time.sleep(30)
"""


def _templates(net, side):
    with net.device(side) as dev:
        return dev.templates()


def _wait(cond, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    return cond()


def test_skip_reason_without_root(monkeypatch):
    """The netns tests skip (not fail) where namespaces cannot be made."""
    from latchnic.driver.netns import HarnessError, Harness, namespaces_available
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert namespaces_available() == "network namespaces need root"
    with pytest.raises(HarnessError, match="may only use 192.0.2.0/24"):
        Harness.create("/tmp", a="10.0.0.1/24")


def test_gateware_engine_slot(net):
    """The engine is selectable; the gateware one refuses clearly until the
    policy core is integrated (and the harness still cleans up)."""
    from latchnic.driver.netns import Harness, HarnessError
    work = tempfile.mkdtemp(prefix="ln-gw-")
    try:
        with Harness.create(work, engine="gateware") as h:
            names = list(h.created)
            with pytest.raises(HarnessError, match="the gateware engine is not available yet"):
                h.start_nics({"a": None, "b": None})
        assert not set(names) & set(os.listdir("/var/run/netns"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_stale_namespaces_reaped():
    """Namespaces of a killed harness run (dead creator PID) go; live ones stay."""
    from latchnic.driver.netns import namespaces_available, reap_stale
    from pyroute2 import netns
    why = namespaces_available()
    if why:
        pytest.skip(why)
    dead = 4194304 + 1                      # above pid_max: no such process
    mine = f"ln{os.getpid()}xbeef-wire"
    netns.create(f"ln{dead}xbeef-a")
    netns.create(mine)
    try:
        assert reap_stale() == [f"ln{dead}xbeef-a"]
        assert mine in netns.listnetns()
    finally:
        for n in (f"ln{dead}xbeef-a", mine):
            if n in netns.listnetns():
                netns.remove(n)
