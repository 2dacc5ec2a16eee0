"""Single-entry driver operations (RegisterBackend over AXI4-Lite) on the
policy core under cocotb/Verilator vs a ModelBackend (see cocotb_driver_tb.py)."""

from pathlib import Path

from policy_harness import run
from policy_tops import core_top

CONFIG = Path(__file__).parent / "core_config.toml"


def test_driver_single_operations():
    """SPD insert/delete, SA delete/re-add under dangling rules, template
    add/delete, peer add/delete and refusals: same listings, events (re-check
    causes named after the operation), verdicts, latches and counters."""
    run(core_top, name="policy_core", test_module="cocotb_driver_tb", run_name="driver_ops",
        env={"CORE_CONFIG": CONFIG, "CORE_SEED": 3, "CORE_COUNT": 120},
        testcase="single_operations")
