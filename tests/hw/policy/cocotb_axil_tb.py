"""cocotb bench: the AXI4-Lite slave and the generated register decoder.

Checks, through cocotbext-axi's AxiLiteMaster: the identification block
against the generated driver constants, reset values, read-back of every rw
register, write-only registers reading 0 while the hardware sees the value,
ro registers showing what the datapath drives, byte strobes, SLVERR on
holes, concurrent reads/writes, and that a table commit presents the whole
staged entry in the commit cycle (tear-free).
"""

import json
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, ReadOnly
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from latchnic.hw.generated import regs
from latchnic.hw.regmap import JSON_PATH, REGMAP

SLVERR = 2


async def setup(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    for r in REGMAP:
        if r.access == "ro" and r.const is None:
            getattr(dut, r.port).value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    return master


async def rd(master, addr):
    resp = await master.read(addr, 4)
    return int.from_bytes(resp.data, "little"), int(resp.resp)


async def wr(master, addr, value, nbytes=4):
    resp = await master.write(addr, value.to_bytes(nbytes, "little"))
    return int(resp.resp)


@cocotb.test()
async def id_block_and_reset_values(dut):
    master = await setup(dut)
    doc = json.loads(JSON_PATH.read_text())
    value, resp = await rd(master, regs.ID)
    assert (value, resp) == (regs.MAGIC, 0), hex(value)
    for entry in doc["registers"]:
        if entry["access"] == "wo":
            continue
        value, resp = await rd(master, entry["offset"])
        assert resp == 0, entry["name"]
        assert value == entry["reset"], (entry["name"], hex(value), hex(entry["reset"]))


@cocotb.test()
async def every_register(dut):
    master = await setup(dut)
    rng = random.Random(1)
    shadow = {}
    for r in REGMAP:
        v = rng.getrandbits(32)
        if r.access == "rw":
            assert await wr(master, r.offset, v) == 0
            shadow[r.offset] = v
        elif r.access == "wo":
            assert await wr(master, r.offset, v) == 0
            await RisingEdge(dut.clk)
            assert int(getattr(dut, r.port).value) == v, r.name
            got, resp = await rd(master, r.offset)
            assert (got, resp) == (0, 0), (r.name, "write-only register must read 0")
        elif r.const is None:
            getattr(dut, r.port).value = v
            got, resp = await rd(master, r.offset)
            assert (got, resp) == (v, 0), r.name
        else:   # ID block: writes are ignored, value stays
            before, _ = await rd(master, r.offset)
            await wr(master, r.offset, v)
            assert (await rd(master, r.offset))[0] == before, r.name
    for off, v in shadow.items():
        assert await rd(master, off) == (v, 0), hex(off)


@cocotb.test()
async def holes_and_strobes(dut):
    master = await setup(dut)
    mapped = {r.offset for r in REGMAP}
    holes = [a for a in range(0, 0x1000, 4) if a not in mapped]
    rng = random.Random(2)
    for a in rng.sample(holes, 40) + [0xFFC]:
        assert (await rd(master, a))[1] == SLVERR, hex(a)
        assert await wr(master, a, 0x12345678) == SLVERR, hex(a)
    await wr(master, regs.SCRATCH, 0x11223344)
    await master.write(regs.SCRATCH + 1, b"\xAA")
    await master.write(regs.SCRATCH + 2, b"\xBB\xCC")
    assert await rd(master, regs.SCRATCH) == (0xCCBBAA44, 0)


@cocotb.test()
async def concurrent_accesses(dut):
    master = await setup(dut)
    rng = random.Random(3)
    stage = [r for r in REGMAP if r.name.startswith("TBL_STAGE")]
    values = {r.offset: rng.getrandbits(32) for r in stage}
    done = []           # "w" / "r" in the order the slave answered them

    async def write(off, v):
        resp = await wr(master, off, v)
        done.append("w")
        return resp

    async def read():
        resp = await rd(master, regs.ID)
        done.append("r")
        return resp

    writers = [cocotb.start_soon(write(off, v)) for off, v in values.items()]
    readers = [cocotb.start_soon(read()) for _ in range(20)]
    for w in writers:
        assert await w == 0
    for r in readers:
        assert await r == (regs.MAGIC, 0)
    # neither kind starves the other: while both are queued they alternate
    both = 2 * min(len(writers), len(readers))
    assert all(a != b for a, b in zip(done[:both - 1], done[1:both])), "".join(done)
    for off, v in values.items():
        assert await rd(master, off) == (v, 0)


@cocotb.test()
async def commit_is_tear_free(dut):
    master = await setup(dut)
    rng = random.Random(4)
    seen = []

    async def watch():
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            if int(dut.tbl_commit_stb.value):
                entry = [int(getattr(dut, f"tbl_stage{i}").value) for i in range(regs.STAGE_WORDS)]
                key = [int(getattr(dut, f"tbl_key{i}").value) for i in range(regs.KEY_WORDS)]
                seen.append((int(dut.tbl_commit.value), entry, key))

    cocotb.start_soon(watch())
    expect = []
    for n in range(5):
        entry = [rng.getrandbits(32) for _ in range(regs.STAGE_WORDS)]
        key = [rng.getrandbits(32) for _ in range(regs.KEY_WORDS)]
        for i, w in enumerate(entry):
            await wr(master, regs.TBL_STAGE0 + 4 * i, w)
        for i, w in enumerate(key):
            await wr(master, regs.TBL_KEY0 + 4 * i, w)
        cmd = (regs.TABLES["sad"] << 16) | n
        await wr(master, regs.TBL_COMMIT, cmd)
        expect.append((cmd, entry, key))
    await ClockCycles(dut.clk, 3)
    assert seen == expect
