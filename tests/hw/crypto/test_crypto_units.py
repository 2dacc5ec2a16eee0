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
