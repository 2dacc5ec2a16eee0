"""Host side of the policy core's tables: entry layouts the driver stages and
the encoding of a latchnic.config.Config into register writes.

The same Config the reference model loads is turned into (register, value)
writes: device knobs, then every table entry through the staging registers
and one TBL_COMMIT each (docs/registers.md).
"""

from __future__ import annotations

from amaranth.lib import data

from latchnic.hw.generated import regs
from .selectors import pack
from .spd import encode_rule, rule_layout

sa_layout = data.StructLayout({
    "valid": 1,
    "out": 1,
    "ah": 1,
    "tunnel": 1,
    "outer_v6": 1,       # tunnel mode: the outer header's IP version
    "encrypts": 1,
    "key256": 1,
    "icv": 2,            # 0: 8, 1: 12, 2: 16 bytes
    "icv_bytes": 5,
    "peer": 8,
    "esn": 1,
    "seq": 64,           # out: last sequence number sent
})

ICV_CODE = {8: 0, 12: 1, 16: 2}
# TBL_COMMIT ops (docs/registers.md; 0 writes the stage)
CLEAR = 1                # the entry becomes 0, whatever is staged
RELEASE = 2              # a latch slot is freed (the latch table's)
RECHECK = 3
READ = 4
SWAP = 5                 # an SPD direction's shadow bank becomes the active one


def latch_read_layout():
    """What TBL_COMMIT op read of the latch table leaves in TBL_READ*: the
    slot's entry and whether it is live (at the last frame's time)."""
    from .latch_table import entry_layout
    return data.StructLayout({"live": 1, "entry": entry_layout})


def sad_stage_layout():
    """What a SAD commit stages: the SA's parameters, its inbound selectors
    (hw/policy/sad.py) and its anti-replay window size."""
    from .sad import entry_layout
    return data.StructLayout({"sa": sa_layout, "sel": entry_layout, "window": 13})


def encode_sa(sa, peer_index: int, window: int = 64) -> int:
    from .sad import encode_sa_in
    return pack(sad_stage_layout(), {"window": sa.replay_window or window}) | (
        encode_sa_in(sa) << sad_stage_layout()["sel"].offset if sa.dir == "in" else 0) | pack(sa_layout, {
        "valid": 1, "out": int(sa.dir == "out"), "ah": int(sa.proto == "ah"),
        "tunnel": int(sa.mode == "tunnel"),
        "outer_v6": int(sa.src is not None and sa.src.version == 6),
        "encrypts": int(sa.encrypts), "key256": int(len(sa.key) == 32),
        "icv": ICV_CODE[sa.icv], "icv_bytes": sa.icv, "peer": peer_index, "esn": int(sa.esn),
        "seq": sa.seq})


def encode_template(t, peer_index: int | None, tid: int = 0) -> int:
    """Templates use the SPD rule layout (selectors, pin_peer/peer = the
    expected peer); a second SpdEngine instance holds them. The `sa` field
    carries the template's id, which a clone records in the latch (its low
    8 bits), so a latch names its template even after the table moved."""
    from latchnic.config import SpdRule
    rule = SpdRule("out", "protect", t.local, t.remote, t.proto, t.local_port, t.remote_port)
    return encode_rule(rule, tid & 0xFFFF) | (pack(rule_layout, {"pin_peer": int(t.peer is not None),
                                                                 "peer": peer_index or 0}))


def commit_writes(table: str, index: int, value: int = 0, key: bytes | None = None,
                  op: int = 0) -> list[tuple[int, int]]:
    out = []
    for i in range(regs.STAGE_WORDS):
        out.append((regs.TBL_STAGE0 + 4 * i, (value >> (32 * i)) & 0xFFFFFFFF))
    if key is not None:
        padded = key.ljust(4 * regs.KEY_WORDS, b"\0")
        for i in range(regs.KEY_WORDS):
            out.append((regs.TBL_KEY0 + 4 * i, int.from_bytes(padded[4 * i:4 * i + 4], "big")))
    out.append((regs.TBL_COMMIT, index | (regs.TABLES[table] << 16) | (op << 24)))
    return out


def sa_writes(sa, slot: int, peer_index: dict[str, int], window: int,
              seq: int | None = None) -> list[tuple[int, int]]:
    """One SAD entry (keys through TBL_KEY*); `seq`: the sequence number to
    stage instead of the configured one (a rewritten SA keeps its counter)."""
    if seq is not None:
        from dataclasses import replace
        sa = replace(sa, seq=seq)
    return commit_writes("sad", slot, encode_sa(sa, peer_index[sa.peer], window), key=sa.key + sa.salt)


def spd_writes(direction: str, rules, sa_slots: dict[str, int], peer_index: dict[str, int],
               capacity: int) -> list[tuple[int, int]]:
    """One direction's whole SPD (`rules`, in priority order) into its shadow
    bank: every entry from 0, the terminator (an invalid entry) unless the
    table is full, then the swap (op 5) that makes it the bank lookups read.
    The shadow holds the table before last (a swap leaves the old active
    bank there), so the whole list is written every time; frames meanwhile
    are decided by the complete old list, after the swap by the complete new
    one (hw/policy/spd.py)."""
    table = "spd_out" if direction == "out" else "spd_in"
    assert len(rules) <= capacity
    w = []
    for i, r in enumerate(rules):
        w += commit_writes(table, i, encode_rule(r, sa_slots.get(r.sa), peer_index.get(r.peer)))
    if len(rules) < capacity:
        w += commit_writes(table, len(rules), op=1)
    w.append((regs.TBL_COMMIT, (regs.TABLES[table] << 16) | (SWAP << 24)))
    return w


def template_writes(templates, peer_index: dict[str, int], capacity: int,
                    start: int = 0, ids=None) -> list[tuple[int, int]]:
    """Entries start.. of the template table, then the terminator unless full.
    `ids`: the templates' ids (default: their positions, as after an apply)."""
    assert len(templates) <= capacity
    ids = list(range(len(templates))) if ids is None else list(ids)
    w = []
    for i in range(start, len(templates)):
        w += commit_writes("template", i, encode_template(templates[i], peer_index.get(templates[i].peer),
                                                          ids[i]))
    if len(templates) < capacity:
        w += commit_writes("template", len(templates), op=1)
    return w


def pad_writes(peers, peer_index: dict[str, int], capacity: int) -> list[tuple[int, int]]:
    """The PAD claims table (hw/policy/pad.py): every claim of every peer from
    entry 0, then the terminator unless full. The scan stops at the first
    invalid entry, so claims left over from an earlier, longer list are dead."""
    from .pad import encode_claim
    claims = [encode_claim(peer_index[p.name], c) for p in peers for c in p.claims]
    if len(claims) > capacity:
        raise ValueError(f"PAD claims table full: {len(claims)} claims, capacity {capacity}")
    w = []
    for i, value in enumerate(claims):
        w += commit_writes("pad", i, value)
    if len(claims) < capacity:
        w += commit_writes("pad", len(claims), op=1)
    return w


def program(cfg, peer_index: dict[str, int], tick_ns: int, spd_capacity: int,
            template_capacity: int, old=None, sa_slots: dict[str, int] | None = None,
            sa_capacity: int = 64, old_peer_index: dict[str, int] | None = None,
            seqs: dict[str, int] | None = None, claims_capacity: int = 64) -> list[tuple[int, int]]:
    """Register writes that make the device's tables equal to `cfg`, then a
    re-check of the latches (TBL_COMMIT op 3), as ModelDevice.apply does.
    Each SPD direction is written whole into its shadow bank and swapped
    (spd_writes), both directions every time: an unchanged direction swaps
    to an identical copy.

    `old`: the configuration the device holds (None: empty device).
    `sa_slots`: SA name -> SAD slot, updated in place. An SA whose definition
    did not change keeps its slot and is not rewritten (its sequence number
    and window live on); a removed SA's slot is cleared; a new or changed SA
    takes its old slot or the lowest free one. Peers by `peer_index` (the PAD
    indexes the driver keeps, the same the model assigns). An unchanged SA
    whose peer's index moved (`old_peer_index`) is rewritten with its
    current sequence number from `seqs` (the driver reads it back first)."""
    if sa_slots is None:
        sa_slots = {}
    ticks = lambda s: round(s * 1_000_000_000 / tick_ns)
    w = [(regs.TIME_WAIT, ticks(cfg.device.time_wait_s)), (regs.UDP_IDLE, ticks(cfg.device.udp_idle_s)),
         (regs.REPLAY_WINDOW, cfg.device.replay_window)]
    before = {s.name: s for s in (old.sas if old else [])}
    now = {s.name: s for s in cfg.sas}
    for name in [n for n in sa_slots if n not in now]:
        w += commit_writes("sad", sa_slots.pop(name), op=1)
    for s in cfg.sas:
        same = s.name in before and before[s.name] == s and s.name in sa_slots
        if same and (old_peer_index is None or old_peer_index.get(s.peer) == peer_index[s.peer]):
            continue
        if s.name not in sa_slots:
            used = set(sa_slots.values())
            sa_slots[s.name] = next(i for i in range(sa_capacity) if i not in used)
        w += sa_writes(s, sa_slots[s.name], peer_index, cfg.device.replay_window,
                       (seqs or {}).get(s.name) if same else None)
    for d in ("out", "in"):
        w += spd_writes(d, [r for r in cfg.spd if r.dir == d], sa_slots, peer_index, spd_capacity)
    w += template_writes(cfg.templates, peer_index, template_capacity)
    w += pad_writes(cfg.peers, peer_index, claims_capacity)
    w.append((regs.TBL_COMMIT, RECHECK << 24))    # re-check every latch
    return w
