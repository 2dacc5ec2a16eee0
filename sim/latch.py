"""Latch templates and the latch table (RFC 5660 connection latching,
"Approach #2": template PAD entries that clone into per-flow latches).

The table is set-associative exactly like the gateware's: a flow's set is
CRC-32 (IEEE, as zlib computes it) of its 38-byte key, modulo the number of
sets; within a set the lowest free way is used. A full set fails closed: the
packet is dropped and no live latch is ever evicted.

Split geometry (`capacity_v6` > 0): IPv4 flows use slots
0 .. capacity - capacity_v6 - 1 and IPv6 flows the last `capacity_v6` slots,
two tables with the same ways, each with its own number of sets (the same
CRC-32 of the 38-byte key modulo it) and each failing closed on its own.
"""

from __future__ import annotations

import heapq
import zlib
from dataclasses import dataclass, field

from latchnic.config import QoP, Template
from .selectors import Flow, selectors_match

ESTABLISHED = "ESTABLISHED"
BROKEN = "BROKEN"
TIME_WAIT = "TIME_WAIT"
FREE = "free"


@dataclass
class Latch:
    slot: int
    flow: Flow
    peer: int                  # PAD index of the peer the flow is bound to
    qop: QoP
    template: int              # id of the template that cloned it
    created_ns: int
    state: str = ESTABLISHED
    last_ns: int = 0
    deadline_ns: int | None = None   # TIME_WAIT end or UDP idle expiry
    fin_out: bool = False
    fin_in: bool = False
    packets: dict = field(default_factory=lambda: {"in": 0, "out": 0})
    bytes: dict = field(default_factory=lambda: {"in": 0, "out": 0})
    drops: int = 0


@dataclass(frozen=True)
class LatchEvent:
    time_ns: int
    slot: int
    flow: Flow
    peer: int
    old: str
    new: str
    cause: str


class TemplateTable:
    def __init__(self, capacity: int = 256):
        self.capacity = capacity
        self.entries: dict[int, Template] = {}
        self._next_id = 0

    def add(self, template: Template) -> int:
        if len(self.entries) >= self.capacity:
            raise OverflowError(f"template table full ({self.capacity})")
        tid = self._next_id
        self._next_id += 1
        self.entries[tid] = template
        return tid

    def remove(self, tid: int) -> Template:
        return self.entries.pop(tid)

    def match(self, flow: Flow) -> tuple[int, Template] | None:
        """First template (in installation order) covering a TCP/UDP flow."""
        for tid, t in self.entries.items():
            if selectors_match(t, flow):
                return tid, t
        return None


class LatchTable:
    def __init__(self, capacity: int, ways: int, capacity_v6: int = 0):
        self.ways = ways
        self.capacity_v6 = capacity_v6
        self.v6_base = capacity - capacity_v6 if capacity_v6 else 0   # first IPv6 slot
        self.sets = (capacity - capacity_v6) // ways     # of the IPv4 (or the only) table
        self.sets_v6 = capacity_v6 // ways
        self.slots: list[Latch | None] = [None] * capacity
        self._by_flow: dict[Flow, Latch] = {}
        self._deadlines: list[tuple[int, int, int]] = []   # (deadline, slot, id(latch)) lazily pruned

    def set_of(self, flow: Flow) -> int:
        """The flow's set within its table (the IPv6 table's when split)."""
        sets = self.sets_v6 if self.capacity_v6 and flow.version == 6 else self.sets
        return zlib.crc32(flow.key_bytes()) & (sets - 1)

    def first_slot(self, flow: Flow) -> int:
        """Slot of way 0 of the flow's set."""
        base = self.v6_base if self.capacity_v6 and flow.version == 6 else 0
        return base + self.set_of(flow) * self.ways

    def lookup(self, flow: Flow) -> Latch | None:
        return self._by_flow.get(flow)

    def insert(self, flow: Flow, **fields) -> Latch | None:
        """Clone a latch into the flow's set; None if every way is taken."""
        base = self.first_slot(flow)
        for slot in range(base, base + self.ways):
            if self.slots[slot] is None:
                latch = Latch(slot=slot, flow=flow, **fields)
                self.slots[slot] = latch
                self._by_flow[flow] = latch
                return latch
        return None

    def free(self, latch: Latch):
        self.slots[latch.slot] = None
        del self._by_flow[latch.flow]

    def set_deadline(self, latch: Latch, deadline_ns: int | None):
        latch.deadline_ns = deadline_ns
        if deadline_ns is not None:
            heapq.heappush(self._deadlines, (deadline_ns, latch.slot, id(latch)))

    def expired(self, now_ns: int) -> list[Latch]:
        """Latches whose timer ran out by now, in (deadline, slot) order."""
        out = []
        while self._deadlines and self._deadlines[0][0] <= now_ns:
            deadline, slot, ident = heapq.heappop(self._deadlines)
            latch = self.slots[slot]
            # the same deadline may have been pushed twice (two packets at one instant)
            if (latch is not None and id(latch) == ident and latch.deadline_ns == deadline
                    and latch not in out):
                out.append(latch)
        return out

    def live(self) -> list[Latch]:
        return [l for l in self.slots if l is not None]

    def __len__(self) -> int:
        return len(self._by_flow)
