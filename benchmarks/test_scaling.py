"""Aggregate throughput of governed calls with N busy tenants at once.

N tenants (tenant_loop serve: a timed loop of 1-byte pwrite64 calls each time
its FIFO says so) run at the same moment, either each under its own minimal
C supervisor (floor_notify: N supervisors, the floor) or all in one
Supervisor, one group each with a disk_write limit that never binds: with one
engine thread, and with the default (one per CPU). Aggregate throughput is
N x calls over the longest tenant's loop; median of the rounds.

    python -m pytest benchmarks/test_scaling.py --benchmark-only -s

prints the table (tenants, calls/s of the floors, of each engine setting, and
engine time over floor time). GOVERNOR_BENCH_SCALE scales the calls per
tenant (default 100,000), GOVERNOR_BENCH_ROUNDS the rounds (default 3).
"""
from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path

import pytest

import governor_bench as bench
from governor import Supervisor

SCALE = float(os.environ.get("GOVERNOR_BENCH_SCALE", "1"))
ROUNDS = int(os.environ.get("GOVERNOR_BENCH_ROUNDS", "3"))
CALLS = max(1000, int(100_000 * SCALE))
TENANTS = (1, 2, 4, 16, 64)
CPUS = len(os.sched_getaffinity(0))
SETTINGS = ("floors", "engines=1", f"engines={CPUS}")
_table: dict[tuple[int, str], float] = {}


class Tenants:
    """N serving tenants, started under floors or in a supervisor's groups."""

    def __init__(self, n: int, workdir: Path):
        self.n, self.dir = n, workdir
        self.fifos = [workdir / f"go{i}" for i in range(n)]
        self.outs = [workdir / f"out{i}" for i in range(n)]
        for f in self.fifos:
            os.mkfifo(f)

    def argv(self, bins, i: int) -> list[str]:
        return [bins["tenant_loop"], "serve", "pwrite", str(CALLS), str(self.outs[i]),
                str(self.fifos[i])]

    def round(self) -> float:
        """Starts every tenant's loop at once; aggregate calls per second."""
        for out in self.outs:
            out.unlink(missing_ok=True)
        fds = [os.open(f, os.O_WRONLY) for f in self.fifos]  # each tenant waits in open
        for fd in fds:
            os.write(fd, b"g")
        for fd in fds:
            os.close(fd)
        deadline = time.monotonic() + 600
        while not all(o.exists() for o in self.outs):
            assert time.monotonic() < deadline, "tenants did not finish"
            time.sleep(0.01)
        longest = max(bench.parse_ns(o.read_text()) * CALLS for o in self.outs)
        return self.n * CALLS / (longest / 1e9)

    def stop(self) -> None:
        for f in self.fifos:
            fd = os.open(f, os.O_WRONLY)
            os.write(fd, b"q")
            os.close(fd)


def measure(setting: str, n: int, bins, tmp_path: Path) -> float:
    tenants = Tenants(n, tmp_path)
    if setting == "floors":
        procs = [subprocess.Popen([bins["floor_notify"], *tenants.argv(bins, i)],
                                  stderr=subprocess.DEVNULL) for i in range(n)]
        try:
            rates = [tenants.round() for _ in range(ROUNDS)]
            tenants.stop()
        finally:
            for p in procs:
                p.wait(30)
        return statistics.median(rates)
    with Supervisor(publish_state=False, engines=int(setting.split("=")[1])) as sup:
        procs = [sup.group(f"t{i}", bench.NEVER_BINDS).spawn(tenants.argv(bins, i))
                 for i in range(n)]
        rates = [tenants.round() for _ in range(ROUNDS)]
        tenants.stop()
        for p in procs:
            p.wait(30)
    return statistics.median(rates)


@pytest.mark.parametrize("n", TENANTS)
@pytest.mark.parametrize("setting", SETTINGS)
def test_throughput(benchmark, bins, tmp_path, setting, n):
    rate = benchmark.pedantic(lambda: measure(setting, n, bins, tmp_path), rounds=1,
                              iterations=1)
    _table[(n, setting)] = rate
    benchmark.extra_info.update(tenants=n, setting=setting, calls_per_tenant=CALLS,
                                aggregate_calls_per_second=round(rate))


def teardown_module(module):
    if not _table:
        return
    head = ["tenants", *(f"{s}, calls/s" for s in SETTINGS),
            *(f"{s} time / floors time" for s in SETTINGS[1:])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for n in TENANTS:
        if (n, "floors") not in _table:
            continue
        floor = _table[(n, "floors")]
        rates = [_table.get((n, s)) for s in SETTINGS]
        cells = [str(n)] + [f"{r / 1000:.0f}k" if r else "-" for r in rates]
        cells += [f"{floor / r:.2f}x" if r else "-" for r in rates[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    print(f"\n{CALLS} governed 1-byte pwrite64 per tenant, median of {ROUNDS} rounds, "
          f"{CPUS} CPUs:\n" + "\n".join(lines))
