"""cocotb bench: single-entry driver operations on the gateware.

The core is programmed with core_config.toml through the driver's
RegisterBackend (AXI4-Lite), then changed one entry at a time: an SPD rule
inserted at the top and deleted again, an SA deleted (its rules left
dangling) and added back, a template added and one deleted, a peer added and
deleted. A ModelBackend over the reference model gets the same operations.
After each operation: the listings of both backends are equal, the latch
events (with the re-check's cause named after the operation) are equal, a
stretch of random traffic gets the same verdicts, and latches() and
counters() are equal (core_driver.compare).

Environment: CORE_CONFIG (TOML path), CORE_SEED, CORE_COUNT (frames per stretch).
"""

import os

import cocotb

from latchnic.config import load_config
from latchnic.driver.entries import from_table
from latchnic.driver.model_backend import ModelBackend
from latchnic.sim.device import ModelDevice

from cocotb_core_tb import TB, want_verdict
from core_driver import EVENT_FIELDS, CoreDriver, compare
from traffic_gen import TICK_NS, traffic


def entry(what, /, **fields):
    return from_table(what, fields, "bench")


@cocotb.test()
async def single_operations(dut):
    seed = int(os.environ.get("CORE_SEED", "3"))
    count = int(os.environ.get("CORE_COUNT", "120"))
    cfg = load_config(os.environ["CORE_CONFIG"])
    model = ModelDevice(cfg.device)
    mb = ModelBackend(model)
    tb = TB(dut, seed, False)
    await tb.reset()
    tb.drv = drv = await CoreDriver.open(tb.axil, TICK_NS)
    state = {"t": 0, "stretch": 0, "model_seq": 0}

    async def both(op, *args):
        """One operation on both backends; the same result or the same refusal."""
        try:
            want = getattr(mb, op)(*args)
        except Exception as e:                       # noqa: BLE001 (compared below)
            want = ("refused", str(e))
        try:
            got = await drv.call(op, *args)
        except Exception as e:                       # noqa: BLE001
            got = ("refused", str(e))
        assert got == want, (op, args, got, want)
        await same_state(op)
        return got

    async def same_state(what):
        for listing in ("peers", "spd", "templates"):
            assert await drv.call(listing) == getattr(mb, listing)(), (what, listing)
        # model events: the numbered log of the ModelBackend, `timer` events
        # included (the driver's apply turned them on in the core)
        evs, state["model_seq"] = mb.events(state["model_seq"], 0.0, 1 << 20)
        want = [{k: e[k] for k in EVENT_FIELDS} for e in evs]
        got = [{k: e[k] for k in EVENT_FIELDS} for e in await drv.events()]
        assert got == want, (what, got, want)

    async def stretch():
        """Random traffic through both; verdicts compared frame by frame."""
        state["stretch"] += 1
        base = state["t"]
        for n, (direction, frame, now_ns) in enumerate(traffic(seed * 100 + state["stretch"], count, cfg)):
            now_ns += base
            state["t"] = now_ns
            mv = mb.process(frame, direction, now_ns)
            if direction == "in":
                _first, hv = await tb.inbound(model, drv.slots, frame, now_ns // TICK_NS)
            else:
                hv = await tb.frame(False, frame, now_ns // TICK_NS)
            want = want_verdict(mv, drv.slots)
            got = {k: hv[k] for k in want}
            assert got == want, (state["stretch"], n, direction, frame.hex(), mv.reason, got, want)
        await same_state(f"stretch {state['stretch']}")
        return await compare(drv, model, dut._log)

    await both("apply", cfg)
    await stretch()
    causes = set()

    # an SPD rule inserted at the top (everything outbound: DISCARD, so every
    # latch goes BROKEN), then deleted (they recover)
    top = entry("spd", dir="out", action="discard")
    await both("add_spd", top, 0)
    assert {l["state"] for l in await drv.call("latches")} <= {"BROKEN", "TIME_WAIT"}
    await stretch()
    await both("del_spd", "out", 0)
    await both("del_spd", "out", 99)                    # refused by both, same message
    await stretch()

    # an SA deleted while rules still name it, then added back under its name
    alice_out = next(s for s in cfg.sas if s.name == "alice-out")
    held = drv.slots["alice-out"]
    await both("del_sa", "alice-out")
    assert drv.slots["alice-out"] == held                # its rules keep pointing at a cleared slot
    await stretch()
    await both("add_sa", alice_out)
    assert drv.slots["alice-out"] == held
    await stretch()

    # templates: one added at the end, the first deleted (the others move up)
    tid = await both("add_template", entry("template", kind="initiator", remote="203.0.113.64/26",
                                           proto="udp"))
    assert tid == len(cfg.templates)
    await both("del_template", 0)
    await stretch()

    # a peer added and deleted again (the PAD claims table is rewritten)
    await both("add_peer", entry("peer", name="dave@example.org", claims=["198.51.100.64/26"]))
    await both("add_peer", entry("peer", name="dave@example.org"))     # refused: exists
    await both("del_peer", "dave@example.org")
    await both("del_peer", "alice@example.org")                        # refused: still used
    live = await stretch()

    for e in mb.events(0, 0.0, 1 << 20)[0]:
        causes.add(e["cause"])
    dut._log.info("single operations: %d live latches at the end, event causes %s", live,
                  sorted(causes))
    # the operations must have touched latches, or the comparison proved little
    for need in ("spd_changed", "sa_deleted", "sa_added", "clone", "timer"):
        assert need in causes, (need, causes)
