"""The register-level backend without a simulator: every refusal is decided
before the first bus write (a RecordingBus proves it), the ID block is
checked, MmapBus works on a plain file, and the CLI reaches a register map
through `--device mmap:FILE@OFFSET`.

The "device" here is a dict of register values holding only what a real
core shows at rest: the identification block of a small build (encoded by
hw/regmap.py itself) and a TBL_COMMITS count. It does not act on writes, so
only refusals (which must not write) and read-only operations are tested
here; programming is tested against the gateware (tests/hw/policy/test_core.py).
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from latchnic.config import parse_config
from latchnic.driver.backend import BackendError
from latchnic.driver.buses import BusError, MmapBus, RecordingBus
from latchnic.driver.entries import from_table, to_table
from latchnic.driver.register_backend import RegisterBackend
from latchnic.hw.generated import regs
from latchnic.hw.policy import program as prog
from latchnic.hw.regmap import Params, _caps_values

from driver_kit import CONFIG, SA_ARGS, run, run_json

# 4 SAs, 2 SPD rules per direction, 2 templates, 8 peers, 16 latches
SMALL = Params(sas=4, spd_rules=2, peers=8, templates=2, latch_capacity=16, latch_ways=2,
               pad_claims=8)


def id_block(params=SMALL) -> dict[int, int]:
    return {getattr(regs, name): value for name, value in _caps_values(params).items()}


class DictBus:
    """Register values in a dict; writes are stored, nothing reacts to them."""

    def __init__(self, values: dict[int, int]):
        self.mem = dict(values)

    def read(self, addr):
        return self.mem.get(addr, 0)

    def write(self, addr, value):
        self.mem[addr] = value


def programmed(tmp_path, text=CONFIG, **registers):
    """A backend whose host-side tables hold `text` (restored from the state
    file a previous driver instance left, as the CLI does between commands),
    on a bus that records every access."""
    cfg = parse_config(text, "kit")
    state = tmp_path / "state.json"
    state.write_text(json.dumps({
        "knobs": dataclasses.asdict(cfg.device) | {"latch_capacity": 16, "latch_ways": 2},
        "peers": [to_table(p) for p in cfg.peers],
        "pad_index": {p.name: i for i, p in enumerate(cfg.peers)},
        "pad_history": {p.name: i for i, p in enumerate(cfg.peers)},
        "sas": [to_table(s) for s in cfg.sas], "sa_slots": {s.name: i for i, s in enumerate(cfg.sas)},
        "spd": [to_table(r) for r in cfg.spd],
        "templates": [[i, to_table(t)] for i, t in enumerate(cfg.templates)],
        "next_template_id": len(cfg.templates)}))
    values = id_block() | {regs.TBL_COMMITS: 40}
    values |= {getattr(regs, name): v for name, v in registers.items()}
    bus = RecordingBus(DictBus(values))
    dev = RegisterBackend(bus, state_path=str(state))
    assert [r["name"] for r in dev.peers()] == [p.name for p in cfg.peers]
    assert len(dev.spd()) == len(cfg.spd)
    bus.log.clear()
    return dev, bus


def entry(what, /, **fields):
    return from_table(what, fields, "test")


def refused(dev, bus, fn, *args, message):
    with pytest.raises(BackendError) as e:
        fn(*args)
    assert str(e.value) == message
    assert bus.writes == []


SA_IN = dict(zip(SA_ARGS[0::2], SA_ARGS[1::2]))
SA_IN["spi"] = int(SA_IN["spi"], 0)


# ------------------------------------------------------ refusals, no writes

def test_bad_id_magic_and_version():
    bus = RecordingBus(DictBus(id_block() | {regs.ID: 0x12345678}))
    with pytest.raises(BackendError, match="no latchnic core on this bus: ID reads 0x12345678, "
                                           "expected 0x4c4e4943"):
        RegisterBackend(bus)
    assert bus.writes == []
    bus = RecordingBus(DictBus(id_block() | {regs.VERSION: 7 << 16}))
    with pytest.raises(BackendError, match=r"register map version 7\.0, this driver speaks 1\.x"):
        RegisterBackend(bus)
    assert bus.writes == []
    # a 0.x core has no SPD banks: this driver's rules would never go live there
    bus = RecordingBus(DictBus(id_block() | {regs.VERSION: 2}))
    with pytest.raises(BackendError, match=r"register map version 0\.2, this driver speaks 1\.x"):
        RegisterBackend(bus)
    assert bus.writes == []


def test_caps_decoded_from_registers(tmp_path):
    dev = RegisterBackend(DictBus(id_block()))
    c = dev.caps()
    assert (c["sas"], c["spd_rules_per_direction"], c["templates"], c["peers"], c["latches"],
            c["latch_ways"], c["pad_claims"]) == (4, 2, 2, 8, 16, 2, 8)
    assert c["latches_v6"] == 0          # one table for both IP versions
    assert c["algorithms"] == ["aes-gcm-128", "aes-gcm-256", "gmac-128", "gmac-256"]
    assert (c["icv_lengths"], c["esn"], c["replay_window_max"]) == ([8, 12, 16], True, 1024)
    # a build without AH: the driver refuses AH SAs before writing
    crypto = _caps_values(SMALL)["CAPS_CRYPTO"] & ~(0b10 << 4)
    dev, bus = programmed(tmp_path, CAPS_CRYPTO=crypto)
    dev_sa = entry("sa", **SA_IN | {"name": "ah-in", "proto": "ah", "alg": "gmac-128"})
    refused(dev, bus, dev.add_sa, dev_sa, message="SA 'ah-in', field 'proto': the core does not "
            "implement ah")


def test_unknown_sa(tmp_path):
    dev, bus = programmed(tmp_path)
    rule = entry("spd", dir="out", action="protect", sa="nope")
    refused(dev, bus, dev.add_spd, rule, message="spd[2], field 'sa': no SA named 'nope'")
    refused(dev, bus, dev.del_sa, "nope", message="no SA named 'nope'")


def test_duplicate_spi(tmp_path):
    dev, bus = programmed(tmp_path)
    dup = entry("sa", **SA_IN | {"name": "again", "spi": 0x1001, "src": "203.0.113.5"})
    refused(dev, bus, dev.add_sa, dup, message="sa[3] ('again'), field 'spi': duplicate inbound "
            "SPI 0x1001 (same as 'alice-in')")


def test_bad_key_length(tmp_path):
    dev, bus = programmed(tmp_path)
    good = entry("sa", **SA_IN, name="short")
    # a typed SA made in code, not through the file parser: 15-byte key
    bad = dataclasses.replace(good, key=good.key[:15])
    refused(dev, bus, dev.add_sa, bad, message="SA 'short', field 'key': aes-gcm-128 needs 20 "
            "bytes (key || 4-byte salt), got 19")


FULL = CONFIG + """
[[sa]]
name = "filler"
dir = "out"
spi = 0x2009
proto = "esp"
mode = "transport"
alg = "aes-gcm-128"
key = "101112131415161718191a1b1c1d1e1fdeadbeef"
peer = "bob@example.org"

[[spd]]
dir = "in"
remote = "198.51.100.0/24"
action = "bypass"

[[template]]
kind = "listener"
local = "192.0.2.1"
proto = "tcp"
local_port = 22
"""


def test_tables_full(tmp_path):
    dev, bus = programmed(tmp_path, FULL)      # 4 of 4 SAs, 2 of 2 in rules, 2 of 2 templates
    refused(dev, bus, dev.add_sa, entry("sa", **SA_IN | {"name": "fifth", "spi": 0x1009}),
            message="SAD full: 5 SAs, capacity 4")
    refused(dev, bus, dev.add_spd, entry("spd", dir="in", action="discard"), 0,
            message="SPD full: 3 in rules, capacity 2 per direction")
    refused(dev, bus, dev.add_template, entry("template", kind="listener", proto="udp"),
            message="template table full (2)")
    # PAD claims: 8 entries for all peers, 2 used
    refused(dev, bus, dev.add_peer,
            entry("peer", name="carol", claims=[f"198.51.100.{i}/32" for i in range(7)]),
            message="PAD claims table full: 9 claims, capacity 8")


def test_other_refusals(tmp_path):
    dev, bus = programmed(tmp_path)
    refused(dev, bus, dev.add_peer, entry("peer", name="alice@example.org"),
            message="peer 'alice@example.org' exists")
    refused(dev, bus, dev.del_peer, "alice@example.org",
            message="peer 'alice@example.org' is still used by alice-in, alice-out")
    refused(dev, bus, dev.add_spd, entry("spd", dir="out", action="bypass"), 5,
            message="SPD out index 5 outside 0..1")
    refused(dev, bus, dev.del_spd, "in", 3, message="no SPD in rule at index 3")
    refused(dev, bus, dev.del_template, 9, message="no template with id 9")
    refused(dev, bus, dev.add_template, entry("template", kind="listener", peer="nobody"),
            message="no peer named 'nobody'")
    refused(dev, bus, dev.release_latch, 16, message="no latch in slot 16")


@pytest.mark.parametrize("cap, cap6", [(24, 8), (18432, 2048), (17, 1)])
def test_caps_split_latch_geometry(cap, cap6):
    """CAPS_LATCH of a split build: the driver shows the IPv6 table and
    refuses a configuration whose [device] geometry differs from it."""
    params = dataclasses.replace(SMALL, latch_capacity=cap, latch_ways=1, latch_capacity_v6=cap6)
    dev = RegisterBackend(DictBus(id_block(params)))
    c = dev.caps()
    assert (c["latches"], c["latch_ways"], c["latches_v6"]) == (cap, 1, cap6)
    # the IPv4 table's size as one table for both versions
    other = CONFIG.replace("replay_window = 128", f"replay_window = 128\nlatch_capacity = {cap - cap6}\n"
                           "latch_ways = 1")
    with pytest.raises(BackendError, match=f"latch_capacity_v6 {cap - cap6}/1/0 differ from the core's "
                       f"{cap}/1/{cap6}"):
        dev.apply(parse_config(other, "one-table.toml"))
    same = other.replace(f"latch_capacity = {cap - cap6}", f"latch_capacity = {cap}\n"
                         f"latch_capacity_v6 = {cap6}")
    dev._check_knobs(parse_config(same, "split.toml").device, "split.toml")


def test_apply_refused_writes_nothing(tmp_path):
    dev, bus = programmed(tmp_path)
    cfg = parse_config(CONFIG.replace("replay_window = 128", "replay_window = 128\nlatch_capacity = 1024\n"
                                       "latch_ways = 4"),
                       "big.toml")
    refused(dev, bus, dev.apply, cfg, message="big.toml: [device] latch_capacity/latch_ways/"
            "latch_capacity_v6 1024/4/0 differ from the core's 16/2/0 (a build parameter)")
    five = parse_config(CONFIG + "".join(
        f'\n[[sa]]\nname = "x{i}"\ndir = "out"\nspi = {0x3000 + i}\nproto = "esp"\n'
        f'mode = "transport"\nalg = "aes-gcm-128"\nkey = "{"00" * 20}"\npeer = "bob@example.org"\n'
        for i in range(2)), "five.toml")
    five.device = dataclasses.replace(five.device, latch_capacity=16, latch_ways=2)
    refused(dev, bus, dev.apply, five, message="SAD full: 5 SAs, capacity 4")
    win = parse_config(CONFIG.replace("replay_window = 128", "replay_window = 2048\n"
                                      "latch_capacity = 16\nlatch_ways = 2"), "win.toml")
    refused(dev, bus, dev.apply, win, message="win.toml: [device] replay_window/latch_capacity/"
            "latch_ways cannot change on a live device")


class CommitBus(DictBus):
    """DictBus whose TBL_COMMITS counts TBL_COMMIT writes, as the core's
    does once a commit is done: enough for apply() to run to the end."""

    def write(self, addr, value):
        super().write(addr, value)
        if addr == regs.TBL_COMMIT:
            self.mem[regs.TBL_COMMITS] = (self.mem.get(regs.TBL_COMMITS, 0) + 1) & 0xFFFFFFFF


def test_apply_turns_timer_events_on():
    """The core's reset value lets expired latches go silently; apply sets
    CTRL.timer_events (keeping CTRL's other bits) so that they leave with a
    `timer` event, as in the model."""
    clear = regs.CTRL_CLEAR_COUNTERS_MASK
    bus = RecordingBus(CommitBus(id_block() | {regs.CTRL: clear}))
    dev = RegisterBackend(bus)
    cfg = parse_config(CONFIG.replace("replay_window = 128", "replay_window = 128\nlatch_capacity = 16\n"
                                      "latch_ways = 2"), "kit.toml")
    dev.apply(cfg)
    ctrl = [v for op, a, v in bus.log if op == "w" and a == regs.CTRL]
    assert ctrl == [clear | regs.CTRL_TIMER_EVENTS_MASK], ctrl


def test_apply_with_a_new_peer_first_rewrites_no_sa():
    """A peer added at the top of the file must not take the PAD index of a
    peer that stays: the SAD entry holds the index, and an unchanged SA
    rewritten for a moved index restarts its anti-replay window (replays
    accepted again) and its counters. The second apply writes no SAD entry."""
    bus = RecordingBus(CommitBus(id_block()))
    dev = RegisterBackend(bus)
    text = CONFIG.replace("replay_window = 128", "replay_window = 128\nlatch_capacity = 16\nlatch_ways = 2")
    dev.apply(parse_config(text, "kit.toml"))
    before = {p["name"]: p["index"] for p in dev.peers()}
    bus.log.clear()
    carol = '\n[[peer]]\nname = "carol@example.org"\nclaims = ["198.51.100.0/24"]\n'
    first_peer = text.index("[[peer]]")
    dev.apply(parse_config(text[:first_peer] + carol + "\n" + text[first_peer:], "carol.toml"))
    after = {p["name"]: p["index"] for p in dev.peers()}
    assert list(after) == ["carol@example.org", *before]            # the file's order
    assert {n: after[n] for n in before} == before
    assert after["carol@example.org"] not in before.values()
    sad = [v for op, a, v in bus.log if op == "w" and a == regs.TBL_COMMIT
           and (v >> 16) & 0xFF == regs.TABLES["sad"]]
    assert sad == []


def test_foreign_tables_are_not_touched():
    """A core that was programmed (TBL_COMMITS != 0) but whose host-side state
    is not here: single-entry operations refuse instead of guessing slots."""
    bus = RecordingBus(DictBus(id_block() | {regs.TBL_COMMITS: 3}))
    dev = RegisterBackend(bus)
    bus.log.clear()
    refused(dev, bus, dev.add_peer, entry("peer", name="p"),
            message="the core's tables were programmed by another driver instance and its "
            "host-side state (in memory) is not here; apply a whole configuration to take the "
            "device over")


def test_host_side_state_round_trip(tmp_path):
    """What one CLI process leaves for the next: the same tables, keys in a
    0600 file; a core reset since (TBL_COMMITS 0) makes the file stale."""
    dev, _bus = programmed(tmp_path, FULL)
    path = tmp_path / "again.json"
    dev.state_path = str(path)
    dev._save_state()
    assert path.stat().st_mode & 0o777 == 0o600
    again = RegisterBackend(DictBus(id_block() | {regs.TBL_COMMITS: 41}), state_path=str(path))
    assert (again.peers(), again.spd(), again.templates()) == (dev.peers(), dev.spd(), dev.templates())
    assert (again.sa, again.sa_slots, again.next_tid, again.knobs) == (
        dev.sa, dev.sa_slots, dev.next_tid, dev.knobs)
    fresh = RegisterBackend(DictBus(id_block()), state_path=str(path))
    assert (fresh.peers(), fresh.spd(), fresh.adopted) == ([], [], True)


# ------------------------------------------------------------------ MmapBus

def test_mmap_bus_on_a_file(tmp_path):
    f = tmp_path / "regs.bin"
    f.write_bytes(bytes(0x3000))
    bus = MmapBus(str(f), offset=0x1000 + 0x40, size=0x100)   # not page aligned
    bus.write(0x8, 0xDEADBEEF)
    bus.write(0xFC, 0x1_0000_0001)                             # truncated to 32 bits
    assert (bus.read(0x8), bus.read(0xFC), bus.read(0x0)) == (0xDEADBEEF, 1, 0)
    data = f.read_bytes()
    assert data[0x1048:0x104C] == bytes.fromhex("efbeadde")     # little-endian word at the offset
    assert data[0x113C:0x1140] == bytes.fromhex("01000000")
    with pytest.raises(BusError, match="outside the 256-byte window"):
        bus.read(0x100)
    with pytest.raises(BusError, match="not word aligned"):
        bus.write(0x2, 1)
    bus.close()
    with pytest.raises(BusError, match="cannot open"):
        MmapBus(str(tmp_path / "missing"))


# ---------------------------------------------------------- CLI over mmap:

def window_file(tmp_path, offset, values):
    f = tmp_path / "window.bin"
    raw = bytearray(offset + 4096)
    for addr, v in values.items():
        raw[offset + addr:offset + addr + 4] = v.to_bytes(4, "little")
    f.write_bytes(bytes(raw))
    return f


def test_cli_through_mmap(tmp_path, monkeypatch):
    monkeypatch.delenv("LATCHNIC_DEVICE", raising=False)
    monkeypatch.delenv("LATCHNIC_STATE", raising=False)
    f = window_file(tmp_path, 0x2000, id_block())
    caps = run_json("caps", "--device", f"mmap:{f}@0x2000")
    assert (caps["engine"], caps["sas"], caps["templates"], caps["latches"]) == ("gateware", 4, 2, 16)
    assert run_json("--device", f"mmap:{f}@0x2000", "caps") == caps      # the address first
    # a file does not run commits: the driver says so instead of listing garbage
    rc, _, err = run("latch", "list", "--device", f"mmap:{f}@0x2000")
    assert (rc, err.strip()) == (2, "latchnic latch list: the core did not finish its table "
                                    "commits (TBL_COMMITS 0, expected 1)")
    # a refused command: status 2, the argument named, the window unchanged
    before = f.read_bytes()
    rc, out, err = run("spd", "add", "dir", "out", "action", "protect", "sa", "nope",
                       "--device", f"mmap:{f}@0x2000")
    assert (rc, err.strip()) == (2, "latchnic spd add: argument 'sa': no SA named 'nope'")
    assert f.read_bytes() == before
    # not a core at that offset / not a file
    rc, _, err = run("caps", "--device", f"mmap:{f}@0x1000")
    assert (rc, err.strip()) == (2, "latchnic caps: no latchnic core on this bus: ID reads "
                                    "0x00000000, expected 0x4c4e4943")
    rc, _, err = run("caps", "--device", f"mmap:{f}@zz")
    assert (rc, err.strip()) == (2, f"latchnic caps: bad device address 'mmap:{f}@zz': "
                                    "offset 'zz' is not a number")


# ------------------------------------------------------- SPD shadow banks

class BankedSpd(CommitBus):
    """CommitBus that also plays the core's double-buffered SPD (TBL_COMMIT
    to spd_out / spd_in writes the direction's shadow bank, op 5 swaps) and
    records, after every commit, the rule list each direction's lookups see
    (the active bank up to its first invalid entry): enough to check the
    driver's side of the protocol without a simulator."""

    def __init__(self, values, capacity):
        super().__init__(values)
        self.capacity = capacity
        self.banks = {d: [[0] * capacity, [0] * capacity] for d in ("out", "in")}
        self.active = {"out": 0, "in": 0}
        self.seen = []              # (direction, live list) after each commit

    def live(self, d):
        out = []
        for word in self.banks[d][self.active[d]]:
            if not word & 1:        # rule_layout.valid is bit 0
                break
            out.append(word)
        return out

    def write(self, addr, value):
        super().write(addr, value)
        if addr != regs.TBL_COMMIT:
            return
        index, table, op = value & 0xFFFF, (value >> 16) & 0xF, (value >> 24) & 7
        d = {regs.TABLES["spd_out"]: "out", regs.TABLES["spd_in"]: "in"}.get(table)
        if d is None:
            return
        if op in (0, 1):
            stage = sum(self.mem.get(regs.TBL_STAGE0 + 4 * i, 0) << (32 * i)
                        for i in range(regs.STAGE_WORDS))
            self.banks[d][1 - self.active[d]][index] = stage if op == 0 else 0
        elif op == prog.SWAP:
            self.active[d] ^= 1
        self.seen.append((d, self.live(d)))


BANKED = dataclasses.replace(SMALL, spd_rules=6)


def test_spd_changes_go_through_the_shadow_bank():
    """add_spd / del_spd / apply write each changed direction's whole new
    list into its shadow bank, then swap, then re-check: lookups see the old
    list until the swap and the new one from it (never a mix, never a
    missing rule), and an unchanged direction never shows anything else."""
    from latchnic.hw.policy.spd import encode_rule

    dev_bus = BankedSpd(id_block(BANKED), BANKED.spd_rules)
    bus = RecordingBus(dev_bus)
    dev = RegisterBackend(bus)
    cfg = parse_config(CONFIG.replace("replay_window = 128", "replay_window = 128\nlatch_capacity = 16\n"
                                      "latch_ways = 2"), "kit.toml")

    def words(d):
        return [encode_rule(r, dev.sa_slots.get(r.sa), dev.pad.index.get(r.peer)) for r in dev.rules[d]]

    def run(op, *args):
        before = {d: words(d) for d in ("out", "in")}
        dev_bus.seen.clear()
        bus.log.clear()
        op(*args)
        after = {d: words(d) for d in ("out", "in")}
        for d in ("out", "in"):
            lists = [live for dd, live in dev_bus.seen if dd == d]
            assert all(live in (before[d], after[d]) for live in lists), (op.__name__, d)
            assert dev_bus.live(d) == after[d], (op.__name__, d, "the new list is not live")
        # the swap comes after the last write of its direction, the re-check after every swap
        commits = [(v >> 16 & 0xF, v >> 24 & 7) for a, v in bus.writes if a == regs.TBL_COMMIT]
        swaps = [i for i, (t, o) in enumerate(commits) if o == prog.SWAP]
        for i in swaps:
            assert all(not (t == commits[i][0] and o in (0, 1)) for t, o in commits[i + 1:]), commits
        if swaps:
            assert commits[-1] == (0, prog.RECHECK) and max(swaps) < len(commits) - 1, commits
        return before, after

    before, after = run(dev.apply, cfg)
    assert after["out"] and after["in"]
    r = lambda **f: entry("spd", **f)
    for i, rule in enumerate([r(dir="out", remote="198.51.100.0/24", action="bypass"),
                              r(dir="out", remote="203.0.113.0/24", action="discard"),
                              r(dir="out", remote="203.0.113.5", proto="tcp", action="protect",
                                sa="alice-out")]):
        run(dev.add_spd, rule, 0)            # at the top: every rule moves down
    b, a = run(dev.add_spd, r(dir="in", remote="198.51.100.0/24", action="bypass"), 1)
    assert b["out"] == a["out"] and len(a["in"]) == len(b["in"]) + 1
    run(dev.del_spd, "out", 0)
    run(dev.del_spd, "out", 1)
    # a reordered direction through apply (rules swapped places)
    moved = parse_config(CONFIG.replace("replay_window = 128", "replay_window = 128\nlatch_capacity = 16\n"
                                        "latch_ways = 2") + """
[[spd]]
dir = "out"
remote = "198.51.100.0/24"
action = "discard"
""", "kit2.toml")
    moved.spd = [moved.spd[-1]] + moved.spd[:-1]
    b, a = run(dev.apply, moved)
    assert a["out"] != b["out"] and len(a["out"]) == 2
    assert [dd for dd, _l in dev_bus.seen].count("out") >= 3
