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
once a minute, and a verdict; exit status 1 if a check failed."""
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
from _tenants import TENANTS, compile_c, live_tasks  # noqa: E402  (the tests' own /proc count)
MIXES = ({}, {"disk_write": "2MiB/s"}, {"net_send": "1MiB/s"}, {"memory": "256MiB"},
         {"disk_write": "4MiB/s", "net_send": "2MiB/s", "memory": "512MiB"})


def footprint() -> dict[str, int]:
    me = psutil.Process()
    return {"rss_kib": me.memory_info().rss // 1024, "fds": me.num_fds(),
            "threads": me.num_threads()}


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
            for g, p, w, out_r in procs:
                line = b""
                deadline = time.monotonic() + 120
                while not line.endswith(b"\n") and time.monotonic() < deadline:
                    line += os.read(out_r, 64)
                if line != b"still\n":
                    failures.append(f"{g.name}: tenant did not reach its still phase ({line!r})")
            time.sleep(1)
            wrong = []
            for g, p, w, out_r in procs:
                real = live_tasks(p.init_pid)
                counted = g.usage().resources["processes"].used
                if (real, counted) != (args.tasks, args.tasks):
                    wrong.append((g.name, real, counted))
            if wrong:
                failures.append(f"engine count != live tasks (group, live, counted): {wrong[:10]}")
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
    growth = {k: end[k] - start[k] for k in start}
    print(f"end:   {end}\ngrowth: {growth}")
    # Allocator noise is not growth: 8 MiB of RSS, no fd, no thread.
    if growth["fds"] > 0 or growth["threads"] > 0 or growth["rss_kib"] > 8192:
        failures.append(f"the supervisor grew: {growth}")
    result = {"groups": args.groups, "tasks": args.tasks, "seconds": args.seconds,
              "start": start, "end": end, "samples": samples, "failures": failures}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print("PASS" if not failures else "FAIL:\n  " + "\n  ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
