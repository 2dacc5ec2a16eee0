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
Cost: 3 + ceil(38 / crc_step) + ways + 6 cycles for LOOKUP/INSERT, 3 for WRITE,
6 for READ (18, 3 and 6 with 4 ways); the split geometry one more for LOOKUP,
INSERT and READ. Timing (docs/policy-core.md, "Timing work"): the entry is
registered out of the RAM (the split one expanded a cycle later), then the
key compare (in 32-bit chunks), the FREE state and the expiry are registered
next to a copy of it, and live/match combine those a cycle later; the hit
entry goes straight to the response register; the write address and enable
are registered (the write lands in RESP).

Split geometry (`capacity_v6` > 0, docs/model.md "Latch table"): the slots
form two tables with the same ways. IPv4 flows live in slots
0 .. capacity - capacity_v6 - 1, in a RAM of compact entries that hold the
13-byte IPv4 key (addresses 32 bits; the zero high address bits and the
version are implied by the table, not stored) less its quotient: the
set-index bits of the key are a function of the set and the other key bits
(crc32.v4_quotient), so they are rebuilt, not stored: 164 - log2(sets)
instead of 357 bits per entry (152 with 4096 sets). IPv6 flows live in the
remaining capacity_v6 slots (full entries). Each table's set is the same
CRC-32 of the 38-byte key modulo its own number of sets, and each fails
closed on its own. The stored bits and the set determine the whole key: a
lookup compares the whole (rebuilt) key (no fingerprint), so a flow only
ever finds its own latch. The entry on `resp` is always the full entry_layout (a
compact entry is expanded), so the user of the table does not see the split.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ..onehot import one_hot
from ..ram import block_ram, read_register
from .crc32 import V4_KEY_BITS, Crc32Key, key_bytes_value, v4_quotient
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


def entry_v4_layout(set_bits: int) -> data.StructLayout:
    """An IPv4 table entry: the key bits crc32.v4_quotient does not derive
    from the set index (version 4 and the zero high address bits are implied
    by the table), the ports-valid bit, and the other fields as entry_layout."""
    rest, _quot = v4_quotient(set_bits)
    return data.StructLayout({"key_rest": len(rest), "ports_valid": 1} | {
        name: field.shape for name, field in entry_layout if name != "flow"})


def v4_key(flow):
    """The IPv4 key vector (crc32.V4_KEY_BITS) of a flow_layout view."""
    return Cat(flow.local[:32], flow.remote[:32], flow.proto, flow.local_port, flow.remote_port)


def cmd_layout():
    return data.StructLayout({"op": Op, "now": 32, "flow": flow_layout, "slot": 16,
                              "entry": entry_layout})


resp_layout = data.StructLayout({"hit": 1, "full": 1, "slot": 16, "entry": entry_layout})


class LatchTable(wiring.Component):
    def __init__(self, capacity: int = 1024, ways: int = 4, crc_step: int = 8,
                 capacity_v6: int = 0):
        assert ways & (ways - 1) == 0 and capacity % ways == 0 and capacity_v6 % ways == 0
        cap4 = capacity - capacity_v6
        # (slot base, slots, entry layout) of each table; v4 first
        sb4 = (cap4 // ways - 1).bit_length()
        self.tables = ([(0, capacity, entry_layout)] if capacity_v6 == 0 else
                       [(0, cap4, entry_v4_layout(sb4)), (cap4, capacity_v6, entry_layout)])
        for _base, slots, _layout in self.tables:
            sets = slots // ways
            assert sets >= 1 and sets & (sets - 1) == 0, (capacity, capacity_v6, ways)
        self.capacity, self.capacity_v6, self.ways, self.crc_step = capacity, capacity_v6, ways, crc_step
        self.sets = cap4 // ways            # of the IPv4 (or the only) table
        self.set_bits = (self.sets - 1).bit_length()
        self.way_bits = (ways - 1).bit_length()
        super().__init__({"cmd": In(stream.Signature(cmd_layout())),
                          "resp": Out(stream.Signature(resp_layout))})

    def elaborate(self, platform):
        m = Module()
        W, wb = self.ways, self.way_bits
        split = len(self.tables) == 2
        m.submodules.crc = crc = Crc32Key(self.crc_step)
        cmd = Signal(cmd_layout())
        set_bits = [((slots // W) - 1).bit_length() for _b, slots, _l in self.tables]
        set_idx = Signal(max(max(set_bits), 1))
        tbl = Signal(range(len(self.tables)))     # 1: the IPv6 table (split geometry)
        # one RAM per table, local address = set * ways + way: the ways of a
        # set are read one per cycle (a deep, narrow RAM packs into far fewer
        # ECP5 EBRs than one wide RAM per way)
        ports = []
        for i, (_base, slots, layout) in enumerate(self.tables):
            # the table never uses the data read in a cycle that writes
            # (DECIDE, WRITE): no read-first bypass behind the EBR (hw/ram.py)
            mem = block_ram(layout, slots)
            m.submodules[f"mem{i}" if split else "mem"] = mem
            ports.append((mem.write_port(), mem.read_port()))

        def local_of(way, t):
            sb = set_bits[t]
            return Cat(way, set_idx[:sb]) if wb else set_idx[:sb]

        def slot_of(way):
            if not split:
                return local_of(way, 0)
            return Mux(tbl, self.tables[1][0] + local_of(way, 1), local_of(way, 0))

        rest, quot = v4_quotient(set_bits[0])

        def expand(v4, set_v):
            """A compact IPv4 entry of set `set_v` as entry_layout: the derived
            key bits rebuilt, v6 0, addresses zero-extended."""
            full = Signal(entry_layout)
            bits = [None] * V4_KEY_BITS
            for i, j in enumerate(rest):
                bits[j] = v4.key_rest[i]
            for j, smask, xmask, const in quot:
                terms = ([set_v[i] for i in range(set_bits[0]) if smask >> i & 1]
                         + [v4.key_rest[i] for i, k in enumerate(rest) if xmask >> k & 1])
                bits[j] = Cat(*terms).xor() ^ const if terms else Const(const, 1)
            m.d.comb += [getattr(full, n).eq(getattr(v4, n)) for n, _f in entry_layout if n != "flow"]
            m.d.comb += [v4_key(full.flow).eq(Cat(*bits)), full.flow.ports_valid.eq(v4.ports_valid)]
            return full

        def compact(e):
            v4 = Signal(self.tables[0][2])
            key = v4_key(e.flow)
            m.d.comb += [getattr(v4, n).eq(getattr(e, n)) for n, _f in entry_layout if n != "flow"]
            m.d.comb += [v4.key_rest.eq(Cat(*[key[j] for j in rest])),
                         v4.ports_valid.eq(e.flow.ports_valid)]
            return v4

        # write: the address and data go to the table `wtbl` names. Timing:
        # address and enable are registered (the write lands in RESP, a cycle
        # after WRITE/DECIDE decide it; nothing reads before IDLE), and the
        # data comes straight from `cmd`: an INSERT writes the entry with its
        # flow, a WRITE the entry as given
        w_addr = Signal(16)
        w_data = Signal(entry_layout)
        w_en = Signal()
        wtbl = Signal.like(tbl)
        m.d.sync += w_en.eq(0)
        m.d.comb += [w_data.eq(cmd.entry),
                     w_data.flow.eq(Mux(cmd.op == Op.INSERT, cmd.flow, cmd.entry.flow))]
        r_addr = Signal(16)
        for i, (wp, rp) in enumerate(ports):
            wdata = compact(w_data) if split and i == 0 else w_data
            m.d.comb += [wp.addr.eq(w_addr), wp.data.eq(wdata), wp.en.eq(w_en & (wtbl == i)),
                         rp.addr.eq(r_addr)]
        # the entry is registered as it leaves the RAM (timing: an ECP5 EBR's
        # clock-to-output leaves no room for logic in the same cycle); in the
        # split geometry the raw words are registered and expanded a cycle later
        if not split:
            e = read_register(m, platform, *ports[0], name="e")
        else:
            e = Signal(entry_layout, reset_less=True)
            raw = [read_register(m, platform, wp, rp, name=f"raw{i}") for i, (wp, rp) in enumerate(ports)]
            # the set of the entry: the scanned set, or the set of the slot a
            # READ names (set_idx holds either)
            m.d.sync += e.eq(Mux(tbl, raw[1], expand(raw[0], set_idx).as_value()))
        # cycles from a read address to its entry in `e2` (the compare stage)
        lat = 4 if split else 3

        def by_slot(slot_v):
            """(table, local address) of a slot number."""
            if not split:
                return Const(0, 1), slot_v
            base = self.tables[1][0]
            return slot_v >= base, Mux(slot_v >= base, slot_v - base, slot_v)

        ridx = Signal(range(W + lat))     # way addressed this cycle
        # the way of the entry in each pipeline register, e2idx: the one in e2
        idx_pipe = [ridx]
        for _ in range(lat):
            d = Signal.like(ridx)
            m.d.sync += d.eq(idx_pipe[-1])
            idx_pipe.append(d)
        e2idx = idx_pipe[-1]
        # compare stage (timing): the key equality in 32-bit chunks, the FREE
        # state and the expiry (`now` - deadline, a 32-bit carry chain) are
        # registered next to the entry (e2); live/match combine them a cycle later
        e2 = Signal(entry_layout, reset_less=True)
        key_e, key_c = e.flow.as_value(), cmd.flow.as_value()
        chunks = [(i, min(i + 32, len(key_e))) for i in range(0, len(key_e), 32)]
        eq_r = Signal(len(chunks))
        used_r = Signal()
        expired_r = Signal()
        age = Signal(32)
        m.d.comb += age.eq(cmd.now - e.deadline)
        m.d.sync += [e2.eq(e), used_r.eq(e.state != LatchState.FREE),
                     expired_r.eq(e.timed & ~age[31]),
                     eq_r.eq(Cat(*[key_e[a:b] == key_c[a:b] for a, b in chunks]))]
        live = Signal()
        match = Signal()
        # the stored key is the whole key; in the IPv4 table the expanded entry
        # has v6 0 and high address bits 0, so a flow with any of them set
        # cannot match (and may not be inserted there: key_ok)
        key_ok = Signal()
        m.d.comb += [live.eq(used_r & ~expired_r),
                     match.eq(live & eq_r.all())]
        if split:
            m.d.comb += key_ok.eq(cmd.flow.v6 | ((cmd.flow.local[32:] == 0) & (cmd.flow.remote[32:] == 0)))
        else:
            m.d.comb += key_ok.eq(1)
        hit = Signal()
        hit_way = Signal(range(W))
        free = Signal()
        free_way = Signal(range(W))

        resp = Signal(resp_layout)
        m.d.comb += self.resp.payload.eq(resp)
        # the CRC starts a cycle after the command is taken, from the
        # registered command (timing: the requester's `valid` does not fan
        # out into the key shift register's ~300 enables)
        m.d.comb += crc.key.eq(key_bytes_value(cmd.flow))

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [cmd.eq(self.cmd.payload), hit.eq(0), free.eq(0)]
                    with m.If(self.cmd.payload.op == Op.WRITE):
                        m.next = "WRITE"
                    with m.Elif(self.cmd.payload.op == Op.READ):
                        m.next = "READ"
                    with m.Else():
                        if split:
                            m.d.sync += tbl.eq(self.cmd.payload.flow.v6)
                        m.next = "START"
            with m.State("START"):
                m.d.comb += crc.start.eq(1)
                m.next = "CRC"
            with m.State("WRITE"):
                t, a = by_slot(cmd.slot)
                m.d.sync += [wtbl.eq(t), w_addr.eq(a), w_en.eq(1)]
                m.d.sync += [resp.eq(0), resp.slot.eq(cmd.slot)]
                m.next = "RESP"
            with m.State("READ"):
                t, a = by_slot(cmd.slot)
                m.d.comb += r_addr.eq(a)
                if split:
                    m.d.sync += [tbl.eq(t), set_idx.eq(a[wb:])]
                m.d.sync += ridx.eq(1)
                m.next = "READ_WAIT"
            with m.State("READ_WAIT"):
                m.d.sync += ridx.eq(ridx + 1)
                with m.If(ridx == lat - 1):
                    m.next = "READ_DATA"      # the entry reaches `e2`
            with m.State("READ_DATA"):
                m.d.sync += [resp.eq(0), resp.slot.eq(cmd.slot), resp.hit.eq(live),
                             resp.entry.eq(e2)]
                m.next = "RESP"
            with m.State("CRC"):
                with m.If(crc.done):
                    m.d.sync += [set_idx.eq(crc.crc[:len(set_idx)]), ridx.eq(0)]
                    m.next = "SCAN"
            with m.State("SCAN"):
                m.d.comb += r_addr.eq(Mux(tbl, local_of(ridx[:wb] if wb else Const(0, 0), len(self.tables) - 1),
                                          local_of(ridx[:wb] if wb else Const(0, 0), 0)))
                m.d.sync += ridx.eq(ridx + 1)
                with m.If(ridx >= lat):
                    # compare stage of way e2idx: first match, lowest free way
                    with m.If(~hit):
                        # each way's entry goes to the response until one
                        # matches, and the hit entry stays there (timing: the
                        # ~360 load enables do not wait for the key compare)
                        m.d.sync += [hit.eq(match), hit_way.eq(e2idx), resp.entry.eq(e2)]
                    with m.If(~live & ~free & key_ok):
                        m.d.sync += [free.eq(1), free_way.eq(e2idx)]
                with m.If(ridx == W + lat - 1):
                    m.next = "DECIDE"
            with m.State("DECIDE"):
                m.d.sync += [resp.hit.eq(hit), resp.full.eq(~hit & ~free)]
                with m.If(hit):
                    m.d.sync += resp.slot.eq(slot_of(hit_way))
                with m.Else():
                    m.d.sync += [resp.slot.eq(slot_of(free_way)), resp.entry.eq(0)]
                    with m.If((cmd.op == Op.INSERT) & free):
                        m.d.sync += resp.entry.eq(w_data)
                        m.d.sync += [wtbl.eq(tbl), w_addr.eq(Mux(tbl, local_of(free_way, len(self.tables) - 1),
                                                                  local_of(free_way, 0))),
                                     w_en.eq(1)]
                m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += self.resp.valid.eq(1)
                with m.If(self.resp.ready):
                    m.next = "IDLE"
        one_hot(fsm)        # 10 states (hw/onehot.py)
        return m
