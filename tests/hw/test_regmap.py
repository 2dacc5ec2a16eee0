"""The register map is declared once; generated files must be up to date."""

import importlib

from amaranth.sim import Simulator

from latchnic.hw import regmap


def test_generated_files_are_fresh():
    bad = regmap.stale()
    assert not bad, (f"stale generated files {[str(p) for p in bad]}: "
                     "run python -m latchnic.hw.regmap --write")


def test_stale_detection_works(tmp_path, monkeypatch):
    stale_file = tmp_path / "regs.py"
    stale_file.write_text("# old\n")
    monkeypatch.setitem(regmap.GENERATED, stale_file, regmap.as_python)
    assert stale_file in regmap.stale()


def test_driver_constants_match_declaration():
    regs = importlib.import_module("latchnic.hw.generated.regs")
    for r in regmap.REGMAP:
        assert getattr(regs, r.name) == r.offset
    from latchnic.sim.drops import REASONS
    for code, reason in enumerate(REASONS):
        assert getattr(regs, f"DROP_{reason.upper()}") == 0x400 + 4 * code


def _accessor(ctx, bus):
    """One register access on the decoder's bus, as the AXI slave makes it:
    the address set up `setup` cycles before w_en / r_en, then moved to a
    hole. Returns (read data or None, err)."""
    async def access(addr, w=None, strb=0xF, setup=regmap.ADDR_SETUP):
        if w is not None:
            ctx.set(bus.w_data, w)
            ctx.set(bus.w_strb, strb)
        ctx.set(bus.addr, addr)
        for _ in range(setup):
            await ctx.tick()
        ctx.set(bus.r_en if w is None else bus.w_en, 1)
        err = ctx.get(bus.err)
        await ctx.tick()
        ctx.set(bus.r_en, 0)
        ctx.set(bus.w_en, 0)
        ctx.set(bus.addr, 0xFFC)        # the data must not follow the address
        if w is not None:
            return None, err
        cycles = 1
        while not ctx.get(bus.r_valid):
            await ctx.tick()
            cycles += 1
            assert cycles <= regmap.READ_LATENCY, "no r_valid"
        assert cycles == regmap.READ_LATENCY
        return ctx.get(bus.r_data), err
    return access


def test_register_file_decoder():
    """Amaranth-simulator check of the decoder alone (no AXI): the address
    is set up ADDR_SETUP cycles before w_en / r_en; read data arrives with
    r_valid READ_LATENCY cycles after r_en; rw registers read back through
    their shadow RAM (reset value until written); DROP_* through the indexed
    `drop_*` port pair. An address given only in the cycle of w_en / r_en is
    not decoded (the decode is registered)."""
    dut = regmap.RegisterFile()
    log = []

    async def drop_ram(ctx):
        # the datapath's side of the drop array: data follows the index
        async for (idx,) in ctx.changed(dut.drop_index):
            ctx.set(dut.drop_data, 1000 + idx)

    async def bench(ctx):
        bus = dut.bus

        access = _accessor(ctx, bus)

        assert await access(0x000) == (regmap.MAGIC, 0)
        assert (await access(0x024))[1] == 1
        for r in regmap.REGMAP:
            if r.access == "rw":
                assert await access(r.offset) == (r.reset, 0), r.name
        await access(0x020, 0xDEADBEEF)
        assert await access(0x020) == (0xDEADBEEF, 0)
        await access(0x020, 0x00000011, strb=0b0001)
        assert await access(0x020) == (0xDEADBE11, 0)
        assert ctx.get(dut.scratch) == 0xDEADBE11
        tw = regmap.BY_NAME["TIME_WAIT"]
        await access(tw.offset, 0xAB << 16, strb=0b0100)        # a byte of a non-zero reset value
        assert await access(tw.offset) == ((tw.reset & ~0xFF0000) | (0xAB << 16), 0)
        assert ctx.get(dut.time_wait) == (tw.reset & ~0xFF0000) | (0xAB << 16)
        assert await access(0x020) == (0xDEADBE11, 0)
        s5 = regmap.BY_NAME["TBL_STAGE5"].offset
        await access(s5, 0x5555AAAA)
        assert await access(s5) == (0x5555AAAA, 0)
        assert await access(s5 + 4) == (0, 0)
        await access(regmap.BY_NAME["TBL_KEY0"].offset, 0x1234)
        assert ctx.get(dut.tbl_key0) == 0x1234
        assert await access(regmap.BY_NAME["TBL_KEY0"].offset) == (0, 0)
        from latchnic.sim.drops import REASONS
        for code, reason in enumerate(REASONS):
            assert await access(regmap.BY_NAME[f"DROP_{reason.upper()}"].offset) == (1000 + code, 0)
        ctx.set(dut.now, 77)
        assert await access(regmap.BY_NAME["NOW"].offset) == (77, 0)

        # no setup: the access is decoded as the bus's previous address
        # (0xFFC, a hole), so it answers err and writes nothing
        assert ctx.get(bus.addr) == 0xFFC
        assert (await access(0x000, setup=0))[1] == 1
        assert await access(0x020, 0x0BADF00D, setup=0) == (None, 1)
        assert ctx.get(dut.scratch) == 0xDEADBE11 and ctx.get(dut.scratch_stb) == 0
        assert await access(0x020) == (0xDEADBE11, 0)
        log.append("done")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(drop_ram)
    sim.add_testbench(bench)
    sim.run()
    assert log == ["done"]


def test_rw_lanes_per_register():
    """Each rw register keeps its own written byte lanes: every one is
    written through its own strobe pattern, in an order that moves rw_idx
    around, and reads back the data in its written lanes and its reset value
    in the others (a lane select of another register, or a stage of it a
    cycle off, shows as a wrong byte)."""
    dut = regmap.RegisterFile()
    rw = [r for r in regmap.REGMAP if r.access == "rw"]
    order = rw[::3] + rw[1::3] + rw[2::3]
    log = []

    async def bench(ctx):
        access = _accessor(ctx, dut.bus)
        want = {}
        for i, r in enumerate(order):
            strb = 1 + (7 * i) % 15
            data = r.reset ^ 0xA55AC33C
            await access(r.offset, data, strb=strb)
            lanes = sum(0xFF << 8 * b for b in range(4) if strb >> b & 1)
            want[r.name] = (data & lanes) | (r.reset & ~lanes & 0xFFFFFFFF)
        for r in order[::-1] + order:
            assert await access(r.offset) == (want[r.name], 0), r.name
        log.append("done")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert log == ["done"]
