"""cocotb testbench for the GCM engine (runs inside Verilator).

Work comes from the environment (set by test_crypto_gcm.py):
  LATCHNIC_GCM_CONFIG   compact | wide
  LATCHNIC_GCM_JOB      cavp | diff | lenerr (diff with mismatched stream lengths)
  LATCHNIC_CAVP_FILES   comma-separated CAVP file names (cavp)
  LATCHNIC_CAVP_STRIDE  take every Nth 96-bit-IV vector (1 = all)
  LATCHNIC_DIFF_SEED, LATCHNIC_DIFF_COUNT, LATCHNIC_DIFF_MAXLEN (diff)
  LATCHNIC_STALL        1: random idle on the source, backpressure on the sinks
  LATCHNIC_DIFF_SMALL   1: AAD and payload lengths up to LATCHNIC_DIFF_MAXLEN only
  LATCHNIC_EAGER_REKEY  1: write keys into slots that still have packets in flight

The driver writes keys, commands and packet bytes as fast as the design
takes them; a checker pulls frames and tags in order and compares them with
the expectation computed in Python (CAVP file values or `cryptography`).
"""

import logging
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, Event
from cocotb.queue import Queue
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from latchnic.hw.crypto.gcm import GCMEngine, cmd_layout, tag_layout
from latchnic.hw.crypto.key_expand import key_layout

from crypto_vectors import load_cavp


def pack(layout, **fields):
    v = 0
    for name, field in layout:
        x = int(fields.get(name, 0))
        assert 0 <= x < (1 << field.width), (name, x)
        v |= x << field.offset
    return v


def unpack(layout, v):
    return {name: (v >> f.offset) & ((1 << f.width) - 1) for name, f in layout}


def le(b: bytes) -> int:
    return int.from_bytes(b, "little")


class Packet:
    """One engine job and what must come out of it."""

    def __init__(self, key, nonce, aad, text, mode, icv_len, icv=b"",
                 exp_out=None, exp_tag=None, exp_ok=True):
        self.key, self.nonce, self.aad, self.text = key, nonce, aad, text
        self.mode, self.icv_len, self.icv = mode, icv_len, icv
        self.exp_out, self.exp_tag, self.exp_ok = exp_out, exp_tag, exp_ok
        self.slot = None
        self.sent = None        # bytes to send instead (length mismatch tests)

    @property
    def decrypt(self):
        return self.mode in ("decrypt", "gmac_verify")

    @property
    def gmac(self):
        return self.mode in ("gmac", "gmac_verify")

    def input_bytes(self):
        if self.sent is not None:
            return self.sent
        return self.aad + self.text + (self.icv if self.decrypt else b"")


class TB:
    def __init__(self, dut, stall):
        self.dut = dut
        self.cfg = GCMEngine(os.environ.get("LATCHNIC_GCM_CONFIG", "compact"))
        sb = self.cfg.slot_bits
        self.cmd_layout, self.key_layout = cmd_layout(sb), key_layout(sb)
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
        for x in (self.source, self.sink):
            x.log.setLevel(logging.WARNING)
        self.rng = random.Random(int(os.environ.get("LATCHNIC_DIFF_SEED", "1")))
        self.stall = stall
        self.eager_rekey = os.environ.get("LATCHNIC_EAGER_REKEY", "0") == "1"
        if stall:
            self.source.set_pause_generator(self._pauses(0.3))
            self.sink.set_pause_generator(self._pauses(0.3))
        self.tags = Queue()
        self.done = 0
        self.done_event = Event()
        self.slot_last_use = {}
        self.slot_key = {}
        dut.cmd_valid.value = 0
        dut.key_valid.value = 0
        dut.tag_ready.value = 0

    def _pauses(self, p):
        rng = random.Random(self.rng.random())
        while True:
            # bursts of stalls, not single-cycle noise
            yield rng.random() < p
            if rng.random() < 0.05:
                for _ in range(rng.randrange(1, 20)):
                    yield True

    async def reset(self):
        cocotb.start_soon(Clock(self.dut.clk, 10, unit="ns").start())
        self.dut.rst.value = 1
        for _ in range(3):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)
        cocotb.start_soon(self._tag_monitor())

    async def _handshake(self, valid, ready, data, value):
        data.value = value
        valid.value = 1
        while True:
            await RisingEdge(self.dut.clk)
            if ready.value:
                break
        valid.value = 0

    async def _tag_monitor(self):
        rng = random.Random(7)
        while True:
            rdy = not (self.stall and rng.random() < 0.3)
            self.dut.tag_ready.value = rdy
            await RisingEdge(self.dut.clk)
            if rdy and self.dut.tag_valid.value:
                self.tags.put_nowait(unpack(tag_layout, int(self.dut.tag_data.value)))

    async def load_key(self, slot, key):
        # never rewrite a slot under a packet that is still in the engine,
        # unless the test is that the engine holds the key write back itself
        while not self.eager_rekey and self.slot_last_use.get(slot, -1) >= self.done:
            self.done_event.clear()
            await self.done_event.wait()
        await self._handshake(self.dut.key_valid, self.dut.key_ready, self.dut.key_data,
                              pack(self.key_layout, key=le(key.ljust(32, b"\0")),
                                   aes256=len(key) == 32, slot=slot))
        self.slot_key[slot] = key

    async def send(self, n, pkt):
        if self.slot_key.get(pkt.slot) != pkt.key:
            await self.load_key(pkt.slot, pkt.key)
        self.slot_last_use[pkt.slot] = n
        aad_len = len(pkt.aad) if not pkt.gmac else len(pkt.aad + pkt.text)
        pay_len = 0 if pkt.gmac else len(pkt.text)
        await self._handshake(self.dut.cmd_valid, self.dut.cmd_ready, self.dut.cmd_data,
                              pack(self.cmd_layout, slot=pkt.slot, nonce=le(pkt.nonce),
                                   aad_len=aad_len, payload_len=pay_len,
                                   decrypt=pkt.decrypt, gmac=pkt.gmac, icv_len=pkt.icv_len))
        data = pkt.input_bytes()
        if data:
            await self.source.send(AxiStreamFrame(data))

    async def drive(self, packets):
        for n, pkt in enumerate(packets):
            await self.send(n, pkt)

    async def check(self, packets):
        errors = []
        for n, pkt in enumerate(packets):
            frame = await self.sink.recv()
            got = bytes(frame.tdata)
            tag = await self.tags.get()
            got_tag = tag["tag"].to_bytes(16, "little")
            what = f"packet {n} ({pkt.mode}, key {len(pkt.key) * 8}, aad {len(pkt.aad)}, " \
                   f"text {len(pkt.text)}, icv {pkt.icv_len})"
            if bool(tag["len_err"]) != (pkt.sent is not None):
                errors.append(f"{what}: len_err={tag['len_err']}, sent "
                              f"{len(pkt.input_bytes())} bytes")
            if bool(tag["ok"]) != pkt.exp_ok:
                errors.append(f"{what}: ok={tag['ok']} expected {pkt.exp_ok}")
            if pkt.exp_out is not None and got != pkt.exp_out:
                errors.append(f"{what}: data mismatch\n got {got.hex()}\n exp {pkt.exp_out.hex()}")
            if pkt.exp_tag is not None and got_tag != pkt.exp_tag[:pkt.icv_len].ljust(16, b"\0"):
                errors.append(f"{what}: tag {got_tag.hex()} expected {pkt.exp_tag.hex()}")
            self.done = n + 1
            self.done_event.set()
            if len(errors) > 10:
                break
        return errors


def assign_slots(packets, n_slots, rng=None):
    """Round-robin slots per distinct key, so keys stay resident for reuse."""
    where = {}
    nxt = 0
    for p in packets:
        if p.key not in where:
            where[p.key] = nxt % n_slots if rng is None else rng.randrange(n_slots)
            nxt += 1
        p.slot = where[p.key]


def cavp_packets():
    stride = int(os.environ.get("LATCHNIC_CAVP_STRIDE", "1"))
    packets = []
    for fname in os.environ["LATCHNIC_CAVP_FILES"].split(","):
        vecs = load_cavp(fname)[::stride]
        for v in vecs:
            icv = len(v["tag"])
            if fname.startswith("gcmEncrypt"):
                packets.append(Packet(v["key"], v["iv"], v["aad"], v["pt"], "encrypt", icv,
                                      exp_out=v["aad"] + v["ct"] + v["tag"], exp_tag=v["tag"]))
            else:
                ok = not v["fail"]
                packets.append(Packet(v["key"], v["iv"], v["aad"], v["ct"], "decrypt", icv,
                                      icv=v["tag"], exp_out=(v["aad"] + v["pt"]) if ok else None,
                                      exp_tag=v["tag"] if ok else None, exp_ok=ok))
    return packets


def diff_packets(rng):
    count = int(os.environ.get("LATCHNIC_DIFF_COUNT", "20"))
    maxlen = int(os.environ.get("LATCHNIC_DIFF_MAXLEN", "9000"))
    # small: payloads and AAD up to maxlen only (packets shorter than the
    # engine's per-packet pipeline, so several overlap inside it)
    small = os.environ.get("LATCHNIC_DIFF_SMALL", "0") == "1"
    keys = [rng.randbytes(rng.choice([16, 32])) for _ in range(24)]
    lengths = [0, 1, 15, 16, 17, maxlen] + [rng.randrange(0, maxlen + 1) for _ in range(count)]
    packets = []
    for n in range(count):
        key = rng.choice(keys)
        # the first six are the edge lengths (0, 1, 15, 16, 17, max); then a mix
        plen = lengths[n] if n < 6 or rng.random() < 0.5 else rng.randrange(0, 300)
        alen = rng.choice([0, 8, 12, rng.randrange(0, 40), rng.randrange(0, 600)])
        if small:
            plen = min(plen, maxlen)
            alen = rng.choice([0, 8, 8, 12, rng.randrange(0, maxlen + 1)])
        aad, pt = rng.randbytes(alen), rng.randbytes(plen)
        nonce = rng.randbytes(12)
        icv_len = rng.choice([8, 12, 16])
        mode = rng.choice(["encrypt", "encrypt", "decrypt", "decrypt", "gmac", "gmac_verify"])
        g = AESGCM(key)
        if mode in ("gmac", "gmac_verify"):
            tag = g.encrypt(nonce, b"", aad + pt)
            ct = pt
        else:
            sealed = g.encrypt(nonce, pt, aad)
            ct, tag = sealed[:-16], sealed[-16:]
        if mode == "encrypt":
            packets.append(Packet(key, nonce, aad, pt, mode, icv_len,
                                  exp_out=aad + ct + tag[:icv_len], exp_tag=tag))
        elif mode == "gmac":
            packets.append(Packet(key, nonce, aad, pt, mode, icv_len,
                                  exp_out=aad + pt + tag[:icv_len], exp_tag=tag))
        else:
            bad = rng.random() < 0.3
            icv = bytearray(tag[:icv_len])
            if bad:
                icv[rng.randrange(icv_len)] ^= 1 << rng.randrange(8)
            text = ct if mode == "decrypt" else pt
            plain = pt
            packets.append(Packet(key, nonce, aad, text, mode, icv_len, icv=bytes(icv),
                                  exp_out=aad + plain, exp_tag=tag, exp_ok=not bad))
    return packets


def corrupt_lengths(packets, rng):
    """Send a third of the packets (those with input bytes) shorter or longer
    than their command says; those must fail with len_err, and the packets
    after them must still come out right. Returns how many were corrupted."""
    bad = 0
    for p in packets:
        data = p.input_bytes()
        if not data or rng.random() > 0.33:
            continue
        delta = rng.choice([-1, -8, -17, -len(data) + 1, 1, 9, 40])
        if delta < 0:
            p.sent = data[:max(1, len(data) + delta)]
        else:
            p.sent = data + rng.randbytes(delta)
        if p.sent == data:      # a one-byte packet cannot be cut shorter
            p.sent = None
            continue
        p.exp_ok, p.exp_out, p.exp_tag = False, None, None
        bad += 1
    return bad


@cocotb.test()
async def run_job(dut):
    stall = os.environ.get("LATCHNIC_STALL", "0") == "1"
    tb = TB(dut, stall)
    await tb.reset()
    job = os.environ.get("LATCHNIC_GCM_JOB", "diff")
    if job == "cavp":
        packets = cavp_packets()
        assign_slots(packets, tb.cfg.n_slots)
    else:
        packets = diff_packets(tb.rng)
        assign_slots(packets, tb.cfg.n_slots, tb.rng)
    if job == "lenerr":
        bad = corrupt_lengths(packets, tb.rng)
    start = cocotb.utils.get_sim_time("ns") if hasattr(cocotb, "utils") else 0
    cocotb.start_soon(tb.drive(packets))
    errors = await tb.check(packets)
    nbytes = sum(len(p.input_bytes()) for p in packets)
    dut._log.warning("%s: %d packets, %d bytes, %d errors", job, len(packets), nbytes, len(errors))
    assert not errors, "\n".join(errors[:10])
    assert tb.tags.empty()
    if job == "lenerr":
        assert int(dut.len_errors.value) == bad, (int(dut.len_errors.value), bad)
