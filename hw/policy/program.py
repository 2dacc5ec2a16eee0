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


def encode_template(t, peer_index: int | None) -> int:
    """Templates use the SPD rule layout (selectors, pin_peer/peer = the
    expected peer); a second SpdEngine instance holds them."""
    from latchnic.config import SpdRule
    rule = SpdRule("out", "protect", t.local, t.remote, t.proto, t.local_port, t.remote_port)
    return encode_rule(rule) | (pack(rule_layout, {"pin_peer": int(t.peer is not None),
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
            sa_capacity: int = 64, claims_capacity: int = 64) -> list[tuple[int, int]]:
    """Register writes that make the device's tables equal to `cfg`, then a
    re-check of the latches (TBL_COMMIT op 3), as ModelDevice.apply does.

    `old`: the configuration the device holds (None: empty device).
    `sa_slots`: SA name -> SAD slot, updated in place. An SA whose definition
    did not change keeps its slot and is not rewritten (its sequence number
    and window live on); a removed SA's slot is cleared; a new or changed SA
    takes its old slot or the lowest free one. Peers by `peer_index` (the PAD
    indexes the driver keeps, the same the model assigns)."""
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
        if s.name in before and before[s.name] == s and s.name in sa_slots:
            continue
        if s.name not in sa_slots:
            used = set(sa_slots.values())
            sa_slots[s.name] = next(i for i in range(sa_capacity) if i not in used)
        w += commit_writes("sad", sa_slots[s.name],
                           encode_sa(s, peer_index[s.peer], cfg.device.replay_window),
                           key=s.key + s.salt)
    for d, table in (("out", "spd_out"), ("in", "spd_in")):
        rules = [r for r in cfg.spd if r.dir == d]
        assert len(rules) < spd_capacity, "one entry stays free as the terminator"
        for i, r in enumerate(rules):
            w += commit_writes(table, i, encode_rule(r, sa_slots.get(r.sa), peer_index.get(r.peer)))
        w += commit_writes(table, len(rules), op=1)
    assert len(cfg.templates) < template_capacity
    for i, t in enumerate(cfg.templates):
        w += commit_writes("template", i, encode_template(t, peer_index.get(t.peer)))
    w += commit_writes("template", len(cfg.templates), op=1)
    w += pad_writes(cfg.peers, peer_index, claims_capacity)
    w.append((regs.TBL_COMMIT, 3 << 24))          # re-check every latch
    return w
