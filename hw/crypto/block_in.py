"""Input side: stream beats -> 16-byte blocks at any byte offset of a packet.

GCM cuts a packet into blocks by its AAD/payload/ICV lengths, not by beats
(ESP's 8-byte AAD leaves the payload half-way into a beat). Within a packet
every beat but the last is full, so byte `o` of the packet always sits in
beat o // W, lane o % W. Beats are therefore stored whole in a small ring
and a block is read as the R beats that cover it, shifted by o % W bytes: one
narrow shifter with a slowly changing amount, far cheaper than a byte FIFO
with two barrel shifters. `align` (at packet end) moves the read position to
the next beat, where the next packet starts.
"""

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class BlockAligner(wiring.Component):
    def __init__(self, beat_bytes, ring=4):
        self.wb = beat_bytes
        self.n = ring
        self.r = -(-(16 + beat_bytes - 1) // beat_bytes)    # beats one block can span
        assert ring & (ring - 1) == 0 and ring >= self.r
        assert beat_bytes in (2, 4, 8, 16, 32)
        super().__init__({
            "push_valid": In(1),
            "push_data": In(8 * beat_bytes),
            "push_ready": Out(1),
            "pop": In(1),
            "pop_n": In(range(17)),
            "pop_data": Out(128),
            "avail": Out(1),        # pop_n bytes are there
            "align": In(1),         # packet end (never together with pop)
        })

    def elaborate(self, platform):
        m = Module()
        wb, n = self.wb, self.n
        pbits = (n - 1).bit_length() + 1                 # beat counters mod 2n
        obits = (wb - 1).bit_length()
        ring = Array(Signal(8 * wb, name=f"beat{k}") for k in range(n))
        wbeat = Signal(pbits)                            # beats written
        rbeat = Signal(pbits)                            # beat holding the read position
        roff = Signal(obits)                     # byte within that beat
        occ = (wbeat - rbeat)[:pbits]
        m.d.comb += self.push_ready.eq(occ < n)
        push = self.push_valid & self.push_ready
        with m.If(push):
            m.d.sync += [ring[wbeat[:pbits - 1]].eq(self.push_data), wbeat.eq(wbeat + 1)]
        # bytes readable from the read position, kept as a register so that
        # `avail` is a single compare (it gates the sequencer's every move)
        have = Signal(range(n * wb + 1))
        skip = Mux(roff != 0, wb - roff, 0)
        dec = Mux(self.align, skip, Mux(self.pop, self.pop_n, 0))
        m.d.sync += have.eq(have + Mux(push, wb, 0) - dec)

        words = Cat(*[ring[(rbeat + j)[:pbits - 1]] for j in range(self.r)])
        m.d.comb += self.pop_data.eq((words >> (roff * 8))[:128])
        m.d.comb += self.avail.eq(have >= self.pop_n)

        pos = Cat(roff, rbeat) + self.pop_n
        with m.If(self.align):
            with m.If(roff != 0):
                m.d.sync += [roff.eq(0), rbeat.eq(rbeat + 1)]
        with m.Elif(self.pop):
            m.d.sync += [roff.eq(pos[:obits]), rbeat.eq(pos[obits:obits + pbits])]
        return m
