"""Shared pieces of the scenario tests: a two-peer configuration, a scapy
peer per SA, and running the pcap runner exactly as a user would."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap, wrpcap

from latchnic.cli import main
from latchnic.config import parse_config
from latchnic.sim.scapy_peer import ScapyPeer

HOST = "192.0.2.1"
ALICE = "203.0.113.5"
POOL = "203.0.113.0/24"
HOST_MAC, GW_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"

KEYS = {
    "alice-in": "000102030405060708090a0b0c0d0e0fcafebabe",
    "alice-out": "101112131415161718191a1b1c1d1e1fdeadbeef",
    "alice-out2": "303132333435363738393a3b3c3d3e3f0badf00d",
    "bob-in": "202122232425262728292a2b2c2d2e2f01234567",
    "bob-out": "404142434445464748494a4b4c4d4e4f76543210",
}
SPIS = {"alice-in": 0x1001, "alice-out": 0x2001, "alice-out2": 0x2002,
        "bob-in": 0x1002, "bob-out": 0x2003}


def sa_block(name, *, peer, direction, extra=""):
    src, dst = (ALICE, HOST) if direction == "in" else (HOST, ALICE)
    return f"""
[[sa]]
name = "{name}"
dir = "{direction}"
spi = {SPIS[name]}
proto = "esp"
mode = "transport"
alg = "aes-gcm-128"
key = "{KEYS[name]}"
peer = "{peer}"
src = "{src}"
dst = "{dst}"
{extra}
"""


def config(*, out_sa="alice-out", out_action="protect", in_action="protect", device="",
           templates=True, sas=None, sa_extra=None) -> str:
    """Host 192.0.2.1; alice and bob both claim the shared pool 203.0.113.0/24."""
    sa_extra = sa_extra or {}
    sas = sas or [("alice-in", "alice@example.org", "in"), ("alice-out", "alice@example.org", "out"),
                  ("bob-in", "bob@example.org", "in"), ("bob-out", "bob@example.org", "out")]
    text = f"""
[device]
replay_window = 64
time_wait_s = 60
udp_idle_s = 30
{device}

[[peer]]
name = "alice@example.org"
claims = ["{POOL}"]

[[peer]]
name = "bob@example.org"
claims = ["{POOL}"]
"""
    for name, peer, d in sas:
        text += sa_block(name, peer=peer, direction=d, extra=sa_extra.get(name, ""))
    out_sa_line = f'sa = "{out_sa}"' if out_action == "protect" else ""
    text += f"""
[[spd]]
dir = "out"
local = "{HOST}/32"
remote = "{POOL}"
action = "{out_action}"
{out_sa_line}

[[spd]]
dir = "in"
local = "{HOST}/32"
remote = "{POOL}"
action = "{in_action}"
"""
    if templates:
        text += f"""
[[template]]
kind = "listener"
local = "{HOST}"
proto = "tcp"
local_port = 22

[[template]]
kind = "initiator"
local = "{HOST}"
remote = "{POOL}"
proto = "any"
"""
    return text


def spec(cfg_text: str, name: str):
    return next(s for s in parse_config(cfg_text).sas if s.name == name)


def peer_for(cfg_text: str, sends: str, receives: str | None = None) -> ScapyPeer:
    return ScapyPeer(spec(cfg_text, sends), spec(cfg_text, receives) if receives else None)


def host_tcp(sport=40000, dport=443, flags="A", payload=b"", dst=ALICE, seq=0, ack=0) -> bytes:
    return bytes(Ether(src=HOST_MAC, dst=GW_MAC) / IP(src=HOST, dst=dst) /
                 TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack) / payload)


def host_udp(sport=5000, dport=53, payload=b"q", dst=ALICE) -> bytes:
    return bytes(Ether(src=HOST_MAC, dst=GW_MAC) / IP(src=HOST, dst=dst) /
                 UDP(sport=sport, dport=dport) / payload)


def peer_tcp(sport=443, dport=40000, flags="A", payload=b"", src=ALICE):
    return IP(src=src, dst=HOST) / TCP(sport=sport, dport=dport, flags=flags) / payload


def peer_udp(sport=53, dport=5000, payload=b"a", src=ALICE):
    return IP(src=src, dst=HOST) / UDP(sport=sport, dport=dport) / payload


@dataclass
class Outcome:
    host_out: list      # (time, bytes)
    wire_out: list
    drops: list         # dicts from --drops
    events: list        # dicts from --events
    stdout: str


def _write_pcap(path: Path, frames):
    pkts = []
    for t, frame in frames:
        p = Ether(frame)
        p.time = t
        pkts.append(p)
    wrpcap(str(path), pkts)


def _read_pcap(path: Path):
    if not path.exists():
        return []
    return [(float(p.time), bytes(p)) for p in rdpcap(str(path))]


def run_runner(tmp_path: Path, cfg_text: str, frames, applies=(), capsys=None, engine="model") -> Outcome:
    """frames: (time, "host"|"wire", frame bytes). applies: (time, config text)."""
    cfg = tmp_path / "device.toml"
    cfg.write_text(cfg_text)
    args = ["run", "--config", str(cfg), "--engine", engine]
    host = [(t, f) for t, side, f in frames if side == "host"]
    wire = [(t, f) for t, side, f in frames if side == "wire"]
    if host:
        _write_pcap(tmp_path / "host-in.pcap", host)
        args += ["--host-in", str(tmp_path / "host-in.pcap")]
    if wire:
        _write_pcap(tmp_path / "wire-in.pcap", wire)
        args += ["--wire-in", str(tmp_path / "wire-in.pcap")]
    for i, (t, text) in enumerate(applies):
        p = tmp_path / f"apply{i}.toml"
        p.write_text(text)
        args += ["--apply", f"{t}={p}"]
    outs = {n: tmp_path / n for n in ("host-out.pcap", "wire-out.pcap", "drops.jsonl", "events.jsonl")}
    args += ["--host-out", str(outs["host-out.pcap"]), "--wire-out", str(outs["wire-out.pcap"]),
             "--drops", str(outs["drops.jsonl"]), "--events", str(outs["events.jsonl"])]
    rc = main(args)
    out = capsys.readouterr().out if capsys else ""
    assert rc == 0, out
    return Outcome(
        _read_pcap(outs["host-out.pcap"]), _read_pcap(outs["wire-out.pcap"]),
        [json.loads(l) for l in outs["drops.jsonl"].read_text().splitlines()],
        [json.loads(l) for l in outs["events.jsonl"].read_text().splitlines()], out)


def is_esp(frame: bytes) -> bool:
    p = Ether(frame)
    return IP in p and p[IP].proto == 50


def reasons(outcome: Outcome) -> list[str]:
    return [d["reason"] for d in outcome.drops]
