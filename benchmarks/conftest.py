"""Fixtures of the overhead benchmarks: the C helpers (governor_bench.binaries:
the binaries `governor bench` uses), and the store of per-call medians that
becomes results.json and the table printed at the end of the run.

Knobs (environment):
  GOVERNOR_BENCH_SCALE   multiplies the number of calls per round (default 1)
  GOVERNOR_BENCH_ROUNDS  rounds per path (default 7)
  GOVERNOR_BENCH_PIN     a CPU number: pin the supervisor (engine thread or
                         floor_notify) and the tenant to that one CPU. Unset
                         (the default): nothing is pinned.
  GOVERNOR_BENCH_STRICT  1: a path that misses its goal fails its test
"""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import report  # noqa: E402
from governor_bench import binaries as benchbin  # noqa: E402
from governor._errors import GovernorError  # noqa: E402

RESULTS_KEY = pytest.StashKey[dict]()


def pytest_configure(config):
    config.stash[RESULTS_KEY] = {}
    pin = os.environ.get("GOVERNOR_BENCH_PIN")
    if pin:
        # Before any Supervisor exists: its engine thread and every tenant
        # and floor process inherit the mask.
        os.sched_setaffinity(0, {int(pin)})


@pytest.fixture(scope="session")
def bins() -> dict[str, str]:
    """The C helpers of `governor bench` (governor_bench/benchsrc), built once."""
    try:
        return benchbin.build()
    except GovernorError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def results(request) -> dict:
    """path key -> {"median_ns", "samples_ns", "calls"}; filled by the tests."""
    return request.config.stash[RESULTS_KEY]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    results = config.stash.get(RESULTS_KEY, {})
    if not results:
        return
    meta = {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "pinned_cpu": os.environ.get("GOVERNOR_BENCH_PIN") or "none",
        "scale": os.environ.get("GOVERNOR_BENCH_SCALE", "1"),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    report.write_json(results, meta)
    tr = terminalreporter
    tr.section("governor overhead (tenant-measured per-call time, medians)")
    tr.write_line(report.table(results))
    tr.write_line("")
    tr.write_line(report.samples_table(results))
    tr.write_line("")
    tr.write_line(f"written to {report.RESULTS_JSON}")
