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

    def replace(self, peers, pinned: set[int] = frozenset()):
        """Hold exactly `peers` (an apply), listed in their order. Names seen
        before are placed first: each gets its old index back (the history's
        indexes are distinct), so a new name placed earlier in the list can
        never take the index of a peer that stays. A peer's index is written
        into its SAs and latches; one that moved would make the driver
        rewrite unchanged SAs in the hardware, restarting their anti-replay
        windows and counters. All or nothing: when an index runs out
        (OverflowError) the PAD is left as it was."""
        before = dict(self.peers), dict(self.index), dict(self.history)
        for name in list(self.peers):
            self.remove(name)
        seen = [p for p in peers if p.name in self.history]
        try:
            for p in seen + [p for p in peers if p.name not in self.history]:
                self.add(p, pinned)
        except OverflowError:
            self.peers, self.index, self.history = before
            raise
        self.peers = {p.name: self.peers[p.name] for p in peers}
        self.index = {p.name: self.index[p.name] for p in peers}

    def get(self, name: str) -> Peer | None:
        return self.peers.get(name)
