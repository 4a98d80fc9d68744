"""The layout holds: `governor run` loads the product only, not the
benchmark machinery (governor_bench/) nor python-ptrace's debugger, which
the benchmark's Python loops use (README "How it works")."""
from __future__ import annotations

import subprocess
import sys

from _tenants import needs_root


def imported_by(*argv: str) -> set[str]:
    """The modules a fresh `python -m governor ARGV` imports (-X importtime)."""
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "governor", *argv],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [x for x in res.stderr.splitlines() if x.startswith("import time:")]
    names = {x.rsplit("|", 1)[1].strip() for x in lines[1:]}   # [0] is the header
    assert "governor.supervisor" in names, "the importtime listing was not read"
    return names


@needs_root
def test_governor_run_imports_no_benchmark_and_no_ptrace_debugger():
    names = imported_by("run", "--", "/bin/true")
    assert not {n for n in names if n.split(".")[0] in ("governor_bench", "ptrace")}
