"""`latchnic demo`: the main job, end to end through the simulated NIC.

A host (192.0.2.1) opens a TCP connection to alice (203.0.113.5). Alice and
bob both hold addresses from one shared pool, so the PAD lets either claim
203.0.113.5. The demo writes the pcaps a user would capture, runs them
through `latchnic run` and shows, from the outputs, that:
  1. the connection is latched to alice and flows under ESP both ways;
  2. bob's injection into it (valid SA, legitimately claimed address) is dropped;
  3. when the SPD flips to BYPASS mid-connection, not one clear-text segment
     of the latched flow leaves, and traffic resumes when policy is restored.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap, wrpcap

from latchnic.config import parse_config
from .scapy_peer import ScapyPeer

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "gateway.toml"
HOST, ALICE = "192.0.2.1", "203.0.113.5"


def _demo_config() -> str:
    """The repository's example gateway configuration (README: editable install)."""
    try:
        return EXAMPLE.read_text()
    except OSError as e:
        raise SystemExit(f"latchnic demo: cannot read {EXAMPLE}: {e.strerror} "
                         "(the demo runs from a source checkout)") from None


def _bypass(cfg: str) -> str:
    return (cfg.replace('action = "protect"\nsa = "alice-out"', 'action = "bypass"')
               .replace('remote = "203.0.113.0/24"\naction = "protect"', 'remote = "203.0.113.0/24"\naction = "bypass"'))


def main(engine: str = "model", out: str | None = None) -> int:
    from .runner import run
    folder = Path(out) if out else Path(tempfile.mkdtemp(prefix="latchnic-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    cfg_text = _demo_config()
    (folder / "gateway.toml").write_text(cfg_text)
    (folder / "bypass.toml").write_text(_bypass(cfg_text))
    cfg = parse_config(cfg_text)
    sa = {s.name: s for s in cfg.sas}
    alice = ScapyPeer(sa["alice-in"], sa["alice-out"])
    bob = ScapyPeer(sa["bob-in"])

    def host(t, flags="A", data=b""):
        p = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=HOST, dst=ALICE) / \
            TCP(sport=40000, dport=443, flags=flags) / data
        p.time = t
        return p

    def wire(t, peer, flags="A", data=b""):
        p = Ether(peer.seal(IP(src=ALICE, dst=HOST) / TCP(sport=443, dport=40000, flags=flags) / data))
        p.time = t
        return p

    host_in = [host(0.0, "S"), host(0.2), host(0.3, data=b"GET /account"),
               *(host(1.1 + i / 10, data=b"password=%d" % i) for i in range(3)),
               host(2.1, data=b"after restore")]
    wire_in = [wire(0.1, alice, "SA"), wire(0.4, alice, data=b"200 OK"),
               wire(0.5, bob, data=b"injected by bob"), wire(0.6, alice, data=b"more from alice")]
    wrpcap(str(folder / "host-in.pcap"), host_in)
    wrpcap(str(folder / "wire-in.pcap"), wire_in)
    try:
        res = run(folder / "gateway.toml", engine, folder / "host-in.pcap", folder / "wire-in.pcap",
                  folder / "host-out.pcap", folder / "wire-out.pcap", folder / "drops.jsonl",
                  [f"+1.0={folder / 'bypass.toml'}", f"+2.0={folder / 'gateway.toml'}"],
                  folder / "events.jsonl")
    except Exception as e:       # an engine that cannot run says why
        print(f"latchnic demo: {e}")
        return 2

    print(f"latchnic demo (engine: {engine}); files in {folder}")
    print("\nlatch events:")
    for ev in res.events:
        print(f"  t={ev['time_ns'] / 1e9:4.1f}s slot {ev['slot']}: {ev['old']} -> {ev['new']} "
              f"({ev['cause']}) {ev['flow']} peer {ev['peer']}")
    print("\ndrops:")
    for line in (folder / "drops.jsonl").read_text().splitlines():
        d = json.loads(line)
        print(f"  t={d['time_ns'] / 1e9:4.1f}s {d['input']}[{d['index']}] {d['reason']} (sa {d['sa']})")

    wire_out = rdpcap(str(folder / "wire-out.pcap"))
    clear = [p for p in wire_out if p[IP].proto != 50]
    print(f"\nwire-out: {len(wire_out)} frames, {len(clear)} in clear text; alice (scapy) decrypts:")
    for p in wire_out:
        inner = alice.open(bytes(p))
        print(f"  t={float(p.time):4.1f}s ESP spi {p[IP].payload.spi:#x} seq {p[IP].payload.seq}: "
              f"{inner[TCP].flags} {bytes(inner[TCP].payload)!r}")
    host_out = rdpcap(str(folder / "host-out.pcap"))
    delivered = [bytes(p[TCP].payload) for p in host_out]
    print(f"host-out: {len(host_out)} frames delivered: {delivered}")
    ok = (not clear and b"injected by bob" not in delivered
          and any(d["reason"] == "latch_peer" for d in map(json.loads, (folder / "drops.jsonl").read_text().splitlines())))
    print("\nresult:", "latched flow protected: no injection, no clear text" if ok else "FAILED")
    return 0 if ok else 1

