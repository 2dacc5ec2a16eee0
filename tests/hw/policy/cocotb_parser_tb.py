"""cocotb bench: the header parser against latchnic.sim.packet.parse_frame.

Environment: PARSER_SEED, PARSER_COUNT, PARSER_STALL (1: random idle on the
source and random backpressure on the result port), PARSER_MUTATED.
Frames go in through cocotbext-axi's AxiStreamSource (via the thin adapter in
policy_tops.py); results are popped by a monitor and compared field by field
with the reference model's parse, in order.
"""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSource

from latchnic.hw.policy.parser import result_layout

from frames import expected_parse, frames


def unpack(v: int) -> dict:
    out = {}
    for name, f in result_layout:
        out[name] = (v >> f.offset) & ((1 << f.width) - 1)
    return out


def _stalls(rng, p):
    while True:
        yield int(rng.random() < p)


@cocotb.test()
async def parser_matches_model(dut):
    seed = int(os.environ.get("PARSER_SEED", "1"))
    count = int(os.environ.get("PARSER_COUNT", "500"))
    stall = os.environ.get("PARSER_STALL", "0") == "1"
    mutated = float(os.environ.get("PARSER_MUTATED", "0.4"))
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
    rng = random.Random(seed)
    if stall:
        source.set_pause_generator(_stalls(random.Random(seed + 1), 0.3))
    dut.res_ready.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0

    work = frames(seed, count, mutated)
    got = []

    async def sink():
        # sample right after the edge: the values the transfer happened with
        dut.res_ready.value = 1
        while len(got) < len(work):
            await RisingEdge(dut.clk)
            if int(dut.res_ready.value) and int(dut.res_valid.value):
                got.append(unpack(int(dut.res_data.value)))
            dut.res_ready.value = int(rng.random() >= 0.3) if stall else 1

    task = cocotb.start_soon(sink())
    for f in work:
        await source.send(AxiStreamFrame(f))
    await task
    errors = []
    for n, (f, hw) in enumerate(zip(work, got)):
        exp = expected_parse(f)
        diff = {k: (hex(hw[k]), hex(v)) for k, v in exp.items() if hw[k] != v}
        if diff:
            errors.append(f"frame {n} ({f.hex()}): hw vs model {diff}")
    for e in errors[:10]:
        dut._log.error(e)
    dut._log.info("%d frames, %d mismatches", len(work), len(errors))
    assert not errors
