"""AXI4-Lite slave + generated register decoder under cocotb/Verilator."""

from policy_harness import run
from policy_tops import axil_top


def test_axil_register_file():
    tests, _ = run(axil_top, name="policy_axil", test_module="cocotb_axil_tb")
    assert tests == 5
