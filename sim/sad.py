"""Security Association Database: per-SA keys, sequence counters, windows,
counters, and the RFC 4301 inbound lookup."""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field

from latchnic.config import SA
from .crypto import GcmKey
from .replay import ReplayWindow


@dataclass
class SaCounters:
    packets: int = 0
    bytes: int = 0                 # IP payload bytes before encap / after decap
    drops: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"packets": self.packets, "bytes": self.bytes, "drops": dict(sorted(self.drops.items()))}


class SaState:
    """One SAD entry: the configured SA plus its running state."""

    def __init__(self, spec: SA, replay_window: int):
        self.spec = spec
        self.qop = spec.qop                                  # compared on every latched packet
        self.gcm = GcmKey(spec.key)
        self.spi_bytes = struct.pack("!I", spec.spi)
        self.seq = spec.seq                                  # out: last sequence number sent
        self.seq_limit = (1 << 64) - 1 if spec.esn else (1 << 32) - 1
        self.window = ReplayWindow(spec.replay_window or replay_window, spec.esn, spec.seq)
        self.counters = SaCounters()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def exhausted(self) -> bool:
        """An outbound sequence number never cycles: at the limit the SA stops."""
        return self.seq >= self.seq_limit

    def next_seq(self) -> int:
        assert not self.exhausted
        self.seq += 1
        return self.seq

    def nonce(self, iv: bytes) -> bytes:
        return self.spec.salt + iv

    def seq_aad(self, seq: int) -> bytes:
        """SPI || sequence number as authenticated (RFC 4106 section 5): the
        high half is authenticated but not sent when ESN is on."""
        if self.spec.esn:
            return self.spi_bytes + struct.pack("!II", seq >> 32, seq & 0xFFFFFFFF)
        return self.spi_bytes + struct.pack("!I", seq)


class Sad:
    def __init__(self):
        self.by_name: dict[str, SaState] = {}
        self._inbound: dict[tuple[str, int], list[SaState]] = {}

    def add(self, state: SaState):
        spec = state.spec
        self.by_name[spec.name] = state
        if spec.dir == "in":
            self._inbound.setdefault((spec.proto, spec.spi), []).append(state)

    def remove(self, name: str) -> SaState:
        state = self.by_name.pop(name)
        if state.spec.dir == "in":
            bucket = self._inbound[(state.spec.proto, state.spec.spi)]
            bucket.remove(state)
            if not bucket:
                del self._inbound[(state.spec.proto, state.spec.spi)]
        return state

    def get(self, name: str | None) -> SaState | None:
        return self.by_name.get(name) if name is not None else None

    def __iter__(self):
        return iter(self.by_name.values())

    def lookup_in(self, proto: str, spi: int, version: int, dst: int, src: int) -> SaState | None:
        """RFC 4301 4.1: longest match of (SPI, dst, src), then (SPI, dst), then SPI."""
        best, best_rank = None, -1
        for state in self._inbound.get((proto, spi), ()):
            s = state.spec
            if s.dst is None:
                rank = 0
            elif s.dst.version != version or int(s.dst) != dst:
                continue
            elif s.src is None:
                rank = 1
            elif s.src.version == version and int(s.src) == src:
                rank = 2
            else:
                continue
            if rank > best_rank:
                best, best_rank = state, rank
        return best
