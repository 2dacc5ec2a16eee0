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
* READ(slot, now): the slot's entry; `hit` = live (for the re-check sweep).
Cost: 1 + ceil(38 / crc_step) + ways + 3 cycles for LOOKUP/INSERT, 3 for WRITE.
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
    READ = 3        # by slot: entry, hit = live at `now`


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
        # one RAM, slot = set * ways + way: the ways of a set are read one per
        # cycle (a deep, narrow RAM packs into far fewer ECP5 EBRs than one
        # wide RAM per way)
        m.submodules.mem = mem = Memory(shape=entry_layout, depth=self.capacity, init=[])
        wp = mem.write_port()
        rp = mem.read_port()

        def slot_of(way):
            return Cat(way, set_idx) if wb else Cat(set_idx)

        ridx = Signal(range(W + 1))       # way addressed this cycle
        didx = Signal(range(W + 1))       # way whose data is on rp.data
        e = rp.data
        age = Signal(32)
        live = Signal()
        match = Signal()
        m.d.comb += [age.eq(cmd.now - e.deadline),
                     live.eq((e.state != LatchState.FREE) & ~(e.timed & ~age[31])),
                     match.eq(live & (e.flow.as_value() == cmd.flow.as_value()))]
        hit = Signal()
        hit_way = Signal(range(W))
        hit_entry = Signal(entry_layout)
        free = Signal()
        free_way = Signal(range(W))

        resp = Signal(resp_layout)
        m.d.comb += self.resp.payload.eq(resp)
        m.d.comb += crc.key.eq(key_bytes_value(self.cmd.payload.flow))

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [cmd.eq(self.cmd.payload), hit.eq(0), free.eq(0)]
                    with m.If(self.cmd.payload.op == Op.WRITE):
                        m.next = "WRITE"
                    with m.Elif(self.cmd.payload.op == Op.READ):
                        m.next = "READ"
                    with m.Else():
                        m.d.comb += crc.start.eq(1)
                        m.next = "CRC"
            with m.State("WRITE"):
                m.d.comb += [wp.addr.eq(cmd.slot), wp.data.eq(cmd.entry), wp.en.eq(1)]
                m.d.sync += [resp.eq(0), resp.slot.eq(cmd.slot)]
                m.next = "RESP"
            with m.State("READ"):
                m.d.comb += rp.addr.eq(cmd.slot)
                m.next = "READ_DATA"
            with m.State("READ_DATA"):
                m.d.sync += [resp.eq(0), resp.slot.eq(cmd.slot), resp.hit.eq(live),
                             resp.entry.eq(e)]
                m.next = "RESP"
            with m.State("CRC"):
                with m.If(crc.done):
                    m.d.sync += [set_idx.eq(crc.crc[:sb] if sb else 0), ridx.eq(0)]
                    m.next = "SCAN"
            with m.State("SCAN"):
                m.d.comb += rp.addr.eq(slot_of(ridx[:wb] if wb else Const(0, 0)))
                m.d.sync += [ridx.eq(ridx + 1), didx.eq(ridx)]
                with m.If(ridx != 0):
                    # data of way didx: first match, lowest free way
                    with m.If(match & ~hit):
                        m.d.sync += [hit.eq(1), hit_way.eq(didx), hit_entry.eq(e)]
                    with m.If(~live & ~free):
                        m.d.sync += [free.eq(1), free_way.eq(didx)]
                with m.If(ridx == W):
                    m.next = "DECIDE"
            with m.State("DECIDE"):
                m.d.sync += [resp.hit.eq(hit), resp.full.eq(~hit & ~free)]
                with m.If(hit):
                    m.d.sync += [resp.slot.eq(slot_of(hit_way)), resp.entry.eq(hit_entry)]
                with m.Else():
                    m.d.sync += [resp.slot.eq(slot_of(free_way)), resp.entry.eq(0)]
                    with m.If((cmd.op == Op.INSERT) & free):
                        new = Signal(entry_layout)
                        m.d.comb += [new.eq(cmd.entry), new.flow.eq(cmd.flow)]
                        m.d.sync += resp.entry.eq(new)
                        m.d.comb += [wp.addr.eq(slot_of(free_way)), wp.data.eq(new), wp.en.eq(1)]
                m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += self.resp.valid.eq(1)
                with m.If(self.resp.ready):
                    m.next = "IDLE"
        return m
