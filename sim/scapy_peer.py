"""The far end of the wire, played by scapy.

Scenario tests and the demo need a remote IPsec peer that is *not* the
reference model: scapy's ESP implementation is that independent party. The
model never imports this module.
"""

from __future__ import annotations

from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.layers.l2 import Ether

from latchnic.config import SA


def scapy_sa(sa: SA) -> SecurityAssociation:
    """scapy's view of one of our SAs (ESP only: scapy has no AH-GMAC)."""
    if sa.proto != "esp":
        raise ValueError(f"SA {sa.name!r}: scapy has no AH-GMAC; use ESP SAs with the scapy peer")
    tunnel = None
    if sa.mode == "tunnel":
        cls = IP if sa.src.version == 4 else IPv6
        tunnel = cls(src=str(sa.src), dst=str(sa.dst))
    algo = "AES-GCM" if sa.encrypts else "AES-NULL-GMAC"
    return SecurityAssociation(ESP, spi=sa.spi, crypt_algo=algo, crypt_key=sa.key + sa.salt,
                               crypt_icv_size=sa.icv, tunnel_header=tunnel, esn_en=sa.esn)


class ScapyPeer:
    """Seals what a peer sends with its outbound SA (= our inbound SA) and
    opens what it receives with its inbound SA (= our outbound SA)."""

    def __init__(self, sends_with: SA | None, receives_with: SA | None = None):
        self.tx_spec, self.rx_spec = sends_with, receives_with
        self.tx = scapy_sa(sends_with) if sends_with else None
        self.rx = scapy_sa(receives_with) if receives_with else None
        self.seq = sends_with.seq if sends_with else 0

    def seal(self, inner, seq: int | None = None) -> bytes:
        """An Ethernet frame carrying `inner` (a scapy IP/IPv6 packet) under ESP."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        # scapy reads `seq_num or self.seq_num` (and the same for esn), so a
        # low half of 0 passed as an argument would be replaced: set the SA's own fields
        self.tx.seq_num = seq & 0xFFFFFFFF
        self.tx.esn = seq >> 32
        esp = self.tx.encrypt(inner)
        return bytes(Ether(src="02:00:00:00:00:99", dst="02:00:00:00:00:01") / esp)

    def open(self, frame: bytes, seq_high: int = 0):
        """Decrypt and verify a frame our device sent; returns the scapy IP packet."""
        ip = Ether(frame).payload
        if self.rx_spec.esn:
            return self.rx.decrypt(ip, esn_en=True, esn=seq_high)
        return self.rx.decrypt(ip)
