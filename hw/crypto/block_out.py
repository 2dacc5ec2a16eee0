"""Output side: blocks of 0..16 bytes -> stream beats, packet by packet.

The mirror of block_in.py: byte `o` of an output packet goes to beat o // W,
lane o % W. A block written at packet offset `wpos` is shifted by wpos % W
bytes and OR-ed into the ring beats it covers (a beat is cleared when it
leaves). A full beat is offered only once a later byte or the packet end
has arrived, so that `last` is known when `valid` rises and never changes
while the beat waits. An end of packet with no bytes at all gives one beat
with keep = 0.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class BeatPacker(wiring.Component):
    def __init__(self, beat_bytes, ring=4):
        self.wb = beat_bytes
        self.n = ring
        self.m = -(-(16 + beat_bytes - 1) // beat_bytes)    # beats one block can touch
        assert ring & (ring - 1) == 0 and ring >= self.m
        assert beat_bytes in (2, 4, 8, 16, 32)
        super().__init__({
            "push_valid": In(1),
            "push_data": In(128),     # bytes above push_n must be zero
            "push_n": In(range(17)),
            "push_eop": In(1),
            "push_ready": Out(1),
            "o_valid": Out(1),
            "o_ready": In(1),
            "o_data": Out(8 * beat_bytes),
            "o_n": Out(range(beat_bytes + 1)),
            "o_last": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        wb, n = self.wb, self.n
        pbits = (n - 1).bit_length() + 1
        obits = (wb - 1).bit_length()
        ring = Array(Signal(8 * wb, name=f"beat{k}") for k in range(n))
        wbeat = Signal(pbits)          # beat the next byte goes to
        woff = Signal(obits)
        rbeat = Signal(pbits)          # beat offered on the output
        eop = Signal()                 # packet end seen, pushes wait
        started = Signal()             # current packet has bytes

        # input register: cuts the path aligner -> keystream xor -> shifter
        sv = Signal()
        s_data = Signal(128)
        s_n = Signal(range(17))
        s_eop = Signal()
        ahead = (wbeat - rbeat)[:pbits]
        inner_ready = ~eop & (ahead <= n - self.m)
        push = sv & inner_ready
        m.d.comb += self.push_ready.eq(~sv | push)
        with m.If(self.push_valid & self.push_ready):
            m.d.sync += [sv.eq(1), s_data.eq(self.push_data), s_n.eq(self.push_n),
                         s_eop.eq(self.push_eop)]
        with m.Elif(push):
            m.d.sync += sv.eq(0)

        # a beat may leave when bytes exist beyond it, or the packet has ended
        beyond = (ahead > 1) | ((ahead == 1) & (woff != 0))
        is_last = eop & ((ahead == 0) | ((ahead == 1) & (woff == 0)))
        empty = eop & ~started
        m.d.comb += [
            self.o_valid.eq(beyond | (eop & started) | empty),
            self.o_data.eq(ring[rbeat[:pbits - 1]]),
            self.o_last.eq(is_last | empty),
            self.o_n.eq(Mux(empty, 0, Mux(ahead == 0, woff, wb))),
        ]
        popped = self.o_valid & self.o_ready

        shifted = (s_data << (woff * 8))[:8 * wb * self.m]
        for k in range(n):
            j = (k - wbeat)[:pbits - 1]           # which word of the block lands here
            part = Array(shifted[8 * wb * i:8 * wb * (i + 1)] for i in range(self.m))
            hit = push & (j < self.m)
            cur = Mux(popped & (rbeat[:pbits - 1] == k) & ~empty, 0, ring[k])
            m.d.sync += ring[k].eq(cur | Mux(hit, part[j], 0))

        with m.If(push):
            pos = Cat(woff, wbeat) + s_n
            m.d.sync += [woff.eq(pos[:obits]), wbeat.eq(pos[obits:obits + pbits])]
            with m.If(s_n != 0):
                m.d.sync += started.eq(1)
            with m.If(s_eop):
                m.d.sync += eop.eq(1)
        with m.If(popped):
            with m.If(self.o_last):
                m.d.sync += [eop.eq(0), started.eq(0)]
                with m.If(~empty):
                    # next packet starts on a fresh beat
                    m.d.sync += [rbeat.eq(rbeat + 1), woff.eq(0),
                                 wbeat.eq(Mux(woff != 0, wbeat + 1, wbeat))]
            with m.Else():
                m.d.sync += rbeat.eq(rbeat + 1)
        return m
