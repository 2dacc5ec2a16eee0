"""Byte gearbox: packs a run of byte groups of varying size into groups of
another size.

GCM works on 16-byte blocks whose boundaries are set by the AAD and payload
lengths, not by the stream's beats (an 8-byte ESP AAD leaves the payload
half-way through a 128-bit beat). The engine therefore pushes bytes in as
they come and pops exactly the bytes the next block needs; on the way out it
does the reverse. Bytes above `count` are kept zero so that a push can be
OR-ed in at the fill level.

`push_eop` marks the end of a packet: no more pushes are taken until the
bytes before it have all been popped, and `pop_last` says a pop empties the
packet (used by the output side to set `last`).
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


def lane_mask(n, lanes):
    """Bit mask of the first `n` byte lanes (n a Value)."""
    return Cat(*[(n > j).replicate(8) for j in range(lanes)])


class ByteGearbox(wiring.Component):
    def __init__(self, in_bytes, out_bytes, depth):
        assert depth >= max(in_bytes, out_bytes) + min(in_bytes, out_bytes)
        self.in_bytes, self.out_bytes, self.depth = in_bytes, out_bytes, depth
        super().__init__({
            "push_valid": In(1),
            "push_data": In(8 * in_bytes),
            "push_n": In(range(in_bytes + 1)),
            "push_eop": In(1),
            "push_ready": Out(1),
            "pop": In(1),
            "pop_n": In(range(out_bytes + 1)),
            "pop_data": Out(8 * out_bytes),
            "count": Out(range(depth + 1)),
            "eop_pending": Out(1),
            "pop_last": Out(1),   # eop pending and popping `count` bytes ends it
        })

    def elaborate(self, platform):
        m = Module()
        buf = Signal(8 * self.depth)
        count = Signal(range(self.depth + 1))
        eop = Signal()
        m.d.comb += [self.count.eq(count), self.eop_pending.eq(eop),
                     self.pop_data.eq(buf[:8 * self.out_bytes]),
                     self.push_ready.eq((count <= self.depth - self.in_bytes) & ~eop),
                     self.pop_last.eq(eop & (count <= self.out_bytes))]
        push = self.push_valid & self.push_ready
        npop = Mux(self.pop, self.pop_n, 0)
        npush = Mux(push, self.push_n, 0)
        kept = buf >> (npop * 8)
        fresh = (self.push_data & lane_mask(self.push_n, self.in_bytes)).as_unsigned()
        fill = (count - npop)[:len(count)]
        placed = Mux(push, fresh, 0) << (fill * 8)
        m.d.sync += [buf.eq((kept | placed)[:8 * self.depth]),
                     count.eq(count - npop + npush)]
        with m.If(push & self.push_eop):
            m.d.sync += eop.eq(1)
        with m.Elif(self.pop & self.pop_last & (self.pop_n == count)):
            m.d.sync += eop.eq(0)
        # an eop with nothing in front of it (empty packet) clears on its own pop
        return m
