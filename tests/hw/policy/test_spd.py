"""SPD engine (Amaranth simulator) against sim/spd.py: random ordered rule
sets with prefixes, ranges, ANY and OPAQUE, random flows; the first match
(or none) must be the same rule, and the scan must stop at the first match.
With two banks (the core's SPD): lookups see only the active bank while the
shadow is written, a swap flips one direction in one cycle and leaves the
other alone, and a lookup under way keeps the bank it started on."""

import random

import pytest
from amaranth.sim import Simulator

from latchnic.hw.policy.selectors import encode_flow, pack
from latchnic.hw.policy.spd import ACTIONS, SpdEngine, encode_rule, req_layout
from latchnic.sim.spd import Spd

from policy_gen import flow, flow_inside, spd_rule

SAS = ("sa0", "sa1", "sa2")
PEERS = ("p0", "p1")


def _check(seed, capacity, rounds, lookups, rows=1, banks=1):
    rng = random.Random(seed)
    dut = SpdEngine(capacity, rows=rows, banks=banks)
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
            if banks == 2:          # the tables went to the shadow banks: make them live
                for d in ("out", "in"):
                    ctx.set(dut.swap, 1)
                    ctx.set(dut.swap_inbound, d == "in")
                    await ctx.tick()
                ctx.set(dut.swap, 0)
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
    # + 3: the pipelined match (terms, their combine) decides a rule three
    # cycles after it is read; + 1: the first row is read in the first SCAN
    # cycle (the RAM's address comes from registers only)
    assert max(counted) <= 6 + rows, "the scan must stop at the first match"


def test_spd_first_match_small():
    _check(seed=1, capacity=8, rounds=6, lookups=300)


def test_spd_first_match_64():
    _check(seed=2, capacity=64, rounds=3, lookups=200)


def test_spd_two_rows_per_rule():
    _check(seed=4, capacity=16, rounds=4, lookups=200, rows=2)


def test_spd_two_rows_two_banks():
    """The core's geometry: the rounds rewrite the shadow and swap each time."""
    _check(seed=5, capacity=16, rounds=4, lookups=150, rows=2, banks=2)


@pytest.mark.slow
def test_spd_long():
    _check(seed=3, capacity=32, rounds=30, lookups=300)


# ---------------------------------------------------------------- banks

def _words(rules, capacity):
    """(index, staged word) of one direction's whole table: its rules, then
    the terminator unless full (as program.spd_writes stages them)."""
    out = [(i, encode_rule(r, SAS.index(r.sa) if r.sa else None,
                           PEERS.index(r.peer) if r.peer else None)) for i, r in enumerate(rules)]
    return out + ([(len(rules), 0)] if len(rules) < capacity else [])


def _answer(model, d, f):
    """What the engine must say: (hit, index, action) of the first match."""
    r = model.lookup(d, f) if model is not None else None
    if r is None:
        return (0, None, None)
    return (1, model.rules[d].index(r), ACTIONS[r.action].value)


@pytest.mark.parametrize("rows", [1, 2])
def test_spd_banks(rows):
    """Reset: both banks empty, every lookup misses. A table written while
    lookups run is not seen until the swap (lookups interleaved with the
    writes, rows of a rule going in during scans); the swap of one direction
    takes effect for the next request (one cycle) and leaves the other
    direction's bank alone; a lookup that started before a swap finishes on
    its bank; swapping back shows the table before (the shadow kept it)."""
    rng = random.Random(20 + rows)
    cap = 8
    dut = SpdEngine(cap, rows=rows, banks=2)

    def tables():
        return Spd([spd_rule(rng, d, SAS, PEERS) for d in ("out", "in")
                    for _ in range(rng.randrange(3, cap + 1))])
    a, b = tables(), tables()
    # flows whose first match differs between A and B (and some that do not)
    probes = []
    for d in ("out", "in"):
        for model in (a, b):
            for r in model.rules[d]:
                for _ in range(4):
                    probes.append((d, flow_inside(rng, r)))
        probes += [(d, flow(rng)) for _ in range(10)]
    differ = {d: [f for dd, f in probes if dd == d and _answer(a, d, f) != _answer(b, d, f)]
              for d in ("out", "in")}
    assert all(len(v) >= 5 for v in differ.values()), "A and B too alike to tell apart"
    seen = []                  # (step, direction, flow, expected tables, got)
    state = {"write": None, "written": False}

    async def request(ctx, d, f):
        ctx.set(dut.req.payload.as_value(), pack(req_layout, {"inbound": d == "in",
                                                              "flow": encode_flow(f)}))
        ctx.set(dut.req.valid, 1)
        await ctx.tick().until(dut.req.ready)
        ctx.set(dut.req.valid, 0)

    async def response(ctx):
        ctx.set(dut.resp.ready, 1)
        for _ in range(4 * cap * rows + 20):
            if ctx.get(dut.resp.valid):
                r = ctx.get(dut.resp.payload)
                await ctx.tick()
                ctx.set(dut.resp.ready, 0)
                return (r.hit, r.index if r.hit else None, r.action.value if r.hit else None)
            await ctx.tick()
        raise AssertionError("no response")

    async def look(ctx, step, d, f, want):
        """One lookup; `want`: (d -> model or None) it must be decided by."""
        await request(ctx, d, f)
        got = await response(ctx)
        seen.append((step, d, f, _answer(want[d], d, f), got))

    async def swap(ctx, d):
        ctx.set(dut.swap, 1)
        ctx.set(dut.swap_inbound, d == "in")
        await ctx.tick()
        ctx.set(dut.swap, 0)

    async def writer(ctx):
        """Writes a whole table (both directions) into the shadow banks when
        asked, a rule every fifth cycle."""
        while True:
            while state["write"] is None:
                await ctx.tick()
            model, state["write"] = state["write"], None
            for d in ("out", "in"):
                for i, word in _words(model.rules[d], cap):
                    ctx.set(dut.w_en, 1)
                    ctx.set(dut.w_inbound, d == "in")
                    ctx.set(dut.w_index, i)
                    ctx.set(dut.w_data.as_value(), word)
                    await ctx.tick()
                    ctx.set(dut.w_en, 0)
                    await ctx.tick().repeat(4)      # the core's commits are far apart
            state["written"] = True

    async def write_while_looking(ctx, step, model, live, pool):
        """Ask the writer for `model` and look up flows of `pool` (both
        directions in turn) until it is done: every answer from the live
        tables. Returns the number of lookups."""
        state["written"] = False
        state["write"] = model
        n = 0
        while not state["written"]:
            d = ("out", "in")[n % 2]
            await look(ctx, step, d, rng.choice(pool[d]), live)
            n += 1
        return n

    async def swap_and_look(ctx, d, label, live):
        """Swap direction `d`, then every probe must see `live`."""
        await swap(ctx, d)
        for dd, f in probes:
            await look(ctx, label, dd, f, live)

    async def bench(ctx):
        for d, f in probes[:20]:
            await look(ctx, "reset", d, f, {"out": None, "in": None})
        hits_a = {d: [f for dd, f in probes if dd == d and _answer(a, d, f)[0]] for d in ("out", "in")}
        n = await write_while_looking(ctx, "A into the shadow", a, {"out": None, "in": None}, hits_a)
        assert n >= 4, n
        await swap_and_look(ctx, "out", "out swapped to A", {"out": a, "in": None})
        await swap_and_look(ctx, "in", "both A", {"out": a, "in": a})
        n = await write_while_looking(ctx, "B into the shadow", b, {"out": a, "in": a}, differ)
        assert n >= 4, n
        # a lookup under way when its direction swaps: decided on A; the
        # request right after the swap cycle: on B. The flows under way are
        # ones that a scan moving to B after its first k rules would decide
        # otherwise (k = 1, 2: rows read before the flip)
        def split(f, k):
            mixed = Spd(a.rules["out"][:k] + (b.rules["out"][k:] if len(a.rules["out"]) >= k else []))
            return _answer(mixed, "out", f) != _answer(a, "out", f)
        deep = sorted(differ["out"], key=lambda f: split(f, 1) + split(f, 2), reverse=True)[:5]
        assert any(split(f, 1) for f in deep) and any(split(f, 2) for f in deep)
        for f in deep:
            await request(ctx, "out", f)
            await swap(ctx, "out")
            got = await response(ctx)
            seen.append(("under way at the swap", "out", f, _answer(a, "out", f), got))
            await swap(ctx, "out")          # back to A
        for f in differ["out"][:5]:
            await swap(ctx, "out")
            await look(ctx, "the cycle after the swap", "out", f, {"out": b, "in": a})
            await swap(ctx, "out")
        await swap_and_look(ctx, "out", "out B, in A", {"out": b, "in": a})
        await swap_and_look(ctx, "in", "both B", {"out": b, "in": b})
        # no writes: swapping back shows A (the shadow kept it); the other
        # direction stays on B
        await swap_and_look(ctx, "out", "out back to A, in B", {"out": a, "in": b})

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_testbench(writer, background=True)
    sim.run()
    bad = [s for s in seen if s[3] != s[4]]
    assert not bad, f"{len(bad)} of {len(seen)} lookups wrong, first: {bad[:3]}"
    # each step must have been tested on flows that tell its banks apart
    tells = {"A into the shadow": lambda d, f: _answer(a, d, f)[0] == 1,
             "B into the shadow": lambda d, f: f in differ[d]}
    for step, dirs in [("A into the shadow", ("out", "in")), ("B into the shadow", ("out", "in")),
                       ("under way at the swap", ("out",)), ("the cycle after the swap", ("out",)),
                       ("out B, in A", ("out", "in")), ("out back to A, in B", ("out", "in"))]:
        tell = tells.get(step, lambda d, f: f in differ[d])
        for d in dirs:
            assert any(s[0] == step and s[1] == d and tell(d, s[2]) for s in seen), (step, d)
