"""The gateware's register map as a driver backend.

Every operation becomes 32-bit accesses on the policy core's AXI4-Lite
register map (hw/regmap.py, docs/registers.md) through a bus object with
`read(addr)` and `write(addr, value)` (driver/buses.py): an mmap of a board's
window, or cocotbext-axi's master in the gateware's cocotb tests, which run
this same code.

The hardware holds table entries, not names, so the driver keeps the host
side a real driver keeps: PAD (peer names and the index the hardware knows
each by, `sim.pad.Pad`: the same assignment as the model), SA name -> SAD
slot, the SPD rules of each direction, the templates with their ids. Entries
are encoded by hw/policy/program.py (one copy of the layouts).

Every operation is checked completely against the shadow and the CAPS
registers before the first bus write, with the model's checks and messages;
a refused operation raises BackendError and writes nothing (`apply` builds
its whole write list first). Reads that need the hardware (live latches for
the PAD's pinned indexes, an SA's sequence number) use TBL_COMMIT op read,
which writes only TBL_COMMIT and changes no table.

What the hardware does not hold is left out of listings rather than
invented: a latch's created_ns, an SA's drops by reason (the hardware keeps
one total: `drops_total`), an event's flow (the FIFO carries slot and peer).
docs/driver.md, "The register-level backend", has the whole list.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from collections import deque

from latchnic.config import (ALGORITHMS, SALT_LEN, SA, Config, ConfigError, DeviceKnobs, Peer,
                             QoP, SpdRule, Template, check_references)
from latchnic.hw.generated import regs
from latchnic.hw.policy import program as prog
from latchnic.hw.regmap import VERSION_MAJOR      # regs.VERSION is the register's offset
from latchnic.hw.policy.selectors import unpack
from latchnic.sim.drops import REASONS
from latchnic.sim.flowfmt import flow_text
from latchnic.sim.latch import BROKEN, ESTABLISHED, FREE, TIME_WAIT
from latchnic.sim.pad import Pad
from latchnic.sim.selectors import Flow

from .backend import Backend, BackendError
from .entries import from_table, to_table
from .model_backend import EVENT_LOG, flow_fields

STATE_NAMES = {0: FREE, 1: ESTABLISHED, 2: BROKEN, 3: TIME_WAIT}
ICV_BYTES = {0: 8, 1: 12, 2: 16}
CAUSE_NAMES = {0: "clone", 1: "fin", 2: "rst", 3: "syn", 4: "timer", 5: "release"}
CAUSE_RECHECK, CAUSE_REASON = 6, 8
POLL = 10000                  # TBL_COMMITS polls before a commit counts as lost


class RegisterBackend(Backend):
    name = "register"

    def __init__(self, bus, *, tick_ns: int = 1_000_000, state_path: str | None = None):
        """`tick_ns`: the timer tick (TICK_DIV cycles of the core's clock) in
        ns, to program TIME_WAIT/UDP_IDLE and to give event times in ns.
        `state_path`: where the host-side tables live between processes
        (the CLI opens the device once per command); None keeps them in memory."""
        self.bus = bus
        self.tick_ns = tick_ns
        self.state_path = state_path
        self.lock = threading.RLock()
        magic = bus.read(regs.ID)
        if magic != regs.MAGIC:
            raise BackendError(f"no latchnic core on this bus: ID reads {magic:#010x}, "
                               f"expected {regs.MAGIC:#010x}")
        version = bus.read(regs.VERSION)
        if version >> 16 != VERSION_MAJOR:
            raise BackendError(f"register map version {version >> 16}.{version & 0xFFFF}, this "
                               f"driver speaks {VERSION_MAJOR}.x")
        self.version = (version >> 16, version & 0xFFFF)
        tables, pad, lat = bus.read(regs.CAPS_TABLES), bus.read(regs.CAPS_PAD), bus.read(regs.CAPS_LATCH)
        self.crypto, replay = bus.read(regs.CAPS_CRYPTO), bus.read(regs.CAPS_REPLAY)
        misc = bus.read(regs.CAPS_MISC)
        self.cap_sas, self.cap_spd = tables & 0xFFFF, tables >> 16
        self.cap_peers, self.cap_templates = pad & 0xFFFF, pad >> 16
        self.cap_latches, self.latch_ways = lat & 0xFFFFFF, 1 << ((lat >> 24) & 0xF)
        # split geometry: the last 2^(n-1) slots are the IPv6 table (0: one table)
        v6 = lat >> 28 & 0xF
        self.cap_latches_v6 = 1 << (v6 - 1) if v6 else 0
        self.window_max, self.window_default = replay & 0xFFFF, replay >> 16
        self.event_depth = (misc >> 8) & 0xFFFF
        self.cap_claims = bus.read(regs.CAPS_CLAIMS) & 0xFFFF
        # a build without per-latch counters reads 0 for every latch: those
        # zeros are no counts, so latches()/counters() report them absent (None)
        self.latch_counters = bool(bus.read(regs.CAPS_COUNTERS) & regs.CAPS_COUNTERS_LATCH_MASK)
        if (misc & 0xFF) != len(REASONS):
            raise BackendError(f"the core counts {misc & 0xFF} drop reasons, this driver knows "
                               f"{len(REASONS)}")
        # the host side (see the module docstring)
        self.knobs = DeviceKnobs(replay_window=self.window_default,
                                 latch_capacity=self.cap_latches, latch_ways=self.latch_ways,
                                 latch_capacity_v6=self.cap_latches_v6)
        self.pad = Pad(self.cap_peers)
        self.sa: dict[str, SA] = {}
        self.sa_slots: dict[str, int] = {}      # also deleted SAs that SPD rules still name
        self.rules: dict[str, list[SpdRule]] = {"out": [], "in": []}
        self.tpl: dict[int, Template] = {}
        self.next_tid = 0
        self.adopted = True                     # False: tables of unknown content
        self._log: deque = deque(maxlen=EVENT_LOG)
        self._seq = 0
        self.lost = 0                           # events the FIFO dropped (EVT_LEVEL.lost)
        self._cond = threading.Condition(self.lock)
        self._load_state()

    # ------------------------------------------------------------ the bus
    def _commit_count(self) -> int:
        return self.bus.read(regs.TBL_COMMITS)

    def _write(self, writes: list[tuple[int, int]]):
        """The writes of one operation, then wait until every commit is done."""
        want = self._commit_count()
        for addr, value in writes:
            self.bus.write(addr, value)
            if addr == regs.TBL_COMMIT:
                want = (want + 1) & 0xFFFFFFFF
        self._wait_commits(want)

    def _wait_commits(self, want: int):
        for _ in range(POLL):
            got = self._commit_count()
            if got == want:
                return
        raise BackendError(f"the core did not finish its table commits (TBL_COMMITS {got}, "
                           f"expected {want})")

    def _read_entry(self, table: str, index: int, nwords: int) -> int:
        """TBL_COMMIT op read: entry `index` of `table`, `nwords` words of TBL_READ*."""
        want = (self._commit_count() + 1) & 0xFFFFFFFF
        self.bus.write(regs.TBL_COMMIT, index | (regs.TABLES[table] << 16) | (prog.READ << 24))
        self._wait_commits(want)
        return sum(self.bus.read(regs.TBL_READ0 + 4 * i) << (32 * i) for i in range(nwords))

    def _read_latch(self, slot: int) -> dict | None:
        """One slot: its entry (latch_read_layout) if live, else None."""
        layout = prog.latch_read_layout()
        want = (self._commit_count() + 1) & 0xFFFFFFFF
        self.bus.write(regs.TBL_COMMIT, slot | (regs.TABLES["latch"] << 16) | (prog.READ << 24))
        self._wait_commits(want)
        first = self.bus.read(regs.TBL_READ0)
        if not first & 1:                       # not live: the rest is not needed
            return None
        n = -(-layout.size // 32)
        raw = first | sum(self.bus.read(regs.TBL_READ0 + 4 * i) << (32 * i) for i in range(1, n))
        return unpack(layout, raw)["entry"]

    def _read_seq(self, slot: int) -> int:
        raw = self._read_entry("sad", slot, -(-prog.sa_layout.size // 32))
        return unpack(prog.sa_layout, raw)["seq"]

    def _live_entries(self) -> list[tuple[int, dict]]:
        out = []
        for slot in range(self.cap_latches):
            e = self._read_latch(slot)
            if e is not None:
                out.append((slot, e))
        return out

    def _pinned(self) -> set[int]:
        return {e["peer"] for _slot, e in self._live_entries()}

    # ------------------------------------------------------------- checks
    def _view(self, **changes) -> Config:
        cfg = Config(self.knobs, list(self.pad.peers.values()), list(self.sa.values()),
                     self.rules["out"] + self.rules["in"], list(self.tpl.values()),
                     source="device")
        for k, v in changes.items():
            setattr(cfg, k, v)
        return cfg

    def _check(self, cfg: Config):
        """The model's checks (names, references, SPIs; the messages of
        ModelDevice._check) against this build's table sizes."""
        try:
            check_references(cfg)
        except ConfigError as e:
            raise BackendError(str(e).removeprefix("device: ")) from None
        if len(cfg.peers) > self.cap_peers:
            raise BackendError(f"PAD full: {len(cfg.peers)} peers, capacity {self.cap_peers}")
        if len(cfg.sas) > self.cap_sas:
            raise BackendError(f"SAD full: {len(cfg.sas)} SAs, capacity {self.cap_sas}")
        for d in ("out", "in"):
            n = sum(1 for r in cfg.spd if r.dir == d)
            if n > self.cap_spd:
                raise BackendError(f"SPD full: {n} {d} rules, capacity {self.cap_spd} per direction")
        if len(cfg.templates) > self.cap_templates:
            raise BackendError(f"template table full: capacity {self.cap_templates}")
        claims = sum(len(p.claims) for p in cfg.peers)
        if claims > self.cap_claims:
            raise BackendError(f"PAD claims table full: {claims} claims, capacity {self.cap_claims}")
        for s in cfg.sas:
            self._check_sa(s)

    def _check_sa(self, sa: SA):
        """What the typed object may not carry past the file parser, and what
        this build implements (CAPS_CRYPTO, CAPS_REPLAY)."""
        at = f"SA {sa.name!r}"
        if sa.alg not in ALGORITHMS:
            raise BackendError(f"{at}: unknown algorithm {sa.alg!r}")
        want = ALGORITHMS[sa.alg][0] + SALT_LEN
        if len(sa.key) != ALGORITHMS[sa.alg][0] or len(sa.salt) != SALT_LEN:
            raise BackendError(f"{at}, field 'key': {sa.alg} needs {want} bytes (key || 4-byte "
                               f"salt), got {len(sa.key) + len(sa.salt)}")
        algs, protos, modes, icvs = (self.crypto & 0xF, (self.crypto >> 4) & 3,
                                     (self.crypto >> 6) & 3, (self.crypto >> 8) & 7)
        if not algs >> list(ALGORITHMS).index(sa.alg) & 1:
            raise BackendError(f"{at}, field 'alg': the core does not implement {sa.alg}")
        if not protos >> ("esp", "ah").index(sa.proto) & 1:
            raise BackendError(f"{at}, field 'proto': the core does not implement {sa.proto}")
        if not modes >> ("transport", "tunnel").index(sa.mode) & 1:
            raise BackendError(f"{at}, field 'mode': the core does not implement {sa.mode}")
        if sa.icv not in prog.ICV_CODE or not icvs >> prog.ICV_CODE[sa.icv] & 1:
            raise BackendError(f"{at}, field 'icv': the core does not implement ICV {sa.icv}")
        if sa.esn and not self.crypto >> 11 & 1:
            raise BackendError(f"{at}, field 'esn': the core does not implement ESN")
        if not 0 <= sa.seq < (1 << 64 if sa.esn else 1 << 32):
            raise BackendError(f"{at}, field 'seq': {sa.seq} out of range")
        window = sa.replay_window or self.knobs.replay_window
        if window > self.window_max:
            raise BackendError(f"{at}, field 'replay_window': {window} exceeds the core's "
                               f"maximum {self.window_max}")

    def _check_knobs(self, d: DeviceKnobs, source: str):
        if (d.latch_capacity, d.latch_ways, d.latch_capacity_v6) != (
                self.cap_latches, self.latch_ways, self.cap_latches_v6):
            raise BackendError(f"{source}: [device] latch_capacity/latch_ways/latch_capacity_v6 "
                               f"{d.latch_capacity}/{d.latch_ways}/{d.latch_capacity_v6} differ from "
                               f"the core's {self.cap_latches}/{self.latch_ways}/{self.cap_latches_v6} "
                               "(a build parameter)")
        if d.replay_window > self.window_max:
            raise BackendError(f"{source}: [device] replay_window {d.replay_window} exceeds the "
                               f"core's maximum {self.window_max}")
        for name in ("time_wait_s", "udp_idle_s"):
            if round(getattr(d, name) * 1e9 / self.tick_ns) >= 1 << 32:
                raise BackendError(f"{source}: [device] {name} does not fit the core's 32-bit "
                                   f"tick counter ({self.tick_ns} ns per tick)")

    def _need_adopted(self):
        if not self.adopted:
            raise BackendError("the core's tables were programmed by another driver instance "
                               f"and its host-side state ({self.state_path or 'in memory'}) is "
                               "not here; apply a whole configuration to take the device over")

    # ------------------------------------------------------------- events
    def _collect(self, recheck_cause: str | None = None):
        """Drain the event FIFO into the numbered log (lock held). Re-check
        events (cause 6) are named after the operation that ran the sweep:
        every operation that sweeps drains right after it."""
        from latchnic.hw.policy.core import event_layout
        added = 0
        # until EVT_LEVEL reads 0: events that arrive meanwhile are taken too,
        # and the interrupt is low when this returns (bounded: an event storm
        # cannot keep the driver here)
        for _ in range(4 * max(self.event_depth, 1)):
            level = self.bus.read(regs.EVT_LEVEL)
            self.lost = max(self.lost, level >> 16)
            if not level & 0xFFFF:
                break
            raw = sum(self.bus.read(regs.EVT_DATA0 + 4 * i) << (32 * i)
                      for i in range(-(-event_layout.size // 32)))
            self.bus.write(regs.EVT_POP, 1)
            e = unpack(event_layout, raw)
            c = e["cause"]
            if c == CAUSE_RECHECK:
                cause = recheck_cause or "recheck"
            elif c >= CAUSE_REASON and c - CAUSE_REASON < len(REASONS):
                cause = list(REASONS)[c - CAUSE_REASON]
            else:
                cause = CAUSE_NAMES.get(c, f"cause#{c}")
            self._seq += 1
            self._log.append({"seq": self._seq, "time_ns": e["time"] * self.tick_ns,
                              "slot": e["slot"], "peer": self.pad.name_of(e["peer"]),
                              "peer_index": e["peer"], "old": STATE_NAMES[e["old"]],
                              "new": STATE_NAMES[e["new"]], "cause": cause})
            added += 1
        if added:
            self._cond.notify_all()

    def _run(self, writes, recheck_cause: str | None = None):
        self._collect()                     # earlier events keep their own causes
        self._write(writes)
        self._collect(recheck_cause)

    # ------------------------------------------------------------- tables
    def add_peer(self, peer: Peer):
        with self.lock:
            self._need_adopted()
            if peer.name in self.pad.peers:
                raise BackendError(f"peer {peer.name!r} exists")
            self._check(self._view(peers=list(self.pad.peers.values()) + [peer]))
            pad = copy.deepcopy(self.pad)
            try:
                pad.add(peer, self._pinned())
            except OverflowError as e:
                raise BackendError(str(e)) from None
            self._run(prog.pad_writes(list(pad.peers.values()), pad.index, self.cap_claims))
            self.pad = pad
            self._save_state()

    def del_peer(self, name: str):
        with self.lock:
            self._need_adopted()
            if name not in self.pad.peers:
                raise BackendError(f"no peer named {name!r}")
            users = [s.name for s in self.sa.values() if s.peer == name]
            users += [f"spd rule {r.dir}" for d in ("out", "in") for r in self.rules[d] if r.peer == name]
            if users:
                raise BackendError(f"peer {name!r} is still used by {', '.join(users)}")
            pad = copy.deepcopy(self.pad)
            pad.remove(name)
            self._run(prog.pad_writes(list(pad.peers.values()), pad.index, self.cap_claims))
            self.pad = pad
            self._save_state()

    def peers(self) -> list[dict]:
        with self.lock:
            return [to_table(p) | {"index": self.pad.index[p.name]} for p in self.pad.peers.values()]

    def _free_sa_slot(self, name: str) -> int | None:
        if name in self.sa_slots:               # a deleted SA's slot, still named by rules
            return self.sa_slots[name]
        used = set(self.sa_slots.values())
        return next((i for i in range(self.cap_sas) if i not in used), None)

    def add_sa(self, sa: SA):
        with self.lock:
            self._need_adopted()
            if sa.name in self.sa:
                raise BackendError(f"SA {sa.name!r} exists")
            self._check(self._view(sas=list(self.sa.values()) + [sa]))
            slot = self._free_sa_slot(sa.name)
            if slot is None:
                held = sorted(n for n in self.sa_slots if n not in self.sa)
                raise BackendError(f"SAD full: {len(self.sa) + 1} SAs, capacity {self.cap_sas} "
                                   f"(slots held for deleted SAs that SPD rules still name: "
                                   f"{', '.join(held)})")
            writes = prog.sa_writes(sa, slot, self.pad.index, self.knobs.replay_window)
            writes.append((regs.TBL_COMMIT, prog.RECHECK << 24))
            self._run(writes, "sa_added")
            self.sa[sa.name] = sa
            self.sa_slots[sa.name] = slot
            self._save_state()

    def del_sa(self, name: str):
        with self.lock:
            self._need_adopted()
            if name not in self.sa:
                raise BackendError(f"no SA named {name!r}")
            slot = self.sa_slots[name]
            writes = prog.commit_writes("sad", slot, op=prog.CLEAR) + [(regs.TBL_COMMIT, prog.RECHECK << 24)]
            self._run(writes, "sa_deleted")
            del self.sa[name]
            self._drop_unnamed_slots()
            self._save_state()

    def _drop_unnamed_slots(self):
        """A deleted SA keeps its (cleared) slot while SPD rules name it, so
        that no other SA lands under those rules; then the slot is free."""
        named = {r.sa for d in ("out", "in") for r in self.rules[d]}
        for n in [n for n in self.sa_slots if n not in self.sa and n not in named]:
            del self.sa_slots[n]

    def sas(self, keys: bool = False) -> list[dict]:
        with self.lock:
            counters = self._sa_counters()
            return [to_table(s, keys) | {"counters": counters.get(s.name, {})} for s in self.sa.values()]

    def add_spd(self, rule: SpdRule, index: int | None = None):
        with self.lock:
            self._need_adopted()
            view = self._view()
            view.spd.append(rule)
            self._check(view)
            rules = list(self.rules[rule.dir])
            if index is None:
                index = len(rules)
            if not 0 <= index <= len(rules):
                raise BackendError(f"SPD {rule.dir} index {index} outside 0..{len(rules)}")
            rules.insert(index, rule)
            # the whole direction into its shadow bank, then the swap: frames
            # see the old list or the new one, never a mix (program.spd_writes)
            writes = prog.spd_writes(rule.dir, rules, self.sa_slots, self.pad.index, self.cap_spd)
            writes.append((regs.TBL_COMMIT, prog.RECHECK << 24))
            self._run(writes, "spd_changed")
            self.rules[rule.dir] = rules
            self._save_state()

    def del_spd(self, direction: str, index: int):
        with self.lock:
            self._need_adopted()
            if direction not in self.rules:
                raise BackendError(f"bad SPD direction {direction!r} (in or out)")
            rules = list(self.rules[direction])
            if not 0 <= index < len(rules):
                raise BackendError(f"no SPD {direction} rule at index {index}")
            del rules[index]
            writes = prog.spd_writes(direction, rules, self.sa_slots, self.pad.index, self.cap_spd)
            writes.append((regs.TBL_COMMIT, prog.RECHECK << 24))
            self._run(writes, "spd_changed")
            self.rules[direction] = rules
            self._drop_unnamed_slots()
            self._save_state()

    def spd(self) -> list[dict]:
        with self.lock:
            return [to_table(r) | {"index": i} for d in ("out", "in") for i, r in enumerate(self.rules[d])]

    def add_template(self, template: Template) -> int:
        with self.lock:
            self._need_adopted()
            if template.peer is not None and template.peer not in self.pad.peers:
                raise BackendError(f"no peer named {template.peer!r}")
            if len(self.tpl) >= self.cap_templates:
                raise BackendError(f"template table full ({self.cap_templates})")
            tid = self.next_tid
            tpls = list(self.tpl.values()) + [template]
            self._run(prog.template_writes(tpls, self.pad.index, self.cap_templates,
                                           start=len(tpls) - 1, ids=list(self.tpl) + [tid]))
            self.next_tid += 1
            self.tpl[tid] = template
            self._save_state()
            return tid

    def del_template(self, tid: int):
        with self.lock:
            self._need_adopted()
            if tid not in self.tpl:
                raise BackendError(f"no template with id {tid}")
            pos = list(self.tpl).index(tid)
            rest = dict(self.tpl)
            del rest[tid]
            self._run(prog.template_writes(list(rest.values()), self.pad.index, self.cap_templates,
                                           start=pos, ids=list(rest)))
            self.tpl = rest
            self._save_state()

    def templates(self) -> list[dict]:
        with self.lock:
            return [{"id": tid} | to_table(t) for tid, t in self.tpl.items()]

    def apply(self, cfg: Config):
        with self.lock:
            d = cfg.device
            if d.replay_window != self.knobs.replay_window and self.sa:
                raise BackendError(f"{cfg.source}: [device] replay_window/latch_capacity/latch_ways "
                                   "cannot change on a live device")
            self._check_knobs(d, cfg.source)
            self._check(cfg)
            # what the hardware must tell first: live latches pin PAD indexes;
            # Pad.replace keeps every staying peer's index, but should one move,
            # its unchanged outbound SAs are rewritten with their sequence
            # number read back (a restarted counter would reuse GCM nonces)
            live = self._live_entries()
            if d.replay_window != self.knobs.replay_window and live:
                raise BackendError(f"{cfg.source}: [device] replay_window/latch_capacity/latch_ways "
                                   "cannot change on a live device")
            pad = copy.deepcopy(self.pad)
            try:
                pad.replace(cfg.peers, {e["peer"] for _s, e in live})
            except OverflowError as e:
                raise BackendError(f"{cfg.source}: {e}") from None
            seqs = {s.name: self._read_seq(self.sa_slots[s.name]) for s in cfg.sas
                    if s.dir == "out" and self.sa.get(s.name) == s
                    and self.pad.index.get(s.peer) != pad.index[s.peer]}
            slots = {n: s for n, s in self.sa_slots.items()} if self.adopted else {}
            writes = prog.program(cfg, pad.index, self.tick_ns, self.cap_spd, self.cap_templates,
                                  old=self._view() if self.adopted else None, sa_slots=slots,
                                  sa_capacity=self.cap_sas, old_peer_index=self.pad.index, seqs=seqs,
                                  claims_capacity=self.cap_claims)
            if not self.adopted:                # unknown tables: clear every slot we do not use
                used = set(slots.values())
                writes = [w for i in range(self.cap_sas) if i not in used
                          for w in prog.commit_writes("sad", i, op=prog.CLEAR)] + writes
            # expired latches leave with a `timer` event, as in the model
            # (the core's default after reset is silent expiry)
            writes.append((regs.CTRL, self.bus.read(regs.CTRL) | regs.CTRL_TIMER_EVENTS_MASK))
            self._run(writes, "config_applied")
            self.knobs, self.pad, self.adopted = d, pad, True
            self.sa_slots.clear()               # in place: callers may hold the mapping
            self.sa_slots.update(slots)
            self.sa = {s.name: s for s in cfg.sas}
            self.rules = {dd: [r for r in cfg.spd if r.dir == dd] for dd in ("out", "in")}
            self.tpl = dict(enumerate(cfg.templates))
            self.next_tid = len(cfg.templates)
            self._save_state()

    # ------------------------------------------------------------ latches
    def latches(self) -> list[dict]:
        with self.lock:
            out = []
            for slot, e in self._live_entries():
                f = e["flow"]
                ports = f["ports_valid"]
                flow = Flow(6 if f["v6"] else 4, f["local"], f["remote"], f["proto"],
                            f["local_port"] if ports else None, f["remote_port"] if ports else None)
                q = e["qop"]
                qop = QoP("ah" if q["ah"] else "esp", "tunnel" if q["tunnel"] else "transport",
                          bool(q["encrypts"]), 256 if q["key256"] else 128, ICV_BYTES.get(q["icv"], 0))
                out.append({"slot": slot, "flow": flow_text(flow), **flow_fields(flow),
                            "peer": self.pad.name_of(e["peer"]), "peer_index": e["peer"],
                            "qop": str(qop), "state": STATE_NAMES[e["state"]],
                            "template": self._template_id(e["template"]),
                            **self._latch_ctr(slot),
                            "deadline_tick": e["deadline"] if e["timed"] else None})
            self._collect()
            return out

    def _template_id(self, low: int) -> int:
        """A latch records the low 8 bits of its template's id: the id is the
        template's with those bits if it is still installed, else the latest
        id given out with them (exact until 256 more templates were added)."""
        for tid in self.tpl:
            if tid & 0xFF == low:
                return tid
        below = [t for t in range(low, self.next_tid, 256)]
        return below[-1] if below else low

    def release_latch(self, slot: int):
        with self.lock:
            if not 0 <= slot < self.cap_latches or self._read_latch(slot) is None:
                raise BackendError(f"no latch in slot {slot}")
            self._run([(regs.TBL_COMMIT, slot | (regs.TABLES["latch"] << 16) | (prog.RELEASE << 24))])

    def events(self, since: int = 0, wait: float = 0.0, limit: int = 1000):
        deadline = time.monotonic() + max(0.0, wait)
        with self._cond:
            self._collect()
            while self._seq <= since and time.monotonic() < deadline:
                # the FIFO raises an interrupt; without one here, poll it
                self._cond.wait(min(0.05, max(0.0, deadline - time.monotonic())))
                self._collect()
            out = [e for e in self._log if e["seq"] > since][:limit]
            return out, (out[-1]["seq"] if out else min(max(since, 0), self._seq))

    # -------------------------------------------------------- observation
    def _ctr(self, index: int, latch: bool) -> dict:
        """CTR_READ: one SA's or latch's packets/bytes per direction and drops."""
        rd = self.bus.read
        self.bus.write(regs.CTR_READ, index | (int(latch) << 16))
        return {"packets": {"in": rd(regs.CTR_PACKETS_IN), "out": rd(regs.CTR_PACKETS_OUT)},
                "bytes": {"in": rd(regs.CTR_BYTES_IN_LO) | rd(regs.CTR_BYTES_IN_HI) << 32,
                          "out": rd(regs.CTR_BYTES_OUT_LO) | rd(regs.CTR_BYTES_OUT_HI) << 32},
                "drops": rd(regs.CTR_DROPS)}

    def _latch_ctr(self, slot: int) -> dict:
        if not self.latch_counters:
            return {"packets": None, "bytes": None, "drops": None}
        return self._ctr(slot, True)

    def clear_counters(self):
        """CTRL.clear_counters 0 -> 1 -> 0: the frame and drop counters and
        every SA's and latch's counters to 0 (ModelDevice.clear_counters).
        The core clears the counter RAMs between frames and holds the bus
        until done; the other CTRL bits are kept."""
        with self.lock:
            ctrl = self.bus.read(regs.CTRL) & ~regs.CTRL_CLEAR_COUNTERS_MASK
            self.bus.write(regs.CTRL, ctrl | regs.CTRL_CLEAR_COUNTERS_MASK)
            self.bus.write(regs.CTRL, ctrl)

    def _sa_counters(self) -> dict:
        """Per SA: packets and bytes (in the SA's direction) and its drops
        (the hardware counts them all together: `drops_total`, where the model
        has a dict by reason); an outbound SA's last sequence number."""
        out = {}
        for n, s in self.sa.items():
            c = self._ctr(self.sa_slots[n], False)
            out[n] = {"packets": c["packets"][s.dir], "bytes": c["bytes"][s.dir],
                      "drops_total": c["drops"]}
            if s.dir == "out":
                out[n]["seq"] = self._read_seq(self.sa_slots[n])
        return out

    def counters(self) -> dict:
        with self.lock:
            rd = self.bus.read
            frames = {"in_frames": rd(regs.FRAMES_IN), "out_frames": rd(regs.FRAMES_OUT),
                      "forwarded": rd(regs.FORWARDED), "non_ip": rd(regs.NON_IP)}
            drops = {}
            for code, reason in enumerate(REASONS):
                n = rd(regs.DROP_MALFORMED + 4 * code)
                if n:
                    drops[reason] = n
            # None: the build keeps no per-latch counters (CAPS_COUNTERS.latch = 0)
            latch = ({str(slot): self._ctr(slot, True) for slot, _e in self._live_entries()}
                     if self.latch_counters else None)
            return {"frames": frames, "drops": drops, "sa": self._sa_counters(), "latch": latch}

    def caps(self) -> dict:
        c = self.crypto
        return {
            "engine": "gateware", "register_map": f"{self.version[0]}.{self.version[1]}",
            "algorithms": [a for i, a in enumerate(ALGORITHMS) if c >> i & 1],
            "protocols": [p for i, p in enumerate(("esp", "ah")) if c >> (4 + i) & 1],
            "modes": [m for i, m in enumerate(("transport", "tunnel")) if c >> (6 + i) & 1],
            "icv_lengths": [n for i, n in enumerate((8, 12, 16)) if c >> (8 + i) & 1],
            "esn": bool(c >> 11 & 1),
            "replay_window": self.bus.read(regs.REPLAY_WINDOW), "replay_window_max": self.window_max,
            "peers": self.cap_peers, "sas": self.cap_sas, "spd_rules_per_direction": self.cap_spd,
            "templates": self.cap_templates, "latches": self.cap_latches,
            "latch_ways": self.latch_ways, "latches_v6": self.cap_latches_v6,
            "event_depth": self.event_depth,
            "pad_claims": self.cap_claims,
            "latch_counters": self.latch_counters,
        }

    # -------------------------------------------------- host-side state
    def _save_state(self):
        if self.state_path is None:
            return
        doc = {"knobs": {k: getattr(self.knobs, k) for k in ("replay_window", "time_wait_s",
                                                             "udp_idle_s", "latch_capacity",
                                                             "latch_ways", "latch_capacity_v6")},
               "peers": [to_table(p) for p in self.pad.peers.values()],
               "pad_index": self.pad.index, "pad_history": self.pad.history,
               "sas": [to_table(s) for s in self.sa.values()], "sa_slots": self.sa_slots,
               "spd": [to_table(r) for d in ("out", "in") for r in self.rules[d]],
               "templates": [[tid, to_table(t)] for tid, t in self.tpl.items()],
               "next_template_id": self.next_tid}
        tmp = f"{self.state_path}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)   # holds SA keys
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, self.state_path)

    def _load_state(self):
        programmed = self._commit_count() != 0
        if self.state_path is None or not os.path.exists(self.state_path):
            self.adopted = not programmed
            return
        if not programmed:
            return                  # the core was reset since: its tables are empty
        try:
            with open(self.state_path) as f:
                doc = json.load(f)
            src = self.state_path
            self.knobs = DeviceKnobs(**doc["knobs"])
            for t in doc["peers"]:
                p = from_table("peer", t, src)
                self.pad.peers[p.name] = p
            self.pad.index = {k: int(v) for k, v in doc["pad_index"].items()}
            self.pad.history = {k: int(v) for k, v in doc["pad_history"].items()}
            self.sa = {s.name: s for s in (from_table("sa", t, src) for t in doc["sas"])}
            self.sa_slots = {k: int(v) for k, v in doc["sa_slots"].items()}
            for t in doc["spd"]:
                r = from_table("spd", t, src)
                self.rules[r.dir].append(r)
            self.tpl = {int(tid): from_table("template", t, src) for tid, t in doc["templates"]}
            self.next_tid = int(doc["next_template_id"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise BackendError(f"{self.state_path}: unreadable driver state: {e}") from None

    def close(self):
        getattr(self.bus, "close", lambda: None)()
