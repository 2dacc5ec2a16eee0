"""A register slice for a request's `valid` and a narrow tag only.

The wide part of a request (a flow, an entry) comes straight from the
requester's registers, which hold it until the answer; only `valid` and a
few bits that differ between the requester's states (an op code, a
selector) pass through this slice. So the requester's FSM decode reaches
one flip-flop per tag bit, not the table's wide command registers and
their enables, and the table's `ready` reaches only `full` (timing).

The requester's side sees its request taken in the cycle it offers it when
the slice is empty; the table sees it one cycle later. One request at a time
(a transfer at most every other cycle), which is what the core does.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class ValidSlice(wiring.Component):
    def __init__(self, tag_shape):
        super().__init__({
            "i": In(stream.Signature(tag_shape)),
            "o": Out(stream.Signature(tag_shape)),
        })

    def elaborate(self, platform):
        m = Module()
        full = Signal()
        tag = Signal.like(self.o.payload)
        m.d.comb += [self.o.valid.eq(full), self.o.payload.eq(tag), self.i.ready.eq(~full)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += full.eq(0)
        with m.If(self.i.valid & ~full):
            m.d.sync += [full.eq(1), tag.eq(self.i.payload)]
        return m
