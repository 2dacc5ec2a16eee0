"""Random SPD rules, templates and flows over a small address space, so that
rules overlap and flows hit, miss and shadow each other."""

from __future__ import annotations

import ipaddress
import random

from latchnic.config import AddrSel, PortSel, SpdRule, Template
from latchnic.sim.selectors import Flow

V4 = [int(ipaddress.ip_address(a)) for a in ("192.0.2.1", "192.0.2.77", "203.0.113.5", "203.0.113.200")]
V6 = [int(ipaddress.ip_address(a)) for a in ("2001:db8::1", "2001:db8::ff", "2001:db8:1::5")]
PORTS = [22, 80, 443, 5000, 40000, 65535, 0]


def addr_sel(rng, version):
    if rng.random() < 0.35:
        return None
    base = rng.choice(V4 if version == 4 else V6)
    bits = 32 if version == 4 else 128
    plen = rng.choice([bits, bits - 8, bits - 1, bits - 16])
    if rng.random() < 0.2:       # an explicit range
        lo = base - rng.randrange(0, 50)
        return AddrSel(version, max(lo, 0), base + rng.randrange(0, 50), "range")
    mask = ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)
    lo = base & mask
    return AddrSel(version, lo, lo | ((1 << (bits - plen)) - 1), "prefix")


def port_sel(rng):
    r = rng.random()
    if r < 0.45:
        return None
    if r < 0.55:
        return PortSel(opaque=True)
    p = rng.choice(PORTS)
    if rng.random() < 0.5:
        return PortSel(p, p)
    lo = rng.randrange(0, p + 1)
    return PortSel(lo, min(65535, p + rng.randrange(0, 2000)))


def selectors(rng):
    version = rng.choice([4, 4, 6])
    return dict(local=addr_sel(rng, version), remote=addr_sel(rng, version),
                proto=rng.choice([None, None, 6, 17, 1]),
                local_port=port_sel(rng), remote_port=port_sel(rng))


def spd_rule(rng, direction, sas=("sa0", "sa1", "sa2"), peers=("p0", "p1")):
    action = rng.choice(["protect", "bypass", "discard"])
    sa = peer = None
    if action == "protect":
        if direction == "out":
            sa = rng.choice(sas)
        elif rng.random() < 0.3:
            sa = rng.choice(sas)
        elif rng.random() < 0.3:
            peer = rng.choice(peers)
    return SpdRule(direction, action, sa=sa, peer=peer, **selectors(rng))


def template(rng, peers=("p0", "p1")):
    s = selectors(rng)
    s["proto"] = rng.choice([None, 6, 17])
    kind = rng.choice(["listener", "initiator"])
    if kind == "listener":
        s["remote"] = None
        s["remote_port"] = None
    return Template(kind, peer=rng.choice([None, None, *peers]), **s)


def flow(rng):
    version = rng.choice([4, 4, 6])
    pool = V4 if version == 4 else V6
    proto = rng.choice([6, 17, 1, 50])
    jitter = lambda a: max(0, a + rng.choice([0, 0, 0, 1, -1, 3, 300]))
    ports = proto in (6, 17) and rng.random() < 0.85
    return Flow(version, jitter(rng.choice(pool)), jitter(rng.choice(pool)), proto,
                min(65535, rng.choice(PORTS) + rng.choice([0, 0, 1])) if ports else None,
                rng.choice(PORTS) if ports else None)


def flow_inside(rng, sel):
    """A flow the selectors of `sel` (rule or template) probably cover."""
    version = next((s.version for s in (sel.local, sel.remote) if s is not None),
                   rng.choice([4, 6]))
    pool = V4 if version == 4 else V6

    def addr(s):
        return rng.choice(pool) if s is None else rng.randrange(s.lo, s.hi + 1)

    proto = sel.proto if sel.proto is not None else rng.choice([6, 17, 1])
    opaque = any(p is not None and p.opaque for p in (sel.local_port, sel.remote_port))
    if proto not in (6, 17) or opaque:
        lp = rp = None
    else:
        port = lambda s: rng.choice(PORTS) if s is None else rng.randrange(s.lo, s.hi + 1)
        lp, rp = port(sel.local_port), port(sel.remote_port)
    return Flow(version, addr(sel.local), addr(sel.remote), proto, lp, rp)


async def transact(ctx, dut, fields: dict, layout):
    """One request on `dut.cmd` (payload packed from `fields`) and its reply
    from `dut.resp`, unpacked; the command/response handshake the policy
    blocks share."""
    from latchnic.hw.policy.selectors import pack, unpack
    ctx.set(dut.cmd.payload.as_value(), pack(layout, fields))
    ctx.set(dut.cmd.valid, 1)
    await ctx.tick().until(dut.cmd.ready)
    ctx.set(dut.cmd.valid, 0)
    ctx.set(dut.resp.ready, 1)
    while not ctx.get(dut.resp.valid):
        await ctx.tick()
    r = unpack(dut.resp.payload.shape(), ctx.get(dut.resp.payload.as_value()))
    await ctx.tick()
    ctx.set(dut.resp.ready, 0)
    return r
