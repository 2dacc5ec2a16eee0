"""Stream register slices (Amaranth simulator): SkidBuffer and ValidSlice
under random source idle and sink backpressure: every word comes out once,
in order; `i.ready` never depends on `o.ready` in the same cycle; the
SkidBuffer moves a word per cycle when neither side stalls, the ValidSlice
one every other cycle."""

import random

from amaranth.sim import Simulator

import pytest

from latchnic.hw.skid import SkidBuffer
from latchnic.hw.valid_slice import ValidSlice


def _simulate(dut, *benches):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for b in benches:
        sim.add_testbench(b)
    sim.run()


def _run(cls, seed, count, p_idle, p_stall):
    rng = random.Random(seed)
    dut = cls(16)
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

    _simulate(dut, source, sink)
    assert got == words
    return cycles["n"]


@pytest.mark.parametrize("cls", [SkidBuffer, ValidSlice])
def test_slice_random_stalls(cls):
    for seed in range(4):
        _run(cls, seed, 400, 0.3, 0.4)


def test_skid_full_rate():
    # no idle, no stall: one word per cycle after the first
    assert _run(SkidBuffer, 9, 300, 0.0, 0.0) <= 300 + 2


def test_valid_slice_rate():
    # one request every other cycle: taken, then seen by the table
    assert 2 * 300 - 2 <= _run(ValidSlice, 9, 300, 0.0, 0.0) <= 2 * 300 + 2


def test_valid_slice_answered():
    """`answered`: `i.ready` is 1 in every cycle, also while the table stalls
    a request (so it carries no logic into the requester's next state); a
    requester that asks again only once the table took the request before
    gets every request through, once, in order, under random table stalls."""
    rng = random.Random(5)
    dut = ValidSlice(16, answered=True)
    words = [rng.randrange(1 << 16) for _ in range(300)]
    got, offered = [], []

    async def requester(ctx):
        for w in words:
            for _ in range(rng.choice([0, 0, 1, 3])):
                await ctx.tick()
            ctx.set(dut.i.payload, w)
            ctx.set(dut.i.valid, 1)
            await ctx.tick()
            offered.append(w)
            ctx.set(dut.i.valid, 0)
            for _ in range(100):                # the answer: the table took it
                if len(got) == len(offered):
                    break
                await ctx.tick()
            assert got == offered

    async def table(ctx):
        seen = 0
        while seen < len(words):
            ready = int(rng.random() >= 0.4)
            ctx.set(dut.o.ready, ready)
            assert ctx.get(dut.i.ready) == 1
            valid, payload = ctx.get(dut.o.valid), ctx.get(dut.o.payload)
            await ctx.tick()
            if valid and ready:
                got.append(payload)
                seen += 1

    _simulate(dut, requester, table)
    assert got == words
