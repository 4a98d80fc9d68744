"""Per-call overhead of the ptrace backends against their floor
(floor_trace.c: waitpid + PTRACE_GET_SYSCALL_INFO + PTRACE_CONT), measured
next to each other in one run. See test_overhead.py for the method."""
from __future__ import annotations

import pytest

from governor import Supervisor
from test_overhead import N_NOTIFY, NEVER_BINDS, measure, run_direct, run_engine


@pytest.fixture(scope="module", params=["ptrace", "ptrace-syscall"])
def traced(request):
    with Supervisor(backend=request.param, publish_state=False) as sup:
        yield request.param, sup.group("bench", NEVER_BINDS)


def test_floor_trace_pwrite(benchmark, bins, results):
    measure(benchmark, results, "floor_trace_pwrite", N_NOTIFY,
            lambda: run_direct([bins["floor_trace"], bins["tenant_loop"], "pwrite",
                                str(N_NOTIFY)]))


def test_engine_trace_pwrite(benchmark, bins, results, traced, tmp_path):
    backend, group = traced
    key = "engine_trace_pwrite" if backend == "ptrace" else "engine_syscall_pwrite"
    measure(benchmark, results, key, N_NOTIFY,
            lambda: run_engine(group, bins, "pwrite", N_NOTIFY, tmp_path / "out"))
    assert group.usage().resources["disk_write"].used >= N_NOTIFY
