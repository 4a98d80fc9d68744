"""Soak: many groups of churning tasks under mixed limits in one supervisor
for a long time. What must not happen: the supervisor's memory, fds or
threads growing, state files going stale or wrong, the engine's task count
drifting from the real one.

    python benchmarks/soak.py [--groups 100] [--tasks 10] [--seconds 600]

Each group runs tests/tenants/soak_tenant.c, which keeps up to --tasks tasks
busy forking, writing, sending, mapping memory and starting threads, then
holds exactly --tasks tasks still. Limits rotate over the groups: processes
always (it binds: children with a thread take two tasks), plus disk_write,
net_send, memory or all three. Prints the supervisor's RSS, fds and threads
once a minute, the children each group made (alike groups must get alike
service: one under a third of its mix's median fails), and a verdict;
a stuck group's tasks are printed with the call each is in. Exit status 1
if a check failed: a tenant that never went still, a count that is not
/proc's, a call still held, state files that disagree, RSS growth past
8 MiB, or fds or threads left once the supervisor has closed."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

from governor import Limits, Supervisor
from governor.monitor.state import read_states

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from _tenants import TENANTS, compile_c, group_tasks, live_tasks, read_line  # noqa: E402  (the tests' own /proc count)
MIXES = ({}, {"disk_write": "2MiB/s"}, {"net_send": "1MiB/s"}, {"memory": "256MiB"},
         {"disk_write": "4MiB/s", "net_send": "2MiB/s", "memory": "512MiB"})


def footprint() -> dict[str, int]:
    me = psutil.Process()
    return {"rss_kib": me.memory_info().rss // 1024, "fds": me.num_fds(),
            "threads": me.num_threads()}


def describe(group, init_pid: int) -> str:
    """What a stuck group looks like: the engine's view and each task's
    state and current call (/proc/PID/task/TID/syscall)."""
    u = group.usage()
    out = [f"engine: processes.used={u.resources['processes'].used} tasks={u.tasks} "
           f"held_now={u.held_now}"]
    for pid in group_tasks(init_pid):
        for tid in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else ():
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
                call = Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()
            except OSError:
                continue
            out.append(f"pid {pid} tid {tid} state {stat[0]} call {' '.join(call[:3])}")
    return "\n    ".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=100)
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="governor-soak."))
    os.environ["GOVERNOR_RUN_DIR"] = str(work / "run")
    tenant = compile_c(TENANTS / "soak_tenant.c", work, ("-O2",))
    failures: list[str] = []
    samples = []
    before = footprint()   # this process before the supervisor: what it must go back to
    try:
        with Supervisor() as sup:
            procs = []
            for i in range(args.groups):
                limits = Limits(processes=args.tasks, **MIXES[i % len(MIXES)])
                g = sup.group(f"soak{i}", limits)
                r, w = os.pipe()
                out_r, out_w = os.pipe()
                p = g.spawn([str(tenant), str(args.tasks), str(args.seconds),
                             str(work / f"out{i}")], stdin=r, stdout=out_w)
                os.close(r)
                os.close(out_w)
                procs.append((g, p, w, out_r))
            time.sleep(5)
            start = footprint()
            samples.append({"t": 0, **start})
            print(f"start: {start}", flush=True)
            t0 = time.monotonic()
            next_sample = 60.0
            while time.monotonic() - t0 < args.seconds:
                time.sleep(min(5.0, max(0.1, args.seconds - (time.monotonic() - t0))))
                states = read_states()
                names = {st["group"] for st in states}
                missing = {g.name for g, *_ in procs} - names
                if missing and time.monotonic() - t0 > 3:
                    failures.append(f"state files missing for {sorted(missing)[:5]}")
                if time.monotonic() - t0 >= next_sample:
                    f = footprint()
                    samples.append({"t": round(time.monotonic() - t0), **f})
                    print(f"{samples[-1]['t']:5d} s: {f}", flush=True)
                    next_sample += 60
            # The still phase: every tenant holds exactly --tasks tasks.
            forks: dict[str, list[int]] = {}   # by limits: the children each group made
            for i, (g, p, w, out_r) in enumerate(procs):
                try:
                    n = int(read_line(out_r, 120).split()[1])
                    forks.setdefault(str(MIXES[i % len(MIXES)] or "processes only"), []).append(n)
                except AssertionError as e:
                    failures.append(f"{g.name}: tenant did not reach its still phase ({e})"
                                    f"\n    {describe(g, p.init_pid)}")
            # Alike tenants under alike limits get alike service: no group starves.
            for mix, counts in forks.items():
                counts.sort()
                low, mid, high = counts[0], counts[len(counts) // 2], counts[-1]
                print(f"children made, {mix}: min {low} median {mid} max {high}", flush=True)
                if low * 3 < mid:
                    failures.append(f"a group starved ({mix}): {low} children against a median of {mid}")
            time.sleep(1)
            wrong = []
            for g, p, w, out_r in procs:
                real, u = live_tasks(p.init_pid), g.usage()
                counted = u.resources["processes"].used
                if (real, counted, u.held_now) != (args.tasks, args.tasks, 0):
                    wrong.append((g.name, real, counted, u.held_now))
            if wrong:
                failures.append("engine count != live tasks, or calls still held "
                                f"(group, live, counted, held): {wrong[:10]}")
            states = {st["group"]: st for st in read_states()}
            stale = [n for n, st in states.items()
                     if st["usage"]["resources"]["processes"]["used"] != args.tasks]
            if len(states) != args.groups or stale:
                failures.append(f"state files: {len(states)} groups, wrong counts in {stale[:5]}")
            end = footprint()
            samples.append({"t": round(time.monotonic() - t0), **end})
            for g, p, w, out_r in procs:
                os.close(w)
                p.wait(30)
                os.close(out_r)
        if read_states():
            failures.append("state files left after the supervisor closed")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    after = footprint()
    growth = {k: end[k] - start[k] for k in start}
    print(f"end:   {end}\ngrowth: {growth}\nbefore the supervisor: {before}, after it: {after}")
    # While it runs, the supervisor's fds follow the tenants' live tasks (its
    # pidfd cache, bounded by RLIMIT_NOFILE): a leak shows once it has closed,
    # as fds or threads left over. Allocator noise is not growth: 8 MiB of RSS.
    if growth["threads"] > 0 or growth["rss_kib"] > 8192:
        failures.append(f"the supervisor grew: {growth}")
    if (after["fds"], after["threads"]) != (before["fds"], before["threads"]):
        failures.append(f"left behind after the supervisor closed: {before} -> {after}")
    result = {"groups": args.groups, "tasks": args.tasks, "seconds": args.seconds,
              "before": before, "start": start, "end": end, "after": after, "samples": samples,
              "failures": failures}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print("PASS" if not failures else "FAIL:\n  " + "\n  ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
