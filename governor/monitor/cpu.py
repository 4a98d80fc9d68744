"""CPU caps without cgroups: SCHED_DEADLINE reservations, rebalanced.

Every task of a capped group runs under SCHED_DEADLINE with a runtime per
10 ms period (native/cpu.h): the kernel throttles it exactly, for programs
that make no system call at all, and nobody sees a stop. Every 0.05 s this
controller measures each task's CPU time (/proc/PID/task/TID/schedstat) and
splits the group's cap: a task that used less than its share gets what it
used and some room, the tasks that used all of theirs share the rest
equally. New tasks (forked children start as normal tasks) are picked up at
the next pass.
"""
from __future__ import annotations

import errno
import logging
import os
import threading
import time

from .. import _native

lib = _native.lib
log = logging.getLogger(__name__)

PERIOD_NS = 10_000_000
TICK_SECONDS = 0.05
MAX_TASK_SHARE = 0.95     # of one CPU: the kernel's default deadline ceiling
MIN_SHARE = 0.01          # of one CPU, for a task that barely runs
SATURATED = 0.75          # used this much of its share: it wants more (DL jitter)
# A grown reservation takes the kernel up to a few hundred ms to deliver in
# full (the task finishes its current, small budget first): a task counts as
# modest only after this many passes in a row below SATURATED.
MODEST_AFTER = 8


def refusal() -> str | None:
    """Why the kernel would refuse the tasks this process starts a deadline
    reservation, or None. A thread is reserved for a moment and set back:
    the kernel refuses a task whose CPU affinity does not span its
    scheduling domain (taskset, a cpuset: EPERM), so a cap would not hold.
    No bandwidth left (EBUSY) is not a refusal: the controller retries."""
    rc = []

    def probe() -> None:
        tid = threading.get_native_id()
        rc.append(lib.gov_cpu_reserve(tid, PERIOD_NS // 10, PERIOD_NS))
        if rc[0] == 0:
            lib.gov_cpu_reserve(tid, 0, 0)

    t = threading.Thread(target=probe, name="governor-cpu-probe")
    t.start()
    t.join()
    if rc[0] in (0, -errno.EBUSY):
        return None
    cpus = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    return (f"the kernel refuses SCHED_DEADLINE reservations here ({os.strerror(-rc[0])}); "
            f"this process may run on CPUs {cpus} only: a reservation needs every CPU "
            f"of the scheduling domain (taskset and cpusets narrow it)")


def _cpu_ns(pid: int, tid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def split(cap: float, demand: dict[int, float], hungry: set[int]) -> dict[int, float]:
    """The next shares (CPUs) of the tasks.

    demand: CPUs each task used over the last pass; hungry: the tasks that
    want more. The others get room above what they used; the hungry ones
    share the cap less what the others *used*, so idle tasks' room costs the
    group nothing unless they wake up (then the group may pass its cap by
    that room until the next pass)."""
    out = {t: max(demand[t] * 2, MIN_SHARE) for t in demand if t not in hungry}
    used = min(sum(demand[t] for t in out), cap / 2)  # at least half for the hungry
    left = cap - used
    # Equal split among the hungry, none above one CPU's ceiling; what a
    # capped task cannot take goes to the others.
    pending = sorted(hungry, key=lambda t: demand.get(t, 0))
    while pending:
        each = left / len(pending)
        t = pending.pop(0)
        out[t] = min(each, MAX_TASK_SHARE)
        left -= out[t]
    # The room and the floor may add up past the cap (many tasks): never
    # reserve more than it.
    total = sum(out.values())
    if total > cap:
        out = {t: s * cap / total for t, s in out.items()}
    return out


class CpuController:
    """One thread per supervisor that keeps its capped groups' reservations."""

    def __init__(self, supervisor):
        self.supervisor = supervisor
        self._seen: dict[str, dict[int, tuple[float, int]]] = {}
        self._share: dict[str, dict[int, float]] = {}
        self._warned: set[str] = set()
        self._busy: dict[str, int] = {}   # passes in a row the kernel said EBUSY
        self._low: dict[str, dict[int, int]] = {}  # passes in a row below SATURATED
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="governor-cpu", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            for g in self.supervisor.groups:
                if g.limits.cpu is not None:
                    self.rebalance(g)

    def rebalance(self, group) -> None:
        """One pass over the group; also called right after a spawn, so a
        command starts under its reservation."""
        with self._lock:
            self._pass(group)

    def _tasks(self, group) -> list[tuple[int, int]]:
        out = []
        for pid in group.pids():
            try:
                out += [(pid, int(t)) for t in os.listdir(f"/proc/{pid}/task")]
            except OSError:
                pass
        return out

    def _pass(self, group) -> None:
        now = time.monotonic()
        seen = self._seen.setdefault(group.name, {})
        share = self._share.setdefault(group.name, {})
        demand, fresh = {}, {}
        for pid, tid in self._tasks(group):
            ns = _cpu_ns(pid, tid)
            if ns is None:
                continue
            fresh[tid] = (now, ns)
            if tid in seen:
                t0, ns0 = seen[tid]
                demand[tid] = max(ns - ns0, 0) / 1e9 / max(now - t0, 1e-3)
            else:
                demand[tid] = 0.0
        self._seen[group.name] = fresh
        low = self._low.setdefault(group.name, {})
        for tid in demand:
            below = tid in share and demand[tid] < SATURATED * share[tid]
            low[tid] = low.get(tid, 0) + 1 if below else 0
        for tid in list(low):
            if tid not in demand:
                del low[tid]
        hungry = {t for t in demand if low[t] < MODEST_AFTER}
        new = split(group.limits.cpu, demand, hungry)
        # Shrink first, so that growing never asks for more than the kernel
        # has left to reserve. A shrunk task's bandwidth comes back only at
        # its next deadline, so a grow may meet EBUSY: it is retried next pass.
        busy = False
        for tid, s in sorted(new.items(), key=lambda kv: kv[1] - share.get(kv[0], 1.0)):
            if abs(s - share.get(tid, -1)) < 1e-4:
                continue
            rc = lib.gov_cpu_reserve(tid, max(int(s * PERIOD_NS), 1024), PERIOD_NS)
            if rc == 0:
                share[tid] = s
            elif rc == -errno.EBUSY:
                busy = True
            elif rc != -errno.ESRCH and group.name not in self._warned:
                self._warned.add(group.name)
                log.warning("group %s: cannot reserve CPU for task %d: %s", group.name, tid,
                            os.strerror(-rc))
        self._busy[group.name] = self._busy.get(group.name, 0) + 1 if busy else 0
        if self._busy[group.name] == 40:  # 2 s: not a transient
            log.warning("group %s: the host has no deadline bandwidth left for its CPU cap",
                        group.name)
        for tid in list(share):
            if tid not in new:
                del share[tid]

    def forget(self, group) -> None:
        self._seen.pop(group.name, None)
        self._share.pop(group.name, None)
        self._low.pop(group.name, None)
