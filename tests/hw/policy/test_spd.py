"""SPD engine (Amaranth simulator) against sim/spd.py: random ordered rule
sets with prefixes, ranges, ANY and OPAQUE, random flows; the first match
(or none) must be the same rule, and the scan must stop at the first match."""

import random

import pytest
from amaranth.sim import Simulator

from latchnic.hw.policy.selectors import encode_flow, pack
from latchnic.hw.policy.spd import ACTIONS, SpdEngine, encode_rule, req_layout
from latchnic.sim.spd import Spd

from policy_gen import flow, flow_inside, spd_rule

SAS = ("sa0", "sa1", "sa2")
PEERS = ("p0", "p1")


def _check(seed, capacity, rounds, lookups, rows=1):
    rng = random.Random(seed)
    dut = SpdEngine(capacity, rows=rows)
    errors, counted = [], []

    async def bench(ctx):
        for _ in range(rounds):
            rules = [spd_rule(rng, d, SAS, PEERS) for d in ("out", "in")
                     for _ in range(rng.randrange(0, capacity + 1))]
            model = Spd(rules)
            for d in ("out", "in"):
                lst = model.rules[d]
                for i in range(capacity):
                    word = 0 if i >= len(lst) else encode_rule(
                        lst[i], SAS.index(lst[i].sa) if lst[i].sa else None,
                        PEERS.index(lst[i].peer) if lst[i].peer else None)
                    if i > len(lst) and rng.random() < 0.5:
                        continue      # entries after the terminator are never read
                    ctx.set(dut.w_en, 1)
                    ctx.set(dut.w_inbound, d == "in")
                    ctx.set(dut.w_index, i)
                    ctx.set(dut.w_data.as_value(), word if i != len(lst) else 0)
                    await ctx.tick()
                    ctx.set(dut.w_en, 0)
                    if rows == 2 or rng.random() < 0.5:
                        await ctx.tick()     # rows = 2: a write takes two cycles
            ctx.set(dut.w_en, 0)
            for _ in range(lookups):
                d = rng.choice(["out", "in"])
                lst = model.rules[d]
                f = flow_inside(rng, rng.choice(lst)) if lst and rng.random() < 0.6 else flow(rng)
                expect = model.lookup(d, f)
                ctx.set(dut.req.payload.as_value(), pack(req_layout, {"inbound": d == "in",
                                                           "flow": encode_flow(f)}))
                ctx.set(dut.req.valid, 1)
                await ctx.tick().until(dut.req.ready)
                ctx.set(dut.req.valid, 0)
                ctx.set(dut.resp.ready, 1)
                cycles = 1
                while not ctx.get(dut.resp.valid):
                    await ctx.tick()
                    cycles += 1
                r = ctx.get(dut.resp.payload)
                await ctx.tick()
                ctx.set(dut.resp.ready, 0)
                if expect is None:
                    ok = r.hit == 0
                    want = None
                else:
                    want = model.rules[d].index(expect)
                    ok = (r.hit == 1 and r.index == want and r.action == ACTIONS[expect.action])
                    counted.append(cycles - rows * want)
                if not ok:
                    errors.append((d, f, want, r.hit, r.index))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not errors, errors[:5]
    assert len(counted) > rounds * lookups // 4, "too few hits to mean anything"
    # + 2: the pipelined match decides a rule two cycles after it is read
    assert max(counted) <= 4 + rows, "the scan must stop at the first match"


def test_spd_first_match_small():
    _check(seed=1, capacity=8, rounds=6, lookups=300)


def test_spd_first_match_64():
    _check(seed=2, capacity=64, rounds=3, lookups=200)


def test_spd_two_rows_per_rule():
    _check(seed=4, capacity=16, rounds=4, lookups=200, rows=2)


@pytest.mark.slow
def test_spd_long():
    _check(seed=3, capacity=32, rounds=30, lookups=300)
