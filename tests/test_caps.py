"""Caps: `processes` (live tasks) and `memory` (committed private memory),
in deny and hold mode, observed from inside the tenant and from outside."""
from __future__ import annotations

import errno
import os
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tenants import (compile_tenant, group_tasks, host_pid, needs_root, read_kv,  # noqa: E402
                      start_time, wait_for)

from governor import Limits, PolicyError, Supervisor  # noqa: E402

pytestmark = [needs_root, pytest.mark.timeout(30)]

MiB = 1 << 20
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


@pytest.fixture(scope="module")
def tenant(tmp_path_factory) -> str:
    return str(compile_tenant(tmp_path_factory.mktemp("tenant")))


# ---- processes, deny ----

@pytest.mark.parametrize("kind", ["fork", "vfork", "clone3", "thread", "posix_spawn"])
@pytest.mark.parametrize("cap", [1, 5])
def test_processes_deny(tenant, tmp_path, kind, cap, backend):
    """Every child stays alive (blocked on a pipe) until the loop ends, so the
    successes plus the tenant itself are tasks alive at one moment."""
    out = tmp_path / "out"
    with Supervisor(backend=backend) as sup:
        g = sup.group("t", Limits(processes=cap, on_exhausted={"processes": "deny"}))
        p = g.spawn([tenant, "spawn", kind, "20", str(out)])
        assert p.wait(10) == 0
        r = read_kv(out)
        ok, err = int(r["ok"]), int(r["errno"])
        u = g.usage()
        denied = [e for e in sup.events() if e.kind == "denied"]
    if kind == "clone3":
        # A processes cap traces the clone family (under seccomp too): clone3,
        # whose flags are in memory, gets ENOSYS and glibc falls back to clone.
        assert (ok, err) == (0, errno.ENOSYS)
        return
    assert err == errno.EAGAIN, f"{kind}: first failure errno {err}, {ok} succeeded"
    # Events name the call (python-ptrace's tables) and the errno it got.
    assert denied and {e.call for e in denied} <= {"clone", "clone3", "fork", "vfork"}, denied
    assert {(e.resource, e.value) for e in denied} == {("processes", errno.EAGAIN)}, denied
    assert ok + 1 <= cap, f"{kind}: {ok} children + tenant alive at once, cap {cap}"
    assert ok == cap - 1, f"{kind}: only {ok} of {cap - 1} allowed children succeeded"
    assert u.peak_tasks <= cap
    assert u.resources["processes"].denied_calls >= 1


# ---- processes, hold ----

def test_fork_bomb_hold_never_exceeds_cap(tenant, backend):
    cap = 8
    seen: dict[int, int] = {}
    samples = []
    with Supervisor(backend=backend) as sup:
        g = sup.group("bomb", Limits(processes=cap))
        p = g.spawn([tenant, "bomb"])
        wait_for(lambda: g.usage().resources["processes"].held_calls > 0, 5, "a held fork")
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and len(samples) < 400:
            tasks = group_tasks(p.init_pid)
            pids = list(tasks)
            samples.append(sum(tasks.values()))
            for x in pids:
                st = start_time(x)
                if st is not None:
                    seen[x] = st
            time.sleep(0.005)
        u = g.usage()
        stalls = [e for e in sup.events() if e.kind == "stalled"]
        assert p.poll() is None, "the bomb's root should still be running (held)"
        p.kill()
        assert p.returncode == -signal.SIGKILL
    assert len(samples) >= 10
    assert max(samples) <= cap, f"samples of the group's task count: {samples}"
    assert max(samples) >= cap - 1, f"the bomb never got near the cap: {samples}"
    assert u.peak_tasks <= cap
    assert u.resources["processes"].held_calls >= 1
    # Every task of a bomb at its cap is held in fork: none can exit, so the
    # engine fails the held forks (EAGAIN) as a stalled group, and says so.
    assert u.resources["processes"].denied_calls == 0 or stalls, "denials without a stall"
    assert all(e.resource == "processes" and e.value <= cap for e in stalls)
    # Everything is gone (a pid may have been reused: compare start times).
    left = [pid for pid, st in seen.items() if start_time(pid) == st]
    assert not left, f"processes of the killed group still exist: {left}"


@pytest.mark.parametrize("signalled", [False, True], ids=["quiet", "signalled"])
def test_hold_second_child_waits_for_first_to_exit(tenant, tmp_path, backend, signalled):
    """cap 3 = tenant + A + A2; the fork of B waits until A exits. A handled
    signal meanwhile runs its handler at once and the fork goes on waiting,
    as a fork interrupted by a signal is restarted natively (no EINTR,
    although the handler has no SA_RESTART)."""
    fifo, log = tmp_path / "fifo", tmp_path / "log"
    os.mkfifo(fifo)

    def lines():
        return log.read_text().splitlines() if log.exists() else []

    with Supervisor(backend=backend) as sup:
        g = sup.group("h", Limits(processes=3))
        p = g.spawn([tenant, "hold", str(fifo), str(log)] + (["sig"] if signalled else []))
        wait_for(lambda: "forking B" in lines() and "A ready" in lines(), 5, "A and 'forking B'")
        wait_for(lambda: g.usage().held_now >= 1, 5, "the fork of B to be held")
        if signalled:
            p.send_signal(signal.SIGUSR1)
            wait_for(lambda: "handled" in lines(), 2, "the handler to run during the hold")
            wait_for(lambda: g.usage().held_now >= 1, 2, "the restarted fork to be held again")
        assert "B start" not in lines() and "B forked" not in lines()
        assert p.poll() is None
        # Release A: open the FIFO as writer (A is blocked opening it), close.
        fd = wait_for(lambda: _open_writer(fifo), 5, "A to open the FIFO")
        os.close(fd)
        assert p.wait(10) == 0
        u = g.usage()
    got = lines()
    assert "B start" in got and "B forked" in got, got
    assert got.index("A exit") < got.index("B start"), got
    assert got.index("A exit") < got.index("B forked"), got
    assert u.resources["processes"].held_calls >= 1
    assert u.resources["processes"].held_seconds > 0
    assert u.resources["processes"].denied_calls == 0
    assert u.peak_tasks <= 3


def test_hold_releases_when_a_slot_frees_after_back_to_back_forks(tenant, tmp_path, backend):
    """cap 4 = R + A + P + Q. P's and Q's forks are held; A exits, so P's fork
    goes (P1 appears) and P at once forks again (held behind Q). Then P1
    exits: 3 live tasks, so Q's held fork must go."""
    log = tmp_path / "log"

    def entries():
        out = {}
        for line in (log.read_text().splitlines() if log.exists() else []):
            name, _, pid = line.partition(" ")
            if pid.isdigit():
                out[name] = host_pid(g.pids(), int(pid))
            else:
                out[line] = None
        return out

    def held(n):
        return lambda: g.usage().held_now == n

    with Supervisor(backend=backend) as sup:
        g = sup.group("pend", Limits(processes=4))
        p = g.spawn([tenant, "pend", str(log)])
        try:
            wait_for(lambda: {"R", "A", "P", "Q"} <= entries().keys(), 5, "R, A, P, Q")
            e = entries()
            os.kill(e["P"], signal.SIGUSR1)
            wait_for(held(1), 5, "P's fork to be held")
            os.kill(e["Q"], signal.SIGUSR1)
            wait_for(held(2), 5, "Q's fork to be held")
            os.kill(e["A"], signal.SIGUSR1)  # A exits: one slot
            wait_for(lambda: {"P1", "P forked"} <= entries().keys(), 5, "P's fork to go")
            wait_for(held(2), 5, "P's second fork to be held")
            assert "Q1" not in entries()
            os.kill(entries()["P1"], signal.SIGUSR1)  # P1 exits: one slot
            try:
                wait_for(lambda: "Q1" in entries(), 3, "Q's held fork to go")
            except AssertionError:
                u = g.usage()
                pytest.fail(f"3 of 4 tasks live ({list(group_tasks(p.init_pid))}), yet held_now="
                            f"{u.held_now}, tasks={u.tasks}: the held forks never go")
            wait_for(lambda: "P2" in entries(), 3, "P's second fork to go")
            u = g.usage()
        finally:
            p.kill()
    assert u.peak_tasks <= 4


def _open_writer(path: Path) -> int | None:
    try:
        return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ENXIO:  # no reader yet
            return None
        raise


# ---- memory ----

def _mem_run(tenant, tmp_path, mode, limits, backend):
    out = tmp_path / "out"
    with Supervisor(backend=backend) as sup:
        g = sup.group("m", limits)
        p = g.spawn([tenant, "mem", mode, str(out)])
        rc = p.wait(10)
        u = g.usage()
    return rc, out.read_text().strip() if out.exists() else "", u


@pytest.mark.parametrize("mode", ["malloc200", "mmap200", "sbrk200"])
def test_memory_deny_large_allocation_fails_enomem(tenant, tmp_path, mode, backend):
    limits = Limits(memory="64MiB", on_exhausted={"memory": "deny"})
    rc, out, u = _mem_run(tenant, tmp_path, mode, limits, backend)
    assert rc == 10, out
    assert out == f"fail errno={errno.ENOMEM}"
    assert u.resources["memory"].denied_calls >= 1
    assert u.peak_memory <= 64 * MiB


def test_memory_deny_touched_chunks_stop_below_cap(tenant, tmp_path, backend):
    limits = Limits(memory="64MiB", on_exhausted={"memory": "deny"})
    rc, out, u = _mem_run(tenant, tmp_path, "chunks", limits, backend)
    assert rc == 10, out
    r = dict(kv.split("=") for kv in out.split())
    assert int(r["errno"]) == errno.ENOMEM
    assert 32 <= int(r["chunks"]) < 64, out
    assert u.peak_memory <= 64 * MiB


def test_memory_prot_none_reservation_is_free(tenant, tmp_path, backend):
    limits = Limits(memory="64MiB", on_exhausted={"memory": "deny"})
    rc, out, u = _mem_run(tenant, tmp_path, "reserve", limits, backend)
    assert rc == 0, out
    assert out == f"reserve=ok commit16=ok commit200=-1 errno={errno.ENOMEM}"
    assert u.peak_memory <= 64 * MiB
    assert u.peak_memory >= 16 * MiB


def test_memory_without_limit_allows_200mib(tenant, tmp_path, backend):
    rc, out, _ = _mem_run(tenant, tmp_path, "mmap200", Limits(processes=4), backend)
    assert (rc, out) == (0, "ok")


def test_python_threads_under_memory_cap(tmp_path, backend):
    out = tmp_path / "out"
    code = ("import sys, threading\n"
            "res = []\n"
            "ts = [threading.Thread(target=lambda i=i: res.append(bytearray(1 << 20) and i))"
            " for i in range(4)]\n"
            "[t.start() for t in ts]\n"
            "[t.join() for t in ts]\n"
            "open(sys.argv[1], 'w').write(f'ok {len(res)}')\n")
    with Supervisor(backend=backend) as sup:
        g = sup.group("py", Limits(memory="256MiB", on_exhausted={"memory": "deny"}))
        p = g.spawn([PYTHON, "-c", code, str(out)])
        assert p.wait(10) == 0
        u = g.usage()
    assert out.read_text() == "ok 4"
    assert u.resources["memory"].denied_calls == 0
    assert 0 < u.peak_memory <= 256 * MiB


@needs_root
def test_memory_resident_kills_the_largest_process(tmp_path, backend):
    """Past memory_resident the group's largest process is killed (like an OOM
    kill) and the event is reported; a small sibling survives."""
    grow = ("import sys, time\nchunks = []\nfor i in range(40):\n"
            "    chunks.append(bytearray(8 << 20))\n    print(i, flush=True)\n    time.sleep(0.05)\n")
    progress = tmp_path / "progress"
    with Supervisor(backend=backend) as sup:
        g = sup.group("rss", Limits(memory_resident="96MiB"))
        small = g.spawn(["sleep", "30"])
        with open(progress, "w") as out:
            big = g.spawn([sys.executable, "-c", grow], stdout=out)
        assert big.wait(30) == -signal.SIGKILL
        steps = len(progress.read_text().split())
        assert steps < 40, "the process was not killed before it finished"
        u = g.usage()
        assert u.resident_kills == 1 and u.peak_resident > 96 << 20
        assert small.poll() is None, "the small process was killed too"
        kinds = [e.kind for e in sup.events()]
        assert "resident_killed" in kinds


def test_memory_resident_cannot_be_held():
    with pytest.raises(PolicyError) as e:
        Limits(memory_resident="64MiB", on_exhausted={"memory_resident": "hold"})
    assert e.value.key == "memory_resident"


SHARED = """
import errno, mmap, sys
size, rounds = int(sys.argv[1]) << 20, int(sys.argv[2])
for i in range(rounds):
    try:
        m = mmap.mmap(-1, size)          # MAP_SHARED | MAP_ANONYMOUS, read-write
    except OSError as e:
        print("ENOMEM" if e.errno == errno.ENOMEM else e, "at", i)
        sys.exit(3)
    m.close()                            # unmapped: the memory comes back
print("ok")
"""


@needs_root
@pytest.mark.parametrize("size_mib, rounds, want", [(200, 1, 3), (40, 6, 0)])
def test_memory_counts_shared_anonymous_mappings(tmp_path, size_mib, rounds, want, backend):
    """A shared anonymous mapping commits memory like a private one (200 MiB
    under 96 MiB fails), and gives it back when unmapped (6 x 40 MiB, one at
    a time, fits)."""
    out = tmp_path / "out"
    with Supervisor(backend=backend) as sup:
        g = sup.group("shm", Limits(memory="96MiB", on_exhausted={"memory": "deny"}))
        with open(out, "w") as f:
            p = g.spawn([sys.executable, "-c", SHARED, str(size_mib), str(rounds)], stdout=f)
            assert p.wait(20) == want, out.read_text()
    assert out.read_text().startswith("ENOMEM" if want else "ok")


def test_memory_call_larger_than_the_cap_fails_at_once(tmp_path, backend):
    """A mapping larger than the whole cap can never fit: held, it would wait
    for ever (CPython's test_io probes with sys.maxsize); it gets ENOMEM."""
    with Supervisor(backend=backend) as sup:
        g = sup.group("big", Limits(memory="256MiB"))
        r, w = os.pipe()
        p = g.spawn([PYTHON, "-c", "import mmap, sys\ntry:\n    mmap.mmap(-1, 1 << 40)\n"
                     "except OSError as e:\n    print(e.errno)"], stdout=w)
        os.close(w)
        assert p.wait(10) == 0
        with os.fdopen(r) as f:
            assert f.read().strip() == str(errno.ENOMEM)
        u = g.usage().resources["memory"]
        assert u.denied_calls >= 1 and u.held_calls == 0
