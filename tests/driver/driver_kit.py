"""Shared pieces of the driver tests: a configuration, a device served on a
control socket in this process, running `latchnic` commands in process, and
frames from the local host and from a scapy peer."""

from __future__ import annotations

import contextlib
import io
import json

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from latchnic.cli import main
from latchnic.config import parse_config
from latchnic.sim.scapy_peer import ScapyPeer

HOST, ALICE = "192.0.2.1", "203.0.113.5"

CONFIG = """
[device]
replay_window = 128

[[peer]]
name = "alice@example.org"
claims = ["203.0.113.0/24"]

[[peer]]
name = "bob@example.org"
claims = ["203.0.113.0/24"]

[[sa]]
name = "alice-in"
dir = "in"
spi = 0x1001
proto = "esp"
mode = "transport"
alg = "aes-gcm-128"
key = "000102030405060708090a0b0c0d0e0fcafebabe"
peer = "alice@example.org"
src = "203.0.113.5"
dst = "192.0.2.1"

[[sa]]
name = "alice-out"
dir = "out"
spi = 0x2001
proto = "esp"
mode = "transport"
alg = "aes-gcm-128"
key = "101112131415161718191a1b1c1d1e1fdeadbeef"
peer = "alice@example.org"
src = "192.0.2.1"
dst = "203.0.113.5"

[[sa]]
name = "bob-in"
dir = "in"
spi = 0x1002
proto = "esp"
mode = "transport"
alg = "aes-gcm-128"
key = "202122232425262728292a2b2c2d2e2f01234567"
peer = "bob@example.org"
src = "203.0.113.5"
dst = "192.0.2.1"

[[spd]]
dir = "out"
local = "192.0.2.1/32"
remote = "203.0.113.0/24"
action = "protect"
sa = "alice-out"

[[spd]]
dir = "in"
local = "192.0.2.1/32"
remote = "203.0.113.0/24"
action = "protect"

[[template]]
kind = "initiator"
local = "192.0.2.1"
remote = "203.0.113.0/24"
proto = "tcp"
"""

SA_ARGS = ["dir", "in", "spi", "0x1003", "proto", "esp", "mode", "transport", "alg", "aes-gcm-128",
           "key", "303132333435363738393a3b3c3d3e3f0badf00d", "peer", "alice@example.org",
           "src", "203.0.113.6", "dst", "192.0.2.1"]


def cfg():
    return parse_config(CONFIG, "kit")


def sa_spec(name):
    return {s.name: s for s in cfg().sas}[name]


def run(*argv) -> tuple[int, str, str]:
    """One `latchnic` command in this process: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:         # argparse usage errors
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def run_json(*argv):
    rc, out, err = run(*argv, "-j")
    assert rc == 0, err
    return json.loads(out)


def snapshot(backend) -> dict:
    """Everything the device holds, to prove a refused command changed nothing."""
    return {"peers": backend.peers(), "sas": backend.sas(keys=True), "spd": backend.spd(),
            "templates": backend.templates(), "latches": backend.latches(),
            "caps": backend.caps()}


def syn(sport=40000, dport=443, flags="S", data=b"") -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") /
                 IP(src=HOST, dst=ALICE) / TCP(sport=sport, dport=dport, flags=flags) / data)


def from_alice(sport=443, dport=40000, flags="SA", sa="alice-in", seq=None) -> bytes:
    peer = ScapyPeer(sa_spec(sa))
    return peer.seal(IP(src=ALICE, dst=HOST) / TCP(sport=sport, dport=dport, flags=flags), seq=seq)
