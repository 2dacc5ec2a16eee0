"""Block RAM with its read word registered: the shape every table RAM of
the gateware has, in one place.

    mem = block_ram(shape, depth)           # Memory with no_rw_check
    wp, rp = mem.write_port(), mem.read_port()
    word = read_register(m, platform, wp, rp)

`word` is `rp.data` registered every cycle, without a reset: an address
presented in cycle t is in `word` from cycle t+2. On ECP5 that register
becomes the EBR's own output register (boards/ecp5_outreg.py: 0.96 ns
clock-to-output where the bare EBR's is 5.61 ns on -6).

`no_rw_check` tells yosys not to emulate a read of the address being
written in the same cycle (it would put a bypass mux behind the EBR, which
stops the fold): the hardware returns an undefined word then. Each owner
promises never to use such a word. That promise is checked in simulation:
when the design is elaborated for a platform with `poison_rw_collisions`
set (tests/hw/policy/policy_harness.py builds the Verilator model so), such
a word arrives as all ones, and the random-traffic suites, which compare
every verdict with the reference model, see any use of it.
"""

from amaranth.hdl import Const, Mux, Signal, Value
from amaranth.lib import fifo
from amaranth.lib.memory import Memory

__all__ = ["block_ram", "read_register", "PoisonCollisions", "BlockFifo"]


class PoisonCollisions:
    """The platform object a simulation build is elaborated with."""
    poison_rw_collisions = True


def block_ram(shape, depth, **attrs) -> Memory:
    return Memory(shape=shape, depth=depth, init=[], attrs={"no_rw_check": 1, **attrs})


def read_register(m, platform, wp, rp, name=None) -> Signal:
    word = Signal.like(rp.data, reset_less=True, name=name)
    if getattr(platform, "poison_rw_collisions", False):
        # the read port's data of cycle t+1 belongs to the address of cycle t
        collided = Signal(name=None if name is None else f"{name}_collided")
        m.d.sync += collided.eq(wp.en.any() & (wp.addr == rp.addr))
        ones = Const(-1, len(Value.cast(word)))
        m.d.sync += word.eq(Mux(collided, ones, rp.data))
    else:
        m.d.sync += word.eq(rp.data)
    return word


class BlockFifo(fifo.SyncFIFOBuffered):
    """amaranth's SyncFIFOBuffered with `no_rw_check` on its storage, so
    yosys puts no read-during-write bypass mux behind the EBR (timing:
    70f03fc's 25F report, the event FIFO's EBR -> that mux -> the head
    register, -0.14 ns). The FIFO never reads the word being written: its
    storage reads at `consume` only while the storage holds a word, and
    writes at `produce` only while it has room; the two addresses are equal
    only when it is empty or full."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.submodules.storage.attrs["no_rw_check"] = 1
        return m
