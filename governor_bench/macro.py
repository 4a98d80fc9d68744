"""The macro section of `governor bench`: real workloads, timed whole
(process start included), natively, under each governor backend with limits
that never bind, and under the peer tools installed here. Slowdowns are
ratios of medians to native's in the same run; rounds are interleaved like
the micro rows'.

Sizes follow --calls: dd writes CALLS/5 blocks of 512 bytes, tcp_pair sends
CALLS/5 messages of 512 bytes over loopback, tar extracts CALLS/50 files of
1 KiB in directories of 100 (at least 20 of each). The files live under
$TMPDIR (default /tmp): TMPDIR=/dev/shm takes the disk out of the numbers.
"""
from __future__ import annotations

import shutil
import statistics
import subprocess
import tarfile
import time
from pathlib import Path

from governor._errors import GovernorError
from . import TIMEOUT, GovernedGroup, Options, Unavailable, text_table
from governor.limits import Limits
from governor.supervisor import governed_calls

# Every rate limit set, none binding: every I/O call of the workload is governed.
NEVER_BINDS = Limits(disk_write="100GiB/s", disk_read="100GiB/s", net_send="100GiB/s",
                     net_recv="100GiB/s")
# The calls governor intercepts for those four limits, for strace
# --seccomp-bpf: the same set stops there.
GOVERNED_CALLS = ",".join(governed_calls(NEVER_BINDS))


class Workload:
    def __init__(self, key: str, description: str):
        self.key, self.description = key, description

    def prepare(self, helpers: dict[str, str], workdir: Path, calls: int) -> None:
        raise NotImplementedError

    def argv(self) -> list[str]:
        raise NotImplementedError

    def reset(self) -> None:
        """Between runs, untimed."""


class Dd(Workload):
    def prepare(self, helpers, workdir, calls):
        self.count, self.out = sizes(calls)[0], workdir / "dd.out"

    def argv(self):
        return ["dd", "if=/dev/zero", f"of={self.out}", "bs=512", f"count={self.count}",
                "status=none"]

    def reset(self):
        self.out.unlink(missing_ok=True)


class Tcp(Workload):
    def prepare(self, helpers, workdir, calls):
        self.cmd = [helpers["tcp_pair"], str(sizes(calls)[0]), "512"]

    def argv(self):
        return self.cmd


class Untar(Workload):
    def prepare(self, helpers, workdir, calls):
        files = sizes(calls)[1]
        src, self.tar, self.dest = workdir / "tree", workdir / "tree.tar", workdir / "untar"
        for i in range(files):
            d = src / f"d{i // 100:03d}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"f{i:05d}").write_bytes(bytes([i % 251]) * 1024)
        with tarfile.open(self.tar, "w") as t:
            t.add(src, arcname="tree")
        shutil.rmtree(src)
        self.dest.mkdir()

    def argv(self):
        return ["tar", "-xf", str(self.tar), "-C", str(self.dest)]

    def reset(self):
        shutil.rmtree(self.dest)
        self.dest.mkdir()


def sizes(calls: int) -> tuple[int, int]:
    """(writes or messages, files) of the macro workloads for --calls."""
    return max(20, calls // 5), max(20, calls // 50)


def workloads(calls: int) -> list[Workload]:
    n, files = sizes(calls)
    return [Dd("dd", f"dd: {n} writes of 512 bytes to a file"),
            Tcp("tcp", f"loopback TCP: {n} messages of 512 bytes"),
            Untar("untar", f"tar -x of {files} files of 1 KiB")]


class Tool:
    """How a workload is run: open() raises Unavailable when it cannot be."""

    def __init__(self, key: str, label: str, prefix: list[str] | None = None,
                 backend: str | None = None):
        self.key, self.label, self.prefix, self.backend = key, label, prefix, backend
        self.gg: GovernedGroup | None = None

    def open(self) -> None:
        if self.backend:
            self.gg = GovernedGroup(self.backend, NEVER_BINDS)
        elif self.prefix and not shutil.which(self.prefix[0]):
            raise Unavailable(f"{self.prefix[0]} is not installed")

    def run(self, argv: list[str]) -> float:
        """Seconds of one run, exec to exit."""
        t0 = time.perf_counter()
        if self.gg:
            rc = self.gg.run(argv)
        else:
            rc = subprocess.run((self.prefix or []) + argv, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                timeout=TIMEOUT).returncode
        seconds = time.perf_counter() - t0
        if rc != 0:
            raise GovernorError(f"{argv[0]} exited {rc} under {self.label}")
        return seconds

    def close(self) -> None:
        if self.gg:
            self.gg.close()
            self.gg = None


def tools() -> list[Tool]:
    return [
        Tool("native", "native", []),
        Tool("governor_seccomp", "governor, seccomp backend", backend="seccomp"),
        Tool("governor_ptrace", "governor, ptrace backend", backend="ptrace"),
        Tool("governor_ptrace_syscall", "governor, ptrace-syscall backend",
             backend="ptrace-syscall"),
        Tool("strace", "strace -f -o /dev/null", ["strace", "-f", "-o", "/dev/null"]),
        Tool("strace_seccomp", "strace -f --seccomp-bpf -e trace=<governed calls>",
             ["strace", "-f", "--seccomp-bpf", "-e", f"trace={GOVERNED_CALLS}", "-o", "/dev/null"]),
        Tool("proot", "proot", ["proot"]),
    ]


def run_macro(helpers: dict[str, str], workdir: Path, opts: Options) -> dict:
    loads, runners = workloads(opts.calls), tools()
    rows = {(w.key, t.key): {"workload": w.key, "tool": t.key, "label": t.label,
                             "available": True, "reason": None} for w in loads for t in runners}
    opened = []
    try:
        for t in runners:
            try:
                t.open()
                opened.append(t)
            except Unavailable as e:
                for w in loads:
                    rows[(w.key, t.key)].update(available=False, reason=str(e))
        for w in loads:
            w.prepare(helpers, workdir, opts.calls)
        samples = {(w.key, t.key): [] for w in loads for t in opened}
        for r in range(opts.rounds):
            opts.progress(f"macro round {r + 1}/{opts.rounds}")
            for w in loads:
                for t in opened:
                    samples[(w.key, t.key)].append(t.run(w.argv()))
                    w.reset()
    finally:
        for t in opened:
            t.close()
    for (wk, tk), s in samples.items():
        rows[(wk, tk)].update(median_s=statistics.median(s), samples_s=s)
    for (wk, tk), row in rows.items():
        if row["available"]:
            row["ratio"] = row["median_s"] / rows[(wk, "native")]["median_s"]
    return {"workloads": [{"key": w.key, "description": w.description} for w in loads],
            "governed_calls_for_strace": GOVERNED_CALLS, "rows": list(rows.values())}


def macro_report(macro: dict) -> list[str]:
    out = ["macro: wall-clock seconds per run (median over the rounds); x = slowdown vs native"]
    for w in macro["workloads"]:
        lines = []
        for r in macro["rows"]:
            if r["workload"] != w["key"]:
                continue
            if r["available"]:
                lines.append([r["label"], f"{r['median_s']:.3f}", f"{r['ratio']:.2f}"])
            else:
                lines.append([r["label"], f"n/a: {r['reason']}"])
        out += ["", w["description"],
                *text_table(["tool", "seconds", "x"], lines, right={1, 2})]
    return out
