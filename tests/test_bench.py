"""`governor bench`: the shape of its table and JSON, at its smallest size.

The numbers themselves are the benchmark's business (benchmarks/); here every
row must be present with positive per-call times, or say n/a and why."""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from _tenants import needs_root
import governor_bench as bench
from governor_bench import binaries as benchbin

ROWS = ["native", "seccomp_allow", "notify_engine", "notify_engine_nosync", "notify_python",
        "ptrace_engine", "ptrace_syscall_engine", "python_ptrace", "python_ptrace_syscall",
        "floor_notify", "floor_trace"]
TOOLS = ["native", "governor_seccomp", "governor_ptrace", "governor_ptrace_syscall", "strace",
         "strace_seccomp", "proot"]


def governor(*args, timeout=120, env=None):
    return subprocess.run([sys.executable, "-m", "governor", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def helpers_running(tmpdir: Path) -> list[int]:
    """Processes running one of the bench's helpers (from its cache dir)
    that a bench started with TMPDIR=tmpdir left: another bench running on
    the machine meanwhile has helpers of its own."""
    cache, mine = str(benchbin.cache_dir()), f"TMPDIR={tmpdir}".encode()
    pids = []
    for p in psutil.process_iter(["exe"]):
        if (p.info["exe"] or "").startswith(cache):
            try:
                env = Path(f"/proc/{p.pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue   # gone meanwhile
            if mine in env:
                pids.append(p.pid)
    return pids


def check_timing(d: dict, rounds: int) -> None:
    assert len(d["samples_ns"]) == rounds
    assert all(s > 0 for s in d["samples_ns"])
    assert min(d["samples_ns"]) <= d["median_ns"] <= d["p99_ns"] <= max(d["samples_ns"])
    assert d["ratio_median"] > 0 and d["ratio_p99"] > 0


@needs_root
@pytest.mark.skipif(not shutil.which("cc") and not shutil.which("gcc"), reason="no C compiler")
def test_bench_small_run_has_every_row(tmp_path):
    out, work = tmp_path / "bench.json", tmp_path / "tmp"
    work.mkdir()
    p = governor("bench", "--calls", "200", "--rounds", "2", "--json", str(out),
                 env={**os.environ, "TMPDIR": str(work)})
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    # Nothing left behind: no helper still running, no work files.
    assert helpers_running(work) == []
    assert list(work.iterdir()) == []

    meta = doc["meta"]
    assert meta["kernel"] == platform.release()
    assert meta["cpu"] and meta["cores"] == os.cpu_count()
    assert isinstance(meta["sync_wakeup"], bool)
    assert (meta["calls"], meta["rounds"], meta["pinned_cpu"]) == (200, 2, None)

    rows = {r["key"]: r for r in doc["rows"]}
    assert list(rows) == ROWS
    for key, r in rows.items():
        if r["available"]:
            check_timing(r["governed"], 2)
            check_timing(r["ungoverned"], 2)
        else:
            assert r["reason"], key
            assert f"n/a: {r['reason']}" in p.stdout
    # What runs on any x86_64 Linux with root and a compiler.
    for key in ("native", "seccomp_allow", "notify_engine_nosync", "notify_python",
                "python_ptrace", "python_ptrace_syscall", "floor_notify", "floor_trace"):
        assert rows[key]["available"], (key, rows[key]["reason"])
    assert rows["native"]["governed"]["ratio_median"] == 1.0
    assert rows["notify_engine"]["available"] == meta["sync_wakeup"]
    # PTRACE_SYSCALL stops at getpid too; RET_TRACE only at governed calls.
    assert (rows["python_ptrace_syscall"]["ungoverned"]["median_ns"] >
            5 * rows["python_ptrace"]["ungoverned"]["median_ns"])

    for g in doc["goals"]:
        assert (g["ratio"] is None) == (g["met"] is None)
        assert g["ratio"] is not None or g["reason"]

    macro = doc["macro"]
    assert [w["key"] for w in macro["workloads"]] == ["dd", "tcp", "untar"]
    assert len(macro["rows"]) == 3 * len(TOOLS)
    for r in macro["rows"]:
        assert r["tool"] in TOOLS
        if r["available"]:
            assert len(r["samples_s"]) == 2 and all(s > 0 for s in r["samples_s"])
            assert r["ratio"] > 0
        else:
            assert r["reason"]
    for line in ("governor bench", "SYNC_WAKE_UP", "native", "floor: C ptrace RET_TRACE",
                 "dd: 40 writes", "loopback TCP", "tar -x"):
        assert line in p.stdout


@needs_root
def test_bench_pinned_json_to_stdout_without_macro():
    p = governor("bench", "--calls", "100", "--rounds", "1", "--no-macro", "--pin",
                 "--json", "-")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)   # the table went to stderr
    assert "macro" not in doc
    assert doc["meta"]["pinned_cpu"] == min(os.sched_getaffinity(0))
    assert f"pinned to CPU {doc['meta']['pinned_cpu']}" in p.stderr
    assert len(doc["rows"]) == len(ROWS)
    assert "mechanism" in p.stderr


@pytest.mark.parametrize("args, message", [
    (["--calls", "0"], "governor bench: --calls: must be at least 1"),
    (["--rounds", "-1"], "governor bench: --rounds: must be at least 1"),
    (["--json", "/nonexistent-dir/b.json"], "governor bench: --json: cannot write into "
                                            "/nonexistent-dir"),
])
def test_bench_bad_options_fail_at_once(args, message):
    p = governor("bench", *args, timeout=30)
    assert p.returncode == 2
    assert message in p.stderr
    assert p.stdout == ""


def test_bench_ptrace_rows_say_why_when_the_backend_is_missing(monkeypatch, tmp_path):
    """A backend that Supervisor refuses gives n/a rows with its reason."""
    class Refusing(bench.Supervisor):
        def __init__(self, backend="seccomp", **kw):
            if backend != "seccomp":
                raise bench.GovernorError(f"backend {backend!r} is not available")
            super().__init__(backend=backend, **kw)

    monkeypatch.setattr(bench, "Supervisor", Refusing)
    engine = bench.Engine("5", "ptrace_engine", "ptrace", "ptrace")
    with pytest.raises(bench.Unavailable, match="backend 'ptrace' is not available"):
        engine.open({}, tmp_path)


def _row(ns: float | None, reason: str | None = None) -> dict:
    if ns is None:
        return {"available": False, "reason": reason}
    return {"available": True, "reason": None, "governed": {"median_ns": ns}}


def test_bench_goals_whole_call_and_above_floor():
    rows = {"notify_python": _row(16000), "notify_engine": _row(8000),
            "notify_engine_nosync": _row(9000), "floor_notify": _row(7000),
            "ptrace_engine": _row(None, "backend 'ptrace' is not available"),
            "python_ptrace": _row(20000), "floor_trace": _row(9000)}
    goals = {g["goal"]: g for g in bench.goal_results(rows)}
    whole = goals["seccomp notify: Python handler vs engine, governed call"]
    assert (whole["ratio"], whole["met"], whole["base"]) == (2.0, False, "notify_engine")
    above = goals["seccomp notify: Python handler vs engine, time above floor_notify"]
    assert (above["ratio"], above["met"]) == (9.0, False)   # (16 - 7) / (8 - 7)
    floor = goals["ptrace engine vs the C RET_TRACE floor, governed call"]
    assert floor["ratio"] is None and floor["met"] is None
    assert floor["reason"] == "ptrace_engine: backend 'ptrace' is not available"

    # Without SYNC_WAKE_UP the Python handler is compared with the engine
    # without it; an engine at or below its floor gives no ratio, and says so.
    rows["notify_engine"] = _row(None, "the kernel lacks SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP")
    rows["floor_notify"] = _row(9500)
    goals = {g["goal"]: g for g in bench.goal_results(rows)}
    whole = goals["seccomp notify: Python handler vs engine, governed call"]
    assert whole["base"] == "notify_engine_nosync" and whole["ratio"] == 16000 / 9000
    above = goals["seccomp notify: Python handler vs engine, time above floor_notify"]
    assert above["ratio"] is None
    assert above["reason"] == ("notify_engine_nosync is not above floor_notify in this run "
                               "(9.000 vs 9.500 µs)")


def test_bench_p99_interpolates_between_rounds():
    assert bench.p99([5.0]) == 5.0
    assert bench.p99([1.0, 2.0]) == pytest.approx(1.99)
    assert bench.p99([3.0, 1.0, 2.0, 100.0, 4.0, 5.0, 6.0]) == pytest.approx(6.0 + 94.0 * 0.94)
