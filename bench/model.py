"""`latchnic bench model`: reference-model packets/s for ESP encap and decap
at 64- and 1400-byte frames, next to scapy's ESP rate measured in the same run.

The model figure is the whole datapath (parse, latch lookup, SPD, SAD,
AES-GCM, rebuild), not just the cipher; scapy's is its SecurityAssociation
encrypt/decrypt on the equivalent IP packet.
"""

from __future__ import annotations

import argparse
import time

from latchnic.config import parse_config
from latchnic.sim.device import ModelDevice
from latchnic.sim.traffic import udp_frame

KEY_A = "000102030405060708090a0b0c0d0e0fcafebabe"
KEY_B = "101112131415161718191a1b1c1d1e1fdeadbeef"


def _config(local, remote, out_key, out_spi, in_key, in_spi):
    return f"""
[[peer]]
name = "peer"
claims = ["{remote}/32"]
[[sa]]
name = "out"
dir = "out"
spi = {out_spi}
proto = "esp"
mode = "transport"
alg = "aes-gcm-128"
key = "{out_key}"
peer = "peer"
src = "{local}"
dst = "{remote}"
[[sa]]
name = "in"
dir = "in"
spi = {in_spi}
proto = "esp"
mode = "transport"
alg = "aes-gcm-128"
key = "{in_key}"
peer = "peer"
src = "{remote}"
dst = "{local}"
[[spd]]
dir = "out"
action = "protect"
sa = "out"
[[spd]]
dir = "in"
action = "protect"
[[template]]
kind = "initiator"
"""


def _frames(size: int, n: int, src: str, dst: str) -> list[bytes]:
    # Ethernet 14 + IPv4 20 + UDP 8 + payload = size
    payload = bytes(size - 42)
    return [udp_frame(src, dst, 5000, 6000, payload) for _ in range(n)]


def _rate(fn, items) -> float:
    t0 = time.perf_counter()
    for it in items:
        fn(it)
    return len(items) / (time.perf_counter() - t0)


def measure(sizes=(64, 1400), n_model=20000, n_scapy=1000) -> list[dict]:
    from scapy.layers.inet import IP
    from scapy.layers.l2 import Ether
    from latchnic.sim.scapy_peer import scapy_sa

    host_cfg = parse_config(_config("192.0.2.1", "203.0.113.5", KEY_B, 0x2001, KEY_A, 0x1001))
    peer_cfg = parse_config(_config("203.0.113.5", "192.0.2.1", KEY_A, 0x1001, KEY_B, 0x2001))
    rows = []
    for size in sizes:
        host = ModelDevice.from_config(host_cfg)
        peer = ModelDevice.from_config(peer_cfg)
        clear = _frames(size, n_model, "192.0.2.1", "203.0.113.5")
        encap = _rate(lambda f: host.process(f, "out", 0), clear)
        sealed = [peer.process(f, "out", 0).frame for f in _frames(size, n_model, "203.0.113.5", "192.0.2.1")]
        decap = _rate(lambda f: host.process(f, "in", 0), sealed)
        assert host.counters()["sa"]["in"]["packets"] == n_model, "decap bench dropped packets"

        sa = scapy_sa(host_cfg.sas[0])
        ips = [Ether(f)[IP] for f in clear[:n_scapy]]
        s_encap = _rate(sa.encrypt, ips)
        rx = scapy_sa(host_cfg.sas[1])
        s_sealed = [Ether(f)[IP] for f in sealed[:n_scapy]]
        s_decap = _rate(rx.decrypt, s_sealed)
        rows.append({"size": size, "op": "encap", "model_pps": encap, "scapy_pps": s_encap})
        rows.append({"size": size, "op": "decap", "model_pps": decap, "scapy_pps": s_decap})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="latchnic bench model")
    ap.add_argument("-n", type=int, default=20000, help="packets per model measurement")
    ap.add_argument("--scapy-n", type=int, default=1000, help="packets per scapy measurement")
    args = ap.parse_args(argv)
    rows = measure(n_model=args.n, n_scapy=args.scapy_n)
    print(f"{'frame':>6} {'op':6} {'model pkt/s':>12} {'model Mbit/s':>13} {'scapy pkt/s':>12} {'ratio':>7}")
    for r in rows:
        mbit = r["model_pps"] * r["size"] * 8 / 1e6
        print(f"{r['size']:>5}B {r['op']:6} {r['model_pps']:12,.0f} {mbit:13,.1f} "
              f"{r['scapy_pps']:12,.0f} {r['model_pps'] / r['scapy_pps']:6.1f}x")
    worst = min(r["model_pps"] / r["scapy_pps"] for r in rows)
    print(f"goal: >= 20x scapy; worst ratio in this run: {worst:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
