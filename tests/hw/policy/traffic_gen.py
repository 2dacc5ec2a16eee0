"""Random traffic mixes for the policy-core differential test: many flows
(reused, so latches clone, enforce, close and expire), TCP handshakes and
teardowns, UDP, ICMP, IPv6, fragments, flows that a template pins to another
peer (flow stealing), a nearly exhausted SA, inbound clear text against
protected policy, inbound ESP fragments, non-IP and malformed frames."""

from __future__ import annotations

import random

from frames import mutate

LOCAL4 = "192.0.2.1"
LOCAL6 = "2001:db8::1"
REMOTES4 = ["203.0.113.5", "203.0.113.9", "203.0.113.20", "203.0.113.40", "203.0.113.50",
            "203.0.113.70", "198.51.100.7", "198.51.100.9", "203.0.113.100", "192.0.2.200"]
REMOTES6 = ["2001:db8:1::5", "2001:db8:2::5", "2001:db8:9::1"]
LPORTS = [22, 40000, 40001, 40002, 5353]
RPORTS = [443, 80, 55, 22, 1234]
TICK_NS = 1_000_000


def _flows(rng, n):
    out = []
    for _ in range(n):
        v6 = rng.random() < 0.15
        out.append((v6, rng.choice(REMOTES6 if v6 else REMOTES4), rng.choice(["tcp", "tcp", "udp"]),
                    rng.choice(LPORTS), rng.choice(RPORTS)))
    return out


def frame(rng, direction, fl, flags=None, frag=False, esp=False, ah=False, spi=0x1001, seq=None):
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.ipsec import ESP
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.packet import Raw

    v6, remote, proto, lport, rport = fl
    local = LOCAL6 if v6 else LOCAL4
    src, dst = (local, remote) if direction == "out" else (remote, local)
    sport, dport = (lport, rport) if direction == "out" else (rport, lport)
    payload = Raw(bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 10, 100]))))
    if seq is None:
        seq = rng.randrange(1, 100)
    if esp:
        l4 = ESP(spi=spi, seq=seq) / payload
    elif ah:
        from scapy.layers.ipsec import AH
        l4 = AH(spi=spi, seq=seq, icv=bytes(20 if v6 else 16), nh=6,
                payloadlen=rng.choice([7, 8, 7, 8, 3]) if not v6 else rng.choice([8, 8, 7])) / payload
    elif proto == "tcp":
        l4 = TCP(sport=sport, dport=dport, flags=flags or "A") / payload
    elif proto == "udp":
        l4 = UDP(sport=sport, dport=dport) / payload
    else:
        l4 = ICMP() / payload
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if rng.random() < 0.1:
        eth = eth / Dot1Q(vlan=7)
    ip = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst)
    if frag and not v6:
        ip.flags = "MF"
        ip.frag = rng.choice([0, 0, 10])
    return bytes(eth / ip / l4)


def traffic(seed: int, count: int, cfg=None, protected: float = 0.15) -> list[tuple[str, bytes, int]]:
    """[(direction, frame, time_ns)], time in whole ticks. With `cfg`, about
    count x `protected` more frames: inbound ESP/AH sealed with its inbound
    SAs (peer_gen.py: fresh, replayed, forged, bad padding, rogue peers),
    drawn from their own random stream and sent at the time of the frame
    before them, so the rest of the mix is the same with or without them."""
    from scapy.layers.l2 import ARP, Ether

    from peer_gen import Peers

    rng = random.Random(seed)
    flows = _flows(rng, 36)
    peers = Peers(cfg) if cfg is not None else None
    prng = random.Random(seed ^ 0x5EC)
    now = 0
    out = []
    for _ in range(count):
        if peers is not None and prng.random() < protected:
            fl = prng.choice(flows)
            flags = prng.choice(["S", "S", "SA", "A", "PA", "F", "FA", "R"])
            out.append(("in", peers.frame(prng, fl, flags), now))
        # strictly increasing: the model crashes when one UDP latch is refreshed
        # twice at the same timestamp (duplicate heap entry; see docs/policy-core.md)
        now += rng.choice([1, 1, 2, 5, 10, 20]) * TICK_NS
        r = rng.random()
        fl = rng.choice(flows)
        if r < 0.55:
            flags = rng.choice(["S", "S", "SA", "A", "PA", "F", "FA", "R", "SF", "SR"])
            out.append(("out", frame(rng, "out", fl, flags), now))
        elif r < 0.75:
            flags = rng.choice(["SA", "A", "F", "FA", "R", "S"])
            out.append(("in", frame(rng, "in", fl, flags), now))
        elif r < 0.8:
            icmp = (fl[0], fl[1], "icmp", 0, 0)
            out.append((rng.choice(["out", "in"]), frame(rng, "out", icmp), now))
        elif r < 0.85:
            d = rng.choice(["out", "in"])
            out.append((d, frame(rng, d, fl, frag=True, esp=d == "in" and rng.random() < 0.5), now))
        elif r < 0.9:
            # inbound ESP/AH: known and unknown SPIs, old, zero and fresh numbers
            kind = rng.choice(["esp", "esp", "ah"])
            spi = rng.choice([0x1001, 0x1001, 0x1002, 0x9999, 0x2001])
            seq = rng.choice([0, 1, 500, 999, 1000, 1001, 5000, 0xFFFFFFFF])
            if rng.random() < 0.6:
                fl = (False, "203.0.113.5", fl[2], fl[3], fl[4])
            f = frame(rng, "in", fl, esp=kind == "esp", ah=kind == "ah", spi=spi, seq=seq)
            if rng.random() < 0.1:
                f = f[:rng.randrange(30, len(f))]
            out.append(("in", f, now))
        elif r < 0.92:
            out.append((rng.choice(["out", "in"]),
                        bytes(Ether() / ARP(psrc=LOCAL4, pdst=fl[1] if not fl[0] else "1.2.3.4")), now))
        else:
            d = rng.choice(["out", "in"])
            out.append((d, mutate(rng, frame(rng, d, fl, "S")) or b"\x00", now))
    return out
