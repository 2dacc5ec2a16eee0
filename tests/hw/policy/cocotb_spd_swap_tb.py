"""cocotb bench: SPD changes under traffic, one direction at a time, atomic.

The core is programmed through the driver's RegisterBackend (AXI4-Lite). A
multi-rule outbound SPD is changed by the driver (a rule inserted at the
top, which moves every rule down; the direction reordered by `apply`; the
top rule deleted) while frames keep flowing: the driver call runs in its
own thread and the frames go through the core between its commits. Every
verdict must be the model's under the complete old policy or under the
complete new one (ModelDevice, one per policy), never a mix: once a frame
was decided by the new policy no later frame is decided by the old one, and
every frame after the driver returned is decided by the new one.

The configuration has no templates, so no latch is cloned and a verdict
depends on the SPD (and the SAD) alone: the two models stay comparable.
Under the specific rules sit broad BYPASS rules (203.0.113.0/24,
198.51.100.0/24): a list rewritten entry by entry in place loses one rule
for a moment, and the flows of a lost PROTECT rule would go out in clear
text. Before each change the bench works out, with the model, which of
those in-place states (new[:k] + old[k:]) one of its probe frames would
tell from both policies, and logs it.

`stray_swap_changes_nothing`: TBL_COMMIT op swap to a table that is not an
SPD direction changes nothing (fail closed), and shadow writes are not seen
until the swap.

Environment: CORE_CONFIG (TOML path; its SPD rules and SAs are used).
"""

import dataclasses
import os
import random

import cocotb

from latchnic.config import load_config
from latchnic.driver.entries import from_table, to_table
from latchnic.hw.generated import regs
from latchnic.hw.policy.program import CLEAR, SWAP, commit_writes
from latchnic.hw.policy.spd import encode_rule
from latchnic.sim.device import ModelDevice

from cocotb_core_tb import TB, want_verdict
from core_driver import CoreDriver
from traffic_gen import TICK_NS, frame as make_frame


def rule(**fields):
    return from_table("spd", fields, "bench")


def base_policy():
    cfg = load_config(os.environ["CORE_CONFIG"])
    # no latches: a verdict depends on the SPD and the SAD only
    cfg.templates = []
    out = [r for r in cfg.spd if r.dir == "out"]
    out += [rule(dir="out", remote="203.0.113.0/24", action="bypass"),
            rule(dir="out", remote="198.51.100.0/24", action="bypass")]
    cfg.spd = out + [r for r in cfg.spd if r.dir == "in"]
    return cfg


def with_out(cfg, out):
    return dataclasses.replace(cfg, spd=list(out) + [r for r in cfg.spd if r.dir == "in"])


# one flow per outbound rule (alice-old's UDP flows left out: its sequence
# numbers run out after 15 frames), ICMP (OPAQUE ports), no match, and
# inbound clear text on each in-rule: (direction, (v6, remote, proto, lport, rport))
PROBES = [("out", fl) for fl in [
    (False, "203.0.113.5", "tcp", 40000, 443), (False, "203.0.113.5", "tcp", 40000, 80),
    (False, "203.0.113.20", "tcp", 40000, 22), (False, "203.0.113.20", "icmp", 0, 0),
    (False, "198.51.100.7", "tcp", 40000, 80), (False, "198.51.100.7", "udp", 40000, 53),
    (False, "203.0.113.50", "tcp", 40000, 80), (False, "203.0.113.70", "tcp", 40000, 80),
    (False, "203.0.113.5", "icmp", 0, 0), (True, "2001:db8:1::5", "tcp", 40000, 443),
    (True, "2001:db8:2::5", "tcp", 40000, 80), (False, "203.0.113.5", "udp", 40000, 55),
    (False, "203.0.113.100", "tcp", 40000, 80), (False, "203.0.113.100", "udp", 40000, 53),
    (True, "2001:db8:9::1", "tcp", 40000, 80)]] + [("in", fl) for fl in [
    (False, "203.0.113.50", "tcp", 40000, 80), (False, "203.0.113.70", "tcp", 40000, 80),
    (False, "203.0.113.5", "tcp", 40000, 80), (False, "198.51.100.7", "udp", 40000, 53),
    (True, "2001:db8:1::5", "tcp", 40000, 443)]]


class Bench:
    def __init__(self, dut, seed):
        self.dut = dut
        self.tb = TB(dut, seed, False)
        self.rng = random.Random(seed)
        self.now = 0
        # the probe frames, made once (each with its own random payload / VLAN tag)
        self.frames = [(d, make_frame(self.rng, d, fl)) for d, fl in PROBES]

    async def start(self, cfg):
        await self.tb.reset()
        self.tb.drv = await CoreDriver.open(self.tb.axil, TICK_NS)
        await self.tb.drv.call("apply", cfg)

    async def decide(self, d, f):
        """One frame through the core; its verdict."""
        self.now += 1
        hv = await self.tb.frame(d == "in", f, self.now)
        assert hv["action"] != 2, "clear text never goes to the crypto path"
        return hv

    def want(self, model, d, f):
        return want_verdict(model.process(f, d, self.now * TICK_NS), self.tb.drv.slots)

    @staticmethod
    def same(hv, want):
        return {k: hv[k] for k in want} == want

    def in_place_states(self, old_cfg, new_cfg):
        """How many of the states an in-place, entry-by-entry rewrite of the
        outbound list passes through (new[:k] + old[k:]) a probe tells from
        both policies, of how many."""
        old = [r for r in old_cfg.spd if r.dir == "out"]
        new = [r for r in new_cfg.spd if r.dir == "out"]
        told = states = 0
        for k in range(1, min(len(old), len(new))):
            mixed = new[:k] + old[k:]
            if mixed in (old, new):
                continue
            states += 1
            m_old, m_new, m_mix = (ModelDevice.from_config(c) for c in
                                   (old_cfg, new_cfg, with_out(old_cfg, mixed)))
            if any(self.want(m_mix, d, f) not in (self.want(m_old, d, f), self.want(m_new, d, f))
                   for d, f in self.frames):
                told += 1
        return told, states

    async def change(self, what, op, args, old_cfg, new_cfg):
        """The driver's `op` on the core while the probe frames flow; every
        verdict the old or the new policy's, old before new."""
        log = self.dut._log
        told, states = self.in_place_states(old_cfg, new_cfg)
        old, new = ModelDevice.from_config(old_cfg), ModelDevice.from_config(new_cfg)
        assert any(self.want(old, d, f) != self.want(new, d, f) for d, f in self.frames), \
            f"{what}: no probe tells the old policy from the new"
        order = list(self.frames)
        task = cocotb.start_soon(self.tb.drv.call(op, *args))
        labels, during, after, n = [], 0, 0, 0
        while after < len(order):
            finished = task.done()
            if n % len(order) == 0:
                self.rng.shuffle(order)
            d, f = order[n % len(order)]
            n += 1
            hv = await self.decide(d, f)
            w_old, w_new = self.want(old, d, f), self.want(new, d, f)
            is_old, is_new = self.same(hv, w_old), self.same(hv, w_new)
            label = "same" if is_old and is_new else "old" if is_old else "new" if is_new else None
            assert label is not None, (f"{what}: frame {n} ({d}, {'after' if finished else 'during'} "
                                       f"the change) decided by neither policy: got "
                                       f"{ {k: hv[k] for k in w_old | w_new} }, old {w_old}, new {w_new}")
            if finished:
                after += 1
                assert label != "old", f"{what}: frame {n} after the change decided by the old policy"
            else:
                during += 1
            labels.append(label)
        await task                          # the driver's exceptions, if any
        flips = [l for l in labels if l != "same"]
        assert flips == sorted(flips, key=lambda l: l == "new"), f"{what}: old after new: {flips}"
        assert during >= 5, f"{what}: only {during} frames during the change"
        log.info("%s: %d frames during the change (%d old, %d new, %d either), %d after; "
                 "%d of %d in-place rewrite states would show a mix on a probe", what, during,
                 labels[:during].count("old"), labels[:during].count("new"),
                 labels[:during].count("same"), after, told, states)
        return labels


@cocotb.test()
async def spd_change_under_traffic(dut):
    p0 = base_policy()
    b = Bench(dut, 23)
    await b.start(p0)
    model = ModelDevice.from_config(p0)
    for d, f in b.frames:
        hv = await b.decide(d, f)
        assert b.same(hv, b.want(model, d, f)), (d, f.hex(), hv)

    out0 = [r for r in p0.spd if r.dir == "out"]
    top = rule(dir="out", remote="203.0.113.100", action="discard")
    p1 = with_out(p0, [top] + out0)
    await b.change("a rule inserted at the top", "add_spd", (top, 0), p0, p1)

    # reordered: the specific rules in reverse order above the broad ones
    specific, broad = out0[:-2], out0[-2:]
    p2 = with_out(p0, [top] + specific[::-1] + broad)
    await b.change("the direction reordered by apply", "apply", (p2,), p1, p2)

    p3 = with_out(p0, specific[::-1] + broad)
    await b.change("the top rule deleted", "del_spd", ("out", 0), p2, p3)
    listed = [{k: v for k, v in r.items() if k != "index"} for r in await b.tb.drv.call("spd")]
    assert listed == [to_table(r) for r in p3.spd], listed


@cocotb.test()
async def stray_swap_changes_nothing(dut):
    """Shadow writes are not seen until the swap; TBL_COMMIT op swap on any
    table but spd_out / spd_in changes nothing (and counts); a swap of one
    direction leaves the other alone; swapping back shows the policy before."""
    p = base_policy()
    b = Bench(dut, 29)
    await b.start(p)
    tb = b.tb

    async def commit(writes):
        for addr, value in writes:
            await tb.wr(addr, value)

    discard = {d: rule(dir=d, action="discard") for d in ("out", "in")}
    live = {"out": p, "in": p}

    async def check(what):
        models = {d: ModelDevice.from_config(c) for d, c in live.items()}
        for d, f in b.frames:
            hv = await b.decide(d, f)
            want = b.want(models[d], d, f)
            assert b.same(hv, want), (what, d, f.hex(), hv, want)

    # "discard everything" into both shadow banks: not seen
    for d in ("out", "in"):
        await commit(commit_writes(f"spd_{d}", 0, encode_rule(discard[d]))
                     + commit_writes(f"spd_{d}", 1, op=CLEAR))
    await check("shadow written")
    # a swap to every other table number: nothing changes (checked after
    # each: two wrong flips would cancel), each counts
    stray = [t for t in range(16) if t not in (regs.TABLES["spd_out"], regs.TABLES["spd_in"])]
    for t in stray:
        commits = await tb.rd(regs.TBL_COMMITS)
        await tb.wr(regs.TBL_COMMIT, b.rng.randrange(1 << 16) | (t << 16) | (SWAP << 24))
        assert await tb.rd(regs.TBL_COMMITS) == commits + 1
        await check(f"a swap sent to table {t}")
    with_discard = {d: dataclasses.replace(p, spd=[discard[d]] + [r for r in p.spd if r.dir != d])
                    for d in ("out", "in")}
    for d in ("out", "in"):
        await tb.wr(regs.TBL_COMMIT, (regs.TABLES[f"spd_{d}"] << 16) | (SWAP << 24))
        live[d] = with_discard[d]
        await check(f"{d} swapped")
    assert await tb.rd(regs.DROP_MALFORMED + 4 * list(regs.REASONS).index("spd_discard")) > 0
    for d in ("out", "in"):
        await tb.wr(regs.TBL_COMMIT, (regs.TABLES[f"spd_{d}"] << 16) | (SWAP << 24))
        live[d] = p
        await check(f"{d} swapped back")
