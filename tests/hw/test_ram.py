"""hw/ram.py (Amaranth simulator): the registered read word of a block RAM.
An address presented in cycle t is in the word from t+2; a read of the
address being written in the same cycle arrives as all ones in a build with
`poison_rw_collisions` (what the Verilator builds use), and as the RAM's
old word otherwise; a read of another address is never poisoned."""

import random

import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.sim import Simulator

from latchnic.hw.ram import PoisonCollisions, block_ram, read_register


class _Top(Elaboratable):
    def __init__(self, platform):
        self.mem = block_ram(12, 16)
        self.poison = platform

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = self.mem
        self.wp, self.rp = self.mem.write_port(), self.mem.read_port()
        # elaborated with the platform the test chose (Simulator passes none)
        self.word = read_register(m, self.poison, self.wp, self.rp)
        return m


@pytest.mark.parametrize("poison", [True, False])
def test_read_register(poison):
    rng = random.Random(7)
    top = _Top(PoisonCollisions() if poison else None)
    seen = {"collisions": 0, "reads": 0}

    async def bench(ctx):
        ram = [0] * 16
        pipe = []            # (expected word) of the reads two cycles back
        for _ in range(600):
            waddr, raddr = rng.randrange(16), rng.randrange(16)
            if rng.random() < 0.3:
                raddr = waddr                      # force collisions
            we = rng.random() < 0.5
            wdata = rng.randrange(1 << 12)
            ctx.set(top.wp.addr, waddr)
            ctx.set(top.wp.data, wdata)
            ctx.set(top.wp.en, we)
            ctx.set(top.rp.addr, raddr)
            collided = we and waddr == raddr
            seen["collisions"] += collided
            pipe.append(0xFFF if (collided and poison) else ram[raddr])
            if len(pipe) > 2:
                expect = pipe.pop(0)
                assert ctx.get(top.word) == expect
                seen["reads"] += 1
            await ctx.tick()
            if we:
                ram[waddr] = wdata

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["collisions"] > 50 and seen["reads"] > 500
    assert top.mem.attrs["no_rw_check"] == 1      # yosys: no read-first bypass
