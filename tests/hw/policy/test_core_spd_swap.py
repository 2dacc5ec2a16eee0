"""SPD changes through the driver while frames flow: every verdict is the
model's under the complete old or the complete new policy (see
cocotb_spd_swap_tb.py); TBL_COMMIT op swap on another table changes nothing."""

from pathlib import Path

from policy_harness import run
from policy_tops import core_top

CONFIG = Path(__file__).parent / "core_config.toml"


def test_core_spd_change_under_traffic():
    """A rule inserted at the top, the direction reordered by apply, the top
    rule deleted, each while frames flow: old policy, then new, never a mix."""
    run(core_top, name="policy_core", test_module="cocotb_spd_swap_tb", run_name="spd_swap",
        env={"CORE_CONFIG": CONFIG}, testcase="spd_change_under_traffic")


def test_core_stray_swap_changes_nothing():
    """Shadow writes unseen until the swap; a swap sent to a table that is no
    SPD direction changes nothing; one direction's swap leaves the other."""
    run(core_top, name="policy_core", test_module="cocotb_spd_swap_tb", run_name="stray_swap",
        env={"CORE_CONFIG": CONFIG}, testcase="stray_swap_changes_nothing")
