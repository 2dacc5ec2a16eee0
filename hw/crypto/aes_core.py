"""AES forward cipher (128/256-bit keys) as a ring or pipeline of round units.

`units` round units (aes_round.AESRound) are chained; a block visits them in
turn, one round per cycle.
- units in 1..8: a ring. A block enters unit 0 when the slot coming round
  from the last unit is empty and leaves after Nr rounds, from unit
  (Nr - 1) % units; up to `units` x `round_latency` blocks are in flight.
  Blocks of one key size all leave from the same unit, so they stay in
  order and at most one leaves per cycle; a block of the other key size
  waits until the ring drains (key size only changes between packets).
  A ring slot freed at unit e rides empty to unit 0, so a block costs
  ceil(Nr / units) revolutions: with 2-cycle rounds, cycles per block are
  2 * units * ceil(Nr / units) / (2 * units) = ceil(Nr / units) (3 units:
  4 for AES-128, 5 for AES-256).
- units == 14: a straight pipeline, one block per cycle. AES-128 blocks are
  done after unit 9 and ride a 4-stage delay line so that every block has the
  same latency and order is kept.

The core never stalls: `resp` is a strobe. Whoever issues requests must keep
room for every response (gcm.py counts credits against its FIFO).
Round keys are written through `rk_*` (from key_expand.KeyExpand) into one
memory per unit (+1 for the initial AddRoundKey), so every unit has its own
read port and packets on different key slots follow each other with no gap.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .aes_round import AESRound


def req_layout(slot_bits, tag_bits):
    return data.StructLayout({"block": 128, "slot": slot_bits, "aes256": 1, "tag": tag_bits})


def resp_layout(tag_bits):
    return data.StructLayout({"block": 128, "tag": tag_bits})


class AESCore(wiring.Component):
    def __init__(self, units=2, n_slots=16, tag_bits=1, round_latency=1):
        if not (1 <= units <= 8 or units == 14):
            raise ValueError("units must be 1..8 (ring) or 14 (pipeline)")
        self.units = units
        self.n_slots = n_slots
        self.slot_bits = max(1, (n_slots - 1).bit_length())
        self.tag_bits = tag_bits
        self.round_latency = round_latency
        super().__init__({
            "req": In(stream.Signature(req_layout(self.slot_bits, tag_bits))),
            "resp_valid": Out(1),
            "resp": Out(resp_layout(tag_bits)),
            "rk_we": In(1),
            "rk_slot": In(self.slot_bits),
            "rk_round": In(4),
            "rk_data": In(128),
            "idle": Out(1),
        })

    @property
    def latency(self):
        """Cycles from a request transfer to its response strobe (AES-256, no wait)."""
        return 1 + 14 if self.units == 14 else 1 + 14

    def elaborate(self, platform):
        m = Module()
        R = self.units
        ring = R != 14
        sb = self.slot_bits
        meta_layout = data.StructLayout({"valid": 1, "round": 4, "aes256": 1,
                                         "slot": sb, "tag": self.tag_bits})

        # -- entry stage: holds one request while its round-0 key is read ----
        ent_valid = Signal()
        ent = Signal(req_layout(sb, self.tag_bits))
        m.submodules.rk0 = rk0 = Memory(shape=128, depth=self.n_slots, init=[])
        rk0_w = rk0.write_port()
        m.d.comb += [rk0_w.addr.eq(self.rk_slot), rk0_w.data.eq(self.rk_data),
                     rk0_w.en.eq(self.rk_we & (self.rk_round == 0))]
        rk0_r = rk0.read_port()
        accept = self.req.valid & self.req.ready
        m.d.comb += [rk0_r.addr.eq(self.req.payload.slot), rk0_r.en.eq(accept)]

        lat = self.round_latency
        # the 14-stage pipeline's state registers need no reset (the meta
        # valid bits say what is a block): a reset net to 1.8k fewer
        # flip-flops; the ring is left as it was
        rounds = [AESRound(lat, reset_less=not ring) for _ in range(R)]
        meta = [Signal(meta_layout, name=f"meta{u}") for u in range(R)]
        meta_in = [Signal(meta_layout, name=f"meta_in{u}") for u in range(R)]
        # meta of the block whose round key is being read (one cycle before
        # the round's output)
        meta_rk = [Signal(meta_layout, name=f"meta_rk{u}") for u in range(R)]
        final = [Signal(name=f"final{u}") for u in range(R)]
        for u, rnd in enumerate(rounds):
            m.submodules[f"round{u}"] = rnd
            if lat == 2:
                mid = Signal(meta_layout, name=f"meta_mid{u}")
                m.d.sync += [mid.eq(meta_in[u]), meta[u].eq(mid)]
                m.d.comb += meta_rk[u].eq(mid)
            else:
                m.d.sync += meta[u].eq(meta_in[u])
                m.d.comb += meta_rk[u].eq(meta_in[u])
            nr = Mux(meta[u].aes256, 14, 10)
            if ring:
                m.d.comb += final[u].eq(meta[u].round == nr)
            elif u == 13:
                m.d.comb += final[u].eq(1)
            elif u == 9:
                m.d.comb += final[u].eq(~meta[u].aes256)
            m.d.comb += rnd.final.eq(final[u])

            # this unit's round keys; read address goes out with the S-box address
            depth = self.n_slots * 16 if ring else self.n_slots
            rkm = Memory(shape=128, depth=depth, init=[])
            m.submodules[f"rk{u + 1}"] = rkm
            wp = rkm.write_port()
            rp = rkm.read_port()
            if ring:
                m.d.comb += [wp.addr.eq(self.rk_slot * 16 + self.rk_round),
                             wp.en.eq(self.rk_we),
                             rp.addr.eq(meta_rk[u].slot * 16 + meta_rk[u].round)]
            else:
                m.d.comb += [wp.addr.eq(self.rk_slot),
                             wp.en.eq(self.rk_we & (self.rk_round == u + 1)),
                             rp.addr.eq(meta_rk[u].slot)]
            m.d.comb += [wp.data.eq(self.rk_data), rnd.rk.eq(rp.data)]

        # chain unit u -> u+1
        for u in range(R - 1):
            m.d.comb += [rounds[u + 1].i.eq(rounds[u].o),
                         meta_in[u + 1].eq(meta[u]),
                         meta_in[u + 1].round.eq(meta[u].round + 1)]
            if ring:
                m.d.comb += meta_in[u + 1].valid.eq(meta[u].valid & ~final[u])

        inflight = Signal(range(R * lat + 2))
        ring_aes256 = Signal()
        exit_valid = Signal()
        if ring:
            last = R - 1
            wrap = Signal()
            m.d.comb += wrap.eq(meta[last].valid & ~final[last])
            ent_go = ent_valid & ~wrap & ((inflight == 0) | (ent.aes256 == ring_aes256))
            exits = [meta[u].valid & final[u] for u in range(R)]
            m.d.comb += exit_valid.eq(sum(e.as_unsigned() for e in exits) != 0)
            with m.If(wrap):
                m.d.comb += [rounds[0].i.eq(rounds[last].o), meta_in[0].eq(meta[last]),
                             meta_in[0].round.eq(meta[last].round + 1)]
            with m.Elif(ent_go):
                m.d.comb += [rounds[0].i.eq(ent.block ^ rk0_r.data),
                             meta_in[0].valid.eq(1), meta_in[0].round.eq(1),
                             meta_in[0].aes256.eq(ent.aes256),
                             meta_in[0].slot.eq(ent.slot), meta_in[0].tag.eq(ent.tag)]
            # at most one unit holds a finished block in any cycle
            for u in range(R):
                with m.If(exits[u]):
                    m.d.comb += [self.resp.block.eq(rounds[u].o),
                                 self.resp.tag.eq(meta[u].tag)]
            m.d.comb += self.resp_valid.eq(exit_valid)
            with m.If(ent_go):
                m.d.sync += ring_aes256.eq(ent.aes256)
            m.d.sync += inflight.eq(inflight + ent_go - exit_valid)
        else:
            ent_go = ent_valid
            m.d.comb += [rounds[0].i.eq(ent.block ^ rk0_r.data),
                         meta_in[0].valid.eq(ent_go), meta_in[0].round.eq(1),
                         meta_in[0].aes256.eq(ent.aes256),
                         meta_in[0].slot.eq(ent.slot), meta_in[0].tag.eq(ent.tag)]
            # AES-128 blocks are finished at unit 9: delay them to unit 13's slot
            delay = [Signal(128, name=f"bypass{k}", reset_less=True) for k in range(4 * lat)]
            m.d.sync += delay[0].eq(rounds[9].o)
            m.d.sync += [delay[k + 1].eq(delay[k]) for k in range(4 * lat - 1)]
            m.d.comb += [self.resp_valid.eq(meta[13].valid),
                         self.resp.block.eq(Mux(meta[13].aes256, rounds[13].o, delay[-1])),
                         self.resp.tag.eq(meta[13].tag)]
            m.d.sync += inflight.eq(inflight)

        m.d.comb += self.req.ready.eq(~ent_valid | ent_go)
        with m.If(accept):
            m.d.sync += [ent_valid.eq(1), ent.eq(self.req.payload)]
        with m.Elif(ent_go):
            m.d.sync += ent_valid.eq(0)
        m.d.comb += self.idle.eq(~ent_valid & (inflight == 0) if ring else ~ent_valid)
        return m
