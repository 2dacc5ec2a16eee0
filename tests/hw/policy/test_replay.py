"""Anti-replay windows (Amaranth simulator) against sim/replay.ReplayWindow:
window sizes 64..1024, with and without ESN (near the 2^32 boundary), in-order
runs, reordering inside the window, duplicates, old numbers, big jumps; the
check comes before and the update only after an "ICV pass", as RFC 4303
3.4.3 orders them (a failed ICV leaves the window as it was)."""

import random

import pytest
from amaranth.sim import Simulator

from latchnic.hw.policy.replay import ReplayOp, ReplayWindows, cmd_layout
from latchnic.sim.replay import ReplayWindow

from policy_gen import transact

MASK32 = 0xFFFFFFFF


async def _cmd(ctx, dut, op, sa, seq=0, esn=0, size=0):
    """One command through the windows, its answer as a dict."""
    return await transact(ctx, dut, {"op": op.value, "sa": sa, "seq": seq, "esn": esn, "size": size},
                          cmd_layout(dut.sa_bits))


def _want(w, low):
    """The model's answer to CHECK(low) on window `w`: (the full number or
    None, whether it may be accepted)."""
    seq = w.infer(low)
    return seq, seq is not None and w.check(seq)


def _simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def _run(seed, sas, max_window, ops):
    rng = random.Random(seed)
    dut = ReplayWindows(sas, max_window)
    errors, stats = [], {"ok": 0, "reject": 0}

    async def bench(ctx):
        def do(op, sa, seq=0, esn=0, size=0):
            return _cmd(ctx, dut, op, sa, seq, esn, size)

        models = {}
        for sa in range(sas):
            size = rng.choice([s for s in (64, 128, 100, 256, 1000, 1024) if s <= max_window])
            esn = rng.random() < 0.5
            top = rng.choice([0, 0, 5, 1000, MASK32 - 50, (7 << 32) + 20]) if esn else \
                rng.choice([0, 0, 5, 1000, MASK32 - 50])
            models[sa] = ReplayWindow(size, esn, top)
            await do(ReplayOp.INIT, sa, top, int(esn), size)
        for n in range(ops):
            sa = rng.randrange(sas)
            w = models[sa]
            r = rng.random()
            if r < 0.5:
                full = w.top + rng.randrange(1, 3)
            elif r < 0.8:
                full = w.top - rng.randrange(0, w.size + 40)
            elif r < 0.9:
                full = w.top + rng.randrange(1, 3 * max_window)
            else:
                full = w.top + rng.randrange(1, 1 << 33) if w.esn else rng.randrange(0, 1 << 32)
            full = max(0, min(full, (1 << 64) - 1 if w.esn else MASK32))
            low = full & MASK32
            want_seq, want_ok = _want(w, low)
            got = await do(ReplayOp.CHECK, sa, low)
            if got["ok"] != int(want_ok) or (want_ok and got["seq"] != want_seq):
                errors.append((n, sa, w.size, w.esn, w.top, low, want_seq, want_ok, got))
                continue
            if got["same"] != int(got["seq"] == low):
                errors.append((n, sa, "same", low, got))
            stats["ok" if want_ok else "reject"] += 1
            if want_ok:
                # a second pass's re-check sends the whole number its first
                # pass inferred: `same` says the high half is inferred again
                again = await do(ReplayOp.CHECK, sa, want_seq)
                if (again["ok"], again["same"], again["seq"]) != (1, 1, want_seq):
                    errors.append((n, sa, "re-check", want_seq, again))
                if w.esn:
                    other = await do(ReplayOp.CHECK, sa, want_seq ^ (1 << 32))
                    if other["same"] != 0:
                        errors.append((n, sa, "other high half", want_seq, other))
            if want_ok and rng.random() < 0.85:          # the ICV verified
                w.update(want_seq)
                await do(ReplayOp.UPDATE, sa, want_seq)
                top = (await do(ReplayOp.READ, sa))["seq"]    # what the host reads
                if top != w.top:
                    errors.append((n, sa, "top", top, w.top))

    _simulate(dut, bench)
    assert not errors, errors[:5]
    assert stats["ok"] > ops // 5 and stats["reject"] > ops // 25, stats


def test_replay_windows():
    _run(seed=1, sas=4, max_window=1024, ops=250)


def test_replay_windows_small():
    _run(seed=2, sas=4, max_window=128, ops=150)


@pytest.mark.slow
def test_replay_windows_long():
    _run(seed=3, sas=16, max_window=4096, ops=2500)


def test_replay_esn_high_half_edges():
    """RFC 4303 A2.2 at the ends of the high half: with top's high half 0, a
    low number from below the window would need high half -1; with it all
    ones, a number past the window would need 2^32. Neither exists: refused,
    as the model's `infer` says (None). Numbers beside them are accepted."""
    dut = ReplayWindows(2, 128)
    cases = [(64, 10, [MASK32 - 5, MASK32 - 60, 11, 3, 0]),
             (128, (MASK32 << 32) + MASK32 - 10, [5, 0, MASK32 - 9, MASK32 - 12, MASK32])]
    errors, refused = [], 0

    async def bench(ctx):
        nonlocal refused

        for sa, (size, top, lows) in enumerate(cases):
            w = ReplayWindow(size, True, top)
            await _cmd(ctx, dut, ReplayOp.INIT, sa, top, 1, size)
            for low in lows:
                want_seq, want_ok = _want(w, low)
                refused += want_seq is None
                got = await _cmd(ctx, dut, ReplayOp.CHECK, sa, low)
                if got["ok"] != int(want_ok) or (want_ok and got["seq"] != want_seq):
                    errors.append((sa, hex(top), hex(low), want_seq, want_ok, got))

    _simulate(dut, bench)
    assert not errors, errors
    assert refused == 3          # MASK32 - 5 below top 10; 5 and 0 past the all-ones top


def test_replay_init_marks_top():
    """INIT leaves the window as the model starts it: the top given (not 0)
    already received, every other number of the window not; the number
    after the top is new. Re-INIT of the same SA forgets what was marked.
    (Marking a top of 0 would not show: sequence number 0 is refused
    anyway, and the ring word holding it is cleared before it is reused.)"""
    dut = ReplayWindows(2, 256)
    # the top's zero test is made of 16-bit parts: one top per part with
    # only that part non-zero
    tops = [(5, False), (1000, False), (MASK32 - 50, False), (1, False), ((7 << 32) + 20, True),
            (0, False), (1 << 16, False), (1 << 32, True), (1 << 48, True)]
    errors, checked = [], 0

    async def bench(ctx):
        nonlocal checked

        for i, (top, esn) in enumerate(tops):
            sa = i % 2
            w = ReplayWindow(200, esn, top)
            await _cmd(ctx, dut, ReplayOp.INIT, sa, top, int(esn), 200)
            for full in (top, top - 1, top - 150, top + 1):
                if not 0 <= full < (1 << 64 if esn else 1 << 32):
                    continue
                _seq, want_ok = _want(w, full & MASK32)
                got = await _cmd(ctx, dut, ReplayOp.CHECK, sa, full & MASK32)
                checked += 1
                if got["ok"] != int(want_ok):
                    errors.append((hex(top), hex(full), want_ok, got))

    _simulate(dut, bench)
    assert not errors, errors
    assert checked >= 20, checked


def test_replay_update_decided_by_each_part():
    """UPDATE's "newer than the top" is combined from 16-bit parts: for each
    part, a number one above the top's in that part with every lower part
    smaller is newer (the top moves), and one below it with every lower part
    larger is older (the top stays, its bit is marked). Both are inside the
    window, so CHECK accepts them first, as the core would."""
    dut = ReplayWindows(2, 256)
    cases = []
    for k in range(4):
        unit = 1 << (16 * k)
        esn = k >= 2
        # top: part k is 5, the lower parts 0x..0005
        top = 5 * unit + 5 if k else 5
        older = top - 21 if k else 3                     # part k 4, lower parts 0xFF..F0
        cases.append((esn, top, [older, top + 1]))
        top = 5 * unit - 16 if k else 0x8000             # part k 4, lower parts 0xFF..F0
        cases.append((esn, top, [top + 21, top - 2]))    # part k 5, lower parts 0x..0005
    errors, moved = [], 0

    async def bench(ctx):
        nonlocal moved

        for i, (esn, top, seqs) in enumerate(cases):
            sa = i % 2
            w = ReplayWindow(200, esn, top)
            await _cmd(ctx, dut, ReplayOp.INIT, sa, top, int(esn), 200)
            for seq in seqs:
                want_seq, want_ok = _want(w, seq & MASK32)
                got = await _cmd(ctx, dut, ReplayOp.CHECK, sa, seq & MASK32)
                if (got["ok"], got["seq"]) != (1, seq) or (want_seq, want_ok) != (seq, True):
                    errors.append(("check", hex(top), hex(seq), want_ok, got))
                    continue
                before = w.top
                w.update(seq)
                moved += w.top != before
                await _cmd(ctx, dut, ReplayOp.UPDATE, sa, seq)
                got_top = (await _cmd(ctx, dut, ReplayOp.READ, sa))["seq"]
                again = await _cmd(ctx, dut, ReplayOp.CHECK, sa, seq & MASK32)
                if got_top != w.top or again["ok"] != 0:
                    errors.append(("update", hex(top), hex(seq), hex(got_top), hex(w.top), again))

    _simulate(dut, bench)
    assert not errors, errors
    assert moved == 8, moved          # each case's newer number moved the top
