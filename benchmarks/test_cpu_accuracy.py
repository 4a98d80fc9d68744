"""CPU caps over 10 s: governor's SCHED_DEADLINE reservations against
cpulimit (Debian's cpulimit, SIGSTOP/SIGCONT duty cycling), in one run.

    python -m pytest benchmarks/test_cpu_accuracy.py --benchmark-only -s

Each row: the group's CPU (its own getrusage, children included) over its
wall time, in % of one CPU. cpulimit -m is asked to cover children too.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _tenants import TENANTS, compile_c  # noqa: E402

from governor import Limits, Supervisor  # noqa: E402

SECONDS = 10
CASES = [("25%", "threads", 1, 25), ("25%", "threads", 4, 25), ("150%", "threads", 4, 150),
         ("25%", "procs", 2, 25)]
ROWS = []


@pytest.fixture(scope="module")
def tenant(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    return str(compile_c(TENANTS / "cpu_tenant.c", tmp_path_factory.mktemp("cpu")))


def _percent(text: str) -> float:
    fields = dict(kv.split("=") for kv in text.split())
    return 100 * float(fields["cpu"]) / float(fields["wall"])


def under_governor(tenant, tmp_path, cap, mode, n):
    out = tmp_path / "gov.out"
    with Supervisor() as sup, open(out, "w") as f:
        g = sup.group("bench", Limits(cpu=cap))
        assert g.spawn([tenant, mode, str(SECONDS), str(n)], stdout=f).wait(120) == 0
    return _percent(out.read_text())


def under_cpulimit(tenant, cap, mode, n):
    limit = cap.rstrip("%")
    res = subprocess.run(["cpulimit", "-l", limit, "-m", "-f", "-q", "--", tenant, mode,
                          str(SECONDS), str(n)], capture_output=True, text=True, timeout=120)
    return _percent(res.stdout)


@pytest.mark.parametrize("cap, mode, n, want", CASES)
def test_cpu_cap_vs_cpulimit(benchmark, tenant, tmp_path, cap, mode, n, want):
    got = {}

    def both():
        got["governor"] = under_governor(tenant, tmp_path, cap, mode, n)
        if shutil.which("cpulimit"):
            got["cpulimit"] = under_cpulimit(tenant, cap, mode, n)

    benchmark.pedantic(both, rounds=1, iterations=1)
    benchmark.extra_info.update({k: round(v, 1) for k, v in got.items()}, cap=cap)
    ROWS.append((cap, f"{n} {mode}", got.get("governor"), got.get("cpulimit")))


def teardown_module():
    if ROWS:
        print("\n| cap | busy | governor | cpulimit |\n|---|---|---:|---:|", file=sys.stderr)
        for cap, what, g, c in ROWS:
            cl = f"{c:.1f}%" if c is not None else "not installed"
            print(f"| {cap} | {what} | {g:.1f}% | {cl} |", file=sys.stderr)
