"""The control register map of the policy/latching core, declared once.

Everything else is generated from `REGMAP` below:

* the gateware address decoder (`RegisterFile`, used behind `hw/axil.py`),
* the driver's constants: `hw/generated/regmap.json` and `hw/generated/regs.py`,
* the register reference `docs/registers.md`.

Regenerate the files after changing this module:

    python -m latchnic.hw.regmap --write

`tests/hw/test_regmap.py` fails when a generated file differs from what this
module would write (`--check` does the same from the command line).

Conventions
-----------
* 32-bit registers, byte addresses, word aligned. Access is `ro` (hardware
  drives the value), `rw` (host-owned, reads back what was written) or `wo`
  (write-only: reads return 0; key material and command registers).
* An access to an address that holds no register answers SLVERR.
* Offset 0 holds the identification block: magic, version, capabilities
  (table sizes, algorithms, replay window). Its values are build parameters
  (`Params`); the generated files show the defaults.
* Tables are never written in place. The host fills the staging registers
  (`TBL_STAGE*`, and the write-only `TBL_KEY*` for SAD keys), then writes
  `TBL_COMMIT` once with the table number and entry index: the whole entry
  is copied in one clock cycle, so the datapath never sees half an entry
  (tear-free). Keys enter only through `TBL_KEY*` and no register reads
  them back.
* The SPD is double-buffered per direction: commits to `spd_out` / `spd_in`
  write that direction's shadow bank, and TBL_COMMIT op 5 (swap) makes the
  shadow the active bank in one cycle between frames, so a whole ordered
  rule list changes at once (the driver writes the complete new list, then
  swaps).
* Counters per drop reason are generated from `latchnic.sim.drops.REASONS`,
  so a reason's register index is its code in the model and in the drop logs.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib.memory import Memory
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from latchnic.sim.drops import REASONS

MAGIC = 0x4C4E4943          # "LNIC"
VERSION_MAJOR = 1          # 1: SPD writes go to a shadow bank, live after TBL_COMMIT op 5 (swap):
VERSION_MINOR = 0          # a 0.x driver's rules would never go live (0.2: CAPS_COUNTERS)

ALGORITHMS = ("aes-gcm-128", "aes-gcm-256", "gmac-128", "gmac-256")

# Table numbers written to TBL_COMMIT.table
TABLES = {
    "spd_out": 0,      # outbound SPD rules, priority = index
    "spd_in": 1,       # inbound SPD rules
    "sad": 2,          # SA parameters (keys through TBL_KEY*)
    "pad": 3,          # peer claims
    "template": 4,     # latch templates
    "latch": 5,        # host-side latch release (op release) and read-back (op read)
}
STAGE_WORDS = 24       # 768 bits: the widest entry (an SPD rule with two v6 ranges)
KEY_WORDS = 9          # 256-bit key + 32-bit salt
READ_WORDS = 12        # 384 bits: a latch entry and its live bit (TBL_COMMIT op read)
EVENT_WORDS = 4


@dataclass(frozen=True)
class Params:
    """Build parameters that the ID block reports."""
    sas: int = 64
    spd_rules: int = 64
    peers: int = 64
    templates: int = 16
    latch_capacity: int = 1024
    latch_ways: int = 4
    latch_capacity_v6: int = 0     # 0: one table; else the last slots are an IPv6 table (docs/model.md)
    replay_window_max: int = 1024
    replay_window_default: int = 64
    event_depth: int = 64
    spd_rows: int = 2          # RAM rows per SPD rule (2: half the EBRs, 2 cycles per rule)
    pad_claims: int = 64       # PAD claim entries (address ranges), all peers together
    # per-latch counters (CTR_READ latch = 1): (latch_capacity x 192 bits of RAM; 11 EBRs for
    # 1024 latches, 187 for 17408): off, CAPS_COUNTERS.latch = 0 and the driver reports
    # them absent (docs/policy-core.md, "Block RAM budget")
    latch_counters: bool = True
    sad_rows: int = 4          # RAM rows per SAD selector entry (64 x 293 bits: 9 EBRs in 1 row, 3 in 4)
    pad_rows: int = 4          # RAM rows per PAD claim (64 x 266 bits: 8 EBRs in 1 row, 2 in 4)


@dataclass(frozen=True)
class Field:
    name: str
    lsb: int
    width: int
    desc: str

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lsb


@dataclass(frozen=True)
class Register:
    name: str
    offset: int
    access: str                  # ro | rw | wo
    desc: str
    fields: tuple[Field, ...] = ()
    reset: int = 0               # rw: value after reset
    const: str | None = None     # ro constants: the Params attribute / function that gives the value
    group: str = ""
    # ro registers of one array (contiguous words) are read through one indexed
    # port pair, `<array>_index` out and `<array>_data` in, not one port each
    array: str | None = None

    def __post_init__(self):
        assert self.access in ("ro", "rw", "wo"), self.access
        assert self.offset % 4 == 0, self.name
        used = 0
        for f in self.fields:
            assert f.lsb + f.width <= 32, (self.name, f.name)
            assert not used & f.mask, (self.name, f.name)
            used |= f.mask

    @property
    def port(self) -> str:
        return self.name.lower()


def _caps_values(p: Params) -> dict[str, int]:
    alg_bits = (1 << len(ALGORITHMS)) - 1
    return {
        "ID": MAGIC,
        "VERSION": (VERSION_MAJOR << 16) | VERSION_MINOR,
        "CAPS_TABLES": p.sas | (p.spd_rules << 16),
        "CAPS_PAD": p.peers | (p.templates << 16),
        "CAPS_LATCH": (p.latch_capacity | ((p.latch_ways.bit_length() - 1) << 24)
                       | (p.latch_capacity_v6.bit_length() << 28)),
        "CAPS_CRYPTO": alg_bits | (0b11 << 4) | (0b11 << 6) | (0b111 << 8) | (1 << 11),
        "CAPS_REPLAY": p.replay_window_max | (p.replay_window_default << 16),
        "CAPS_MISC": len(REASONS) | (p.event_depth << 8) | (STAGE_WORDS << 24),
        "CAPS_CLAIMS": p.pad_claims,
        "CAPS_COUNTERS": 1 | (int(p.latch_counters) << 1),
    }


def _build() -> tuple[Register, ...]:
    R = Register
    F = Field
    regs: list[Register] = []
    g = "Identification and capabilities"
    regs += [
        R("ID", 0x000, "ro", "Magic number 0x4C4E4943 (\"LNIC\"): the driver checks it first.",
          (F("magic", 0, 32, "0x4C4E4943"),), const="ID", group=g),
        R("VERSION", 0x004, "ro", "Register map version; the major number changes on incompatible edits.",
          (F("minor", 0, 16, "minor version"), F("major", 16, 16, "major version")),
          const="VERSION", group=g),
        R("CAPS_TABLES", 0x008, "ro", "Table sizes of the build.",
          (F("sas", 0, 16, "SAD entries"), F("spd_rules", 16, 16, "SPD rules per direction")),
          const="CAPS_TABLES", group=g),
        R("CAPS_PAD", 0x00C, "ro", "PAD and template table sizes.",
          (F("peers", 0, 16, "PAD entries (peer indexes 0..peers-1)"),
           F("templates", 16, 16, "latch template entries")), const="CAPS_PAD", group=g),
        R("CAPS_LATCH", 0x010, "ro", "Latch table geometry: capacity slots in sets of 2^log2_ways ways "
          "(docs/model.md, Latch table).",
          (F("capacity", 0, 24, "latch slots, both IP versions"),
           F("log2_ways", 24, 4, "log2 of the ways per set"),
           F("v6_log2p1", 28, 4, "0: one table for both IP versions; n > 0: split, the last "
             "2^(n-1) slots are the IPv6 table, the slots before them the IPv4 table")),
          const="CAPS_LATCH", group=g),
        R("CAPS_CRYPTO", 0x014, "ro", "Algorithms and formats the datapath implements.",
          (F("algs", 0, 4, "bit i: " + ", ".join(f"{i} {a}" for i, a in enumerate(ALGORITHMS))),
           F("protos", 4, 2, "bit 0 ESP, bit 1 AH"),
           F("modes", 6, 2, "bit 0 transport, bit 1 tunnel"),
           F("icv", 8, 3, "bit 0 ICV 8, bit 1 ICV 12, bit 2 ICV 16 bytes"),
           F("esn", 11, 1, "extended sequence numbers (RFC 4304)")),
          const="CAPS_CRYPTO", group=g),
        R("CAPS_REPLAY", 0x018, "ro", "Anti-replay window sizes (packets).",
          (F("max", 0, 16, "largest window the build supports"),
           F("default", 16, 16, "window after reset")), const="CAPS_REPLAY", group=g),
        R("CAPS_MISC", 0x01C, "ro", "Other sizes.",
          (F("reasons", 0, 8, "number of drop reasons (counters DROP_*)"),
           F("event_depth", 8, 16, "event FIFO entries"),
           F("stage_words", 24, 8, "TBL_STAGE words")), const="CAPS_MISC", group=g),
        R("SCRATCH", 0x020, "rw", "Free for the driver (bus test).", (F("value", 0, 32, ""),), group=g),
        R("CAPS_CLAIMS", 0x028, "ro", "PAD claims table size (TBL_COMMIT table `pad`).",
          (F("claims", 0, 16, "claim entries (address ranges) for all peers together"),),
          const="CAPS_CLAIMS", group=g),
        R("CAPS_COUNTERS", 0x02C, "ro", "Which per-entry counters the build keeps (CTR_READ).",
          (F("sa", 0, 1, "1: per-SA counters"),
           F("latch", 1, 1, "1: per-latch counters; 0: the build has none (CTR_READ with latch = 1 "
             "reads 0, which is no count: the driver reports them absent)")),
          const="CAPS_COUNTERS", group=g),
    ]
    g = "Control"
    regs += [
        R("CTRL", 0x040, "rw", "Datapath control.",
          (F("enable", 0, 1, "reserved for a datapath enable (not used by the gateware yet)"),
           F("clear_counters", 1, 1, "1: hold every counter at 0 (nothing counts); writing it from 0 to "
             "1 also clears the per-SA and per-latch counters (CTR_READ): a sweep of max(SAs, latch "
             "slots with counters) cycles between frames, the bus held until it is done "
             "(ModelDevice.clear_counters)"),
           F("timer_events", 2, 1, "1: before each frame, free every latch whose deadline passed with "
             "a `timer` event (cause 4), in deadline then slot order as the model; a sweep of the "
             "latch table per distinct expired deadline (plus one), only when a deadline is due. "
             "0: expired latches stop being live without an event")), group=g),
        R("STATUS", 0x044, "ro", "Datapath status.",
          (F("busy", 0, 1, "a packet is in the pipeline"),
           F("commit_busy", 1, 1, "a table commit is in progress")), group=g),
        R("IRQ_ENABLE", 0x048, "rw", "Interrupt enable.",
          (F("events", 0, 1, "raise the interrupt while the event FIFO is not empty"),
           F("overflow", 1, 1, "raise it when events were lost")), group=g),
        R("IRQ_STATUS", 0x04C, "ro", "Interrupt causes (level; cleared by draining the FIFO).",
          (F("events", 0, 1, "event FIFO not empty"), F("overflow", 1, 1, "events were lost")), group=g),
        R("REPLAY_WINDOW", 0x050, "rw", "Device anti-replay window in packets (64..CAPS_REPLAY.max); "
          "the driver stages each SA's window with its SAD entry, the gateware reads it from there.",
          (F("size", 0, 16, ""),), reset=64, group=g),
        R("TICK_DIV", 0x054, "rw", "Clock cycles per timer tick (the latch timers count ticks); a write starts a new tick period.",
          (F("cycles", 0, 32, ""),), reset=125_000, group=g),
        R("TIME_WAIT", 0x058, "rw", "TCP latch TIME_WAIT hold, in ticks.",
          (F("ticks", 0, 32, ""),), reset=60_000, group=g),
        R("UDP_IDLE", 0x05C, "rw", "UDP latch idle expiry, in ticks.",
          (F("ticks", 0, 32, ""),), reset=30_000, group=g),
        R("NOW", 0x060, "ro", "Timer tick counter (a board top feeds it to the datapath as the "
          "frames' `meta.now`, the clock of the latch timers).",
          (F("ticks", 0, 32, ""),), group=g),
    ]
    g = "Table staging (tear-free updates)"
    for i in range(STAGE_WORDS):
        regs.append(R(f"TBL_STAGE{i}", 0x100 + 4 * i, "rw",
                      f"Staged entry, bits {32 * i + 31}..{32 * i} (layouts: docs/policy-core.md).",
                      (F("bits", 0, 32, ""),), group=g))
    for i in range(KEY_WORDS):
        regs.append(R(f"TBL_KEY{i}", 0x180 + 4 * i, "wo",
                      f"Staged SA key material word {i} (key || salt, big-endian words); never readable.",
                      (F("bits", 0, 32, ""),), group=g))
    regs += [
        R("TBL_COMMIT", 0x1C0, "wo", "Copy the staged entry into a table in one cycle.",
          (F("index", 0, 16, "entry index"),
           F("table", 16, 4, "table: " + ", ".join(f"{v} {k}" for k, v in TABLES.items())),
           F("op", 24, 3, "0 write, 1 clear (entry invalid), 2 release (latch table: the slot is "
             "freed, a live latch's event has cause release; other tables: nothing changes), 3 re-check every latch (table and "
             "index ignored), 4 read entry `index` of the latch table or the SAD into `TBL_READ*` "
             "(other tables read 0), 5 swap (spd_out / spd_in: the direction's shadow bank, which "
             "writes and clears of that table fill, becomes the bank lookups read, in one cycle "
             "between frames, and the old active bank the shadow; index ignored; other tables: "
             "nothing changes)")), group=g),
        R("TBL_COMMITS", 0x1C4, "ro", "Number of commits done since reset (the driver polls it). "
          "Release (table latch), re-check (op 3), read (op 4) and swap (op 5) count when they are done and "
          "hold the bus until then, so an access after them sees their result.",
          (F("count", 0, 32, ""),), group=g),
    ]
    for i in range(READ_WORDS):
        regs.append(R(f"TBL_READ{i}", 0x1D0 + 4 * i, "ro",
                      f"Entry read by TBL_COMMIT op 4, bits {32 * i + 31}..{32 * i}: latch table "
                      "`program.latch_read_layout` (live at the last frame's time, then the entry), "
                      "SAD `program.sa_layout` (with an outbound SA's last sequence number sent).",
                      (F("bits", 0, 32, ""),), group=g))
    g = "Latch events"
    regs += [
        R("EVT_LEVEL", 0x200, "ro", "Events waiting in the FIFO.",
          (F("count", 0, 16, ""), F("lost", 16, 16, "events dropped because the FIFO was full")),
          group=g),
    ]
    for i in range(EVENT_WORDS):
        regs.append(R(f"EVT_DATA{i}", 0x204 + 4 * i, "ro",
                      f"Head event, word {i} (layout: docs/policy-core.md).", (F("bits", 0, 32, ""),),
                      group=g))
    regs.append(R("EVT_POP", 0x214, "wo", "Write any value: remove the head event.", (), group=g))
    g = "Counters"
    regs += [
        R("FRAMES_OUT", 0x300, "ro", "Frames from the host (outbound).", (F("count", 0, 32, ""),), group=g),
        R("FRAMES_IN", 0x304, "ro", "Frames from the wire (inbound).", (F("count", 0, 32, ""),), group=g),
        R("FORWARDED", 0x308, "ro", "Frames forwarded (both directions).", (F("count", 0, 32, ""),), group=g),
        R("NON_IP", 0x30C, "ro", "Non-IP frames passed unchanged.", (F("count", 0, 32, ""),), group=g),
    ]
    for code, (reason, text) in enumerate(REASONS.items()):
        regs.append(R(f"DROP_{reason.upper()}", 0x400 + 4 * code, "ro",
                      f"Drops with reason code {code} `{reason}`: {text}.",
                      (F("count", 0, 32, ""),), group=g, array="drop"))
    g = "Per-SA and per-latch counters"
    regs += [
        R("CTR_READ", 0x500, "wo", "Copy the counters of one SA or latch into CTR_*: the core copies "
          "them between frames and holds the bus until done, so the next read sees them. An SA "
          "counts in the direction it protects (inbound SA: *_IN, outbound SA: *_OUT). Counters "
          "restart at 0 when the SAD entry is written and when a latch is cloned into the slot, and "
          "CTRL.clear_counters clears them all. An index outside the table, and any latch in a build "
          "without per-latch counters (CAPS_COUNTERS.latch = 0), reads 0.",
          (F("index", 0, 16, "SAD slot or latch slot"),
           F("latch", 16, 1, "0: SA counters, 1: latch counters")), group=g),
        R("CTR_PACKETS_IN", 0x504, "ro", "Inbound packets delivered (decapsulated) by the SA / on the latch.",
          (F("count", 0, 32, ""),), group=g),
        R("CTR_PACKETS_OUT", 0x508, "ro", "Outbound packets sent (encapsulated) by the SA / on the latch.",
          (F("count", 0, 32, ""),), group=g),
        R("CTR_BYTES_IN_LO", 0x50C, "ro", "Inbound inner IP payload bytes, bits 31..0 (48-bit count).",
          (F("count", 0, 32, ""),), group=g),
        R("CTR_BYTES_IN_HI", 0x510, "ro", "Inbound inner IP payload bytes, bits 47..32.",
          (F("count", 0, 16, ""),), group=g),
        R("CTR_BYTES_OUT_LO", 0x514, "ro", "Outbound IP payload bytes before encapsulation, bits 31..0.",
          (F("count", 0, 32, ""),), group=g),
        R("CTR_BYTES_OUT_HI", 0x518, "ro", "Outbound IP payload bytes before encapsulation, bits 47..32.",
          (F("count", 0, 16, ""),), group=g),
        R("CTR_DROPS", 0x51C, "ro", "Frames dropped that named this SA / this latch (every reason; "
          "the DROP_* registers count per reason).", (F("count", 0, 32, ""),), group=g),
        R("CTR_SEQ_LO", 0x520, "ro", "SA only: outbound, the last sequence number sent; inbound, the "
          "anti-replay window top (highest number accepted); bits 31..0. 0 for a latch.",
          (F("seq", 0, 32, ""),), group=g),
        R("CTR_SEQ_HI", 0x524, "ro", "SA only: bits 63..32 of CTR_SEQ_LO's number (ESN).",
          (F("seq", 0, 32, ""),), group=g),
    ]
    return tuple(regs)


REGMAP: tuple[Register, ...] = _build()
BY_NAME = {r.name: r for r in REGMAP}
ADDR_BITS = 12          # 4 KiB window


def _check_unique():
    seen = {}
    for r in REGMAP:
        assert r.offset not in seen, (r.name, seen.get(r.offset))
        assert r.offset < (1 << ADDR_BITS), r.name
        seen[r.offset] = r.name


_check_unique()


# ---------------------------------------------------------------- gateware

class RegBus(wiring.Signature):
    """The simple register bus between the AXI4-Lite slave and the decoder:
    one access per request. The master puts `addr`, `w_data` and `w_strb` on
    the bus at least ADDR_SETUP cycles before the cycle of `w_en` / `r_en`
    and holds them through it (the decoder registers its address decode);
    `err` is valid in the cycle of `w_en` / `r_en`. Read data is valid while
    `r_valid` is high (READ_LATENCY cycles after `r_en`; the slave waits for
    it)."""

    def __init__(self):
        super().__init__({
            "addr": Out(ADDR_BITS),
            "w_en": Out(1), "w_data": Out(32), "w_strb": Out(4),
            "r_en": Out(1), "r_data": In(32), "r_valid": In(1),
            "err": In(1),        # the address holds no register (valid with w_en / r_en)
        })


ADDR_SETUP = 2          # addr on the bus -> w_en / r_en: the decode is registered, and the rw
                        # lanes' first select a cycle before the access (RegisterFile)
READ_LATENCY = 2        # r_en -> r_valid: two registered mux levels (RegisterFile)
GROUP_BITS = 4          # level 1 selects within groups of 16 words (addr[2:6])


def _mux_tree(items, sel):
    """Binary mux tree over `items` (2**len(sel) leaves) indexed by `sel`.
    A leaf is a value, or None for an address without a register: its data
    is don't-care (the access answers SLVERR), so a half that is all None
    costs no mux at all. Returns None when every leaf is None."""
    if len(items) == 1:
        return items[0]
    half = len(items) // 2
    lo, hi = _mux_tree(items[:half], sel[:-1]), _mux_tree(items[half:], sel[:-1])
    if lo is None or hi is None or lo is hi:       # same source (an array's data)
        return hi if lo is None else lo
    return Mux(sel[-1], hi, lo)


def _arrays(regmap) -> dict[str, tuple[int, int]]:
    """array name -> (first word, number of words)"""
    out = {}
    for r in regmap:
        if r.array:
            first, n = out.get(r.array, (r.offset >> 2, 0))
            assert r.offset >> 2 == first + n, (r.name, "array words must be contiguous")
            out[r.array] = (first, n + 1)
    return out


def _port_members(regmap) -> dict:
    members = {}
    for name, (_first, n) in _arrays(regmap).items():
        members[name + "_index"] = Out(range(max(n, 2)))
        members[name + "_data"] = In(32)
    for r in regmap:
        if r.array:
            assert r.access == "ro" and r.const is None, r.name
        elif r.access == "ro" and r.const is None:
            members[r.port] = In(32)
        elif r.access in ("rw", "wo"):
            members[r.port] = Out(32, init=r.reset)
            members[r.port + "_stb"] = Out(1)
    return members


class RegisterFile(wiring.Component):
    """Address decoder generated from REGMAP.

    Ports: `bus` (RegBus, in) and one port per register: `ro` registers are
    inputs the datapath drives (an array's registers, e.g. DROP_*: one
    `<array>_data` input for the word `<array>_index` selects, the bus
    address registered: the datapath keeps them in a RAM and answers within
    the cycle); `rw`/`wo` registers are outputs holding the
    last written value plus a one-cycle `<name>_stb` on every write (a `wo`
    register's value is never readable). ID-block constants live here."""

    def __init__(self, params: Params = Params(), regmap=REGMAP):
        self.params = params
        self.regmap = regmap
        super().__init__({"bus": In(RegBus()), **_port_members(regmap)})

    def elaborate(self, platform):
        assert ADDR_SETUP >= 2, ("the address decode below is one register stage, the rw lanes select\n"
                                 "another before the access")
        m = Module()
        consts = _caps_values(self.params)
        bus = self.bus
        word = bus.addr[2:]
        rw_regs = [r for r in self.regmap if r.access == "rw"]
        writable = [r for r in self.regmap if r.access in ("rw", "wo")]

        # The address decode is registered every cycle from the address the
        # master set up ADDR_SETUP cycles before w_en / r_en, so at the access
        # only flip-flops feed err, the write enables and the read muxes
        # (timing: the bus address fanned out through the decode to ~600
        # register CEs, the read trees and the rw shadow within the access
        # cycle). One write select per rw/wo register: its CE is
        # sel & w_en & strobe.
        hit, is_rw = Signal(reset_less=True), Signal(reset_less=True)
        rw_idx = Signal(range(max(len(rw_regs), 2)), reset_less=True)
        # which byte lanes of each rw register were written since reset
        written = Signal(4 * len(rw_regs))
        sel = {r.name: Signal(name=f"{r.port}_sel", reset_less=True) for r in writable}
        m.d.sync += [hit.eq(0), is_rw.eq(0), rw_idx.eq(0), *(s.eq(0) for s in sel.values())]
        with m.Switch(word):
            for r in self.regmap:
                with m.Case(r.offset >> 2):
                    m.d.sync += hit.eq(1)
                    if r.name in sel:
                        m.d.sync += sel[r.name].eq(1)
                    if r.access == "rw":
                        i = rw_regs.index(r)
                        m.d.sync += [is_rw.eq(1), rw_idx.eq(i)]
        m.d.comb += bus.err.eq(~hit)

        # `rw` registers are written only from the bus: a LUT-RAM shadow
        # copy (byte lanes, as the strobes) answers their reads through one
        # address port, so they are no mux inputs. A register not written
        # since reset reads its reset value (`written`), as its flip-flops
        # do: one bit per byte lane, a strobed byte sits next to reset bytes.
        shadow = Memory(shape=32, depth=len(rw_regs), init=[])
        m.submodules.rw_shadow = shadow
        sh_w = shadow.write_port(granularity=8)
        sh_r = shadow.read_port(domain="comb")
        m.d.comb += [sh_w.addr.eq(rw_idx), sh_w.data.eq(bus.w_data), sh_r.addr.eq(rw_idx)]
        with m.If(bus.w_en & is_rw):
            m.d.comb += sh_w.en.eq(bus.w_strb)
        for r in writable:
            stb = getattr(self, r.port + "_stb")
            m.d.sync += stb.eq(0)
            with m.If(bus.w_en & sel[r.name]):
                m.d.sync += stb.eq(1)
                for b in range(4):
                    with m.If(bus.w_strb[b]):
                        m.d.sync += getattr(self, r.port)[8 * b:8 * b + 8].eq(bus.w_data[8 * b:8 * b + 8])
                if r.access == "rw":
                    lanes = written.word_select(rw_regs.index(r), 4)
                    m.d.sync += lanes.eq(lanes | bus.w_strb)

        # reads: two registered levels instead of one decoder case per
        # register (a one-hot AND-OR over ~90 sources of 32 bits took ~4000
        # LUT4 on the ECP5). Level 1 samples at r_en; level 2 picks a level-1
        # result a cycle later (r_valid).
        # the shadow's word registered every cycle (timing: the LUT-RAM read
        # alone in the r_en cycle); level 2 picks lanes from it or the reset
        # value a cycle later. The lanes written and the reset value are
        # registered from rw_idx alongside it, not in the decode (timing:
        # 70f03fc's 25F report, address -> case decode -> lane select, six
        # LUTs); a cycle after r_en they hold the access's. The lanes take
        # two selects: within groups of 8 registers a cycle before r_en
        # (rw_idx holds the access's from then on: ADDR_SETUP >= 2), the
        # group in the r_en cycle (timing: 9b8761d's report, one 31:1
        # select was five LUTs, -0.15 ns)
        sh_q = Signal(32, reset_less=True)
        rw_lanes = Signal(4, reset_less=True)
        rw_reset = Signal(32, reset_less=True)
        resets = Array(Const(r.reset, 32) for r in rw_regs)
        n_grp = (len(rw_regs) + 7) // 8
        lanes_pad = Cat(written, Const(0, 4 * (8 * n_grp - len(rw_regs))))
        lanes_grp = Signal(4 * n_grp, reset_less=True)
        rw_lo, rw_hi = rw_idx.as_unsigned()[:3], rw_idx.as_unsigned()[3:]
        m.d.sync += [lanes_grp.eq(Cat(*(lanes_pad[32 * g:32 * g + 32].word_select(rw_lo, 4)
                                        for g in range(n_grp)))),
                     rw_lanes.eq(lanes_grp.word_select(rw_hi, 4) if n_grp > 1 else lanes_grp),
                     sh_q.eq(sh_r.data), rw_reset.eq(resets[rw_idx])]
        rw_data = Cat(*(Mux(rw_lanes[b], sh_q[8 * b:8 * b + 8], rw_reset[8 * b:8 * b + 8])
                        for b in range(4)))

        # every other readable register: one 16:1 tree per populated group
        # of 16 words (addr[2:6]) at level 1, the group (addr[6:]) at level 2
        words = [None] * (1 << (ADDR_BITS - 2))
        for name, (first, n) in _arrays(self.regmap).items():
            # registered like the decode, so valid from the r_en cycle on; the
            # core's LUT-RAM read of `<array>_data` is asynchronous, so the
            # data follows within that cycle and level 1 samples it at r_en:
            # index flip-flops -> RAM read -> rd_group, no decode in between
            # (DROP_* fill their groups alone: no level-1 mux either)
            index = getattr(self, name + "_index")
            m.d.sync += index.eq(word - first)
            for w in range(first, first + n):
                words[w] = getattr(self, name + "_data")
        for r in self.regmap:
            if r.array:
                pass
            elif r.access == "ro":
                words[r.offset >> 2] = Const(consts[r.const], 32) if r.const else getattr(self, r.port)
            elif r.access == "wo":
                words[r.offset >> 2] = Const(0, 32)       # write-only: reads 0
        g_size = 1 << GROUP_BITS
        hi = bus.addr[2 + GROUP_BITS:]
        groups = []
        for g in range(0, len(words), g_size):
            if all(w is None for w in words[g:g + g_size]):
                groups.append(None)
            else:
                # the group's own copy of the level-1 select (fan-out
                # replication: one copy fed every group's tree). It is 0
                # unless the address is in the group, whose result alone
                # level 2 uses: no two copies are one flip-flop for yosys's
                # opt_merge
                lo_sel = Signal(GROUP_BITS, name=f"rd_sel{g // g_size}", reset_less=True)
                m.d.sync += lo_sel.eq(Mux(hi == g // g_size, bus.addr[2:2 + GROUP_BITS], 0))
                tree = _mux_tree(words[g:g + g_size], lo_sel)
                g_data = Signal(32, name=f"rd_group{g // g_size}")
                with m.If(bus.r_en):
                    m.d.sync += g_data.eq(tree)
                groups.append(g_data)
        # level 2's selects, loaded every cycle: a cycle after r_en they hold
        # the access's (its address is held through r_en)
        hi_sel, is_rw_r = Signal(len(hi), reset_less=True), Signal(reset_less=True)
        m.d.sync += [hi_sel.eq(hi), is_rw_r.eq(is_rw)]
        r_valid1 = Signal()
        m.d.sync += [r_valid1.eq(bus.r_en), bus.r_valid.eq(r_valid1),
                     bus.r_data.eq(Mux(is_rw_r, rw_data, _mux_tree(groups, hi_sel)))]
        return m


# --------------------------------------------------------- generated files

ROOT = Path(__file__).resolve().parent.parent
JSON_PATH = ROOT / "hw" / "generated" / "regmap.json"
PY_PATH = ROOT / "hw" / "generated" / "regs.py"
MD_PATH = ROOT / "docs" / "registers.md"
HEADER = "generated by `python -m latchnic.hw.regmap --write` from hw/regmap.py; do not edit"


def as_json(params: Params = Params()) -> str:
    consts = _caps_values(params)
    doc = {
        "generated": HEADER,
        "magic": MAGIC, "version": [VERSION_MAJOR, VERSION_MINOR],
        "address_bits": ADDR_BITS,
        "tables": TABLES, "stage_words": STAGE_WORDS, "key_words": KEY_WORDS,
        "reasons": list(REASONS),
        "registers": [
            {"name": r.name, "offset": r.offset, "access": r.access, "desc": r.desc,
             "group": r.group, "reset": consts.get(r.const, r.reset) if r.const else r.reset,
             "fields": [{"name": f.name, "lsb": f.lsb, "width": f.width, "desc": f.desc}
                        for f in r.fields]}
            for r in REGMAP],
    }
    return json.dumps(doc, indent=1) + "\n"


def as_python(params: Params = Params()) -> str:
    lines = [f'"""Register constants of the latchnic policy core ({HEADER})."""', "",
             f"MAGIC = {MAGIC:#010x}", f"VERSION = ({VERSION_MAJOR}, {VERSION_MINOR})",
             f"STAGE_WORDS = {STAGE_WORDS}", f"KEY_WORDS = {KEY_WORDS}", f"READ_WORDS = {READ_WORDS}", "",
             "TABLES = {" + ", ".join(f"{k!r}: {v}" for k, v in TABLES.items()) + "}", "",
             "REASONS = (" + "".join(f"{r!r}, " for r in REASONS) + ")", "", ""]
    for r in REGMAP:
        lines.append(f"{r.name} = {r.offset:#05x}  # {r.access}: {r.desc}")
        for f in r.fields:
            if f.width < 32:
                lines.append(f"{r.name}_{f.name.upper()}_SHIFT = {f.lsb}")
                lines.append(f"{r.name}_{f.name.upper()}_MASK = {f.mask:#010x}")
    lines.append("")
    lines.append("ACCESS = {" + ", ".join(f"{r.name}: {r.access!r}" for r in REGMAP) + "}")
    lines.append("")
    return "\n".join(lines)


def as_markdown(params: Params = Params()) -> str:
    consts = _caps_values(params)
    out = ["# Register reference", "", f"<!-- {HEADER} -->", "",
           "The policy/latching core's AXI4-Lite register map (32-bit registers, byte "
           f"offsets, a {1 << ADDR_BITS}-byte window). Access: `ro` read-only, `rw` "
           "read/write, `wo` write-only (reads return 0). Unmapped addresses answer SLVERR. "
           "Values in the identification block are build parameters; shown here for the "
           "default build.", "",
           "Tables are updated tear-free: fill `TBL_STAGE*` (and `TBL_KEY*` for SA keys), "
           "then write `TBL_COMMIT` once; the entry is copied in one clock cycle. Table "
           "numbers: " + ", ".join(f"{v} = `{k}`" for k, v in TABLES.items()) + ". "
           "Read-back: `TBL_COMMIT` op 4 copies a latch slot (with its live bit) or a SAD "
           "entry into `TBL_READ*` (keys are never read back); the driver's `latches()` and "
           "an outbound SA's sequence number use it (docs/driver.md). The SPD is "
           "double-buffered per direction: `spd_out` / `spd_in` commits write the "
           "direction's shadow bank, and `TBL_COMMIT` op 5 (swap) makes it the bank "
           "lookups read, between frames: the driver writes the whole new rule list of the "
           "direction, then swaps, so no frame is decided against a half-rewritten list "
           "(docs/policy-core.md).", ""]
    group = None
    for r in REGMAP:
        if r.group != group:
            group = r.group
            out += [f"## {group}", "", "| offset | name | access | reset | description |",
                    "|---|---|---|---|---|"]
        reset = consts[r.const] if r.const else r.reset
        fields = "".join(f"<br>`[{f.lsb + f.width - 1}:{f.lsb}]` {f.name}" + (f": {f.desc}" if f.desc else "")
                         for f in r.fields if len(r.fields) > 1 or f.desc)
        out.append(f"| `{r.offset:#05x}` | `{r.name}` | {r.access} | `{reset:#x}` | {r.desc}{fields} |")
        nxt = REGMAP.index(r) + 1
        if nxt == len(REGMAP) or REGMAP[nxt].group != group:
            out.append("")
    return "\n".join(out)


GENERATED = {JSON_PATH: as_json, PY_PATH: as_python, MD_PATH: as_markdown}


def stale() -> list[Path]:
    return [p for p, gen in GENERATED.items() if not p.exists() or p.read_text() != gen()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m latchnic.hw.regmap",
                                 description="Write or check the files generated from the register map.")
    ap.add_argument("--write", action="store_true", help="regenerate the files")
    ap.add_argument("--check", action="store_true", help="exit 1 if any file is stale")
    args = ap.parse_args(argv)
    if args.write:
        for p, gen in GENERATED.items():
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(gen())
            print(f"wrote {p.relative_to(ROOT)}")
        return 0
    bad = stale()
    for p in bad:
        print(f"stale: {p.relative_to(ROOT)} (run python -m latchnic.hw.regmap --write)")
    if args.check:
        return 1 if bad else 0
    print(as_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
