"""A two-entry stream register slice ("skid buffer").

Cuts every combinational path through a stream: `i.ready` comes from a
register (it does not depend on `o.ready`), and `o.valid` / `o.payload` come
from registers. Full throughput: a transfer every cycle when neither side
stalls. One cycle of latency.

Used where a consumer's `ready` is deep logic (the header parser's FSM) and
the producer's side must stay short (the core's meta queue writes on the
input handshake).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class SkidBuffer(wiring.Component):
    def __init__(self, shape):
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })

    def elaborate(self, platform):
        m = Module()
        main = Signal.like(self.o.payload)      # what `o` offers
        skid = Signal.like(self.o.payload)      # taken while `o` stalled
        main_valid = Signal()
        skid_valid = Signal()
        m.d.comb += [self.o.valid.eq(main_valid), self.o.payload.eq(main),
                     self.i.ready.eq(~skid_valid)]
        take = self.i.valid & ~skid_valid
        leave = main_valid & self.o.ready
        with m.If(leave | ~main_valid):
            # main moves on: refill it from the skid entry, else from the input
            with m.If(skid_valid):
                m.d.sync += [main.eq(skid), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [main.eq(self.i.payload), main_valid.eq(take)]
        with m.Elif(take):
            # main is held: the input word waits in the skid entry
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m
