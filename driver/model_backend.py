"""The reference model as a driver backend, in this process.

Wraps a `ModelDevice`: one lock around every operation and every frame, so
the software NIC's datapath threads and the control socket can share it; the
device's latch events are moved into a numbered log that any number of
`monitor` clients read without taking them from each other.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from latchnic.config import SA, Config, DeviceKnobs, Peer, SpdRule, Template
from latchnic.sim.device import DeviceError, ModelDevice, Verdict
from latchnic.sim.flowfmt import PROTO_NAMES, addr_text, flow_text

from .backend import Backend, BackendError
from .entries import to_table

EVENT_LOG = 10000


def flow_fields(flow) -> dict:
    return {"version": flow.version, "proto": PROTO_NAMES.get(flow.proto, flow.proto),
            "local": addr_text(flow.version, flow.local), "local_port": flow.local_port,
            "remote": addr_text(flow.version, flow.remote), "remote_port": flow.remote_port}


class ModelBackend(Backend):
    name = "model"

    def __init__(self, device: ModelDevice | None = None, **capacities):
        self.dev = device if device is not None else ModelDevice(DeviceKnobs(), **capacities)
        self.lock = threading.RLock()
        self._cond = threading.Condition(self.lock)
        self._log: deque = deque(maxlen=EVENT_LOG)
        self._seq = 0

    @classmethod
    def from_config(cls, cfg: Config, **capacities) -> "ModelBackend":
        b = cls(ModelDevice(cfg.device, **capacities))
        b.apply(cfg)
        return b

    # ---------------------------------------------------------- plumbing
    def _do(self, fn, *args):
        with self.lock:
            try:
                return fn(*args)
            except DeviceError as e:
                raise BackendError(str(e)) from None
            finally:
                self._collect()

    def _collect(self):
        """Move the device's queued events into the numbered log (lock held)."""
        events = self.dev.drain_events()
        if not events:
            return
        for ev in events:
            self._seq += 1
            self._log.append({"seq": self._seq, "time_ns": ev.time_ns, "slot": ev.slot,
                              "flow": flow_text(ev.flow), **flow_fields(ev.flow),
                              "peer": self.dev.peer_name(ev.peer), "old": ev.old,
                              "new": ev.new, "cause": ev.cause})
        self._cond.notify_all()

    # ----------------------------------------------------------- datapath
    def process(self, frame: bytes, direction: str, now_ns: int) -> Verdict:
        """One frame through the device (the software NIC's datapath)."""
        with self.lock:
            try:
                return self.dev.process(frame, direction, now_ns)
            finally:
                self._collect()

    def tick(self, now_ns: int):
        """Advance the device clock without a frame (frees expired latches)."""
        with self.lock:
            self.dev.advance(now_ns)
            self._collect()

    # ------------------------------------------------------------- tables
    def add_peer(self, peer: Peer):
        self._do(self.dev.add_peer, peer)

    def del_peer(self, name: str):
        self._do(self.dev.del_peer, name)

    def peers(self) -> list[dict]:
        with self.lock:
            pad = self.dev.pad
            return [to_table(p) | {"index": pad.index[p.name]} for p in pad.peers.values()]

    def add_sa(self, sa: SA):
        self._do(self.dev.add_sa, sa)

    def del_sa(self, name: str):
        self._do(self.dev.del_sa, name)

    def sas(self, keys: bool = False) -> list[dict]:
        with self.lock:
            counters = self.dev.counters()["sa"]
            return [to_table(s.spec, keys) | {"counters": counters.get(s.name, {})}
                    for s in self.dev.sad]

    def add_spd(self, rule: SpdRule, index: int | None = None):
        self._do(self.dev.add_spd, rule, index)

    def del_spd(self, direction: str, index: int):
        self._do(self.dev.del_spd, direction, index)

    def spd(self) -> list[dict]:
        with self.lock:
            return [to_table(r) | {"index": i}
                    for d in ("out", "in") for i, r in enumerate(self.dev.spd.rules.get(d, []))]

    def add_template(self, template: Template) -> int:
        return self._do(self.dev.add_template, template)

    def del_template(self, tid: int):
        self._do(self.dev.del_template, tid)

    def templates(self) -> list[dict]:
        with self.lock:
            return [{"id": tid} | to_table(t) for tid, t in self.dev.templates.entries.items()]

    def apply(self, cfg: Config):
        self._do(self.dev.apply, cfg)

    # ------------------------------------------------------------ latches
    def latches(self) -> list[dict]:
        with self.lock:
            out = []
            for l in self.dev.list_latches():
                out.append({"slot": l.slot, "flow": flow_text(l.flow), **flow_fields(l.flow),
                            "peer": self.dev.peer_name(l.peer), "peer_index": l.peer,
                            "qop": str(l.qop), "state": l.state, "template": l.template,
                            "created_ns": l.created_ns, "packets": dict(l.packets),
                            "bytes": dict(l.bytes), "drops": l.drops})
            self._collect()
            return out

    def release_latch(self, slot: int):
        self._do(self.dev.release_latch, slot)

    def events(self, since: int = 0, wait: float = 0.0, limit: int = 1000):
        deadline = time.monotonic() + max(0.0, wait)
        with self._cond:
            while self._seq <= since:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            out = [e for e in self._log if e["seq"] > since][:limit]
            return out, (out[-1]["seq"] if out else min(max(since, 0), self._seq))

    # -------------------------------------------------------- observation
    def counters(self) -> dict:
        with self.lock:
            c = self.dev.counters()
            c["latch"] = {str(k): v for k, v in c["latch"].items()}
            return c

    def clear_counters(self):
        with self.lock:
            self.dev.clear_counters()

    def caps(self) -> dict:
        with self.lock:
            return self.dev.caps()
