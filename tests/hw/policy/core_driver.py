"""The driver side of the policy-core benches: the core is programmed and
observed only through `RegisterBackend` (driver/register_backend.py) over
cocotbext-axi's AxiLiteMaster (driver/buses.py: CocotbBus), the code a board
runs, and compared with a `ModelBackend` that saw the same configuration and
frames.

The backend is blocking code; it runs in threads started with
`cocotb.task.bridge`, and every register access goes back to the simulator
through `cocotb.task.resume`.
"""

from __future__ import annotations

from cocotb.task import bridge

from latchnic.driver.buses import CocotbBus
from latchnic.driver.model_backend import ModelBackend
from latchnic.driver.register_backend import RegisterBackend

# Latch fields the gateware holds. Left out of the comparison: created_ns
# (the latch entry has no creation time) and the register backend's extra
# deadline_tick (the model's listing has no timers).
LATCH_FIELDS = ("slot", "flow", "version", "proto", "local", "local_port", "remote", "remote_port",
                "peer", "peer_index", "qop", "state", "template", "packets", "bytes", "drops")
# Event fields the event FIFO carries (time, slot, peer, old, new, cause);
# the model's events also name the flow, which the FIFO entry has no room for.
EVENT_FIELDS = ("time_ns", "slot", "peer", "old", "new", "cause")


class CoreDriver:
    def __init__(self, dev: RegisterBackend):
        self.dev = dev
        self.next_event = 0

    @classmethod
    async def open(cls, axil, tick_ns: int) -> "CoreDriver":
        for side in (axil.read_if, axil.write_if):
            side.log.setLevel("WARNING")     # the driver makes thousands of accesses
        bus = CocotbBus(axil)
        return cls(await bridge(RegisterBackend)(bus, tick_ns=tick_ns))

    async def call(self, op: str, *args):
        """One Backend operation, e.g. await drv.call("apply", cfg)."""
        return await bridge(getattr(self.dev, op))(*args)

    @property
    def slots(self) -> dict[str, int]:
        """SA name -> SAD slot, as the driver assigned them."""
        return self.dev.sa_slots

    async def events(self) -> list[dict]:
        """The latch events the backend drained since the last call."""
        out, self.next_event = await self.call("events", self.next_event, 0.0, 1 << 20)
        return out


def model_events(model, events, timers: bool = False) -> list[dict]:
    """ModelDevice.drain_events() output as the backends' event dicts
    (ModelBackend's form). `timer` events only with `timers`: the gateware
    queues them only with CTRL.timer_events set (docs/policy-core.md)."""
    return [{"time_ns": e.time_ns, "slot": e.slot, "peer": model.peer_name(e.peer), "old": e.old,
             "new": e.new, "cause": e.cause} for e in events if timers or e.cause != "timer"]


def same_events(want: list[dict], got: list[dict]):
    got = [{k: e[k] for k in EVENT_FIELDS} for e in got]
    for i, (a, b) in enumerate(zip(want, got)):
        assert a == b, f"event {i}: model {a} driver {b}"
    assert len(want) == len(got), (len(want), len(got), want[len(got):], got[len(want):])


async def compare(drv: CoreDriver, model, log, not_decided=()):
    """The register backend's latches() and counters() against a
    ModelBackend over the same ModelDevice. `not_decided`: drop reasons of
    frames the model decided but the gateware did not see to the end (none
    once the crypto path is in the loop); they are taken off the model's
    drop counts."""
    mb = ModelBackend(model)
    fields = LATCH_FIELDS
    have = drv.dev.latch_counters          # CAPS_COUNTERS.latch of the build
    if not have:                           # absent: reported as None, never as numbers
        fields = tuple(k for k in LATCH_FIELDS if k not in ("packets", "bytes", "drops"))
        for l in await drv.call("latches"):
            assert (l["packets"], l["bytes"], l["drops"]) == (None, None, None), l
    want_latches = [{k: l[k] for k in fields} for l in mb.latches()]
    got_latches = [{k: l[k] for k in fields} for l in await drv.call("latches")]
    assert got_latches == want_latches, f"latches: model {want_latches} driver {got_latches}"
    want, got = mb.counters(), await drv.call("counters")
    drops = {r: n - not_decided.count(r) for r, n in want["drops"].items()}
    assert got["drops"] == {r: n for r, n in drops.items() if n}, (got["drops"], drops)
    f = want["frames"]
    assert got["frames"] == {"in_frames": f.get("in_frames", 0), "out_frames": f.get("out_frames", 0),
                             "forwarded": f.get("in_forwarded", 0) + f.get("out_forwarded", 0),
                             "non_ip": f.get("in_non_ip", 0) + f.get("out_non_ip", 0)}, (got, f)
    for name, c in want["sa"].items():
        g = got["sa"][name]
        assert (g["packets"], g["bytes"], g["drops_total"]) == (
            c["packets"], c["bytes"], sum(c["drops"].values())), (name, g, c)
        if "seq" in c:
            assert g["seq"] == c["seq"], (name, g, c)
    assert set(got["sa"]) == set(want["sa"])
    if have:
        assert got["latch"] == want["latch"], (got["latch"], want["latch"])
    else:
        assert got["latch"] is None, got["latch"]
    log.info("driver vs model: %d latches, %d SAs, %d drop reasons, frames %s",
             len(got_latches), len(got["sa"]), len(got["drops"]), got["frames"])
    return len(got_latches)
