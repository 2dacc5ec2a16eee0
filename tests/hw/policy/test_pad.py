"""PAD claims table (Amaranth simulator) against latchnic.config.Peer.may_claim:
random peers with overlapping IPv4/IPv6 claims (prefixes and ranges), the
list ended by an invalid entry as the driver writes it, a full table, and
peers without any claim."""

import random

import pytest

from amaranth.sim import Simulator

from latchnic.config import parse_config
from latchnic.hw.policy.pad import PadClaims, encode_claim, req_layout
from latchnic.hw.policy.selectors import pack

CLAIMS = ["203.0.113.0/24", "203.0.113.0/28", "203.0.113.16/28", "198.51.100.0/24",
          "192.0.2.128-192.0.2.200", "2001:db8:1::/48", "2001:db8::/32", "10.0.0.1"]
ADDRS = ["203.0.113.5", "203.0.113.20", "203.0.113.200", "198.51.100.7", "192.0.2.150",
         "192.0.2.201", "10.0.0.1", "10.0.0.2", "2001:db8:1::5", "2001:db8:2::5", "2001:db9::1"]


def _peers(rng, n, room, fill=False):
    """A [[peer]] config section of n peers; some have no claim at all."""
    text, total = "", 0
    for i in range(n):
        k = min(rng.choice([1, 2, 3] if fill else [0, 1, 1, 2, 3]), room - total)
        total += k
        claims = ", ".join(f'"{c}"' for c in rng.sample(CLAIMS, k))
        text += f'[[peer]]\nname = "p{i}"\nclaims = [{claims}]\n\n'
    return parse_config(text, "pad-test").peers


@pytest.mark.parametrize("rows", [1, 4])
def test_pad_claims_match_model(rows):
    import ipaddress
    rng = random.Random(3)
    cap = 16
    dut = PadClaims(cap, rows=rows)
    errors, hits, checked = [], [], []

    async def bench(ctx):
        for rnd in range(5):
            # the last round fills the table: the scan ends at the last entry
            peers = (_peers(rng, 12, cap, fill=True) if rnd == 4 else
                     _peers(rng, rng.randrange(1, 9), cap - 1))
            entries = [encode_claim(i, c) for i, p in enumerate(peers) for c in p.claims]
            for i in range(cap):
                ctx.set(dut.w_en, 1)
                ctx.set(dut.w_index, i)
                ctx.set(dut.w_data.as_value(), entries[i] if i < len(entries) else 0)
                await ctx.tick()
                ctx.set(dut.w_en, 0)
                for _ in range(rows - 1):     # the other rows of the entry
                    await ctx.tick()
            ctx.set(dut.resp.ready, 1)
            for _ in range(50):
                idx = rng.randrange(len(peers) + 1)          # one index no peer holds
                a = ipaddress.ip_address(rng.choice(ADDRS))
                if rng.random() < 0.5 and idx < len(peers):   # half the time an address it claims
                    own = [b for b in map(ipaddress.ip_address, ADDRS)
                           if peers[idx].may_claim(b.version, int(b))]
                    a = rng.choice(own) if own else a
                want = idx < len(peers) and peers[idx].may_claim(a.version, int(a))
                ctx.set(dut.req.payload.as_value(), pack(req_layout, {
                    "peer": idx, "v6": int(a.version == 6), "addr": int(a)}))
                ctx.set(dut.req.valid, 1)
                await ctx.tick().until(dut.req.ready)
                ctx.set(dut.req.valid, 0)
                while not ctx.get(dut.resp.valid):
                    await ctx.tick()
                got = bool(ctx.get(dut.resp.payload.hit))
                await ctx.tick()
                if got != want:
                    errors.append((rnd, idx, str(a), got, want))
                hits.append(got)
            checked.append(len(entries))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not errors, errors[:5]
    assert cap in checked, checked                       # one round filled the table
    assert 0.15 < sum(hits) / len(hits) < 0.85, sum(hits) / len(hits)
