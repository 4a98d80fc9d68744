"""Real programs that nobody here wrote, run natively and under the governor,
compared: a language runtime's own regression tests, a parallel build, shell
scripts, process pools, git and tar. Every limit is set so high that it never
binds (so every governed call is intercepted and charged), or, where the
comparison says so, low enough that it binds.

Helpers shared by the files of tests/compat; conftest.py has the fixtures."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

GOVERNOR = Path(sys.executable).with_name("governor")
BACKENDS = ("seccomp", "ptrace")
# Every limit that a plain group can have, set where it never binds. (cpu is
# left out: a SCHED_DEADLINE reservation changes how tasks are scheduled even
# when it does not bind; disk_space needs a container's writable area.)
NEVER_BINDS = ("disk_write=100GiB/s", "disk_read=100GiB/s", "net_send=100GiB/s",
               "net_recv=100GiB/s", "processes=100000", "memory=1TiB")
COMPAT_SRC = Path(__file__).resolve().parents[2] / ".venv" / "compat-src"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="governor run needs root")


@dataclass
class Result:
    rc: int
    out: str
    err: str
    seconds: float


def run(argv: list[str], backend: str | None = None, limits=NEVER_BINDS, cwd=None, env=None,
        timeout: float = 600, options=()) -> Result:
    """argv natively (backend None) or under `governor run --backend B` with
    limits and further options of `governor run`."""
    if backend:
        argv = [str(GOVERNOR), "run", "--backend", backend, "--name", "compat", *options,
                *(a for lim in limits for a in ("--limit", lim)), "--", *argv]
    t0 = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout,
                       errors="replace")
    return Result(p.returncode, p.stdout, p.stderr, time.monotonic() - t0)
