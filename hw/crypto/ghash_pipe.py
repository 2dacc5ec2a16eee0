"""GHASH at one block per cycle through a pipelined multiplier.

A multiplier of latency N holds N values at once, so a packet's blocks are
dealt round-robin to N interleaved accumulators ("lanes"): each cycle the
lane leaving the multiplier is XORed with the next block and goes back in.
With all lanes multiplied by H^N the sum over lanes would be off by powers
of H, so each block picks its factor from the number of blocks still to
come (the packet's block count is given at `start`):
    (lane ^ X_i) * H^min(N, m - i + 1)
Then every block X_i ends up multiplied by H^(m - i + 1), as in GHASH, and
Y = XOR of the N lanes as they leave the pipeline after the last block.
That needs exactly N - 1 other blocks between two blocks of one lane, so
the multiplier only advances on a block (clock enable) or while the lanes
drain. Blocks are registered once on the way in, so the enable comes from
a flip-flop rather than from the sequencer's handshake logic.

`h` holds H^1..H^N (byte-lane blocks, H^1 in the low 128 bits), read once
at `start` (it is sampled in every cycle into a spare bank, which becomes
the packet's at `start`). Interface otherwise as ghash.GHASH: `i` byte-lane blocks, `y`
valid when `busy` is low.

Packets may overlap: `start` is allowed as soon as `can_start` is high (all
blocks of the previous packet taken), while its lanes still drain. Lanes
leaving during a drain are replaced by zero, so the next packet's blocks
start fresh lanes. Each packet's result is given once, on the cycle `done`
is high, in `y_done` (the consumer must take it then). The next packet's
first block waits until the previous drain reaches its final cycle (an idle
cycle inside a drain would put its blocks in the wrong lanes): 2 cycles
between packets with N = 3.
"""

from amaranth.hdl import Array, EnableInserter, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .gf import reflect_bytes
from .gf_mul_pipe import GFMulPipe


class GHASHPipe(wiring.Component):
    def __init__(self, latency=3):
        self.lanes = latency
        super().__init__({
            "i": In(stream.Signature(128)),
            "start": In(1),
            "n_blocks": In(14),          # blocks of this packet (>= 1), at `start`
            "h": In(128 * latency),
            "y": Out(128),
            "busy": Out(1),
            "can_start": Out(1),
            "done": Out(1),
            "y_done": Out(128),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.lanes
        # datapath registers have no reset (fewer routes on the reset net);
        # after reset the multiplier is flushed with zeros for n cycles
        mul = GFMulPipe(n, reset_less=True)
        flush = Signal(range(n + 1), init=n)
        # H^(k+1) in two banks: `cur` is the running packet's, the other one
        # follows `h` every cycle and becomes current at `start`. The banks'
        # load enable is then a flip-flop (cur) instead of `start`, which is
        # late (sequencer state, queue flags) and would drive 384 enables.
        banks = [[Signal(128, name=f"hpow{b}_{k + 1}", reset_less=True) for k in range(n)]
                 for b in range(2)]
        cur = Signal()
        pw = Array(Mux(cur, banks[1][k], banks[0][k]) for k in range(n))
        rem = Signal(14)         # blocks of the packet still to come
        drain = Signal(range(n + 1))
        acc = Signal(128, reset_less=True)   # XOR of the lanes leaving after the last block
        # input register
        x_r = Signal(128, reset_less=True)
        v_r = Signal()
        last_r = Signal()
        k_r = Signal(range(n), reset_less=True)   # the block's factor is H^(k_r + 1)

        # a block enters the multiplier no earlier than the previous drain's
        # final cycle (the register below adds one cycle): an empty drain
        # cycle after one of its blocks would shift the packet's lanes
        after_drain = ~(v_r & last_r) & (drain <= 2) & (flush == 0)
        m.d.comb += self.i.ready.eq(~self.start & after_drain)
        take = self.i.valid & self.i.ready & (rem != 0)
        m.d.sync += v_r.eq(take)
        # loaded in every cycle, used only with v_r: no enable from `take`
        # (the sequencer's handshake, late) on 128+ flip-flops
        m.d.sync += [x_r.eq(reflect_bytes(self.i.payload)), last_r.eq(rem == 1),
                     k_r.eq(Mux(rem > n, n, rem) - 1)]

        with m.If(flush != 0):
            m.d.sync += flush.eq(flush - 1)
        en = v_r | (drain != 0) | (flush != 0)
        m.submodules.mul = EnableInserter(en)(mul)
        # while draining, the lane leaving belongs to the finished packet: the
        # next packet's lanes start from zero
        fb = Mux((drain != 0) | (flush != 0), 0, mul.o)
        m.d.comb += [mul.a.eq(fb ^ Mux(v_r, x_r, 0)), mul.b.eq(pw[k_r])]

        # the spare bank may take `h` in any cycle: the running packet's last
        # block reads its factor in the cycle after it is taken, which is at
        # the latest the cycle of the next `start` (can_start needs rem == 0)
        for b in range(2):
            with m.If(cur != b):
                m.d.sync += [banks[b][j].eq(reflect_bytes(self.h[128 * j:128 * j + 128]))
                             for j in range(n)]
        with m.If(self.start):
            m.d.sync += [cur.eq(~cur), rem.eq(self.n_blocks)]
        with m.Elif(take):
            m.d.sync += rem.eq(rem - 1)
        with m.If(drain != 0):
            m.d.sync += [drain.eq(drain - 1), acc.eq(acc ^ mul.o)]
        with m.If(v_r & last_r):
            m.d.sync += [drain.eq(n), acc.eq(0)]
        m.d.comb += [self.busy.eq((rem != 0) | v_r | (drain != 0)),
                     self.y.eq(reflect_bytes(acc)),
                     self.can_start.eq(rem == 0),
                     self.done.eq(drain == 1),
                     self.y_done.eq(reflect_bytes(acc ^ mul.o))]
        return m
