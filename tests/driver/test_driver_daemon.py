"""The sock_diag daemon's bookkeeping (fed with socket lists), the real
sock_diag scan, and the software NIC process without interfaces."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from latchnic.driver.daemon import SocketWatcher
from latchnic.driver.sockets import TCP_ESTABLISHED, TCP_LISTEN, TCP_SYN_SENT, TCP_TIME_WAIT, HostSocket, scan

from driver_kit import ALICE, HOST, run, syn

LISTEN = HostSocket("tcp", "0.0.0.0", 22, "0.0.0.0", 0, TCP_LISTEN, 1)
ACCEPTED = HostSocket("tcp", HOST, 22, ALICE, 50000, TCP_ESTABLISHED, 2)
CONNECTING = HostSocket("tcp", HOST, 40000, ALICE, 443, TCP_SYN_SENT, 3)
LOOPBACK = HostSocket("tcp", "127.0.0.1", 631, "0.0.0.0", 0, TCP_LISTEN, 4)
UDP_BOUND = HostSocket("udp", HOST, 53, "0.0.0.0", 0, 7, 5)


def test_watcher_templates_follow_sockets(device):
    log = []
    w = SocketWatcher(device, local=["192.0.2.0/24"], safety_net=True, log=log.append)
    w.start()
    net = device.templates()[1:]
    assert [(t["kind"], t["proto"], t["local"]) for t in net] == [
        ("initiator", "tcp", "192.0.2.0/24"), ("initiator", "udp", "192.0.2.0/24")]
    device.del_template(0)                   # make room (the test device holds 3 templates)
    w.poll([LISTEN, ACCEPTED, LOOPBACK])
    assert [t for t in device.templates() if t["kind"] == "listener"] == [
        {"id": 3, "kind": "listener", "local": "any", "proto": "tcp", "local_port": 22}]
    assert ("listen", "tcp", "0.0.0.0", 22) in w.installed
    assert w.installed[("conn", "tcp", HOST, 22, ALICE, 50000)] is None     # child of the listener
    # the listener closes: its template goes; the accepted connection stays
    w.poll([ACCEPTED])
    assert [t["id"] for t in device.templates()] == [1, 2]
    # a connecting socket gets an initiator template; its latch is released when it closes
    v = device.process(syn(), "out", 1)
    assert v.latch is not None
    w.poll([CONNECTING])
    assert device.templates()[-1] == {"id": 4, "kind": "initiator", "local": "192.0.2.1/32",
                                       "remote": "203.0.113.5/32", "proto": "tcp",
                                       "local_port": 40000, "remote_port": 443}
    w.poll([HostSocket("tcp", HOST, 40000, ALICE, 443, TCP_TIME_WAIT, 3)])
    assert device.latches() == []
    assert [t["id"] for t in device.templates()] == [1, 2]
    assert any("latch" in m and "released" in m for m in log)
    w.stop()
    assert device.templates() == []


def test_watcher_local_filter_and_udp(device):
    device.del_template(0)
    w = SocketWatcher(device, local=["198.51.100.0/24"], safety_net=False, log=lambda m: None)
    w.poll([UDP_BOUND, LOOPBACK])
    assert device.templates() == []
    w = SocketWatcher(device, safety_net=False, log=lambda m: None)
    w.poll([UDP_BOUND])
    assert device.templates() == [{"id": 1, "kind": "listener", "local": "192.0.2.1/32", "proto": "udp",
                                   "local_port": 53}]


def test_scan_sees_this_process_sockets():
    l = socket.create_server(("127.0.0.1", 0))
    c = socket.create_connection(l.getsockname(), timeout=5)
    try:
        port = l.getsockname()[1]
        found = {(s.proto, s.local_port, s.remote_port, s.state) for s in scan()}
        assert ("tcp", port, 0, TCP_LISTEN) in found
        assert ("tcp", c.getsockname()[1], port, TCP_ESTABLISHED) in found
    finally:
        c.close()
        l.close()


def test_nic_process_control_only(short_dir):
    """`latchnic nic` without interfaces serves the model on its socket; the
    capacity knobs reach the device; SIGTERM stops it and removes the socket."""
    sock = f"{short_dir}/nic.sock"
    p = subprocess.Popen([sys.executable, "-m", "latchnic", "nic", "--control", sock, "--sas", "7"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        end = time.monotonic() + 20
        while True:
            rc, out, err = run("caps", "-j", "--device", sock)
            if rc == 0 or time.monotonic() > end:
                break
            time.sleep(0.05)
        assert rc == 0, err
        assert '"sas": 7' in out
        assert run("peer", "add", "name", "x", "--device", sock)[0] == 0
        assert run("peer", "list", "--device", sock)[1] == "peer x index 0 claims -\n"
    finally:
        p.terminate()
        assert p.wait(timeout=10) == 0
    import os
    assert not os.path.exists(sock)


def test_nic_gateware_engine_refuses(short_dir):
    p = subprocess.run([sys.executable, "-m", "latchnic", "nic", "--engine", "gateware",
                        "--control", f"{short_dir}/g.sock"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert p.stderr.startswith("latchnic nic: the gateware engine is not available yet")


def test_watcher_releases_connection_it_never_saw_live(device):
    """Opened, answered and closing between two polls: the TIME_WAIT socket
    is enough to release the latch, once."""
    device.del_template(0)
    device.add_template(__import__("driver_kit").cfg().templates[0])
    v = device.process(syn(), "out", 1)
    w = SocketWatcher(device, safety_net=False, log=lambda m: None)
    tw = HostSocket("tcp", HOST, 40000, ALICE, 443, TCP_TIME_WAIT, 0)
    w.poll([tw])
    assert device.latches() == []
    device.process(syn(), "out", 2)              # a new connection on the same 4-tuple later
    w.poll([tw])                                 # the same TIME_WAIT socket: not released again
    assert [l["slot"] for l in device.latches()] == [v.latch]


def test_daemon_bad_arguments(device):
    rc, out, err = run("daemon", "--local", "192.0.2.300/24", "--once")
    assert (rc, err.strip()) == (2, "latchnic daemon: argument '--local': "
                                    "'192.0.2.300/24' does not appear to be an IPv4 or IPv6 network")
    assert device.templates()[1:] == []
