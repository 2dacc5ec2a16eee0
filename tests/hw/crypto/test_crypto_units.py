"""Amaranth-simulator unit tests: AES round, key expansion, GHASH multiplier."""

import os
import random

import pytest
from amaranth.sim import Simulator
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from latchnic.hw.crypto.aes_round import AESRound
from latchnic.hw.crypto.ghash import GHASH
from latchnic.hw.crypto.key_expand import KeyExpand

from crypto_ref import aes_encrypt, aes_round, ghash, key_schedule


def le(b: bytes) -> int:      # byte-lane value: byte 0 in bits [0:8]
    return int.from_bytes(b, "little")


def run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("klen", [16, 32])
def test_reference_matches_cryptography(klen):
    rng = random.Random(klen)
    for _ in range(4):
        key, blk = rng.randbytes(klen), rng.randbytes(16)
        enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        assert aes_encrypt(key, blk) == enc.update(blk)


@pytest.mark.parametrize("latency", [1, 2])
def test_aes_round(latency):
    dut = AESRound(latency)
    rng = random.Random(1)
    cases = [(rng.randbytes(16), rng.randbytes(16), rng.random() < 0.3) for _ in range(24)]

    async def bench(ctx):
        for state, rk, final in cases:
            ctx.set(dut.i, le(state))
            await ctx.tick().repeat(latency)
            ctx.set(dut.rk, le(rk))
            ctx.set(dut.final, final)
            got = ctx.get(dut.o).to_bytes(16, "little")
            assert got == aes_round(state, rk, final)
    run(dut, bench)


def test_aes_round_chain_gives_aes():
    # a single round unit iterated with the reference schedule = real AES
    dut = AESRound()
    key, pt = bytes(range(16)), bytes.fromhex("00112233445566778899aabbccddeeff")
    rks = key_schedule(key)
    ct = Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(pt)

    async def bench(ctx):
        s = bytes(a ^ b for a, b in zip(pt, rks[0]))
        for r in range(1, 11):
            ctx.set(dut.i, le(s))
            await ctx.tick()
            ctx.set(dut.rk, le(rks[r]))
            ctx.set(dut.final, r == 10)
            s = ctx.get(dut.o).to_bytes(16, "little")
        assert s == ct
    run(dut, bench)


@pytest.mark.parametrize("klen", [16, 32])
def test_key_expand(klen):
    dut = KeyExpand(slot_bits=4)
    rng = random.Random(klen + 7)
    keys = [(rng.randbytes(klen), rng.randrange(16)) for _ in range(3)]

    async def bench(ctx):
        for key, slot in keys:
            ctx.set(dut.key.payload, {"key": le(key.ljust(32, b"\0")),
                                      "aes256": klen == 32, "slot": slot})
            ctx.set(dut.key.valid, 1)
            await ctx.tick().until(dut.key.ready)
            ctx.set(dut.key.valid, 0)
            got = {}
            for _ in range(200):
                we, rnd, data, done = ctx.get(dut.rk_we), ctx.get(dut.rk_round), \
                    ctx.get(dut.rk_data), ctx.get(dut.done)
                if we:
                    assert ctx.get(dut.rk_slot) == slot
                    assert rnd not in got
                    got[rnd] = data.to_bytes(16, "little")
                if done:
                    assert ctx.get(dut.done_slot) == slot
                    break
                await ctx.tick()
            else:
                raise AssertionError("key expansion never finished")
            assert [got[r] for r in sorted(got)] == key_schedule(key)
            assert sorted(got) == list(range(len(key_schedule(key))))
            await ctx.tick()
    run(dut, bench)


@pytest.mark.parametrize("digit", [32, 64, 128])
def test_ghash_multiplier(digit):
    dut = GHASH(digit=digit)
    rng = random.Random(digit)
    packets = [(rng.randbytes(16), [rng.randbytes(16) for _ in range(n)]) for n in (1, 3)]
    packets.append((bytes(15) + b"\x01", [rng.randbytes(16)]))

    async def bench(ctx):
        for h, blocks in packets:
            ctx.set(dut.h, le(h))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            for b in blocks:
                ctx.set(dut.i.payload, le(b))
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
                ctx.set(dut.i.valid, 0)
            while ctx.get(dut.busy):
                await ctx.tick()
            assert ctx.get(dut.y).to_bytes(16, "little") == ghash(h, blocks)
    run(dut, bench)


@pytest.mark.parametrize("units", [3, pytest.param(2, marks=pytest.mark.slow),
                                   pytest.param(14, marks=pytest.mark.slow)])
def test_aes_core(units):
    # ring of `units` 2-cycle rounds (or the 14-stage pipeline of them):
    # AES-128 then AES-256 blocks (key size changes drain a ring), responses
    # in order with their tags
    from latchnic.hw.crypto.aes_core import AESCore
    dut = AESCore(units=units, n_slots=4, tag_bits=4, round_latency=2)
    rng = random.Random(units)
    keys = {0: rng.randbytes(16), 3: rng.randbytes(32)}
    reqs = [(slot, rng.randbytes(16)) for slot in (0, 0, 0, 0, 0, 3, 3, 3, 3, 3, 3, 0)]
    want = [Cipher(algorithms.AES(keys[s]), modes.ECB()).encryptor().update(b)
            for s, b in reqs]

    async def bench(ctx):
        for slot, key in keys.items():
            for rnd, rk in enumerate(key_schedule(key)):
                ctx.set(dut.rk_we, 1)
                ctx.set(dut.rk_slot, slot)
                ctx.set(dut.rk_round, rnd)
                ctx.set(dut.rk_data, le(rk))
                await ctx.tick()
        ctx.set(dut.rk_we, 0)
        got = []
        n = 0
        for _ in range(400):
            if n < len(reqs):
                slot, blk = reqs[n]
                ctx.set(dut.req.payload, {"block": le(blk), "slot": slot,
                                          "aes256": len(keys[slot]) == 32, "tag": n % 16})
                ctx.set(dut.req.valid, 1)
            else:
                ctx.set(dut.req.valid, 0)
            if ctx.get(dut.resp_valid):
                got.append((ctx.get(dut.resp.tag), ctx.get(dut.resp.block).to_bytes(16, "little")))
            if n < len(reqs) and ctx.get(dut.req.ready):
                n += 1
            await ctx.tick()
            if len(got) == len(reqs):
                break
        assert got == [(k % 16, w) for k, w in enumerate(want)]
        assert ctx.get(dut.idle)
    run(dut, bench)


def to_poly(block: bytes) -> int:
    # GCM block -> polynomial form (bit i = coefficient of x^i): the block's
    # first bit (MSB of byte 0) is x^0
    return int(format(int.from_bytes(block, "big"), "0128b")[::-1], 2)


@pytest.mark.parametrize("latency", [2, 3, 4])
def test_gf_mul_pipe(latency):
    # one product per cycle, each checked against the bit-serial SP 800-38D
    # multiply (crypto_ref.gf_mul) on the blocks
    from latchnic.hw.crypto.gf_mul_pipe import GFMulPipe
    from crypto_ref import gf_mul
    dut = GFMulPipe(latency)
    rng = random.Random(latency)
    edge = [bytes(16), b"\x80" + bytes(15), b"\xff" * 16, bytes(15) + b"\x01"]
    cases = [(x, y) for x in edge for y in edge]
    cases += [(rng.randbytes(16), rng.randbytes(16)) for _ in range(24)]
    want = [gf_mul(int.from_bytes(x, "big"), int.from_bytes(y, "big")).to_bytes(16, "big")
            for x, y in cases]

    async def bench(ctx):
        got = []
        for t in range(len(cases) + latency):
            if t < len(cases):
                ctx.set(dut.a, to_poly(cases[t][0]))
                ctx.set(dut.b, to_poly(cases[t][1]))
            await ctx.tick()
            if t + 1 >= latency:
                got.append(ctx.get(dut.o))
        assert got[:len(cases)] == [to_poly(w) for w in want]
    run(dut, bench)


def h_powers(h: bytes, count: int) -> int:
    """H^1..H^count packed as GHASHPipe's `h` port wants them (byte lanes,
    H^1 lowest), from the reference multiply."""
    from crypto_ref import gf_mul
    hi, p, out = int.from_bytes(h, "big"), int.from_bytes(h, "big"), 0
    for k in range(count):
        out |= le(p.to_bytes(16, "big")) << (128 * k)
        p = gf_mul(p, hi)
    return out


@pytest.mark.parametrize("latency", [3])
def test_ghash_pipe(latency):
    # packets of 1..9 blocks back to back, random cycles without a block,
    # against the reference GHASH; powers of H from the reference multiply
    from latchnic.hw.crypto.ghash_pipe import GHASHPipe
    dut = GHASHPipe(latency)
    rng = random.Random(11)
    packets = [(rng.randbytes(16), [rng.randbytes(16) for _ in range(nb)])
               for nb in (1, 2, 3, 4, 5, 9, 1, 7)]

    async def bench(ctx):
        for n, (h, blocks) in enumerate(packets):
            ctx.set(dut.h, h_powers(h, latency))
            ctx.set(dut.n_blocks, len(blocks))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            for b in blocks:
                while n % 2 and rng.random() < 0.4:     # stalls on odd packets
                    ctx.set(dut.i.valid, 0)
                    await ctx.tick()
                ctx.set(dut.i.payload, le(b))
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)    # low while flushing after reset
            ctx.set(dut.i.valid, 0)
            while ctx.get(dut.busy):
                await ctx.tick()
            assert ctx.get(dut.y).to_bytes(16, "little") == ghash(h, blocks), n
    run(dut, bench)


@pytest.mark.parametrize("latency", [3])
def test_ghash_pipe_overlap(latency):
    # each packet starts as soon as can_start allows, while the previous one
    # drains (many 1..2-block packets: their last blocks meet the drains);
    # results are taken from done/y_done, in order, against the reference
    from latchnic.hw.crypto.ghash_pipe import GHASHPipe
    dut = GHASHPipe(latency)
    rng = random.Random(12)
    packets = [(rng.randbytes(16), [rng.randbytes(16) for _ in range(nb)])
               for nb in [1, 1, 2, 1, 3, 4, 1, 2, 6, 1, 1, 5, 2, 2, 1, 9, 1]]

    async def bench(ctx):
        got = []
        for n, (h, blocks) in enumerate(packets):
            while not ctx.get(dut.can_start):
                if ctx.get(dut.done):
                    got.append(ctx.get(dut.y_done))
                await ctx.tick()
            ctx.set(dut.h, h_powers(h, latency))
            ctx.set(dut.n_blocks, len(blocks))
            ctx.set(dut.start, 1)
            ctx.set(dut.i.valid, 0)
            if ctx.get(dut.done):
                got.append(ctx.get(dut.y_done))
            await ctx.tick()
            ctx.set(dut.start, 0)
            k = 0
            while k < len(blocks):
                stall = n % 3 == 2 and rng.random() < 0.4
                ctx.set(dut.i.valid, not stall)
                ctx.set(dut.i.payload, le(blocks[k]))
                if not stall and ctx.get(dut.i.ready):
                    k += 1
                if ctx.get(dut.done):
                    got.append(ctx.get(dut.y_done))
                await ctx.tick()
            ctx.set(dut.i.valid, 0)
        for _ in range(3 * latency):
            if ctx.get(dut.done):
                got.append(ctx.get(dut.y_done))
            await ctx.tick()
        want = [ghash(h, blocks) for h, blocks in packets]
        assert [v.to_bytes(16, "little") for v in got] == want
    run(dut, bench)


@pytest.mark.parametrize("n", [1, 3, 4])
def test_h_powers(n):
    from latchnic.hw.crypto.h_powers import HPowers
    dut = HPowers(n, slot_bits=4)
    rng = random.Random(n)
    hs = [(rng.randbytes(16), rng.randrange(16)) for _ in range(2)]

    async def bench(ctx):
        for h, slot in hs:
            ctx.set(dut.h, le(h))
            ctx.set(dut.slot, slot)
            ctx.set(dut.h_valid, 1)
            await ctx.tick()
            ctx.set(dut.h_valid, 0)
            for _ in range(10 * n + 10):
                if ctx.get(dut.we):
                    break
                await ctx.tick()
            else:
                raise AssertionError("no write")
            assert ctx.get(dut.slot_o) == slot
            data, want = ctx.get(dut.data), h_powers(h, n)
            lane = (1 << 128) - 1
            for k in range(n):
                assert (data >> (128 * k)) & lane == (want >> (128 * k)) & lane, k
            await ctx.tick()
    run(dut, bench)


def test_length_check():
    # packets exact, short, long, short within the last beat (keep), empty,
    # then exact again: every packet leaves as ceil(L/8) beats (zero-padded
    # or cut), the mismatches are flagged, and the stream stays in step
    from latchnic.hw.crypto.length_check import LengthCheck
    dut = LengthCheck(8)
    rng = random.Random(5)
    # (command length, bytes actually sent)
    cases = [(20, 20), (20, 9), (8, 30), (12, 11), (0, 0), (16, 16), (9, 17), (5, 5)]

    def beats(n):
        data = rng.randbytes(n)
        return [(le(data[k:k + 8]), (1 << len(data[k:k + 8])) - 1, k + 8 >= n)
                for k in range(0, n, 8)]
    sent = [beats(n) for _, n in cases]
    want_beats = []
    for (length, n), bs in zip(cases, sent):
        need = -(-length // 8)
        want_beats += [d for d, _, _ in bs[:need]] + [0] * (need - len(bs))
    want_err = [int(length != n) for length, n in cases]

    async def feed(ctx):
        for length, _ in cases:
            ctx.set(dut.length.payload, length)
            ctx.set(dut.length.valid, 1)
            await ctx.tick().until(dut.length.ready)
        ctx.set(dut.length.valid, 0)

    async def stream_in(ctx):
        for bs in sent:
            for d, k, last in bs:
                while rng.random() < 0.3:
                    ctx.set(dut.i_valid, 0)
                    await ctx.tick()
                ctx.set(dut.i_data, d)
                ctx.set(dut.i_keep, k)
                ctx.set(dut.i_last, last)
                ctx.set(dut.i_valid, 1)
                await ctx.tick().until(dut.i_ready)
        ctx.set(dut.i_valid, 0)

    async def bench(ctx):
        got, errs = [], []
        for _ in range(400):
            rdy = rng.random() < 0.7
            ctx.set(dut.o_ready, rdy)
            ctx.set(dut.err.ready, 1)
            if rdy and ctx.get(dut.o_valid):
                got.append(ctx.get(dut.o_data))
            if ctx.get(dut.err.valid):
                errs.append(ctx.get(dut.err.payload))
            await ctx.tick()
        assert errs == want_err
        assert got == want_beats

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(feed)
    sim.add_testbench(stream_in)
    sim.add_testbench(bench)
    sim.run()
