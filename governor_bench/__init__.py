"""`governor bench`: what a governed and an ungoverned system call cost under
each interception mechanism, measured by the tenant itself, and real
workloads under each backend and the peer tools (macro.py).

Each micro row runs benchsrc/tenant_loop.c, which times N calls of its own
with clock_gettime around the loop only (process start, filter install and
exec excluded): a 1-byte pwrite64 at offset 0 of a temp file (governed: the
group's disk_write limit never binds, so every call is charged and let go at
once) and getpid (ungoverned: in no filter's list). Rounds are interleaved
(round 1 of every row, then round 2, ...), so drift on a busy machine hits
every row alike; each row reports the median and p99 over the rounds and
their ratios to native.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import binaries, pyloops
from .options import Options
from governor._errors import GovernorError, PolicyError
from governor.limits import Limits
from governor.supervisor import Supervisor

NEVER_BINDS = Limits(disk_write="100GiB/s")
MODES = {"governed": "pwrite", "ungoverned": "getpid"}
_NS = re.compile(r"ns_per_call=([0-9.]+)")
TIMEOUT = 600


class Unavailable(Exception):
    """A mechanism that cannot run here; the message says why."""


def parse_ns(text: str) -> float:
    """The per-call nanoseconds of a tenant_loop result line."""
    m = _NS.search(text)
    if not m:
        raise GovernorError(f"no ns_per_call in tenant_loop output: {text!r}")
    return float(m.group(1))


def run_direct(argv: list[str]) -> float:
    """Runs tenant_loop (or a floor around it) and returns its per-call ns."""
    p = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
    if p.returncode != 0:
        raise GovernorError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.strip()}")
    return parse_ns(p.stdout)


class GovernedGroup:
    """A Supervisor of one backend and one group, for the bench's spawns.
    Unavailable when the backend cannot run here (not built in, not root)."""

    def __init__(self, backend: str, limits: Limits, sync_wakeup: bool = True):
        if os.geteuid() != 0:
            raise Unavailable("needs root: each group runs in its own pid namespace")
        # sync_wakeup is a switch of the seccomp backend only.
        extra = {"sync_wakeup": sync_wakeup} if backend == "seccomp" else {}
        try:
            self.sup = Supervisor(backend=backend, publish_state=False, **extra)
        except GovernorError as e:
            raise Unavailable(str(e)) from e
        self.group = self.sup.group("bench", limits)

    def run(self, argv: list[str]) -> int:
        """Spawns argv in the group and waits; returns its exit status."""
        proc = self.group.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        return proc.wait(timeout=TIMEOUT)

    def close(self) -> None:
        self.sup.close()


# ---- the mechanisms: one object per row, opened once, run once per round ----

class Mechanism:
    row = ""
    key = ""
    label = ""

    def open(self, helpers: dict[str, str], workdir: Path) -> None:
        self.helpers, self.workdir = helpers, workdir

    def run(self, mode: str, calls: int) -> float:
        """One round: tenant_loop MODE CALLS; returns ns per call."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def tenant(self, mode: str, calls: int) -> list[str]:
        return [self.helpers["tenant_loop"], mode, str(calls)]


class Direct(Mechanism):
    """tenant_loop alone, or under a C helper that execs it."""

    def __init__(self, row: str, key: str, label: str, wrapper: str | None = None):
        self.row, self.key, self.label, self.wrapper = row, key, label, wrapper

    def run(self, mode: str, calls: int) -> float:
        prefix = [self.helpers[self.wrapper]] if self.wrapper else []
        return run_direct(prefix + self.tenant(mode, calls))


class Engine(Mechanism):
    """tenant_loop spawned in a governor group of the given backend."""

    def __init__(self, row: str, key: str, label: str, backend: str, sync_wakeup: bool = True):
        self.row, self.key, self.label = row, key, label
        self.backend, self.sync_wakeup = backend, sync_wakeup
        self.gg: GovernedGroup | None = None

    def open(self, helpers, workdir) -> None:
        super().open(helpers, workdir)
        self.gg = GovernedGroup(self.backend, NEVER_BINDS, self.sync_wakeup)
        self.out = workdir / f"{self.key}.out"
        if self.sync_wakeup and self.backend == "seccomp":
            try:
                self.run("getpid", 1)  # the engine learns SYNC_WAKE_UP with its first listener
                lacking = not self.gg.sup.sync_wakeup
            except BaseException:
                self.close()
                raise
            if lacking:
                self.close()
                raise Unavailable("the kernel lacks SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP")

    def run(self, mode: str, calls: int) -> float:
        usage = self.gg.group.usage().resources["disk_write"]
        rc = self.gg.run(self.tenant(mode, calls) + [str(self.out)])
        if rc != 0:
            raise GovernorError(f"tenant_loop {mode} exited {rc} under {self.label}")
        charged = self.gg.group.usage().resources["disk_write"].used - usage.used
        if mode == "pwrite" and charged < calls:  # every call went through the engine
            raise GovernorError(f"{self.label}: {charged} bytes charged for {calls} pwrites")
        return parse_ns(self.out.read_text())

    def close(self) -> None:
        if self.gg:
            self.gg.close()
            self.gg = None


class PythonLoop(Mechanism):
    """tenant_loop under one of the pure-Python supervisors (pyloops)."""

    def __init__(self, row: str, key: str, label: str, loop: Callable[..., str], helper: str,
                 **kw):
        self.row, self.key, self.label = row, key, label
        self.loop, self.helper, self.kw = loop, helper, kw

    def run(self, mode: str, calls: int) -> float:
        bucket = pyloops.Bucket(NEVER_BINDS.disk_write, NEVER_BINDS.burst_of("disk_write"))
        return parse_ns(self.loop(self.helpers[self.helper], self.tenant(mode, calls), bucket,
                                  timeout=TIMEOUT, **self.kw))


def mechanisms() -> list[Mechanism]:
    """The rows of the micro table, in order."""
    return [
        Direct("1", "native", "native"),
        Direct("2", "seccomp_allow", "seccomp filter only (RET_ALLOW)", "floor_allow"),
        Engine("3", "notify_engine", "seccomp notify, engine, SYNC_WAKE_UP", "seccomp"),
        Engine("3", "notify_engine_nosync", "seccomp notify, engine, no SYNC_WAKE_UP", "seccomp",
               sync_wakeup=False),
        PythonLoop("4", "notify_python", "seccomp notify, Python handler", pyloops.notify_loop,
                   "notify_exec"),
        Engine("5", "ptrace_engine", "ptrace + RET_TRACE, engine", "ptrace"),
        Engine("6", "ptrace_syscall_engine", "ptrace, PTRACE_SYSCALL, engine", "ptrace-syscall"),
        PythonLoop("7", "python_ptrace", "python-ptrace, RET_TRACE", pyloops.ptrace_loop,
                   "trace_exec"),
        PythonLoop("7", "python_ptrace_syscall", "python-ptrace, PTRACE_SYSCALL",
                   pyloops.ptrace_loop, "trace_exec", every_call=True),
        Direct("8", "floor_notify", "floor: C seccomp notify supervisor", "floor_notify"),
        Direct("8", "floor_trace", "floor: C ptrace RET_TRACE supervisor", "floor_trace"),
    ]


# ---- statistics and goals ----

def p99(samples: list[float]) -> float:
    """The 99th percentile, interpolated between the two nearest samples."""
    s = sorted(samples)
    pos = 0.99 * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary(samples: list[float]) -> dict:
    return {"median_ns": statistics.median(samples), "p99_ns": p99(samples),
            "samples_ns": samples}


@dataclass
class Goal:
    name: str
    path: str               # the measured row
    base: tuple[str, ...]   # the row it is compared with: the first of these that ran
    op: str                 # "<=" or ">="
    target: float
    # Compare only the time above this row (the supervisor's own share of a
    # call, the kernel's round trip taken out).
    floor: str | None = None


GOALS = [
    Goal("ptrace engine vs the C RET_TRACE floor, governed call",
         "ptrace_engine", ("floor_trace",), "<=", 1.2),
    Goal("seccomp notify: Python handler vs engine, governed call",
         "notify_python", ("notify_engine", "notify_engine_nosync"), ">=", 10),
    Goal("seccomp notify: Python handler vs engine, time above floor_notify",
         "notify_python", ("notify_engine", "notify_engine_nosync"), ">=", 10, "floor_notify"),
    Goal("ptrace RET_TRACE: python-ptrace vs engine, governed call",
         "python_ptrace", ("ptrace_engine",), ">=", 10),
    Goal("ptrace RET_TRACE: python-ptrace vs engine, time above floor_trace",
         "python_ptrace", ("ptrace_engine",), ">=", 10, "floor_trace"),
]


def goal_results(rows: dict[str, dict]) -> list[dict]:
    def median(key):
        return rows[key]["governed"]["median_ns"]

    out = []
    for g in GOALS:
        base = next((k for k in g.base if rows[k]["available"]), g.base[0])
        doc = {"goal": g.name, "target": f"{g.op} {g.target:g}x", "path": g.path, "base": base,
               "floor": g.floor, "ratio": None, "met": None, "reason": None}
        out.append(doc)
        missing = [k for k in (g.path, base, g.floor) if k and not rows[k]["available"]]
        if missing:
            doc["reason"] = f"{missing[0]}: {rows[missing[0]]['reason']}"
            continue
        f = median(g.floor) if g.floor else 0.0
        if median(base) <= f:
            doc["reason"] = (f"{base} is not above {g.floor} in this run "
                             f"({_us(median(base))} vs {_us(f)} µs)")
            continue
        r = (median(g.path) - f) / (median(base) - f)
        doc.update(ratio=r, met=r <= g.target if g.op == "<=" else r >= g.target)
    return out


# ---- the run ----

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def pin_to_one_cpu() -> int:
    """Pins this thread, and so every thread and process it starts from now
    on (the engine thread, tenants, floors), to one CPU; returns it."""
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def run(opts: Options) -> dict:
    """Measures everything; returns the document `--json` writes."""
    helpers = binaries.build()
    pinned = pin_to_one_cpu() if opts.pin else None
    meta = {"kernel": platform.release(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "sync_wakeup": None, "pinned_cpu": pinned,
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "calls": opts.calls, "rounds": opts.rounds,
            "governor": importlib.metadata.version("governor"),
            "python": platform.python_version(),
            "governed_call": "1-byte pwrite64 at offset 0 of a temp file, in a group whose "
                             "disk_write limit never binds",
            "ungoverned_call": "getpid"}
    with tempfile.TemporaryDirectory(prefix="governor-bench.") as tmp:
        rows = _micro(helpers, Path(tmp), opts)
        meta["sync_wakeup"] = rows["notify_engine"]["available"]
        doc = {"meta": meta, "rows": list(rows.values()), "goals": goal_results(rows)}
        if opts.macro:
            from .macro import run_macro  # here: macro builds on this module
            doc["macro"] = run_macro(helpers, Path(tmp), opts)
    return doc


def _micro(helpers: dict[str, str], workdir: Path, opts: Options) -> dict[str, dict]:
    mechs = mechanisms()
    rows = {m.key: {"row": m.row, "key": m.key, "mechanism": m.label, "available": True,
                    "reason": None} for m in mechs}
    opened = []
    try:
        for m in mechs:
            try:
                m.open(helpers, workdir)
                opened.append(m)
            except Unavailable as e:
                rows[m.key].update(available=False, reason=str(e))
        samples = {m.key: {kind: [] for kind in MODES} for m in opened}
        for r in range(opts.rounds):
            opts.progress(f"micro round {r + 1}/{opts.rounds}")
            for m in opened:
                for kind, mode in MODES.items():
                    samples[m.key][kind].append(m.run(mode, opts.calls))
    finally:
        for m in opened:
            m.close()
    for key, by_kind in samples.items():
        for kind, s in by_kind.items():
            rows[key][kind] = summary(s)
    native = rows["native"]
    for row in rows.values():
        for kind in MODES:
            if row["available"]:
                d = row[kind]
                d["ratio_median"] = d["median_ns"] / native[kind]["median_ns"]
                d["ratio_p99"] = d["p99_ns"] / native[kind]["p99_ns"]
    return rows


# ---- the text report ----

def _us(ns: float) -> str:
    return f"{ns / 1000:.3f}"


def text_table(header: list[str], lines: list[list[str]], right: set[int]) -> list[str]:
    full = [header] + [ln for ln in lines if len(ln) == len(header)]
    width = [max(len(x[i]) for x in full) for i in range(len(header))]

    def fmt(cells):
        if len(cells) < len(header):  # an n/a line: the reason runs on
            return "  ".join(c.ljust(width[i]) for i, c in enumerate(cells[:-1])) + "  " + cells[-1]
        return "  ".join(c.rjust(width[i]) if i in right else c.ljust(width[i])
                         for i, c in enumerate(cells)).rstrip()
    return [fmt(header)] + [fmt(ln) for ln in lines]


def report(doc: dict) -> str:
    m = doc["meta"]
    sync = {True: "yes", False: "no", None: "unknown"}[m["sync_wakeup"]]
    out = [f"governor bench {m['date']}",
           f"kernel {m['kernel']}, CPU {m['cpu']}, {m['cores']} cores, SYNC_WAKE_UP {sync}, "
           f"pinned {'to CPU %d' % m['pinned_cpu'] if m['pinned_cpu'] is not None else 'no'}, "
           f"{m['calls']} calls per round, {m['rounds']} rounds",
           f"governed: {m['governed_call']}; ungoverned: {m['ungoverned_call']}",
           "per call, µs over the rounds; x = ratio to native", ""]
    header = ["#", "mechanism", "pwrite64 med", "x", "p99", "x", "getpid med", "x", "p99", "x"]
    lines = []
    for r in doc["rows"]:
        if not r["available"]:
            lines.append([r["row"], r["mechanism"], f"n/a: {r['reason']}"])
            continue
        cells = [r["row"], r["mechanism"]]
        for kind in MODES:
            d = r[kind]
            cells += [_us(d["median_ns"]), f"{d['ratio_median']:.2f}", _us(d["p99_ns"]),
                      f"{d['ratio_p99']:.2f}"]
        lines.append(cells)
    out += text_table(header, lines, right=set(range(2, 10)))
    out += ["", "goals (medians of the governed call, this run):"]
    for g in doc["goals"]:
        if g["ratio"] is None:
            out.append(f"  {g['goal']} {g['target']}: n/a ({g['reason']})")
        else:
            out.append(f"  {g['goal']} {g['target']}: {g['ratio']:.2f}x, "
                       f"{'met' if g['met'] else 'NOT met'}")
    if "macro" in doc:
        from .macro import macro_report  # here: macro builds on this module
        out += ["", *macro_report(doc["macro"])]
    return "\n".join(out)


def progress_to_stderr(msg: str) -> None:
    print(f"governor bench: {msg}", file=sys.stderr, flush=True)
