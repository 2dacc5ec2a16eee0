"""Running a YoWASP tool from a test."""

import subprocess
import sys


def run_tool(tmp_path, module, func, *args):
    """Run a YoWASP tool in `tmp_path` with relative file names (YoWASP maps
    /tmp to a private directory, so absolute /tmp paths do not reach it);
    its output, or an assertion naming what it printed."""
    code = f"import sys, {module} as t; sys.exit(t.{func}(sys.argv[1:]))"
    p = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout + p.stderr
