"""Counters of the policy core under cocotb/Verilator vs ModelDevice:
CTRL.clear_counters (also while a frame is in flight) and a build without
per-latch counters (see cocotb_counters_tb.py)."""

from pathlib import Path

from policy_harness import run
from policy_tops import core_top, core_top_no_latch_counters

CONFIG = Path(__file__).parent / "core_config.toml"


def test_clear_counters_vs_model():
    run(core_top, name="policy_core", test_module="cocotb_counters_tb", run_name="counters_clear",
        env={"CORE_CONFIG": CONFIG, "CORE_SEED": 2, "CORE_COUNT": 600},
        testcase="counters_vs_model")


def test_no_latch_counters_build():
    """CAPS_COUNTERS.latch = 0: CTR_READ of a latch reads 0, the driver reports
    the latch counters absent; SA counters and the clears still as the model."""
    run(core_top_no_latch_counters, name="policy_core_nolctr", test_module="cocotb_counters_tb",
        run_name="counters_nolctr",
        env={"CORE_CONFIG": CONFIG, "CORE_LATCH_COUNTERS": 0, "CORE_SEED": 3, "CORE_COUNT": 600},
        testcase="counters_vs_model")


def test_timer_tick():
    """NOW advances one tick per TICK_DIV cycles (the latch timers' clock)."""
    run(core_top, name="policy_core", test_module="cocotb_counters_tb", run_name="timer_tick",
        env={"CORE_CONFIG": CONFIG}, testcase="timer_tick")
