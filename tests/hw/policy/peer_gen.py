"""Protected inbound frames as the peers send them, for the policy core's
two-pass differential test: ESP sealed by scapy (an independent
implementation, sim/scapy_peer.py), AH-GMAC and deliberately bad ESP
padding sealed with the model's functions (scapy has no AH-GMAC and never
pads wrongly). Flows are the traffic mix's flows seen from the wire, so
inbound packets meet latches that outbound SYNs cloned; a rogue peer's SA
may carry another peer's flow (flow stealing), old frames are sent again
(replay) and ICVs are forged."""

from __future__ import annotations

import struct

from latchnic.sim.device import ModelDevice
from latchnic.sim.packet import IPPROTO_ESP, join_transport, parse_frame, split_transport
from latchnic.sim.sad import SaState
from latchnic.sim.scapy_peer import ScapyPeer

L2 = dict(src="02:00:00:00:00:99", dst="02:00:00:00:00:01")


def inner_ip(rng, fl, flags=None):
    """The scapy IP/IPv6 packet of flow `fl` (traffic_gen flow tuple) from the wire."""
    from scapy.layers.l2 import Ether

    from traffic_gen import frame
    pkt = Ether(frame(rng, "in", fl, flags))
    while not pkt.name.startswith("IP"):
        pkt = pkt.payload
    return pkt


def seal(spec, inner, seq: int) -> bytes:
    """The Ethernet frame a peer sends `inner` in under its SA `spec` (our inbound SA)."""
    from scapy.layers.l2 import Ether
    if spec.proto == "esp":
        return ScapyPeer(spec).seal(inner, seq)
    sa = SaState(spec, 64)
    pkt = parse_frame(bytes(Ether(**L2) / inner))
    return pkt.frame[:pkt.l2_len] + ModelDevice._encapsulate(None, sa, pkt, seq)


def seal_bad_padding(spec, inner, seq: int) -> bytes:
    """ESP transport, AES-GCM, whose pad bytes are not 1, 2, 3... (RFC 4303 2.4):
    the ICV verifies, the trailer check fails."""
    from scapy.layers.l2 import Ether
    sa = SaState(spec, 64)
    pkt = parse_frame(bytes(Ether(**L2) / inner))
    hdr, payload = split_transport(pkt)
    pad = (-(len(payload) + 2)) % 4 or 4
    clear = payload + bytes([0xA5] * pad) + bytes((pad, pkt.proto))
    iv = seq.to_bytes(8, "big")
    body = (sa.spi_bytes + struct.pack("!I", seq & 0xFFFFFFFF) + iv
            + sa.gcm.seal(sa.nonce(iv), clear, sa.seq_aad(seq), spec.icv))
    return pkt.frame[:pkt.l2_len] + join_transport(pkt, hdr, IPPROTO_ESP, body)


def forge(frame: bytes) -> bytes:
    """Flip one bit of the last byte (the ESP ICV; AH covers the payload)."""
    return frame[:-1] + bytes([frame[-1] ^ 0x01])


class Peers:
    """Sends for every inbound SA of a configuration, with its own counter."""

    def __init__(self, cfg):
        self.sas = {s.name: s for s in cfg.sas if s.dir == "in"}
        self.next = {n: s.seq for n, s in self.sas.items()}
        self.sent: dict[str, list[bytes]] = {n: [] for n in self.sas}

    def sender_for(self, rng, remote: str) -> str:
        """Mostly the peer that owns the address; sometimes another (a rogue
        peer with a valid SA claiming someone else's address)."""
        if remote.startswith("198.51.100."):
            names = ["carol-tun-in", "carol-tun-in", "carol-ah-in", "bob-in"]
        elif remote == "203.0.113.5":           # alice-in names this source address
            names = ["alice-in", "alice-in", "alice-in", "bob-in", "alice-in-weak", "carol-ah-in"]
        else:
            names = ["alice-in", "bob-in", "bob-in", "alice-in-weak", "carol-ah-in"]
        return rng.choice([n for n in names if n in self.sas] or list(self.sas))

    def frame(self, rng, fl, flags=None, name=None, kind=None) -> bytes:
        """kind: fresh | replay | forged | bad_padding (random when None)."""
        name = name or self.sender_for(rng, fl[1])
        spec = self.sas[name]
        if kind is None:
            r = rng.random()
            kind = ("fresh" if r < 0.75 else "replay" if r < 0.85 else "forged" if r < 0.93
                    else "bad_padding")
        if kind == "replay" and self.sent[name]:
            return rng.choice(self.sent[name][-8:])
        self.next[name] += rng.choice([1, 1, 1, 2, 3, 40])
        seq = self.next[name]
        inner = inner_ip(rng, fl, flags)
        if kind == "bad_padding" and spec.proto == "esp" and spec.mode == "transport" and spec.encrypts:
            f = seal_bad_padding(spec, inner, seq)
        else:
            f = seal(spec, inner, seq)
        self.sent[name].append(f)
        return forge(f) if kind == "forged" else f
