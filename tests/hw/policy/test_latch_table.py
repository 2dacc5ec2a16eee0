"""Latch table (Amaranth simulator) against sim/latch.py: CRC-32 set choice,
lowest free way, fail-closed when a set is full, lookups, frees, deadlines
(an expired latch is gone before the next operation, as the model frees it
before each frame)."""

import random
import zlib

import pytest
from amaranth.sim import Simulator

from latchnic.config import QoP
from latchnic.hw.policy.crc32 import Crc32Key
from latchnic.hw.policy.latch_table import LatchState, LatchTable, Op, cmd_layout, entry_layout
from latchnic.hw.policy.selectors import encode_flow
from latchnic.sim.latch import LatchTable as ModelLatchTable

from policy_gen import flow, transact

QOP = QoP("esp", "transport", True, 128, 16)


def test_crc32_matches_zlib():
    dut = Crc32Key()
    rng = random.Random(5)
    keys = [bytes(rng.getrandbits(8) for _ in range(38)) for _ in range(40)]
    keys.append(bytes(38))
    got = []

    async def bench(ctx):
        for k in keys:
            ctx.set(dut.key, int.from_bytes(k, "little"))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            while not ctx.get(dut.done):
                await ctx.tick()
            got.append(ctx.get(dut.crc))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == [zlib.crc32(k) for k in keys]


def _run(seed, capacity, ways, ops, flows_n):
    rng = random.Random(seed)
    dut = LatchTable(capacity, ways)
    model = ModelLatchTable(capacity, ways)
    pool = []
    while len(pool) < flows_n:
        f = flow(rng)
        if f.local_port is not None and f not in pool:
            pool.append(f)
    errors, stats = [], {"full": 0, "hit": 0, "insert": 0, "expired": 0}
    shadow = {}

    async def bench(ctx):
        now = 0

        async def do(op, f=None, slot=0, entry=None):
            return await transact(ctx, dut, {
                "op": op.value, "now": now, "flow": encode_flow(f) if f else {}, "slot": slot,
                "entry": entry or {}}, cmd_layout())

        for n in range(ops):
            now += rng.choice([0, 0, 1, 5])
            for l in model.expired(now):
                model.free(l)
                stats["expired"] += 1
            f = rng.choice(pool)
            latch = model.lookup(f)
            r = rng.random()
            if r < 0.45:
                if latch is None:
                    latch = model.insert(f, peer=1, qop=QOP, template=0, created_ns=now)
                hw = await do(Op.INSERT, f, entry={"state": LatchState.ESTABLISHED.value, "peer": 1})
                if latch is None:
                    stats["full"] += 1
                    ok = hw["full"] == 1 and hw["hit"] == 0
                else:
                    stats["insert"] += 1
                    ok = hw["full"] == 0 and hw["slot"] == latch.slot
                    shadow[latch.slot] = hw["entry"] if hw["hit"] == 0 else shadow.get(latch.slot)
            elif r < 0.7:
                hw = await do(Op.LOOKUP, f)
                ok = hw["hit"] == int(latch is not None) and (latch is None or hw["slot"] == latch.slot)
                stats["hit"] += hw["hit"]
            elif latch is not None and r < 0.85:
                model.free(latch)
                entry = dict(shadow[latch.slot], state=LatchState.FREE.value)
                hw = await do(Op.WRITE, slot=latch.slot, entry=entry)
                ok = True
            elif latch is not None:
                deadline = now + rng.choice([0, 1, 3, 10, 40])
                model.set_deadline(latch, deadline)
                entry = dict(shadow[latch.slot], timed=1, deadline=deadline)
                shadow[latch.slot] = entry
                await do(Op.WRITE, slot=latch.slot, entry=entry)
                ok = True
            else:
                continue
            if not ok:
                errors.append((n, f, latch.slot if latch else None, hw["hit"], hw["full"], hw["slot"]))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not errors, errors[:5]
    assert stats["full"] > 5 and stats["hit"] > 20 and stats["expired"] > 5, stats


def test_latch_table_small_sets():
    _run(seed=1, capacity=16, ways=4, ops=700, flows_n=40)


def test_latch_table_direct_mapped():
    _run(seed=2, capacity=8, ways=1, ops=400, flows_n=20)


@pytest.mark.slow
def test_latch_table_long():
    _run(seed=3, capacity=64, ways=8, ops=5000, flows_n=200)
