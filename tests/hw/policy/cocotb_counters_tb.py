"""Counters of the policy core vs ModelDevice: CTRL.clear_counters and
builds without per-latch counters (CAPS_COUNTERS.latch = 0).

Programmed by the driver (RegisterBackend over AXI4-Lite) from
tests/hw/policy/core_config.toml as in cocotb_core_tb.py; every verdict and
event is compared with the model as there. On top:

* after a third of the frames the driver's clear_counters() and the model's
  clear_counters(): every frame, drop, SA and latch counter reads 0 in both
  (and the SA sequence numbers do not move);
* after two thirds, a clear while a frame is in flight: the test writes
  CTRL.clear_counters = 1 right after handing the frame over, waits for the
  verdict, writes 0. Whether the core decides the frame before the sweep
  (counted, then cleared) or after it (the bit is 1: not counted), the
  counters must equal the model's frame-then-clear; the verdict must not
  change and the core must not hang;
* counters compared with the model (CTR_READ and the driver's counters())
  before and after each clear and at the end;
* without per-latch counters (CORE_LATCH_COUNTERS=0): CAPS_COUNTERS reads
  1, CTR_READ of every live latch reads 0 and the driver reports the latch
  counters absent (None), while the SA counters still match the model.
"""

from __future__ import annotations

import os

import cocotb

from latchnic.config import load_config
from latchnic.hw.generated import regs
from latchnic.sim.device import ModelDevice

from cocotb_core_tb import TB, want_verdict
from core_driver import CoreDriver, compare, model_events, same_events
from policy_tops import core_params
from traffic_gen import TICK_NS, traffic


async def check(tb, model, slots, params, log):
    """CTR_READ of every SA and live latch, and the driver's view, vs the model."""
    mc = model.counters()
    for name, c in mc["sa"].items():
        d = model.sad.by_name[name].spec.dir
        got = await tb.counters(slots[name], False)
        want = {"packets_" + d: c["packets"], "bytes_" + d: c["bytes"],
                "drops": sum(c["drops"].values()), "seq": c["seq"] if d == "out" else c["replay_top"]}
        assert {k: got[k] for k in want} == want, (name, got, want)
    for slot, c in mc["latch"].items():
        got = await tb.counters(slot, True)
        want = {"packets_in": c["packets"]["in"], "packets_out": c["packets"]["out"],
                "bytes_in": c["bytes"]["in"], "bytes_out": c["bytes"]["out"], "drops": c["drops"],
                "seq": 0}
        if not params.latch_counters:
            want = dict.fromkeys(want, 0)          # no RAM: reads 0 (the driver says absent)
        assert got == want, ("latch", slot, got, want)
    await compare(tb.drv, model, log)
    return mc


def total(mc) -> int:
    n = sum(s["packets"] + s["bytes"] + sum(s["drops"].values()) for s in mc["sa"].values())
    n += sum(l["packets"]["in"] + l["packets"]["out"] + l["drops"] for l in mc["latch"].values())
    return n + sum(mc["frames"].values()) + sum(mc["drops"].values())


@cocotb.test()
async def counters_vs_model(dut):
    seed = int(os.environ.get("CORE_SEED", "1"))
    count = int(os.environ.get("CORE_COUNT", "600"))
    cfg = load_config(os.environ["CORE_CONFIG"])
    params = core_params()
    model = ModelDevice.from_config(cfg)
    model.drain_events()
    tb = TB(dut, seed, False)
    await tb.reset()
    assert await tb.rd(regs.CAPS_COUNTERS) == 1 | int(params.latch_counters) << 1
    tb.drv = await CoreDriver.open(tb.axil, TICK_NS)
    assert (await tb.drv.call("caps"))["latch_counters"] is params.latch_counters
    slots = tb.drv.slots
    await tb.drv.call("apply", cfg)
    await tb.wr(regs.IRQ_ENABLE, 1)          # drain_events checks the line against the FIFO
    seen_before_clear = []
    errors, expect_events, hw_events = [], [], []
    for n, (direction, frame, now_ns) in enumerate(traffic(seed, count, cfg)):
        if n == count // 3:
            mc = await check(tb, model, slots, params, dut._log)
            seen_before_clear.append(total(mc))
            seqs = {k: v.get("seq") for k, v in mc["sa"].items()}
            await tb.drv.call("clear_counters")
            model.clear_counters()
            mc = await check(tb, model, slots, params, dut._log)
            assert total(mc) == 0, mc
            assert {k: v.get("seq") for k, v in mc["sa"].items()} == seqs
        mv = model.process(frame, direction, now_ns)
        in_flight = n >= 2 * count // 3 and direction == "out" and -1 not in seen_before_clear
        if in_flight:
            ctrl = await tb.rd(regs.CTRL)
            task = cocotb.start_soon(tb.frame(False, frame, now_ns // TICK_NS))
            await tb.wr(regs.CTRL, ctrl | regs.CTRL_CLEAR_COUNTERS_MASK)
            hv = await task
            await tb.wr(regs.CTRL, ctrl)
            model.clear_counters()
            seen_before_clear.append(-1)
        elif direction == "in":
            _first, hv = await tb.inbound(model, slots, frame, now_ns // TICK_NS)
        else:
            hv = await tb.frame(False, frame, now_ns // TICK_NS)
        want = want_verdict(mv, slots)
        if mv.action == "forward" and mv.sa is not None and direction == "out":
            want["seq"] = model.sad.by_name[mv.sa].seq
        got = {k: hv[k] for k in want}
        if got != want:
            errors.append(f"frame {n} {direction}: model {mv.action}/{mv.reason} want {want} got {got}")
        expect_events += model_events(model, model.drain_events(), timers=True)
        if n % 64 == 63:
            hw_events += await tb.drain_events()
        if in_flight:
            mc = await check(tb, model, slots, params, dut._log)
            assert total(mc) == 0, mc
        assert len(errors) < 5, errors
    assert not errors, errors
    hw_events += await tb.drain_events()
    same_events(expect_events, hw_events)
    mc = await check(tb, model, slots, params, dut._log)
    # the clears were observable: counts before the first, counts after the last
    assert seen_before_clear[0] > 0 and -1 in seen_before_clear and total(mc) > 0, seen_before_clear
    assert mc["latch"], "no live latch to compare"
    dut._log.info("counters vs model with clears: %d SAs, %d latches (per-latch counters %s)",
                  len(mc["sa"]), len(mc["latch"]), "yes" if params.latch_counters else "absent")


@cocotb.test()
async def timer_tick(dut):
    """NOW counts one tick per TICK_DIV clock cycles (0 and 1: every cycle):
    two reads started N cycles apart (each samples NOW at the same point of
    its access) differ by N / TICK_DIV ticks (+-1: where in a tick period
    each read lands)."""
    from cocotb.triggers import ClockCycles
    from cocotb.utils import get_sim_time
    tb = TB(dut, 1, False)
    await tb.reset()
    for div, n in ((0, 200), (1, 200), (7, 700), (64, 3200)):
        await tb.wr(regs.TICK_DIV, div)
        await ClockCycles(dut.clk, 2 * max(div, 1))      # the new divider in force
        s0 = get_sim_time("ns")
        t0 = await tb.rd(regs.NOW)
        await ClockCycles(dut.clk, n)
        s1 = get_sim_time("ns")
        t1 = await tb.rd(regs.NOW)
        cycles = round((s1 - s0) / 10)                      # TB's clock: 10 ns
        want = cycles // max(div, 1)
        assert abs((t1 - t0) - want) <= 1, (div, t1 - t0, want)
