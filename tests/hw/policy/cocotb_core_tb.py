"""cocotb bench: the policy core against ModelDevice, decision for decision.

The core is programmed through AXI4-Lite (cocotbext-axi AxiLiteMaster) from
the same TOML file the model loads (hw/policy/program.py turns it into
register writes). Then a random traffic mix goes through both; every
verdict (forward/drop, drop reason, SA, latch slot, sequence number), the
latch events and the counters must match. Frames the core hands to the
crypto path (inbound ESP/AH that are not fragments) are not compared.

Environment: CORE_SEED, CORE_COUNT, CORE_STALL (random idle on the frame
source, random backpressure on the verdict port), CORE_CONFIG (TOML path),
CORE_DRIFT (optional second TOML: applied to both after a third of the
frames, and CORE_CONFIG applied again after two thirds: policy drift, with
the latch re-check in both engines).
"""

import os
import random
from collections import Counter

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamFrame, AxiStreamSource

from latchnic.config import load_config
from latchnic.hw.generated import regs
from latchnic.hw.policy.core import Cause, event_layout, verdict_layout
from latchnic.hw.policy.latch_table import LatchState
from latchnic.hw.policy.program import program
from latchnic.hw.policy.selectors import unpack
from latchnic.sim.device import ModelDevice
from latchnic.sim.drops import REASON_CODES, REASONS

from policy_tops import core_params
from traffic_gen import TICK_NS, traffic

STATES = {"ESTABLISHED": LatchState.ESTABLISHED.value, "BROKEN": LatchState.BROKEN.value,
          "TIME_WAIT": LatchState.TIME_WAIT.value, "free": LatchState.FREE.value}
CAUSES = {"clone": Cause.CLONE, "fin": Cause.FIN, "rst": Cause.RST, "syn": Cause.SYN,
          "config_applied": Cause.RECHECK}


def _pauses(rng, p):
    while True:
        yield int(rng.random() < p)


class TB:
    def __init__(self, dut, seed, stall):
        self.dut = dut
        self.rng = random.Random(seed)
        self.stall = stall
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        self.src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.src.log.setLevel("WARNING")
        if stall:
            self.src.set_pause_generator(_pauses(random.Random(seed + 7), 0.3))
        dut.verdict_ready.value = 0
        dut.meta_inbound.value = 0
        dut.meta_now.value = 0

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    async def rd(self, addr):
        r = await self.axil.read(addr, 4)
        assert int(r.resp) == 0
        return int.from_bytes(r.data, "little")

    async def wr(self, addr, value):
        r = await self.axil.write(addr, value.to_bytes(4, "little"))
        assert int(r.resp) == 0

    async def frame(self, inbound, frame, now_tick):
        self.dut.meta_inbound.value = int(inbound)
        self.dut.meta_now.value = now_tick
        await self.src.send(AxiStreamFrame(frame))
        for _ in range(20000):
            ready = int(self.rng.random() >= 0.3) if self.stall else 1
            self.dut.verdict_ready.value = ready
            await RisingEdge(self.dut.clk)
            if ready and int(self.dut.verdict_valid.value):
                v = unpack(verdict_layout, int(self.dut.verdict_data.value))
                self.dut.verdict_ready.value = 0
                return v
        raise AssertionError("no verdict within 20000 cycles")

    async def drain_events(self):
        out = []
        while True:
            level = await self.rd(regs.EVT_LEVEL)
            assert level >> 16 == 0, "events lost"
            if level & 0xFFFF == 0:
                assert int(self.dut.irq.value) == 0, "interrupt without events"
                return out
            assert int(self.dut.irq.value) == 1
            words = [await self.rd(regs.EVT_DATA0 + 4 * i) for i in range(3)]
            out.append(unpack(event_layout, words[0] | words[1] << 32 | words[2] << 64))
            await self.wr(regs.EVT_POP, 1)


@cocotb.test()
async def core_matches_model(dut):
    seed = int(os.environ.get("CORE_SEED", "1"))
    count = int(os.environ.get("CORE_COUNT", "500"))
    stall = os.environ.get("CORE_STALL", "0") == "1"
    cfg = load_config(os.environ["CORE_CONFIG"])
    params = core_params()
    assert (cfg.device.latch_capacity, cfg.device.latch_ways) == (params.latch_capacity,
                                                                  params.latch_ways)
    model = ModelDevice.from_config(cfg)
    model.drain_events()
    tb = TB(dut, seed, stall)
    await tb.reset()
    assert await tb.rd(regs.ID) == regs.MAGIC
    sa_index = {}
    commits = 0

    async def load(new, old):
        nonlocal commits
        writes = program(new, model.pad.index, TICK_NS, params.spd_rules, params.templates,
                         old=old, sa_slots=sa_index, sa_capacity=params.sas)
        for addr, value in writes:
            await tb.wr(addr, value)
        commits += sum(1 for a, _ in writes if a == regs.TBL_COMMIT)
        assert await tb.rd(regs.TBL_COMMITS) == commits

    await load(cfg, None)
    await tb.wr(regs.IRQ_ENABLE, 1)
    drift = os.environ.get("CORE_DRIFT")
    plan = {}
    if drift:
        cfg2 = load_config(drift)
        plan = {count // 3: (cfg2, cfg), 2 * count // 3: (cfg, cfg2)}
    errors = []
    expect_drops = Counter()
    expect_events = []
    hw_events = []
    compared = Counter()
    crypto = 0
    frames = traffic(seed, count)
    for n, (direction, frame, now_ns) in enumerate(frames):
        if n in plan:
            new, old = plan[n]
            model.apply(new)
            await load(new, old)
            compared["applied"] += 1
        mv = model.process(frame, direction, now_ns)
        hv = await tb.frame(direction == "in", frame, now_ns // TICK_NS)
        if hv["action"] == 2:
            # handed to the crypto path: the model must have got past the SAD
            # lookup and the replay check with the same SA (its drop, if any,
            # is one the ICV stage or later gives)
            crypto += 1
            assert direction == "in"
            assert mv.reason in ("icv", "malformed", "bad_padding") and mv.sa is not None, \
                (n, mv.action, mv.reason, frame.hex())
            assert hv["sa_valid"] and hv["sa"] == sa_index[mv.sa], (n, hv, mv.sa)
            model.drain_events()
            continue
        compared[mv.action if mv.action == "forward" else mv.reason] += 1
        want = {"action": 0 if mv.action == "forward" else 1,
                "reason": REASON_CODES[mv.reason] if mv.reason else 0,
                "latch_valid": int(mv.latch is not None), "sa_valid": int(mv.sa is not None)}
        if mv.latch is not None:
            want["latch"] = mv.latch
        if mv.sa is not None:
            want["sa"] = sa_index[mv.sa]
        if mv.action == "forward" and mv.sa is not None:
            want["seq"] = model.sad.by_name[mv.sa].seq
        got = {k: hv[k] for k in want}
        if mv.action == "drop":
            expect_drops[mv.reason] += 1
        if got != want:
            errors.append(f"frame {n} {direction} t={now_ns // TICK_NS} {frame.hex()}: "
                          f"model {mv.action}/{mv.reason}/{mv.sa}/{mv.latch} want {want} got {got}")
        for e in model.drain_events():
            if e.cause == "timer":
                continue
            compared["ev_" + e.cause] += 1
            cause = CAUSES[e.cause] if e.cause in CAUSES else Cause.REASON + REASON_CODES[e.cause]
            expect_events.append({"time": e.time_ns // TICK_NS, "slot": e.slot, "peer": e.peer,
                                  "old": STATES[e.old], "new": STATES[e.new], "cause": int(cause)})
        if n % 64 == 63:
            hw_events += await tb.drain_events()
        if len(errors) > 10:
            break
    hw_events += await tb.drain_events()
    for e in errors[:10]:
        dut._log.error(e)
    assert not errors, f"{len(errors)} verdict mismatches"
    for i, (a, b) in enumerate(zip(expect_events, hw_events)):
        assert a == b, f"event {i}: model {a} hw {b}"
    assert len(expect_events) == len(hw_events), (len(expect_events), len(hw_events))
    for code, reason in enumerate(REASONS):
        got = await tb.rd(regs.DROP_MALFORMED + 4 * code)
        assert got == expect_drops[reason], (reason, got, expect_drops[reason])
    assert await tb.rd(regs.FORWARDED) == compared["forward"]
    if drift:
        assert compared["ev_config_applied"] > 0 and compared["latch_broken"] > 0, dict(compared)
    dut._log.info("%d frames compared (%d to crypto), %d events: %s",
                  sum(v for k, v in compared.items() if not k.startswith("ev_") and k != "applied"),
                  crypto, len(hw_events), dict(compared))
    needs = () if drift else ("latch_table_full", "latch_peer", "seq_exhausted", "spd_clear", "latch_clear",
                 "no_policy", "spd_discard", "malformed", "fragment", "no_sa", "replay")
    for need in needs:
        assert compared[need] > 0, f"the traffic mix never produced {need}: {dict(compared)}"


@cocotb.test()
async def latching_scenarios(dut):
    """The latching scenarios at this level, every step asserted explicitly
    (reason, latch) and compared with the model."""
    from latchnic.config import parse_config
    from latchnic.sim.selectors import Flow

    from traffic_gen import frame as make_frame

    path = os.environ["CORE_CONFIG"]
    base_text = open(path).read()
    cfg = load_config(path)
    drift = load_config(os.environ["CORE_DRIFT"])
    bypass = parse_config(base_text.replace('remote_port = 443\naction = "protect"\nsa = "alice-out"',
                                            'remote_port = 443\naction = "bypass"', 1), "bypass")
    params = core_params()
    model = ModelDevice.from_config(cfg)
    tb = TB(dut, 5, False)
    await tb.reset()
    slots = {}
    state = {"cfg": None, "commits": 0}

    async def load(new):
        writes = program(new, model.pad.index, TICK_NS, params.spd_rules, params.templates,
                         old=state["cfg"], sa_slots=slots, sa_capacity=params.sas)
        if state["cfg"] is not None:
            model.apply(new)
        for addr, value in writes:
            await tb.wr(addr, value)
        state["cfg"] = new

    await load(cfg)
    await tb.wr(regs.IRQ_ENABLE, 1)
    assert int(dut.irq.value) == 0
    rng = random.Random(5)

    async def step(direction, fl, flags, t, action, reason=None, latched=None):
        f = make_frame(rng, direction, fl, flags)
        mv = model.process(f, direction, t * TICK_NS)
        hv = await tb.frame(direction == "in", f, t)
        got_m = (mv.action, mv.reason)
        got_h = ("forward" if hv["action"] == 0 else "drop",
                 list(REASONS)[hv["reason"]] if hv["action"] == 1 else None)
        assert got_m == (action, reason), f"model at t={t}: {got_m}, expected {(action, reason)}"
        assert got_h == got_m, f"gateware at t={t}: {got_h}, model {got_m}"
        assert (mv.latch is not None) == bool(hv["latch_valid"])
        if mv.latch is not None:
            assert hv["latch"] == mv.latch
        if latched is not None:
            assert (mv.latch is not None) == latched, f"t={t}: latch {mv.latch}"
        return mv

    A = (False, "203.0.113.5", "tcp", 40000, 443)
    first = await step("out", A, "S", 1, "forward", latched=True)          # clone
    await step("out", A, "A", 2, "forward", latched=True)
    await step("in", A, "A", 3, "drop", "latch_clear")                     # clear-text injection
    await load(drift)                                                      # alice's rule -> bob's SA
    await step("out", A, "A", 4, "drop", "latch_broken")                   # never to another peer
    await load(cfg)                                                        # compatible SA again
    await step("out", A, "A", 5, "forward", latched=True)
    await load(bypass)                                                     # policy flips to BYPASS
    await step("out", A, "A", 6, "drop", "latch_broken")                   # never in clear text
    await load(cfg)
    await step("out", A, "A", 7, "forward", latched=True)
    await step("out", A, "R", 8, "forward", latched=True)                  # -> TIME_WAIT
    await step("out", A, "A", 9, "forward", latched=True)                  # still enforcing
    await step("out", A, "A", 60, "forward", latched=False)                # freed at 8 + 50
    again = await step("out", A, "S", 61, "forward", latched=True)         # re-clone
    assert again.latch == first.latch
    U = (False, "203.0.113.5", "udp", 40001, 55)
    await step("out", U, None, 62, "forward", latched=True)                # UDP clone
    await step("out", U, None, 80, "forward", latched=True)                # refreshed: 80 + 30
    await step("out", U, None, 105, "forward", latched=True)               # still live
    await step("out", U, None, 140, "forward", latched=True)               # expired at 135: new clone
    B = (False, "203.0.113.20", "tcp", 40002, 80)
    await step("out", B, "S", 141, "drop", "latch_peer")                   # template expects alice
    # fill one set (2 ways): flows to alice that hash to the set of flow A
    from latchnic.sim.latch import LatchTable as ModelTable
    table = ModelTable(params.latch_capacity, params.latch_ways)
    a4 = int.from_bytes(bytes([192, 0, 2, 1]), "big")
    r4 = int.from_bytes(bytes([203, 0, 113, 5]), "big")
    target = table.set_of(Flow(4, a4, r4, 6, 40000, 443))
    ports = [p for p in range(41000, 45000)
             if table.set_of(Flow(4, a4, r4, 6, p, 443)) == target][:params.latch_ways]
    live = sum(1 for l in model.list_latches() if table.set_of(l.flow) == target)
    assert live >= 1                                                       # A's latch
    for i, p in enumerate(ports):
        if live + i < params.latch_ways:
            await step("out", (False, "203.0.113.5", "tcp", p, 443), "S", 142 + i, "forward",
                       latched=True)
        else:
            await step("out", (False, "203.0.113.5", "tcp", p, 443), "S", 142 + i, "drop",
                       "latch_table_full")                                 # fails closed
            break
    else:
        raise AssertionError("the set never filled")
    events = [e for e in model.drain_events() if e.cause != "timer"]
    hw = await tb.drain_events()
    assert len(hw) == len(events), (len(hw), len(events))
    causes = [e.cause for e in events]
    for need in ("clone", "rst", "config_applied"):
        assert need in causes, causes
