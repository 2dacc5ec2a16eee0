"""SAD inbound lookup (Amaranth simulator) against sim/sad.Sad.lookup_in:
RFC 4301 longest match (SPI+dst+src, SPI+dst, SPI), ESP and AH SPI spaces
apart, IPv4 and IPv6."""

import ipaddress
import random
from dataclasses import replace

import pytest

from amaranth.sim import Simulator

from latchnic.config import SA
from latchnic.hw.policy.sad import SadLookup, encode_sa_in, req_layout
from latchnic.hw.policy.selectors import pack
from latchnic.sim.sad import Sad, SaState

# IPv6 addresses that differ in each 32-bit quarter (documentation ranges
# 2001:db8::/32 and 3fff::/20): the lookup compares every bit
ADDRS = [ipaddress.ip_address(a) for a in ("192.0.2.1", "192.0.2.2", "2001:db8::1", "3fff::1",
                                           "2001:db8:0:1::1")]
SRCS = [ipaddress.ip_address(a) for a in ("203.0.113.5", "203.0.113.6", "2001:db8::5", "3fff::5",
                                          "2001:db8::1:0:0:5")]
# ::192.0.2.1 and ::203.0.113.5 have the 128-bit values of the IPv4 ones
# (which are zero-extended): only the IP version tells them apart
LOOKALIKE_ADDRS = ADDRS + [ipaddress.ip_address("::192.0.2.1")]
LOOKALIKE_SRCS = SRCS + [ipaddress.ip_address("::203.0.113.5")]
# the last two share their low 16 bits with the first two: only the
# high half tells them apart (the rank stage tests the halves apart)
SPIS = [0x100, 0x101, 0x10100, 0xC0DE0101]


def _sa(rng, i):
    dst = rng.choice([None, *ADDRS])
    src = rng.choice([None, *[s for s in SRCS if dst is None or s.version == dst.version]])
    return SA(f"sa{i}", "in", rng.choice(SPIS), rng.choice(["esp", "ah"]), "transport", "gmac-128",
              bytes(16), bytes(4), 16, False, "p", src, dst)


async def _request(ctx, dut, proto, spi, dst, src) -> int:
    """Offer one lookup; returns the cycles from the request taken until the
    response is valid (the response is left for the caller to take)."""
    ctx.set(dut.req.payload.as_value(), pack(req_layout, {
        "ah": int(proto == "ah"), "spi": spi, "v6": int(dst.version == 6),
        "dst": int(dst), "src": int(src)}))
    ctx.set(dut.req.valid, 1)
    await ctx.tick().until(dut.req.ready)
    ctx.set(dut.req.valid, 0)
    n = 1
    while not ctx.get(dut.resp.valid):
        await ctx.tick()
        n += 1
    return n


@pytest.mark.parametrize("rows", [1, 4])
def test_sad_lookup_matches_model(rows):
    rng = random.Random(1)
    sas = 16
    dut = SadLookup(sas, rows=rows)
    errors, hits = [], []

    async def bench(ctx):
        for rnd in range(4):
            specs = [_sa(rng, i) for i in range(rng.randrange(1, sas + 1))]
            model = Sad()
            for s in specs:
                model.add(SaState(s, 64))
            for i in range(sas):
                ctx.set(dut.w_en, 1)
                ctx.set(dut.w_index, i)
                ctx.set(dut.w_data.as_value(), encode_sa_in(specs[i]) if i < len(specs) else 0)
                await ctx.tick()
                ctx.set(dut.w_en, 0)
                for _ in range(rows - 1):     # the other rows of the entry
                    await ctx.tick()
            ctx.set(dut.resp.ready, 1)
            for _ in range(60):
                proto = rng.choice(["esp", "ah"])
                spi = rng.choice(SPIS)
                dst = rng.choice(ADDRS)
                src = rng.choice([s for s in SRCS if s.version == dst.version])
                want = model.lookup_in(proto, spi, dst.version, int(dst), int(src))
                await _request(ctx, dut, proto, spi, dst, src)
                r = ctx.get(dut.resp.payload)
                await ctx.tick()
                got = specs[r.index].name if r.hit else None
                if got != (want.name if want else None):
                    errors.append((proto, spi, str(dst), str(src), got, want and want.name))
                hits.append(got is not None)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not errors, errors[:5]
    assert 0.2 < sum(hits) / len(hits) < 0.95


SHARED = 0x77


def _shared_sa(rng, i):
    """An SA on the shared SPI: ESP or AH, with or without dst/src."""
    dst = rng.choice([None, *LOOKALIKE_ADDRS, *LOOKALIKE_ADDRS])
    src = rng.choice([None, *[s for s in LOOKALIKE_SRCS if dst is None or s.version == dst.version]])
    return SA(f"sa{i}", "in", SHARED, rng.choice(["esp", "esp", "ah"]), "transport", "gmac-128",
              bytes(16), bytes(4), 16, False, "p", src, dst)


def _bound(rows, slots, top, proto, spi, dst, src):
    """Cycles from the request's to the response's that the lookup may take:
    (top + 1) + 4 with one row per entry; with a column, (top + 1) + rows per
    SPI candidate visited (up to the first (SPI, dst, src) match) + 8."""
    if rows == 1:
        return top + 1 + 4
    cands = 0
    for s in slots:
        if s is None or s.proto != proto or s.spi != spi:
            continue
        cands += 1
        if (s.dst is not None and s.dst.version == dst.version and s.dst == dst
                and s.src is not None and s.src == src):
            break
    return top + 1 + rows * cands + 8


@pytest.mark.parametrize("rows", [1, 2, 4])
def test_sad_shared_spi_late_in_table(rows):
    """64 slots, the first ones on other SPIs (some empty), many SAs on one
    SPI late in the table: the model's answer, and the cycle bound per lookup
    (a lookup reads the rows of the SPI candidates only). Slots rewritten
    between lookups, a request raised while the write's rows are still going
    in, responses held back for a while."""
    rng = random.Random(7 + rows)
    sas = 64
    dut = SadLookup(sas, rows=rows)
    errors, slow, cycles, ranks = [], [], [], []

    async def bench(ctx):
        slots = [None] * sas

        async def write(i, spec, wait=True):
            slots[i] = spec
            ctx.set(dut.w_en, 1)
            ctx.set(dut.w_index, i)
            ctx.set(dut.w_data.as_value(), encode_sa_in(spec) if spec else 0)
            await ctx.tick()
            ctx.set(dut.w_en, 0)
            if wait:
                for _ in range(rows - 1):
                    await ctx.tick()

        async def lookup(proto, spi, dst, src, hold=0):
            model = Sad()
            for s in slots:                  # slot order: the tie rule
                if s is not None:
                    model.add(SaState(s, 64))
            want = model.lookup_in(proto, spi, dst.version, int(dst), int(src))
            top = max(i for i, s in enumerate(slots) if s is not None)
            n = await _request(ctx, dut, proto, spi, dst, src)
            for _ in range(hold):            # response not taken yet: it must not change
                await ctx.tick()
            ctx.set(dut.resp.ready, 1)
            r = ctx.get(dut.resp.payload)
            await ctx.tick()
            ctx.set(dut.resp.ready, 0)
            got = slots[r.index].name if r.hit else None
            if got != (want.name if want else None):
                errors.append((proto, hex(spi), str(dst), str(src), got, want and want.name))
            bound = _bound(rows, slots, top, proto, spi, dst, src)
            if n > bound:
                slow.append((proto, hex(spi), str(dst), str(src), n, bound))
            cycles.append(n)
            ranks.append(r.rank if r.hit else -1)

        # slots 0..39: other SPIs (AH on the shared one too: not ESP's), a few empty
        for i in range(40):
            if rng.random() < 0.15:
                continue
            spec = _sa(rng, i)
            if rng.random() < 0.2:
                spec = replace(_shared_sa(rng, i), proto="ah")
            await write(i, spec)
        # slots 40..63: the shared SPI, mostly ESP
        for i in range(40, sas):
            await write(i, _shared_sa(rng, i))
        for k in range(120):
            proto = rng.choice(["esp", "esp", "ah"])
            spi = rng.choice([SHARED, SHARED, SHARED, *SPIS, 0x999])
            dst = rng.choice(LOOKALIKE_ADDRS)
            src = rng.choice([s for s in LOOKALIKE_SRCS if s.version == dst.version])
            await lookup(proto, spi, dst, src, hold=rng.choice([0, 0, 0, 3, 150]))
            if k % 10 == 9:
                # rewrite a slot; half the time ask at once (the write's rows still going in)
                i = rng.randrange(sas)
                spec = rng.choice([None, _shared_sa(rng, 100 + k), _sa(rng, 100 + k)])
                at_once = rng.random() < 0.5
                await write(i, spec, wait=not at_once)
                if spec is not None:
                    d = spec.dst or dst
                    s2 = spec.src or rng.choice([s for s in LOOKALIKE_SRCS if s.version == d.version])
                    await lookup(spec.proto, spec.spi, d, s2)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not errors, errors[:5]
    assert not slow, slow[:5]
    assert set(ranks) >= {-1, 0, 1, 2}
    if rows > 1:
        # the full table at rows per slot would take (top + 1) x rows
        assert max(cycles) < 64 * rows
