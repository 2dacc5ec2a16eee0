"""The flow selectors of a packet, oriented from the device's host side."""

from __future__ import annotations

import struct
from typing import NamedTuple


class Flow(NamedTuple):
    """local/remote as the host sees them; ports None where OPAQUE."""
    version: int
    local: int
    remote: int
    proto: int
    local_port: int | None
    remote_port: int | None

    def key_bytes(self) -> bytes:
        """The latch table's key: the same 38 bytes the gateware hashes.
        IPv4 addresses are zero-extended to 16 bytes."""
        return struct.pack("!B16s16sBHH", self.version, self.local.to_bytes(16, "big"),
                           self.remote.to_bytes(16, "big"), self.proto,
                           self.local_port or 0, self.remote_port or 0)


def flow_of(pkt, direction: str) -> Flow:
    """Outbound: the packet's source is local; inbound: its destination is."""
    if direction == "out":
        return Flow(pkt.version, pkt.src, pkt.dst, pkt.proto, pkt.sport, pkt.dport)
    return Flow(pkt.version, pkt.dst, pkt.src, pkt.proto, pkt.dport, pkt.sport)


def selectors_match(sel, flow: Flow) -> bool:
    """Whether an SPD rule or template (local, remote, proto, ports; None = ANY)
    covers a flow."""
    return ((sel.local is None or sel.local.matches(flow.version, flow.local))
            and (sel.remote is None or sel.remote.matches(flow.version, flow.remote))
            and (sel.proto is None or sel.proto == flow.proto)
            and (sel.local_port is None or sel.local_port.matches(flow.local_port))
            and (sel.remote_port is None or sel.remote_port.matches(flow.remote_port)))
