"""Per-latch counters as a build option (CAPS_COUNTERS.latch) and clearing
the counters (CTRL.clear_counters), from the driver's side.

A build without per-latch counters reads 0 for every latch through CTR_READ;
the driver must report those counters absent (None), never as zeros, and
the CLI must say so. The gateware side (the core, the same driver over
AXI4-Lite) is tests/hw/policy/test_counters.py."""

from __future__ import annotations

import dataclasses

import pytest

from latchnic.driver.buses import RecordingBus
from latchnic.driver.cli import NO_LATCH_COUNTERS, latch_line
from latchnic.driver.register_backend import RegisterBackend
from latchnic.hw.generated import regs
from latchnic.hw.policy import program as prog
from latchnic.hw.policy.selectors import pack
from latchnic.hw.regmap import Params, _caps_values

from driver_kit import run, run_json, syn

SMALL = Params(sas=4, spd_rules=2, peers=8, templates=2, latch_capacity=16, latch_ways=2,
               pad_claims=8)
LIVE_SLOT = 3


class CoreBus:
    """Just enough of the core for latches() and counters(): commits count
    in TBL_COMMITS, reading slot LIVE_SLOT of the latch table gives a live
    ESTABLISHED TCP latch, CTR_READ of it gives what the build keeps (7s
    with per-latch counters, 0 without: the core reads 0 then)."""

    def __init__(self, params: Params):
        self.params = params
        self.mem = {getattr(regs, n): v for n, v in _caps_values(params).items()}

    def read(self, addr):
        return self.mem.get(addr, 0)

    def write(self, addr, value):
        self.mem[addr] = value
        if addr == regs.TBL_COMMIT:
            self.mem[regs.TBL_COMMITS] = self.mem.get(regs.TBL_COMMITS, 0) + 1
            index, table, op = value & 0xFFFF, value >> 16 & 0xF, value >> 24 & 7
            raw = 0
            if op == prog.READ and table == regs.TABLES["latch"] and index == LIVE_SLOT:
                raw = pack(prog.latch_read_layout(), {"live": 1, "entry": {
                    "state": 1, "flow": {"proto": 6, "local": 0x0A000001, "remote": 0xC0000202,
                                         "ports_valid": 1, "local_port": 40000, "remote_port": 443}}})
            for i in range(regs.TBL_READ11 // 4 - regs.TBL_READ0 // 4 + 1):
                self.mem[regs.TBL_READ0 + 4 * i] = raw >> (32 * i) & 0xFFFFFFFF
        if addr == regs.CTR_READ:
            n = 7 if value >> 16 & 1 and self.params.latch_counters else 0
            for r in ("PACKETS_IN", "PACKETS_OUT", "BYTES_IN_LO", "BYTES_IN_HI", "BYTES_OUT_LO",
                      "BYTES_OUT_HI", "DROPS"):
                self.mem[getattr(regs, "CTR_" + r)] = n


@pytest.mark.parametrize("latch_counters", [True, False])
def test_latch_counters_follow_caps(latch_counters):
    params = dataclasses.replace(SMALL, latch_counters=latch_counters)
    assert _caps_values(params)["CAPS_COUNTERS"] == 1 | latch_counters << 1
    dev = RegisterBackend(CoreBus(params))
    assert dev.caps()["latch_counters"] is latch_counters
    (latch,) = dev.latches()
    assert latch["slot"] == LIVE_SLOT and latch["state"] == "ESTABLISHED"
    c = dev.counters()
    line = latch_line(latch)
    if latch_counters:
        assert (latch["packets"], latch["bytes"], latch["drops"]) == (
            {"in": 7, "out": 7}, {"in": 7 | 7 << 32, "out": 7 | 7 << 32}, 7)
        assert c["latch"] == {str(LIVE_SLOT): {k: latch[k] for k in ("packets", "bytes", "drops")}}
        assert "packets in 7 out 7" in line and NO_LATCH_COUNTERS not in line
    else:
        # absent, not zeros pretending to be counts
        assert (latch["packets"], latch["bytes"], latch["drops"]) == (None, None, None)
        assert c["latch"] is None
        assert line.endswith(NO_LATCH_COUNTERS) and "packets" not in line


def test_clear_counters_pulses_the_bit_and_keeps_the_others():
    bus = RecordingBus(CoreBus(SMALL))
    dev = RegisterBackend(bus)
    bus.inner.mem[regs.CTRL] = regs.CTRL_TIMER_EVENTS_MASK
    bus.log.clear()
    dev.clear_counters()
    t = regs.CTRL_TIMER_EVENTS_MASK
    assert bus.writes == [(regs.CTRL, t | regs.CTRL_CLEAR_COUNTERS_MASK), (regs.CTRL, t)]


def test_cli_stats_clear(device):
    """`latchnic stats --clear` prints the counters, then clears them (model
    device behind the control socket): the next `stats` reads zeros, SA
    sequence numbers stay."""
    v = device.process(syn(), "out", 1_000)
    assert v.action == "forward"
    before = run_json("stats", "--clear")
    assert before["frames"]["out_frames"] == 1
    sa = {n: s for n, s in before["sa"].items() if s["packets"]}
    assert sa and before["latch"]
    after = run_json("stats")
    assert after["frames"] == {} and after["drops"] == {}
    for n in sa:
        assert (after["sa"][n]["packets"], after["sa"][n]["bytes"]) == (0, 0)
        assert after["sa"][n]["seq"] == sa[n]["seq"] > 0
    for c in after["latch"].values():
        assert c == {"packets": {"in": 0, "out": 0}, "bytes": {"in": 0, "out": 0}, "drops": 0}
    rc, out, _err = run("stats")
    assert rc == 0 and NO_LATCH_COUNTERS not in out
