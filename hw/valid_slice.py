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

`answered=True`: `i.ready` is a constant 1, for a requester that offers a
request only once the table answered the one before. A table takes a request
before it answers it, so the slice is empty whenever such a requester asks;
the requester then moves on without testing `ready`, and `full` reaches
neither its next state nor the slice's load (timing: 9b8761d's 25F report,
the replay slice's `full` through the core's one-hot next state, -0.54 ns).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class ValidSlice(wiring.Component):
    def __init__(self, tag_shape, answered: bool = False):
        self.answered = answered
        super().__init__({
            "i": In(stream.Signature(tag_shape)),
            "o": Out(stream.Signature(tag_shape)),
        })

    def elaborate(self, platform):
        m = Module()
        full = Signal()
        tag = Signal.like(self.o.payload)
        m.d.comb += [self.o.valid.eq(full), self.o.payload.eq(tag),
                     self.i.ready.eq(1 if self.answered else ~full)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += full.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [full.eq(1), tag.eq(self.i.payload)]
        return m
