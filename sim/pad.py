"""Peer Authorization Database: peer identities, the small integer the
hardware knows each one by, and which addresses a peer may claim."""

from __future__ import annotations

from latchnic.config import Peer


class Pad:
    def __init__(self, capacity: int = 256):
        self.capacity = capacity
        self.peers: dict[str, Peer] = {}
        self.index: dict[str, int] = {}
        self.history: dict[str, int] = {}     # last index of every name ever added

    def name_of(self, idx: int) -> str:
        for name, i in self.history.items():
            if i == idx:
                return name
        return f"peer#{idx}"

    def add(self, peer: Peer, pinned: set[int] = frozenset()) -> int:
        """Register a peer. A name keeps its old index when it comes back, so
        its latches still name it; otherwise the lowest index no peer and no
        latch (`pinned`) uses, so a latch never changes whom it names."""
        used = set(self.index.values())
        idx = self.history.get(peer.name)
        if idx is None or idx in used:
            used |= set(pinned)
            idx = next(i for i in range(self.capacity + 1) if i not in used)
        if idx >= self.capacity:
            raise OverflowError(f"PAD full ({self.capacity} peers)")
        self.peers[peer.name] = peer
        self.index[peer.name] = idx
        self.history = {n: i for n, i in self.history.items() if i != idx}
        self.history[peer.name] = idx
        return idx

    def remove(self, name: str):
        del self.peers[name]
        del self.index[name]

    def get(self, name: str) -> Peer | None:
        return self.peers.get(name)
