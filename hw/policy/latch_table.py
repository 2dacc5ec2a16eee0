"""Latch table: block RAM, set-associative, CRC-32 indexed (docs/model.md).

`capacity` slots in `capacity / ways` sets of `ways` ways (build parameters,
powers of two). A flow's set is zlib.crc32(38-byte key) mod sets; within the
set the lowest free way is used; a full set fails closed (`full`) and no live
latch is evicted. Slot number = set * ways + way = the latch's id, as in
sim/latch.py. One block RAM per way, so a set is read in one cycle.

Timers: each entry may carry a deadline (TIME_WAIT end, UDP idle expiry) in
timer ticks. An entry whose deadline is at or before `now` is not live: a
lookup does not see it and an insert may reuse its way. This gives the same
decisions as the model, which frees expired latches before every frame.

Operations (`cmd` -> `resp`, one at a time):
* LOOKUP(flow, now): hit/slot/entry; with no hit, `slot` is the free slot an
  insert would take, `full` if there is none.
* INSERT(flow, now, entry): LOOKUP, then (no hit, not full) write `entry` with
  the flow's key into the free slot.
* WRITE(slot, entry): rewrite a slot (state changes, timers, FIN flags; a
  FREE state frees it).
Cost: 1 + ceil(38 / crc_step) + 3 cycles for LOOKUP/INSERT, 2 for WRITE.
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .crc32 import Crc32Key, key_bytes_value
from .selectors import flow_layout


class LatchState(enum.Enum, shape=2):
    FREE = 0
    ESTABLISHED = 1
    BROKEN = 2
    TIME_WAIT = 3


class Op(enum.Enum, shape=2):
    LOOKUP = 0
    INSERT = 1
    WRITE = 2


qop_layout = data.StructLayout({
    "ah": 1,            # 0 ESP, 1 AH
    "tunnel": 1,
    "encrypts": 1,      # GCM (1) or GMAC (0)
    "key256": 1,
    "icv": 2,           # 0: 8, 1: 12, 2: 16 bytes
})

entry_layout = data.StructLayout({
    "state": LatchState,
    "flow": flow_layout,
    "peer": 8,
    "qop": qop_layout,
    "template": 8,
    "timed": 1,         # deadline valid
    "deadline": 32,     # timer ticks
    "fin_out": 1,
    "fin_in": 1,
})


def cmd_layout():
    return data.StructLayout({"op": Op, "now": 32, "flow": flow_layout, "slot": 16,
                              "entry": entry_layout})


resp_layout = data.StructLayout({"hit": 1, "full": 1, "slot": 16, "entry": entry_layout})


class LatchTable(wiring.Component):
    def __init__(self, capacity: int = 1024, ways: int = 4, crc_step: int = 8):
        assert ways & (ways - 1) == 0 and capacity % ways == 0
        sets = capacity // ways
        assert sets & (sets - 1) == 0
        self.capacity, self.ways, self.sets, self.crc_step = capacity, ways, sets, crc_step
        self.set_bits = (sets - 1).bit_length()
        self.way_bits = (ways - 1).bit_length()
        super().__init__({"cmd": In(stream.Signature(cmd_layout())),
                          "resp": Out(stream.Signature(resp_layout))})

    def elaborate(self, platform):
        m = Module()
        W, sb, wb = self.ways, self.set_bits, self.way_bits
        m.submodules.crc = crc = Crc32Key(self.crc_step)
        cmd = Signal(cmd_layout())
        set_idx = Signal(max(sb, 1))
        rports, wports = [], []
        for w in range(W):
            mem = Memory(shape=entry_layout, depth=self.sets, init=[])
            m.submodules[f"way{w}"] = mem
            wports.append(mem.write_port())
            rports.append(mem.read_port())
        for rp in rports:
            m.d.comb += rp.addr.eq(set_idx)

        # liveness and match per way, on the read data
        live = Signal(W)
        match = Signal(W)
        for w, rp in enumerate(rports):
            e = rp.data
            age = Signal(32, name=f"age{w}")
            m.d.comb += age.eq(cmd.now - e.deadline)
            m.d.comb += [live[w].eq((e.state != LatchState.FREE) & ~(e.timed & ~age[31])),
                         match[w].eq(live[w] & (e.flow.as_value() == cmd.flow.as_value()))]
        hit_way = Signal(range(W))
        free_way = Signal(range(W))
        for w in reversed(range(W)):
            with m.If(match[w]):
                m.d.comb += hit_way.eq(w)
            with m.If(~live[w]):
                m.d.comb += free_way.eq(w)

        resp = Signal(resp_layout)
        m.d.comb += self.resp.payload.eq(resp)
        m.d.comb += crc.key.eq(key_bytes_value(self.cmd.payload.flow))

        def slot_of(way):
            return Cat(way, set_idx) if wb else Cat(set_idx)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += cmd.eq(self.cmd.payload)
                    with m.If(self.cmd.payload.op == Op.WRITE):
                        m.next = "WRITE"
                    with m.Else():
                        m.d.comb += crc.start.eq(1)
                        m.next = "CRC"
            with m.State("WRITE"):
                for w, wp in enumerate(wports):
                    m.d.comb += [wp.addr.eq(cmd.slot[wb:wb + sb] if sb else 0), wp.data.eq(cmd.entry),
                                 wp.en.eq(cmd.slot[:wb] == w if wb else 1)]
                m.d.sync += [resp.eq(0), resp.slot.eq(cmd.slot)]
                m.next = "RESP"
            with m.State("CRC"):
                with m.If(crc.done):
                    m.d.sync += set_idx.eq(crc.crc[:sb] if sb else 0)
                    m.next = "READ"
            with m.State("READ"):
                m.next = "CMP"      # read ports see set_idx this cycle; data next cycle
            with m.State("CMP"):
                full = ~(~live).any()
                m.d.sync += [resp.hit.eq(match.any()), resp.full.eq(~match.any() & full)]
                with m.If(match.any()):
                    m.d.sync += [resp.slot.eq(slot_of(hit_way)),
                                 resp.entry.eq(Cat(*[rp.data.as_value() for rp in rports])
                                               .word_select(hit_way, entry_layout.size))]
                with m.Else():
                    m.d.sync += [resp.slot.eq(slot_of(free_way)), resp.entry.eq(0)]
                    with m.If((cmd.op == Op.INSERT) & ~full):
                        new = Signal(entry_layout)
                        m.d.comb += [new.eq(cmd.entry), new.flow.eq(cmd.flow)]
                        m.d.sync += resp.entry.eq(new)
                        for w, wp in enumerate(wports):
                            m.d.comb += [wp.addr.eq(set_idx), wp.data.eq(new), wp.en.eq(free_way == w)]
                m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += self.resp.valid.eq(1)
                with m.If(self.resp.ready):
                    m.next = "IDLE"
        return m
