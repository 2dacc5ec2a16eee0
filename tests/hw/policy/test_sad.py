"""SAD inbound lookup (Amaranth simulator) against sim/sad.Sad.lookup_in:
RFC 4301 longest match (SPI+dst+src, SPI+dst, SPI), ESP and AH SPI spaces
apart, IPv4 and IPv6."""

import ipaddress
import random

import pytest

from amaranth.sim import Simulator

from latchnic.config import SA
from latchnic.hw.policy.sad import SadLookup, encode_sa_in, req_layout
from latchnic.hw.policy.selectors import pack
from latchnic.sim.sad import Sad, SaState

ADDRS = [ipaddress.ip_address(a) for a in ("192.0.2.1", "192.0.2.2", "2001:db8::1")]
SRCS = [ipaddress.ip_address(a) for a in ("203.0.113.5", "203.0.113.6", "2001:db8::5")]
SPIS = [0x100, 0x101, 0x102, 0x103]


def _sa(rng, i):
    dst = rng.choice([None, *ADDRS])
    src = rng.choice([None, *[s for s in SRCS if dst is None or s.version == dst.version]])
    return SA(f"sa{i}", "in", rng.choice(SPIS), rng.choice(["esp", "ah"]), "transport", "gmac-128",
              bytes(16), bytes(4), 16, False, "p", src, dst)


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
                ctx.set(dut.req.payload.as_value(), pack(req_layout, {
                    "ah": int(proto == "ah"), "spi": spi, "v6": int(dst.version == 6),
                    "dst": int(dst), "src": int(src)}))
                ctx.set(dut.req.valid, 1)
                await ctx.tick().until(dut.req.ready)
                ctx.set(dut.req.valid, 0)
                while not ctx.get(dut.resp.valid):
                    await ctx.tick()
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
