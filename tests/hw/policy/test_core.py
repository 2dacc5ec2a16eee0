"""The policy core under cocotb/Verilator vs ModelDevice, programmed through
AXI4-Lite from tests/hw/policy/core_config.toml (see cocotb_core_tb.py)."""

from pathlib import Path

import pytest

from policy_harness import run
from policy_tops import core_top, core_top_split

CONFIG = Path(__file__).parent / "core_config.toml"
DRIFT = Path(__file__).parent / "core_config_drift.toml"
SPLIT = Path(__file__).parent / "core_config_split.toml"


def _run(run_name, testcase="core_matches_model", **env):
    env["CORE_CONFIG"] = CONFIG
    run(core_top, name="policy_core", test_module="cocotb_core_tb", env=env, run_name=run_name,
        testcase=testcase)


def test_core_latching_scenarios():
    """The latching scenarios step by step, each verdict asserted explicitly
    and compared with the model: clone, enforcement, policy drift to another
    peer and to BYPASS (BROKEN, never clear text), recovery, clear-text
    injection, RST/TIME_WAIT/expiry and re-clone, UDP idle expiry, table full."""
    _run("scenarios", testcase="latching_scenarios", CORE_DRIFT=DRIFT)


def test_core_sa_replaced_between_passes():
    """The SA in a frame's SAD slot replaced (another peer and key) between
    its first pass (CRYPTO) and its second: drop `no_sa`, the new SA's
    counters and window untouched; without the replacement, delivered."""
    _run("sa_replaced", testcase="sa_replaced_between_passes")


def test_core_second_pass_fails_closed():
    """Second passes with ICV_FAIL, MALFORMED, unknown statuses and SA
    indexes past the SAD: each dropped on its reason and counted."""
    _run("second_pass", testcase="second_pass_fails_closed")


def test_core_duplicate_in_crypto_path():
    """Two copies of an ESP frame both CRYPTO; the second's second pass is
    dropped `replay` while its lookups are in flight; the frames after it
    are decided on their own lookups."""
    _run("duplicate", testcase="duplicate_in_crypto_path")


def test_core_stray_release_changes_nothing():
    """TBL_COMMIT op 2 (the latch table's release) on the SAD: nothing
    changes (not a write of the staged words)."""
    _run("stray_release", testcase="stray_release_changes_nothing")


def test_core_clear_ignores_stage():
    """TBL_COMMIT op 1 (clear) on the SAD with every stage bit set: the SA
    reads back 0 and its frames are dropped."""
    _run("clear_stage", testcase="clear_ignores_stage")


def test_core_random_mix():
    _run("mix", CORE_SEED=1, CORE_COUNT=1500, CORE_STALL=0)


def test_core_random_mix_stalls():
    _run("mix_stall", CORE_SEED=7, CORE_COUNT=1500, CORE_STALL=1)


def test_core_policy_drift():
    """Reprogrammed mid-run (alice's rule now selects bob's SA, carol's SA
    deleted), then back: latches go BROKEN and recover in both engines."""
    _run("drift", CORE_SEED=5, CORE_COUNT=900, CORE_STALL=0, CORE_DRIFT=DRIFT)


def test_core_split_latch_table():
    """The split latch geometry (16 IPv4 slots, then a 4-slot IPv6 table):
    the same random mix, every verdict, latch slot, event and counter
    compared with the model built from core_config_split.toml."""
    run(core_top_split, name="policy_core_split", test_module="cocotb_core_tb",
        env={"CORE_CONFIG": SPLIT, "CORE_LATCH_SPLIT": 1, "CORE_SEED": 1, "CORE_COUNT": 1500,
             "CORE_STALL": 0}, run_name="mix_split", testcase="core_matches_model")


@pytest.mark.slow
# seeds whose mix has live latches at the reprogramming points (the drift
# coverage assertion in cocotb_core_tb.py), checked with the model alone
@pytest.mark.parametrize("seed", [10, 11, 13])
def test_core_long(seed):
    _run(f"long{seed}", CORE_SEED=seed, CORE_COUNT=8000, CORE_STALL=seed % 2, CORE_DRIFT=DRIFT)
