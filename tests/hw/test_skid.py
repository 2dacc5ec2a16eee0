"""SkidBuffer (Amaranth simulator): random source idle and sink backpressure;
every word comes out once, in order; a transfer per cycle when neither side
stalls; `i.ready` never depends on `o.ready` in the same cycle."""

import random

from amaranth.sim import Simulator

from latchnic.hw.skid import SkidBuffer


def _run(seed, count, p_idle, p_stall):
    rng = random.Random(seed)
    dut = SkidBuffer(16)
    words = [rng.randrange(1 << 16) for _ in range(count)]
    got, cycles = [], {"n": 0}

    async def source(ctx):
        for w in words:
            while rng.random() < p_idle:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            ctx.set(dut.i.payload, w)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        while len(got) < count:
            ready = int(rng.random() >= p_stall)
            ctx.set(dut.o.ready, ready)
            # i.ready is a register: flipping o.ready now must not change it
            before = ctx.get(dut.i.ready)
            ctx.set(dut.o.ready, 1 - ready)
            assert ctx.get(dut.i.ready) == before
            ctx.set(dut.o.ready, ready)
            valid, payload = ctx.get(dut.o.valid), ctx.get(dut.o.payload)
            await ctx.tick()
            cycles["n"] += 1
            if valid and ready:
                got.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    assert got == words
    return cycles["n"]


def test_skid_random_stalls():
    for seed in range(4):
        _run(seed, 400, 0.3, 0.4)


def test_skid_full_rate():
    # no idle, no stall: one word per cycle after the first
    assert _run(9, 300, 0.0, 0.0) <= 300 + 2
