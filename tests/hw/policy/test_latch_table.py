"""Latch table (Amaranth simulator) against sim/latch.py: CRC-32 set choice,
lowest free way, fail-closed when a set is full, lookups, frees, deadlines
(an expired latch is gone before the next operation, as the model frees it
before each frame). The split geometry (an IPv4 table of compact entries and
an IPv6 table, one slot space) against the model's: the same slot numbers,
sets of each table filling up on their own, entries read back whole."""

import random
import zlib

import pytest
from amaranth.sim import Simulator

from latchnic.config import QoP
from latchnic.hw.policy.crc32 import V4_KEY_BITS, Crc32Key, v4_key_bytes, v4_quotient
from latchnic.hw.policy.latch_table import LatchState, LatchTable, Op, cmd_layout, entry_layout
from latchnic.hw.policy.selectors import encode_flow
from latchnic.sim.latch import LatchTable as ModelLatchTable
from latchnic.sim.selectors import Flow

from policy_gen import flow, transact

QOP = QoP("esp", "transport", True, 128, 16)


@pytest.mark.parametrize("step", [2, 5, 8])
def test_crc32_matches_zlib(step):
    """Steps that divide the 38-byte key (2) and that do not (5, 8: led by
    zero bytes from a pre-image of the initial register)."""
    dut = Crc32Key(step)
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


@pytest.mark.parametrize("set_bits", [0, 1, 3, 12, 14])
def test_v4_key_quotient_rebuilds_the_key(set_bits):
    """The IPv4 table stores all key bits but set_bits of them; those follow
    from the set index (low bits of zlib.crc32 of the model's 38-byte key)
    and the stored bits, for every key: the stored bits identify the flow
    within its set exactly."""
    rest, quot = v4_quotient(set_bits)
    assert len(rest) == V4_KEY_BITS - set_bits and len(quot) == set_bits
    rng = random.Random(set_bits)
    for _ in range(400):
        f = Flow(4, rng.getrandbits(32), rng.getrandbits(32), rng.choice([6, 17]),
                 rng.getrandbits(16), rng.getrandbits(16))
        x = (f.local | f.remote << 32 | f.proto << 64 | f.local_port << 72
             | f.remote_port << 88)
        assert v4_key_bytes(x) == f.key_bytes()
        s = zlib.crc32(f.key_bytes()) & ((1 << set_bits) - 1)
        for j, smask, xmask, const in quot:
            assert not xmask & ~sum(1 << k for k in rest)
            assert (bin(s & smask).count("1") + bin(x & xmask).count("1") + const) & 1 == x >> j & 1


def _run(seed, capacity, ways, ops, flows_n, capacity_v6=0):
    rng = random.Random(seed)
    dut = LatchTable(capacity, ways, capacity_v6=capacity_v6)
    model = ModelLatchTable(capacity, ways, capacity_v6)
    pool = []
    while len(pool) < flows_n:
        f = flow(rng)
        if f.local_port is not None and f not in pool:
            pool.append(f)
    errors, stats = [], {"full": 0, "hit": 0, "insert": 0, "expired": 0, "full4": 0, "full6": 0,
                         "slots6": set(), "read": 0}
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
                    stats[f"full{f.version}"] += 1
                    ok = hw["full"] == 1 and hw["hit"] == 0
                else:
                    stats["insert"] += 1
                    if f.version == 6:
                        stats["slots6"].add(latch.slot)
                    ok = hw["full"] == 0 and hw["slot"] == latch.slot
                    shadow[latch.slot] = hw["entry"] if hw["hit"] == 0 else shadow.get(latch.slot)
                    # the entry comes back whole (the IPv4 table stores it compact)
                    ok = ok and hw["entry"]["flow"] == encode_flow(f)
            elif r < 0.7:
                hw = await do(Op.LOOKUP, f)
                ok = hw["hit"] == int(latch is not None) and (latch is None or hw["slot"] == latch.slot)
                stats["hit"] += hw["hit"]
            elif r < 0.78 and latch is not None:
                # read by slot (TBL_READ, re-check, timer sweep): live and the whole entry
                hw = await do(Op.READ, slot=latch.slot)
                ok = hw["hit"] == 1 and hw["entry"] == shadow[latch.slot]
                stats["read"] += 1
            elif latch is not None and r < 0.88:
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
    assert stats["full"] > 5 and stats["hit"] > 20 and stats["expired"] > 5 and stats["read"] > 2, stats
    return stats


def test_latch_table_small_sets():
    _run(seed=1, capacity=16, ways=4, ops=700, flows_n=40)


def test_latch_table_direct_mapped():
    _run(seed=2, capacity=8, ways=1, ops=600, flows_n=20)


def test_latch_table_split_v4_v6():
    """8 IPv4 slots (4 sets of 2) then 4 IPv6 slots (2 sets of 2): both
    tables fill up and refuse on their own; IPv6 latches take slots 8..11."""
    stats = _run(seed=4, capacity=12, ways=2, ops=900, flows_n=48, capacity_v6=4)
    assert stats["full4"] > 5 and stats["full6"] > 5, stats
    assert stats["slots6"] and min(stats["slots6"]) >= 8 and max(stats["slots6"]) <= 11, stats


def test_latch_table_split_direct_mapped():
    """Direct-mapped, an IPv6 table of one slot (no set bits)."""
    stats = _run(seed=6, capacity=9, ways=1, ops=500, flows_n=24, capacity_v6=1)
    assert stats["full4"] > 5 and stats["full6"] > 5 and stats["slots6"] == {8}, stats


def test_split_ipv4_key_with_high_address_bits_fails_closed():
    """The IPv4 table stores 32-bit addresses; a v4 flow_layout whose high
    address bits are set (the parser never makes one) must neither match the
    latch of its truncated twin nor be inserted (`full`)."""
    dut = LatchTable(8, 2, capacity_v6=4)
    f = encode_flow(Flow(4, 0xC0000201, 0xCB007105, 6, 40000, 443))
    twin = dict(f, local=f["local"] | 1 << 64)
    got = []

    async def bench(ctx):
        async def do(op, fl):
            return await transact(ctx, dut, {"op": op.value, "flow": fl,
                                             "entry": {"state": LatchState.ESTABLISHED.value}},
                                  cmd_layout())
        got.append(await do(Op.INSERT, f))
        got.append(await do(Op.LOOKUP, twin))
        got.append(await do(Op.INSERT, twin))
        got.append(await do(Op.LOOKUP, f))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    ins, look_twin, ins_twin, look = got
    assert ins["full"] == 0 and ins["hit"] == 0 and ins["slot"] < 4
    assert look_twin["hit"] == 0 and ins_twin["hit"] == 0 and ins_twin["full"] == 1
    assert look["hit"] == 1 and look["slot"] == ins["slot"] and look["entry"]["flow"] == f


@pytest.mark.slow
def test_latch_table_long():
    _run(seed=3, capacity=64, ways=8, ops=5000, flows_n=200)


@pytest.mark.slow
def test_latch_table_split_long():
    _run(seed=8, capacity=96, ways=4, ops=5000, flows_n=250, capacity_v6=32)


@pytest.mark.parametrize("capacity_v6,version", [(0, 4), (0, 6), (4, 4), (4, 6)])
def test_flows_one_key_bit_away_miss(capacity_v6, version):
    """One set per table, so every lookup compares against the latch: each flow
    that differs from the latched one in a single key bit (any of the 298,
    including v6 and the high IPv4 address bits) misses, and the latched
    flow still hits. The key compare is split into registered chunks; a
    chunk left out of the match would show here."""
    from latchnic.hw.policy.selectors import flow_layout, pack, unpack
    dut = LatchTable(4 + capacity_v6, 4, capacity_v6=capacity_v6)
    f = Flow(version, 0xC0000201 if version == 4 else 0x20010DB8 << 96 | 1,
             0xCB007105 if version == 4 else 0x20010DB8 << 96 | 2, 6, 40000, 443)
    base = pack(flow_layout, encode_flow(f))
    got = []

    async def bench(ctx):
        async def do(op, fl):
            return await transact(ctx, dut, {"op": op.value, "flow": unpack(flow_layout, fl),
                                             "entry": {"state": LatchState.ESTABLISHED.value}},
                                  cmd_layout())
        got.append(await do(Op.INSERT, base))
        for i in range(flow_layout.size):
            got.append(await do(Op.LOOKUP, base ^ 1 << i))
        got.append(await do(Op.LOOKUP, base))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    ins, *flips, again = got
    assert ins["full"] == 0 and ins["hit"] == 0
    assert [i for i, r in enumerate(flips) if r["hit"]] == []
    assert again["hit"] == 1 and again["slot"] == ins["slot"]
