"""Per-call overhead of governor's engine against minimal floors.

The measured quantity is the tenant's own time per call (tenant_loop times
its loop with clock_gettime, so spawn, filter install and exec are outside
it). pytest-benchmark's own timings are of whole rounds (spawn included) and
are not the figure of interest; each test puts the per-call median and the
samples in benchmark.extra_info, and the session prints the ratio table (see
report.py) and writes benchmarks/results.json.

Tests run in file order and each comparison's two sides are measured next to
each other, which limits the effect of drift on a noisy machine.
"""
from __future__ import annotations

import errno
import os
import statistics
import time

import pytest

import report
import governor_bench as bench
from governor import Limits, Supervisor

SCALE = float(os.environ.get("GOVERNOR_BENCH_SCALE", "1"))
ROUNDS = int(os.environ.get("GOVERNOR_BENCH_ROUNDS", "7"))
STRICT = os.environ.get("GOVERNOR_BENCH_STRICT") == "1"
N_NOTIFY = max(1000, int(200_000 * SCALE))
N_GETPID = max(10_000, int(5_000_000 * SCALE))
N_NATIVE_PWRITE = max(10_000, int(2_000_000 * SCALE))
IDLE_GROUPS = 100
# So high it never binds: every call is charged and let go at once.
NEVER_BINDS = bench.NEVER_BINDS

def run_engine(group, bins, mode: str, n: int, out) -> float:
    """Spawns tenant_loop in a governor group; it writes its line to `out`."""
    proc = group.spawn([bins["tenant_loop"], mode, str(n), str(out)])
    rc = proc.wait(timeout=120)
    assert rc == 0, f"tenant_loop {mode} exited {rc}"
    return bench.parse_ns(out.read_text())


def measure(benchmark, results, key: str, calls: int, fn) -> float:
    samples: list[float] = []

    def once() -> float:
        v = fn()
        samples.append(v)
        return v

    benchmark.pedantic(once, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    med = statistics.median(samples)
    results[key] = {"median_ns": med, "samples_ns": samples, "calls": calls}
    benchmark.extra_info.update(path=report.PATHS[key], calls_per_round=calls,
                                per_call_ns_median=round(med, 2),
                                per_call_ns_samples=[round(s, 2) for s in samples])
    for row in report.ratios(results):
        if row["path"] == key:
            benchmark.extra_info[f"ratio_vs_{row['floor']}"] = round(row["ratio"], 4)
            if row["goal"] is not None:
                benchmark.extra_info[f"goal_vs_{row['floor']}"] = row["goal"]
                if STRICT:
                    assert row["met"], (f"{key}: {row['ratio']:.3f}x {row['floor']}, "
                                        f"goal {row['goal']}x")
    return med


@pytest.fixture(scope="module")
def engine():
    """One Supervisor and one group whose disk_write limit never binds."""
    with Supervisor() as sup:
        yield sup, sup.group("bench", NEVER_BINDS)


# ---- governed calls: engine vs the minimal notify supervisor ----

def test_native_pwrite(benchmark, bins, results):
    measure(benchmark, results, "native_pwrite", N_NATIVE_PWRITE,
            lambda: bench.run_direct([bins["tenant_loop"], "pwrite", str(N_NATIVE_PWRITE)]))


def test_floor_notify_pwrite(benchmark, bins, results):
    measure(benchmark, results, "floor_notify_pwrite", N_NOTIFY,
            lambda: bench.run_direct([bins["floor_notify"], bins["tenant_loop"], "pwrite",
                                str(N_NOTIFY)]))


def test_engine_pwrite(benchmark, bins, results, engine, tmp_path):
    _, group = engine
    measure(benchmark, results, "engine_pwrite", N_NOTIFY,
            lambda: run_engine(group, bins, "pwrite", N_NOTIFY, tmp_path / "out"))
    assert group.usage().resources["disk_write"].used >= N_NOTIFY


def test_engine_pwrite_kept(benchmark, bins, results, engine, tmp_path):
    """The same with the group's calls recorded in a record file, as the
    daemon's are (native/keep.h)."""
    sup, _ = engine
    group = sup.group("kept", NEVER_BINDS)
    group.keep(str(tmp_path / "kept.keep"))
    measure(benchmark, results, "engine_pwrite_kept", N_NOTIFY,
            lambda: run_engine(group, bins, "pwrite", N_NOTIFY, tmp_path / "out"))
    group.close()


def test_floor_notify_write(benchmark, bins, results):
    measure(benchmark, results, "floor_notify_write", N_NOTIFY,
            lambda: bench.run_direct([bins["floor_notify"], bins["tenant_loop"], "write",
                                str(N_NOTIFY)]))


def test_engine_write(benchmark, bins, results, engine, tmp_path):
    _, group = engine
    measure(benchmark, results, "engine_write", N_NOTIFY,
            lambda: run_engine(group, bins, "write", N_NOTIFY, tmp_path / "out"))


def test_engine_write_disk_space(benchmark, bins, results, tmp_path):
    """The same writes in a group that also has a disk_space quota on the
    temporary file's filesystem: each write to a file is looked at (fstat,
    position) to estimate its growth."""
    with Supervisor() as sup:
        group = sup.group("bench-disk", Limits(disk_write="100GiB/s", disk_space="100GiB"),
                          disk_area=[tmp_path])
        measure(benchmark, results, "engine_write_disk_space", N_NOTIFY,
                lambda: run_engine(group, bins, "write", N_NOTIFY, tmp_path / "out"))


# ---- close in a group with write limits: not notified (it was, for an fd cache) ----

def test_native_dupclose(benchmark, bins, results):
    measure(benchmark, results, "native_dupclose", N_NOTIFY,
            lambda: bench.run_direct([bins["tenant_loop"], "dupclose", str(N_NOTIFY)]))


def test_engine_dupclose(benchmark, bins, results, engine, tmp_path):
    _, group = engine
    measure(benchmark, results, "engine_dupclose", N_NOTIFY,
            lambda: run_engine(group, bins, "dupclose", N_NOTIFY, tmp_path / "out"))


# ---- ungoverned calls: getpid is not in the engine's filter ----

def test_native_getpid(benchmark, bins, results):
    measure(benchmark, results, "native_getpid", N_GETPID,
            lambda: bench.run_direct([bins["tenant_loop"], "getpid", str(N_GETPID)]))


def test_floor_allow_getpid(benchmark, bins, results):
    measure(benchmark, results, "floor_allow_getpid", N_GETPID,
            lambda: bench.run_direct([bins["floor_allow"], bins["tenant_loop"], "getpid",
                                str(N_GETPID)]))


def test_engine_getpid(benchmark, bins, results, engine, tmp_path):
    _, group = engine
    before = group.usage().notifications
    measure(benchmark, results, "engine_getpid", N_GETPID,
            lambda: run_engine(group, bins, "getpid", N_GETPID, tmp_path / "out"))
    # Only the result line's write is notified, not a single getpid.
    assert group.usage().notifications - before < 100 * ROUNDS


# ---- many groups alive: the per-call cost must not grow ----
#
# One long-lived tenant (tenant_loop serve) is spawned before the idle groups
# and runs a timed loop per round on a byte written to a FIFO, so both sides
# measure the same process and the same listener.
#
# Why not a spawn per round: with governor 0.1.0, gov_spawn's take_listener()
# takes the *first* "seccomp notify" fd it finds in the command's fd table,
# and that table still holds (close-on-exec, not yet closed) copies of the
# supervisor's listeners of earlier groups. Once tens of groups exist, a new
# spawn can get another group's listener while its own is closed at exec;
# every governed call of that tenant then fails with ENOSYS.

class Server:
    def __init__(self, sup, group, bins, tmp_path, mode: str, n: int):
        self.sup, self.group, self.n = sup, group, n
        self.fifo, self.out = tmp_path / "go.fifo", tmp_path / "serve.out"
        os.mkfifo(self.fifo)
        self.proc = group.spawn([bins["tenant_loop"], "serve", mode, str(n), str(self.out),
                                 str(self.fifo)])

    def _send(self, byte: bytes) -> None:
        # O_NONBLOCK open fails (ENXIO) until the tenant has the FIFO open.
        for _ in range(20_000):
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as e:
                if e.errno != errno.ENXIO or self.proc.poll() is not None:
                    raise AssertionError(f"serving tenant gone ({self.proc.returncode})") from e
                time.sleep(0.001)
        else:
            raise AssertionError("serving tenant never opened its FIFO")
        try:
            os.write(fd, byte)
        finally:
            os.close(fd)

    def round(self) -> float:
        before = self.group.usage().notifications
        if self.out.exists():
            self.out.unlink()
        self._send(b"g")
        deadline = time.monotonic() + 120
        while not self.out.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"serving tenant exited {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise AssertionError("serving tenant: no result in 120 s")
            time.sleep(0.005)
        governed = self.group.usage().notifications - before
        assert governed >= self.n, f"only {governed} notifications for {self.n} calls"
        return bench.parse_ns(self.out.read_text())

    def stop(self) -> None:
        try:
            self._send(b"q")
            self.proc.wait(timeout=10)
        except (AssertionError, TimeoutError):
            self.proc.kill()


@pytest.fixture(scope="module")
def crowd(bins, tmp_path_factory):
    """A fresh Supervisor, the measured group and its serving tenant; idle
    groups join in test_engine_pwrite_100groups."""
    with Supervisor() as sup:
        group = sup.group("measured", NEVER_BINDS)
        server = Server(sup, group, bins, tmp_path_factory.mktemp("crowd"), "pwrite", N_NOTIFY)
        try:
            yield sup, server
        finally:
            server.stop()


def test_engine_pwrite_1group(benchmark, results, crowd):
    _, server = crowd
    measure(benchmark, results, "engine_pwrite_1group", N_NOTIFY, server.round)


def test_engine_pwrite_100groups(benchmark, bins, results, crowd):
    sup, server = crowd
    idle = []
    try:
        for i in range(IDLE_GROUPS):
            g = sup.group(f"idle{i}", NEVER_BINDS)
            idle.append(g.spawn([bins["tenant_loop"], "idle"]))
        assert all(p.poll() is None for p in idle)
        measure(benchmark, results, "engine_pwrite_100groups", N_NOTIFY, server.round)
        assert all(p.poll() is None for p in idle), "an idle tenant ended early"
    finally:
        for p in idle:  # only what this test started: SIGKILL to its namespace init
            p.kill()
