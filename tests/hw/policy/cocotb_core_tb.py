"""cocotb bench: the policy core against ModelDevice, decision for decision.

The core is programmed only by the driver's RegisterBackend over AXI4-Lite
(cocotbext-axi AxiLiteMaster; core_driver.py) from the same TOML file the
model loads. Then a random traffic mix goes through both; every verdict
(forward/drop, drop reason, SA, latch slot, sequence number), the latch
events (drained by the driver) and the counters must match, and the
driver's latches(), counters() and events() must equal a ModelBackend's
over the same model (core_driver.compare, every 500 frames and at the end). An inbound ESP/AH frame whose
first pass says CRYPTO goes through the crypto path (crypto_path.py: ICV and
decapsulation with the model's ESP/AH functions) and comes back as the
second pass (the inner frame with meta.decap); that pass's verdict is the
one compared. Per-SA and per-latch counters are read through CTR_READ.

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
from latchnic.hw.policy.core import verdict_layout
from latchnic.hw.policy.program import CLEAR, READ, RELEASE, commit_writes
from latchnic.hw.policy.selectors import unpack
from latchnic.sim.device import ModelDevice
from latchnic.sim.drops import REASON_CODES, REASONS

from core_driver import CoreDriver, compare, model_events, same_events
from policy_tops import core_params
from traffic_gen import TICK_NS, traffic



def want_verdict(mv, sa_slots) -> dict:
    """The verdict fields the core must give for the model's verdict `mv`
    (SA names -> SAD slots through `sa_slots`, as the driver assigned them)."""
    want = {"action": 0 if mv.action == "forward" else 1,
            "reason": REASON_CODES[mv.reason] if mv.reason else 0,
            "latch_valid": int(mv.latch is not None), "sa_valid": int(mv.sa is not None)}
    if mv.latch is not None:
        want["latch"] = mv.latch
    if mv.sa is not None:
        want["sa"] = sa_slots[mv.sa]
    return want


def _pauses(rng, p):
    while True:
        yield int(rng.random() < p)


class TB:
    def __init__(self, dut, seed, stall):
        self.dut = dut
        self.drv = None             # core_driver.CoreDriver: the only path that programs the core
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
        dut.meta_decap.value = 0

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    @classmethod
    async def programmed(cls, dut, seed, cfg):
        """A reset core the driver has applied `cfg` to (no stalls)."""
        tb = cls(dut, seed, False)
        await tb.reset()
        tb.drv = await CoreDriver.open(tb.axil, TICK_NS)
        await tb.drv.call("apply", cfg)
        return tb

    async def rd(self, addr):
        r = await self.axil.read(addr, 4)
        assert int(r.resp) == 0
        return int.from_bytes(r.data, "little")

    async def wr(self, addr, value):
        r = await self.axil.write(addr, value.to_bytes(4, "little"))
        assert int(r.resp) == 0

    async def frame(self, inbound, frame, now_tick, decap=None):
        """decap: (SA slot, sequence number, DecapStatus, SA generation) for a
        second pass: the first pass's verdict sa, seq and gen, and the
        crypto path's status."""
        self.dut.meta_inbound.value = int(inbound)
        self.dut.meta_now.value = now_tick
        self.dut.meta_decap.value = int(decap is not None)
        if decap is not None:
            self.dut.meta_sa.value, self.dut.meta_seq.value = decap[0], decap[1]
            self.dut.meta_status.value = int(getattr(decap[2], "value", decap[2]))
            self.dut.meta_gen.value = decap[3]
        cocotb.start_soon(self._scramble_meta())
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

    async def _scramble_meta(self):
        """The meta inputs are valid with a frame's first beat only: once it
        is taken, they change to random values (a core that sampled them
        later would decide on those)."""
        dut = self.dut
        while True:             # sampled at the edge, as the source's own handshake
            await RisingEdge(dut.clk)
            if int(dut.s_axis_tvalid.value) and int(dut.s_axis_tready.value):
                break
        r = self.rng
        dut.meta_inbound.value = r.getrandbits(1)
        dut.meta_now.value = r.getrandbits(32)
        dut.meta_decap.value = r.getrandbits(1)
        dut.meta_sa.value, dut.meta_seq.value = r.getrandbits(16), r.getrandbits(64)
        dut.meta_status.value = r.getrandbits(3)
        dut.meta_gen.value = r.getrandbits(len(dut.meta_gen))

    async def inbound(self, model, slots, frame, now_tick):
        """An inbound frame through both passes: the first pass; on CRYPTO
        the crypto path (model keys) and the second pass. (first, final)."""
        from crypto_path import decap
        first = await self.frame(True, frame, now_tick)
        if first["action"] != 2:
            return first, first
        name = {v: k for k, v in slots.items()}[first["sa"]]
        status, inner = decap(model.sad.by_name[name], frame, first["seq"])
        final = await self.frame(True, inner, now_tick, (first["sa"], first["seq"], status,
                                                          first["gen"]))
        assert final["action"] != 2, "a second pass never goes to the crypto path"
        return first, final

    async def counters(self, index, latch):
        await self.wr(regs.CTR_READ, index | int(latch) << 16)
        w = {n: await self.rd(getattr(regs, "CTR_" + n.upper())) for n in
             ("packets_in", "packets_out", "bytes_in_lo", "bytes_in_hi", "bytes_out_lo",
              "bytes_out_hi", "drops", "seq_lo", "seq_hi")}
        return {"packets_in": w["packets_in"], "packets_out": w["packets_out"],
                "bytes_in": w["bytes_in_lo"] | w["bytes_in_hi"] << 32,
                "bytes_out": w["bytes_out_lo"] | w["bytes_out_hi"] << 32, "drops": w["drops"],
                "seq": w["seq_lo"] | w["seq_hi"] << 32}

    async def check_counters(self, model, slots):
        """Per-SA and per-live-latch counters against ModelDevice.counters()."""
        mc = model.counters()
        for name, c in mc["sa"].items():
            d = model.sad.by_name[name].spec.dir
            want = {"packets_" + d: c["packets"], "bytes_" + d: c["bytes"],
                    "drops": sum(c["drops"].values()),
                    "seq": c["seq"] if d == "out" else c["replay_top"]}
            got = await self.counters(slots[name], False)
            assert {k: got[k] for k in want} == want, (name, got, want)
            other = "in" if d == "out" else "out"
            assert got["packets_" + other] == got["bytes_" + other] == 0, (name, got)
        for slot, c in mc["latch"].items():
            want = {"packets_in": c["packets"].get("in", 0), "packets_out": c["packets"].get("out", 0),
                    "bytes_in": c["bytes"].get("in", 0), "bytes_out": c["bytes"].get("out", 0),
                    "drops": c["drops"], "seq": 0}
            got = await self.counters(slot, True)
            assert got == want, ("latch", slot, got, want)
        return len(mc["sa"]), len(mc["latch"])

    async def drain_events(self):
        """The latch events, drained by the driver (RegisterBackend.events);
        the interrupt line follows the FIFO."""
        level = await self.rd(regs.EVT_LEVEL)
        assert level >> 16 == 0, "events lost"
        assert int(self.dut.irq.value) == int(level & 0xFFFF != 0), "interrupt != FIFO not empty"
        out = await self.drv.events()
        assert int(self.dut.irq.value) == 0, "interrupt without events"
        return out


@cocotb.test()
async def core_matches_model(dut):
    seed = int(os.environ.get("CORE_SEED", "1"))
    count = int(os.environ.get("CORE_COUNT", "500"))
    stall = os.environ.get("CORE_STALL", "0") == "1"
    cfg = load_config(os.environ["CORE_CONFIG"])
    params = core_params()
    assert (cfg.device.latch_capacity, cfg.device.latch_ways, cfg.device.latch_capacity_v6) == (
        params.latch_capacity, params.latch_ways, params.latch_capacity_v6)
    model = ModelDevice.from_config(cfg)
    model.drain_events()
    tb = TB(dut, seed, stall)
    await tb.reset()
    assert await tb.rd(regs.ID) == regs.MAGIC
    # programmed only through the driver (it checks TBL_COMMITS after each operation)
    tb.drv = await CoreDriver.open(tb.axil, TICK_NS)
    sa_index = tb.drv.slots                 # SA name -> SAD slot, as the driver assigned them

    async def load(new, old):
        await tb.drv.call("apply", new)

    await load(cfg, None)
    await tb.wr(regs.IRQ_ENABLE, 1)
    # the driver's apply turned timer events on (the core's reset value is off):
    # the `timer` events compared below come only from that
    assert await tb.rd(regs.CTRL) & regs.CTRL_TIMER_EVENTS_MASK
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
    frames = traffic(seed, count, cfg)
    for n, (direction, frame, now_ns) in enumerate(frames):
        if n in plan:
            new, old = plan[n]
            model.apply(new)
            await load(new, old)
            compared["applied"] += 1
        mv = model.process(frame, direction, now_ns)
        if direction == "in":
            first, hv = await tb.inbound(model, sa_index, frame, now_ns // TICK_NS)
            crypto += first["action"] == 2
        else:
            hv = await tb.frame(False, frame, now_ns // TICK_NS)
        compared[mv.action if mv.action == "forward" else mv.reason] += 1
        if direction == "in" and mv.sa is not None:
            compared["in_sa_" + (mv.reason or "forward")] += 1
        want = want_verdict(mv, sa_index)
        if mv.action == "forward" and mv.sa is not None and direction == "out":
            want["seq"] = model.sad.by_name[mv.sa].seq
        got = {k: hv[k] for k in want}
        if mv.action == "drop":
            expect_drops[mv.reason] += 1
        if got != want:
            errors.append(f"frame {n} {direction} t={now_ns // TICK_NS} {frame.hex()}: "
                          f"model {mv.action}/{mv.reason}/{mv.sa}/{mv.latch} want {want} got {got}")
        for e in model_events(model, model.drain_events(), timers=True):
            compared["ev_" + e["cause"]] += 1
            expect_events.append(e)
        if n % 64 == 63:
            hw_events += await tb.drain_events()
        if n % 500 == 499:
            await compare(tb.drv, model, dut._log)        # latches and counters mid-run
        if len(errors) > 10:
            break
    hw_events += await tb.drain_events()
    for e in errors[:10]:
        dut._log.error(e)
    assert not errors, f"{len(errors)} verdict mismatches"
    same_events(expect_events, hw_events)
    for code, reason in enumerate(REASONS):
        got = await tb.rd(regs.DROP_MALFORMED + 4 * code)
        assert got == expect_drops[reason], (reason, got, expect_drops[reason])
    assert await tb.rd(regs.FORWARDED) == compared["forward"]
    assert await tb.rd(regs.FRAMES_IN) == model.stats["in_frames"]
    n_sa, n_latch = await tb.check_counters(model, sa_index)
    await compare(tb.drv, model, dut._log)
    if drift:
        assert compared["ev_config_applied"] > 0 and compared["latch_broken"] > 0, dict(compared)
    dut._log.info("%d frames compared (%d through the crypto path), %d events, counters of "
                  "%d SAs and %d latches: %s",
                  sum(v for k, v in compared.items()
                      if not k.startswith(("ev_", "in_sa_")) and k != "applied"),
                  crypto, len(hw_events), n_sa, n_latch, dict(compared))
    needs = () if drift else ("latch_table_full", "latch_peer", "seq_exhausted", "spd_clear", "latch_clear",
                 "no_policy", "spd_discard", "malformed", "fragment", "no_sa", "replay", "icv",
                 "bad_padding", "spd_mismatch", "pad_claim", "latch_qop", "forward",
                 "in_sa_forward", "in_sa_latch_peer", "in_sa_replay", "in_sa_icv", "ev_timer")
    for need in needs:
        assert compared[need] > 0, f"the traffic mix never produced {need}: {dict(compared)}"
    if params.latch_capacity_v6:
        # split geometry: both tables cloned latches (their slots compared above)
        v6_base = params.latch_capacity - params.latch_capacity_v6
        clones = [e["slot"] for e in expect_events if e["cause"] == "clone"]
        assert any(s < v6_base for s in clones) and any(s >= v6_base for s in clones), clones


# an inbound AH SA with no selectors (SPI alone), for IPv6 frames
AH6_SA = """
[[sa]]
name = "any-ah6"
dir = "in"
spi = 0x1006
proto = "ah"
mode = "transport"
alg = "gmac-128"
key = "707172737475767778797a7b7c7d7e7f090a0b0c"
icv = 16
peer = "alice@example.org"
"""


@cocotb.test()
async def latching_scenarios(dut):
    """The latching scenarios at this level, every step asserted explicitly
    (reason, latch) and compared with the model."""
    from latchnic.config import parse_config
    from latchnic.sim.selectors import Flow

    from peer_gen import Peers
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
    tb.drv = await CoreDriver.open(tb.axil, TICK_NS)
    slots = tb.drv.slots
    state = {"cfg": None}

    async def load(new):
        if state["cfg"] is not None:
            model.apply(new)
        await tb.drv.call("apply", new)
        state["cfg"] = new

    await load(cfg)
    await tb.wr(regs.IRQ_ENABLE, 1)
    assert int(dut.irq.value) == 0
    rng = random.Random(5)

    def check(mv, hv, t, action, reason, latched):
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

    async def step(direction, fl, flags, t, action, reason=None, latched=None):
        f = make_frame(rng, direction, fl, flags)
        mv = model.process(f, direction, t * TICK_NS)
        hv = await tb.frame(direction == "in", f, t)
        check(mv, hv, t, action, reason, latched)
        return mv

    peers = Peers(cfg)

    async def pstep(name, fl, flags, t, action, reason=None, latched=None, kind="fresh", frame=None):
        """A protected inbound frame from SA `name`'s peer, both passes."""
        f = frame or peers.frame(rng, fl, flags, name=name, kind=kind)
        mv = model.process(f, "in", t * TICK_NS)
        _first, hv = await tb.inbound(model, slots, f, t)
        check(mv, hv, t, action, reason, latched)
        assert mv.sa == name and hv["sa_valid"] and hv["sa"] == slots[name], (mv.sa, hv)
        return f, mv

    A = (False, "203.0.113.5", "tcp", 40000, 443)
    first = await step("out", A, "S", 1, "forward", latched=True)          # clone
    await step("out", A, "A", 2, "forward", latched=True)
    await step("in", A, "A", 3, "drop", "latch_clear")                     # clear-text injection
    good, _ = await pstep("alice-in", A, "A", 3, "forward", latched=True)  # alice's SA, alice's latch
    await pstep("alice-in", A, "A", 3, "drop", "replay", latched=False, frame=good)   # replayed
    await pstep("alice-in", A, "A", 3, "drop", "icv", latched=False, kind="forged")   # forged ICV
    await pstep("bob-in", A, "A", 3, "drop", "latch_peer", latched=True)   # flow stealing: bob may
                                                                           # claim the address, but
                                                                           # the flow is alice's
    await pstep("alice-in-weak", A, "A", 3, "drop", "latch_qop", latched=True)  # GMAC < GCM
    await pstep("alice-in", A, "A", 3, "drop", "bad_padding", latched=False, kind="bad_padding")
    await pstep("alice-in", A, "A", 3, "forward", latched=True)            # the window moved past
                                                                           # the bad-padding frame
    L = (False, "203.0.113.5", "tcp", 22, 5555)
    await pstep("alice-in", L, "S", 3, "forward", latched=True)            # inbound SYN: listener
    await pstep("bob-in", L, "A", 3, "drop", "latch_peer", latched=True)   # template clones alice
    # a connection's end: a FIN one way leaves the latch ESTABLISHED (the
    # latches compared), the FIN the other way then closes it (TIME_WAIT);
    # once with the inbound FIN first, once with the outbound
    async def states(flow, want):
        # the flow's latch state, gateware and model (list_latches leaves
        # the model's events for the check at the end)
        port = flow[3]
        got = [l["state"] for l in await tb.drv.call("latches") if l["local_port"] == port]
        assert got == [l.state for l in model.list_latches() if l.flow.local_port == port] == [want]

    async def fin(side, fl):
        if side == "in":
            await pstep("alice-in", fl, "FA", 3, "forward", latched=True)
        else:
            await step("out", fl, "FA", 3, "forward", latched=True)

    for port, side1, side2 in ((40003, "in", "out"), (40004, "out", "in")):
        fl = (False, "203.0.113.5", "tcp", port, 443)
        await step("out", fl, "S", 3, "forward", latched=True)            # clone
        await fin(side1, fl)
        await states(fl, "ESTABLISHED")
        await fin(side2, fl)
        await states(fl, "TIME_WAIT")
    await pstep("carol-ah-in", (False, "203.0.113.9", "tcp", 40010, 80), "A", 3, "drop", "pad_claim",
                latched=False)                                             # carol may not claim it
    await pstep("bob-in", (False, "198.51.100.7", "tcp", 40010, 80), "A", 3, "drop", "spd_mismatch",
                latched=False)                                             # rule pinned to carol
    await pstep("alice-in-weak", (False, "203.0.113.50", "tcp", 40011, 80), "A", 3, "drop",
                "spd_mismatch", latched=False)                             # protected, policy BYPASS
    await tb.check_counters(model, slots)
    # AH over an IPv6 routing header: refused before the ICV (`unsupported`),
    # after the SAD lookup and the replay check, in both engines
    ah6 = parse_config(base_text + AH6_SA, "ah6")
    await load(ah6)
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrRouting
    from scapy.layers.ipsec import AH
    from scapy.layers.l2 import Ether
    eth = Ether(src="02:00:00:00:00:99", dst="02:00:00:00:00:01")
    f = bytes(eth / IPv6(src="2001:db8:1::5", dst="2001:db8::1") / IPv6ExtHdrRouting()
              / AH(spi=0x1006, seq=1, nh=6, payloadlen=8, icv=bytes(20)) / TCP(flags="A"))
    mv = model.process(f, "in", 3 * TICK_NS)
    p1, hv = await tb.inbound(model, slots, f, 3)
    check(mv, hv, 3, "drop", "unsupported", False)
    assert mv.sa == "any-ah6" and p1["action"] == 1 and hv["sa"] == slots["any-ah6"], (mv.sa, hv)
    await load(cfg)
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
    table = ModelTable(params.latch_capacity, params.latch_ways, params.latch_capacity_v6)
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
    events = model_events(model, model.drain_events(), timers=True)
    same_events(events, await tb.drain_events())
    causes = [e["cause"] for e in events]
    for need in ("clone", "rst", "fin", "config_applied", "timer"):
        assert need in causes, causes
    await tb.check_counters(model, slots)
    await compare(tb.drv, model, dut._log)
    # a host release through the driver: the latch leaves with a `release`
    # event, as in the model; a slot with no latch is refused
    from latchnic.driver.backend import BackendError
    slot = model.list_latches()[0].slot
    model.release_latch(slot)
    await tb.drv.call("release_latch", slot)
    released = model_events(model, model.drain_events())
    assert [e["cause"] for e in released] == ["release"], released
    same_events(released, await tb.drain_events())
    try:
        await tb.drv.call("release_latch", slot)
        raise AssertionError("an empty slot was released")
    except BackendError as e:
        assert str(e) == f"no latch in slot {slot}", e
    await compare(tb.drv, model, dut._log)


@cocotb.test()
async def sa_replaced_between_passes(dut):
    """An inbound SA replaced in its SAD slot between the two passes of a
    frame (gateware only: ModelDevice decides both passes in one call).

    The host rewrites SA "alice-in" as bob's SA with another key (same name:
    the driver commits it to the same SAD slot) after the frame's first pass
    said CRYPTO with alice's SA. The second pass, verified with alice's key,
    must not be attributed to bob's SA: drop `no_sa` (the slot's generation
    moved), no SA in the verdict, bob's SA counters 0 and its window where the
    commit set it. Control: the original SA back, the same frame, and only
    other tables rewritten between its passes (the driver applies the same
    configuration again: no SAD commit): delivered under alice's SA."""
    from latchnic.config import parse_config
    from latchnic.hw.policy.core import DecapStatus

    from crypto_path import decap
    from peer_gen import Peers

    path = os.environ["CORE_CONFIG"]
    text = open(path).read()
    cfg = load_config(path)
    head, sep, rest = text.partition('name = "alice-in"\n')
    block, nxt, tail = rest.partition("[[sa]]")
    new_block = (block.replace('peer = "alice@example.org"', 'peer = "bob@example.org"')
                 .replace('key = "000102030405060708090a0b0c0d0e0fcafebabe"',
                          'key = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeffcafebabe"'))
    assert sep and nxt and new_block.count("bob@") == 1 and "f0f1" in new_block, block
    replaced = parse_config(head + sep + new_block + nxt + tail, "replaced")
    new_sa = next(s for s in replaced.sas if s.name == "alice-in")

    model = ModelDevice.from_config(cfg)        # alice-in's keys for the crypto path
    tb = await TB.programmed(dut, 11, cfg)
    slot = tb.drv.slots["alice-in"]
    rng = random.Random(11)
    # alice's flow, TCP ACK: in-rule 203.0.113.0/24 protect, PAD claim (alice and
    # bob both claim it), no template clones: delivered under either SA
    f = Peers(cfg).frame(rng, (False, "203.0.113.5", "tcp", 40020, 80), "A", name="alice-in",
                         kind="fresh")
    mv = model.process(f, "in", 3 * TICK_NS)
    assert (mv.action, mv.sa, mv.latch) == ("forward", "alice-in", None), mv
    no_sa = regs.DROP_MALFORMED + 4 * REASON_CODES["no_sa"]

    async def first_pass():
        p1 = await tb.frame(True, f, 3)
        assert (p1["action"], p1["sa_valid"], p1["sa"]) == (2, 1, slot), p1
        return p1

    async def second_pass(p1):
        status, inner = decap(model.sad.by_name["alice-in"], f, p1["seq"])
        assert status == DecapStatus.OK
        return await tb.frame(True, inner, 3, (p1["sa"], p1["seq"], status, p1["gen"]))

    # replaced between the passes
    p1 = await first_pass()
    await tb.drv.call("apply", replaced)
    assert tb.drv.slots["alice-in"] == slot, tb.drv.slots
    drops_before, fwd_before = await tb.rd(no_sa), await tb.rd(regs.FORWARDED)
    v = await second_pass(p1)
    assert (v["action"], v["reason"]) == (1, REASON_CODES["no_sa"]), v
    assert (v["sa_valid"], v["latch_valid"]) == (0, 0), v
    assert await tb.rd(no_sa) == drops_before + 1
    assert await tb.rd(regs.FORWARDED) == fwd_before
    c = await tb.counters(slot, False)
    assert (c["packets_in"], c["bytes_in"], c["drops"], c["seq"]) == (0, 0, 0, new_sa.seq), c
    p_new = await tb.frame(True, f, 3)      # alice's frame under bob's SPI/key: a first pass
    assert p_new["action"] == 2 and p_new["gen"] != p1["gen"], (p1, p_new)   # sees the new one

    # control: the original SA back (rewritten: a fresh window), the same frame;
    # between its passes the driver applies the same configuration again (SPD,
    # templates, PAD rewritten, re-check; the SAD untouched): delivered
    await tb.drv.call("apply", cfg)
    assert tb.drv.slots["alice-in"] == slot, tb.drv.slots
    p2 = await first_pass()
    commits = await tb.rd(regs.TBL_COMMITS)
    await tb.drv.call("apply", cfg)
    assert await tb.rd(regs.TBL_COMMITS) > commits
    # and a first pass on another SA (another slot, another generation) in
    # between: the second pass reads its own slot's generation, not the one
    # the last first pass read
    fb = Peers(cfg).frame(rng, (False, "203.0.113.5", "tcp", 40021, 80), "A", name="bob-in",
                          kind="fresh")
    pb = await tb.frame(True, fb, 3)
    assert pb["action"] == 2 and pb["sa"] != slot and pb["gen"] != p2["gen"], (pb, p2)
    v = await second_pass(p2)
    assert (v["action"], v["sa_valid"], v["sa"]) == (0, 1, slot), v
    c = await tb.counters(slot, False)
    assert (c["packets_in"], c["drops"], c["seq"]) == (1, 0, p2["seq"]), c
    dut._log.info("replaced between the passes: no_sa (generation %d -> %d); control delivered "
                  "(generation %d)", p1["gen"], p_new["gen"], p2["gen"])


@cocotb.test()
async def second_pass_fails_closed(dut):
    """A second pass the crypto path refused, or one naming no SA, is
    dropped on its own reason and counted there: ICV_FAIL -> `icv`,
    MALFORMED and the statuses the core does not know (5, 6, 7) ->
    `malformed`, an SA index at or past the SAD's capacity -> `no_sa` with
    no SA in the verdict. Nothing is forwarded; alice's SA counts the five
    it was named in as drops; the same second pass with status OK is then
    delivered."""
    from latchnic.hw.policy.core import DecapStatus

    from crypto_path import decap
    from peer_gen import Peers

    cfg = load_config(os.environ["CORE_CONFIG"])
    model = ModelDevice.from_config(cfg)
    tb = await TB.programmed(dut, 19, cfg)
    slot = tb.drv.slots["alice-in"]
    sas = await tb.rd(regs.CAPS_TABLES) & 0xFFFF
    f = Peers(cfg).frame(random.Random(19), (False, "203.0.113.5", "tcp", 40050, 80), "A",
                         name="alice-in", kind="fresh")
    p1 = await tb.frame(True, f, 3)
    assert (p1["action"], p1["sa"]) == (2, slot), p1
    status, inner = decap(model.sad.by_name["alice-in"], f, p1["seq"])
    assert status == DecapStatus.OK
    forwarded = await tb.rd(regs.FORWARDED)
    cases = [(slot, DecapStatus.ICV_FAIL, "icv"), (slot, DecapStatus.MALFORMED, "malformed"),
             (slot, 5, "malformed"), (slot, 6, "malformed"), (slot, 7, "malformed"),
             (sas, DecapStatus.OK, "no_sa"), (0xFFFF, DecapStatus.OK, "no_sa"),
             # alice's slot plus the capacity: the same SA RAM word if the
             # index were cut to the RAM's address bits (same generation)
             (sas + slot, DecapStatus.OK, "no_sa")]
    for sa_index, st, reason in cases:
        reg = regs.DROP_MALFORMED + 4 * REASON_CODES[reason]
        before = await tb.rd(reg)
        v = await tb.frame(True, inner, 3, (sa_index, p1["seq"], st, p1["gen"]))
        assert (v["action"], v["reason"]) == (1, REASON_CODES[reason]), (sa_index, st, v)
        if reason == "no_sa":
            assert v["sa_valid"] == 0, v
        assert await tb.rd(reg) == before + 1, (sa_index, st, reason)
    assert await tb.rd(regs.FORWARDED) == forwarded
    c = await tb.counters(slot, False)
    # the model counts a drop on every SA it found (icv, malformed); an
    # unknown status is refused as `malformed` is: 5 drops, no packets
    assert (c["packets_in"], c["drops"]) == (0, 5), c
    v = await tb.frame(True, inner, 3, (slot, p1["seq"], DecapStatus.OK, p1["gen"]))
    assert (v["action"], v["sa_valid"], v["sa"]) == (0, 1, slot), v
    dut._log.info("second pass: icv, malformed (statuses 2, 5, 6, 7), no_sa (index %d, %d, 0xffff) "
                  "dropped and counted; status OK delivered", sas, sas + slot)


@cocotb.test()
async def duplicate_in_crypto_path(dut):
    """Two copies of one ESP frame both pass the first pass (the window moves
    only after the ICV) and come back from the crypto path one after the
    other: the first is delivered, the second dropped `replay` by the
    second pass's re-check, while that pass's latch, SPD and template
    lookups are still in flight (a frame with ports issues them before its
    window steps). The frames after it must be decided on their own
    lookups: an outbound SYN that clones a latch (the next frame, so no
    verdict in between could take the old answers), then a fresh frame of
    the flow delivered, both as the model decides them."""
    from crypto_path import decap
    from peer_gen import Peers
    from traffic_gen import frame as make_frame

    cfg = load_config(os.environ["CORE_CONFIG"])
    model = ModelDevice.from_config(cfg)
    tb = await TB.programmed(dut, 13, cfg)
    slots = tb.drv.slots
    rng = random.Random(13)
    peers = Peers(cfg)
    fl = (False, "203.0.113.5", "tcp", 40030, 80)
    f = peers.frame(rng, fl, "A", name="alice-in", kind="fresh")
    replay_reg = regs.DROP_MALFORMED + 4 * REASON_CODES["replay"]
    replays = await tb.rd(replay_reg)

    p1a = await tb.frame(True, f, 3)
    p1b = await tb.frame(True, f, 3)
    assert p1a["action"] == p1b["action"] == 2 and p1a["seq"] == p1b["seq"], (p1a, p1b)
    status, inner = decap(model.sad.by_name["alice-in"], f, p1a["seq"])
    first = await tb.frame(True, inner, 3, (p1a["sa"], p1a["seq"], status, p1a["gen"]))
    second = await tb.frame(True, inner, 3, (p1b["sa"], p1b["seq"], status, p1b["gen"]))
    mv_first, mv_second = model.process(f, "in", 3 * TICK_NS), model.process(f, "in", 3 * TICK_NS)
    assert (mv_first.action, mv_second.action, mv_second.reason) == ("forward", "drop", "replay")
    assert first["action"] == 0 and (first["sa_valid"], first["sa"]) == (1, slots["alice-in"]), first
    assert (second["action"], second["reason"]) == (1, REASON_CODES["replay"]), second
    assert await tb.rd(replay_reg) == replays + 1

    # the next frames: their own lookups, not the dropped frame's answers.
    # First one that starts with its lookups (no frame in between whose
    # verdict could take the old answers)
    syn = make_frame(rng, "out", (False, "203.0.113.5", "tcp", 40031, 443), "S")
    mv = model.process(syn, "out", 4 * TICK_NS)
    hv = await tb.frame(False, syn, 4)
    assert mv.action == "forward" and mv.latch is not None, mv
    assert (hv["action"], hv["latch_valid"], hv["latch"]) == (0, 1, mv.latch), (mv, hv)
    f2 = peers.frame(rng, fl, "A", name="alice-in", kind="fresh")
    mv = model.process(f2, "in", 5 * TICK_NS)
    _p, hv = await tb.inbound(model, slots, f2, 5)
    assert (mv.action, hv["action"], hv["sa"]) == ("forward", 0, slots["alice-in"]), (mv, hv)
    dut._log.info("duplicate in the crypto path: delivered once, then replay; next frames decided "
                  "on their own lookups (latch slot %d)", hv["latch"])


class _SaCommits:
    """The core programmed from CORE_CONFIG, its `alice-in` SA's slot, and
    the host's raw TBL_COMMIT writes on it (not the driver's): a commit of
    the stage with any op, a read back of the SA, a frame under its SPI."""

    @classmethod
    async def open(cls, dut, seed: int):
        from peer_gen import Peers

        self = cls()
        cfg = load_config(os.environ["CORE_CONFIG"])
        self.tb = await TB.programmed(dut, seed, cfg)
        self.slot = self.tb.drv.slots["alice-in"]
        self.frame = Peers(cfg).frame(random.Random(seed), (False, "203.0.113.5", "tcp", 40000 + seed, 80),
                                      "A", name="alice-in", kind="fresh")
        return self

    async def commit(self, op: int, value: int = 0):
        for addr, v in commit_writes("sad", self.slot, value, op=op):
            await self.tb.wr(addr, v)

    async def read_sa(self) -> list[int]:
        await self.commit(READ)
        return [await self.tb.rd(regs.TBL_READ0 + 4 * i) for i in range(regs.READ_WORDS)]

    async def first_pass(self) -> dict:
        return await self.tb.frame(True, self.frame, 3)


ALL_STAGED = (1 << 32 * regs.STAGE_WORDS) - 1


@cocotb.test()
async def stray_release_changes_nothing(dut):
    """TBL_COMMIT op 2 (release) belongs to the latch table. Sent to the SAD
    with other words staged, it must change nothing: the SA reads back as it
    was, a frame's first pass still says CRYPTO under it with the same
    generation; TBL_COMMITS counts the command."""
    sa = await _SaCommits.open(dut, 17)
    before = await sa.read_sa()
    p1 = await sa.first_pass()
    assert (p1["action"], p1["sa"]) == (2, sa.slot), p1
    commits = await sa.tb.rd(regs.TBL_COMMITS)
    await sa.commit(RELEASE, ALL_STAGED)
    assert await sa.tb.rd(regs.TBL_COMMITS) == commits + 1
    assert await sa.read_sa() == before
    p2 = await sa.first_pass()
    assert (p2["action"], p2["sa"], p2["gen"]) == (2, sa.slot, p1["gen"]), (p1, p2)


@cocotb.test()
async def clear_ignores_stage(dut):
    """TBL_COMMIT op 1 (clear) writes zeros whatever is staged: the driver
    stages zeros for it, so only a host that does not is left to check. An
    SA cleared with every stage bit set reads back 0 (not valid), and the
    frame its SPI carried is no longer sent to the crypto path."""
    sa = await _SaCommits.open(dut, 19)
    p1 = await sa.first_pass()
    assert (p1["action"], p1["sa"]) == (2, sa.slot), p1
    await sa.commit(CLEAR, ALL_STAGED)
    words = await sa.read_sa()
    assert words == [0] * regs.READ_WORDS, [hex(w) for w in words]
    p2 = await sa.first_pass()
    assert p2["action"] == 1, p2
