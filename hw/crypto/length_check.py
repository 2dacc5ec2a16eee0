"""Input side: make every packet exactly as long as its command says.

The sequencer cuts packets by the command's lengths; a stream packet that is
shorter or longer than that would shift every later packet. This stage sits
between the input stream and the block aligner and, per command length L:
- passes ceil(L / W) beats (L = 0: none);
- a packet that ends early (`last` before its final beat) is padded with
  zero beats, so the next packet's bytes are never read for this one;
- a packet that goes on after its final beat has the excess dropped up to
  its `last`;
- a final beat whose `keep` does not cover exactly the remaining bytes
  counts as a mismatch too.
Each packet's result goes out on `err` (one transfer per command, in order)
for the sequencer to fail the packet's tag; the data are passed on anyway
(the consumer drops packets whose tag says not ok).
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class LengthCheck(wiring.Component):
    def __init__(self, beat_bytes):
        self.wb = beat_bytes
        super().__init__({
            "length": In(stream.Signature(18)),       # input bytes per packet, in order
            "i_valid": In(1),
            "i_ready": Out(1),
            "i_data": In(8 * beat_bytes),
            "i_keep": In(beat_bytes),
            "i_last": In(1),
            "o_valid": Out(1),
            "o_ready": In(1),
            "o_data": Out(8 * beat_bytes),
            "err": Out(stream.Signature(1)),          # 1: the packet's length was wrong
        })

    def elaborate(self, platform):
        m = Module()
        wb = self.wb
        sh = (wb - 1).bit_length()
        left = Signal(18 - sh + 1)   # beats still to pass
        tail = Signal(range(wb + 1))  # bytes in the final beat
        ended = Signal()             # the input packet ended early: pad
        bad = Signal()
        err_valid = Signal()
        m.d.comb += [self.err.valid.eq(err_valid), self.err.payload.eq(bad)]
        with m.If(self.err.valid & self.err.ready):
            m.d.sync += err_valid.eq(0)

        final = left == 1
        keep_ok = self.i_keep == Cat(*[tail > j for j in range(wb)])
        with m.FSM():
            with m.State("CMD"):
                # the previous packet's result must have gone first
                m.d.comb += self.length.ready.eq(~err_valid)
                with m.If(self.length.valid & ~err_valid):
                    n = self.length.payload
                    m.d.sync += [left.eq((n + wb - 1) >> sh), ended.eq(0), bad.eq(0),
                                 tail.eq(Mux(n[:sh] == 0, wb, n[:sh]) if sh else wb)]
                    with m.If(n == 0):
                        m.d.sync += err_valid.eq(1)
                    with m.Else():
                        m.next = "PASS"
            with m.State("PASS"):
                with m.If(ended):
                    # zero beats in place of the missing ones
                    m.d.comb += self.o_valid.eq(1)
                    with m.If(self.o_ready):
                        m.d.sync += left.eq(left - 1)
                        with m.If(final):
                            m.d.sync += err_valid.eq(1)
                            m.next = "CMD"
                with m.Else():
                    m.d.comb += [self.o_valid.eq(self.i_valid), self.o_data.eq(self.i_data),
                                 self.i_ready.eq(self.o_ready)]
                    with m.If(self.i_valid & self.o_ready):
                        m.d.sync += left.eq(left - 1)
                        with m.If(final):
                            with m.If(~self.i_last | ~keep_ok):
                                m.d.sync += bad.eq(1)
                            with m.If(self.i_last):
                                m.d.sync += err_valid.eq(1)
                                m.next = "CMD"
                            with m.Else():
                                m.next = "DROP"
                        with m.Elif(self.i_last):
                            m.d.sync += [bad.eq(1), ended.eq(1)]
            with m.State("DROP"):
                # the packet is longer than its command: discard to its end
                m.d.comb += self.i_ready.eq(1)
                with m.If(self.i_valid & self.i_last):
                    m.d.sync += err_valid.eq(1)
                    m.next = "CMD"
        return m
