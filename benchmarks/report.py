"""The overhead table of the benchmark suite.

    python benchmarks/report.py            # runs the suite, then prints the table
    python benchmarks/report.py --no-run   # prints the table of the last run

The suite (``pytest benchmarks --benchmark-only``) writes every path's median
per-call time to benchmarks/results.json; this module turns that into a
markdown table: path | per call (median µs) | floor | ratio | goal.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from governor_bench import MODES, mechanisms

HERE = Path(__file__).resolve().parent
RESULTS_JSON = HERE / "results.json"

# key -> human name of each measured path.
PATHS = {
    "native_pwrite": "1-byte pwrite64, no filter",
    "floor_notify_pwrite": "1-byte pwrite64, floor_notify (minimal C supervisor)",
    "engine_pwrite": "1-byte pwrite64, governed by the engine",
    "engine_pwrite_kept": "1-byte pwrite64, engine, calls recorded in a record file",
    "floor_notify_write": "1-byte write, floor_notify (minimal C supervisor)",
    "engine_write": "1-byte write, governed by the engine (fd classified)",
    "engine_write_disk_space": "1-byte write, engine group with a disk_space quota",
    "native_getpid": "getpid, no filter",
    "floor_allow_getpid": "getpid, allow-all filter (floor_allow)",
    "engine_getpid": "getpid, ungoverned call in an engine group",
    "native_dupclose": "dup + close, no filter",
    "engine_dupclose": "dup + close, engine group with a write limit (not notified)",
    "engine_pwrite_1group": "1-byte pwrite64, engine, 1 group alive",
    "engine_pwrite_100groups": "1-byte pwrite64, engine, 100 more idle groups alive",
    "daemon_pwrite_1group": "1-byte pwrite64, governor daemon, 1 group",
    "daemon_pwrite_many_groups": "1-byte pwrite64, governor daemon, 1,000 groups (2 tasks each)",
}

# The rows of `governor bench`, measured by test_mechanisms.py.
for _m in mechanisms():
    for _mode in MODES.values():
        PATHS[f"mech_{_m.key}_{_mode}"] = f"{_mode}, {_m.label} (bench row {_m.row})"

# (path, compared with, goal ratio or None for information only). A goal of
# "at least 10x cheaper" reads: the engine costs at most 0.1x the other path.
COMPARISONS = [
    ("floor_notify_pwrite", "native_pwrite", None),
    ("engine_pwrite", "floor_notify_pwrite", 1.15),
    ("engine_pwrite_kept", "engine_pwrite", 1.05),
    ("floor_notify_write", "native_pwrite", None),
    ("engine_write", "floor_notify_write", 1.15),
    ("engine_write_disk_space", "engine_write", None),
    ("floor_allow_getpid", "native_getpid", None),
    ("engine_getpid", "floor_allow_getpid", 1.05),
    ("engine_getpid", "native_getpid", None),
    ("engine_pwrite_100groups", "engine_pwrite_1group", 1.05),
    ("daemon_pwrite_many_groups", "daemon_pwrite_1group", 1.05),
    ("engine_dupclose", "native_dupclose", None),
    ("mech_notify_engine_nosync_pwrite", "mech_notify_engine_pwrite", None),
    ("mech_notify_engine_pwrite", "mech_notify_python_pwrite", 0.1),
    ("mech_floor_trace_pwrite", "mech_native_pwrite", None),
    ("mech_ptrace_engine_pwrite", "mech_floor_trace_pwrite", 1.2),
    ("mech_ptrace_engine_pwrite", "mech_python_ptrace_pwrite", 0.1),
    ("mech_python_ptrace_pwrite", "mech_floor_trace_pwrite", None),
    ("mech_python_ptrace_syscall_getpid", "mech_native_getpid", None),
]


def ratios(results: dict) -> list[dict]:
    """One row per comparison whose two sides were both measured."""
    rows = []
    for path, floor, goal in COMPARISONS:
        if path not in results or floor not in results:
            continue
        p, f = results[path]["median_ns"], results[floor]["median_ns"]
        ratio = p / f if f else float("nan")
        rows.append({"path": path, "floor": floor, "path_ns": p, "floor_ns": f,
                     "ratio": ratio, "goal": goal,
                     "met": None if goal is None else ratio <= goal})
    return rows


def _us(ns: float) -> str:
    return f"{ns / 1000:.3f}" if ns < 10_000 else f"{ns / 1000:.2f}"


def table(results: dict) -> str:
    lines = ["| path | per call (median µs) | floor | floor per call (median µs) | ratio | goal |",
             "|---|---:|---|---:|---:|---|"]
    for r in ratios(results):
        if r["goal"] is None:
            goal = "(info)"
        else:
            goal = f"≤ {r['goal']:.2f}x: {'met' if r['met'] else 'NOT met'}"
        lines.append(f"| {PATHS.get(r['path'], r['path'])} | {_us(r['path_ns'])} | "
                     f"{PATHS.get(r['floor'], r['floor'])} | {_us(r['floor_ns'])} | "
                     f"{r['ratio']:.3f}x | {goal} |")
    return "\n".join(lines)


def samples_table(results: dict) -> str:
    lines = ["| path | calls/round | rounds | median µs | min µs | max µs |",
             "|---|---:|---:|---:|---:|---:|"]
    for key, name in PATHS.items():
        if key not in results:
            continue
        r = results[key]
        s = r["samples_ns"]
        lines.append(f"| {name} | {r['calls']} | {len(s)} | {_us(r['median_ns'])} | "
                     f"{_us(min(s))} | {_us(max(s))} |")
    return "\n".join(lines)


def write_json(results: dict, meta: dict) -> None:
    doc = {"meta": meta, "paths": results, "comparisons": ratios(results)}
    RESULTS_JSON.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def load_json() -> dict:
    return json.loads(RESULTS_JSON.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-run", action="store_true", help="print the table of the last run")
    ap.add_argument("--samples", action="store_true", help="also print every path's spread")
    args = ap.parse_args()
    if not args.no_run:
        root = HERE.parent
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE),
               "--benchmark-only"]
        rc = subprocess.call(cmd, cwd=root, env=os.environ.copy())
        if rc != 0 or not RESULTS_JSON.exists():
            print(f"benchmark run failed (exit {rc})", file=sys.stderr)
            return rc or 1
    doc = load_json()
    print()
    print(table(doc["paths"]))
    if args.samples:
        print()
        print(samples_table(doc["paths"]))
    meta = doc.get("meta", {})
    if meta:
        print()
        print(", ".join(f"{k}: {v}" for k, v in meta.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
