"""Build an Amaranth design once and run a cocotb module against it.

Reuses latchnic.sim.cocotb_harness (Verilog conversion + cached Verilator
build) but hashes only the sources a policy-core design is made of, so that
edits elsewhere in hw/ (the crypto engine) do not rebuild these designs.
"""

from __future__ import annotations

import os
from pathlib import Path

from latchnic.sim import cocotb_harness

PKG = Path(cocotb_harness.__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
POLICY_SOURCES = [PKG / "hw" / "policy", PKG / "hw" / "stream.py", PKG / "hw" / "regmap.py",
                  PKG / "hw" / "axil.py", PKG / "sim" / "drops.py", HERE / "policy_tops.py"]


def run(make_design, *, name: str, test_module: str, env: dict | None = None,
        run_name: str = "run", key: str = "", sources=None,
        testcase: str | None = None) -> tuple[int, int]:
    from cocotb_tools.runner import get_runner

    bdir = cocotb_harness.build(make_design, name=name, key=key,
                                sources=sources or POLICY_SOURCES)
    full_env = {k: str(v) for k, v in (env or {}).items()}
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), str(PKG), *filter(None, [os.environ.get("PYTHONPATH")])])
    tdir = bdir / run_name
    tdir.mkdir(exist_ok=True)
    results = get_runner("verilator").test(
        test_module=test_module, hdl_toplevel="top", build_dir=bdir, hdl_toplevel_lang="verilog",
        test_dir=tdir, extra_env=full_env, testcase=testcase, timescale=("1ns", "1ps"),
        results_xml=str(tdir / "results.xml"))
    tests, failed = cocotb_harness._results(Path(results))
    if tests == 0 or failed:
        raise AssertionError(f"cocotb: {failed} of {tests} tests failed in {test_module} "
                             f"(log and results in {tdir})")
    return tests, failed
