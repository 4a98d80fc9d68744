"""Per-group state files, so that `governor ps` and `governor top` can see
every group on the host, whichever `governor run` started it.

Each supervisor writes one JSON file per group into the state directory
(``$GOVERNOR_RUN_DIR`` or ``/run/governor``) about once a second, replacing
it atomically, and removes it when the group ends. A file whose supervisor
is gone (it was killed) is stale: readers skip and delete it.

The file also carries the group's recent events (`events`: calls held,
calls denied, held calls failed by a stall, processes killed for
memory_resident, governed calls refused through the i386/x32 entries), so
that a reader in another process (`governor console`) can show them. They
are derived from the engine's counters at each publish, once a second,
never from the engine's event ring: that ring is drained by the program
that runs the group (`governor run` logs it), and reading counters costs
the engine nothing more than the usage it already reports.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from pathlib import Path

from .. import _proc
from ..limits import RATE_KEYS

log = logging.getLogger(__name__)
# 2: supervisor_start in clock ticks (governor/_proc.py); 1 held psutil's
# float create_time, still read. A version-1 reader skips version 2 files
# instead of taking their supervisors for dead ones and deleting the files.
VERSION = 2
READ_VERSIONS = (1, 2)
EVENTS_KEPT = 20    # per kind, in each state file


def state_dir() -> Path:
    return Path(os.environ.get("GOVERNOR_RUN_DIR", "/run/governor"))


class Publisher:
    """Writes the state files of one supervisor's groups."""

    def __init__(self, directory: Path | None = None):
        self.dir = directory or state_dir()
        self._start = _proc.identity().start
        self._last: dict[str, tuple[float, dict]] = {}
        self._usage: dict[str, dict] = {}        # group -> usage at the last publish
        self._events: dict[str, dict[str, deque]] = {}
        self.enabled = True
        try:
            self.dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as e:
            log.warning("state files disabled: cannot create %s: %s", self.dir, e.strerror)
            self.enabled = False

    def path(self, group) -> Path:
        # Group ids are per engine: the engine's index makes the name unique.
        return self.dir / f"{os.getpid()}-{group._shard}-{group.id}.json"

    def publish(self, group) -> None:
        if not self.enabled:
            return
        now = time.time()
        usage = group.usage()
        counters = {k: r.used for k, r in usage.resources.items()}
        counters["held_calls"] = sum(r.held_calls for r in usage.resources.values())
        counters["held_seconds"] = sum(r.held_seconds for r in usage.resources.values())
        counters["cpu_seconds"] = usage.cpu_seconds
        prev_t, prev = self._last.get(group.name, (group.started, {}))
        dt = max(now - prev_t, 1e-3)
        rates = {k: max(v - prev.get(k, 0), 0) / dt for k, v in counters.items()}
        self._last[group.name] = (now, counters)
        current = usage.as_dict()
        kept = self._events.setdefault(group.name, {})
        for ev in counter_events(self._usage.get(group.name), current,
                                 group.limits.as_dict()["on_exhausted"], now):
            kept.setdefault(ev["kind"], deque(maxlen=EVENTS_KEPT)).append(ev)
        self._usage[group.name] = current
        doc = {
            "version": VERSION, "group": group.name, "supervisor_pid": os.getpid(),
            "supervisor_start": self._start, "started": group.started, "updated": now,
            "commands": group.commands(),
            **group.limits.as_dict(), "usage": usage.as_dict(),
            "rates": {k: rates[k] for k in RATE_KEYS},
            "held_calls_per_second": rates["held_calls"],
            "held_seconds_per_second": rates["held_seconds"],
            "cpu_percent": 100 * rates["cpu_seconds"],
            "events": sorted((e for q in kept.values() for e in q), key=lambda e: e["time"]),
        }
        target = self.path(group)
        tmp = target.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, target)
        except OSError as e:
            log.warning("cannot write %s: %s", target, e.strerror)

    def remove(self, group) -> None:
        self._last.pop(group.name, None)
        self._usage.pop(group.name, None)
        self._events.pop(group.name, None)
        try:
            self.path(group).unlink()
        except FileNotFoundError:
            pass


def counter_events(before: dict | None, after: dict, modes: dict, when: float) -> list[dict]:
    """What a group's counters say happened since the last publish (usage
    dicts; before None: since the group started), one event per kind and
    resource: {"time", "kind", "resource", "count"} and "seconds" for holds.
    A call denied on a resource whose mode is hold can only be one that the
    engine's stall check failed (a cap no task of the group could free):
    "stalled"."""
    before = before or {"resources": {}}
    out = []
    for key, r in after["resources"].items():
        b = before["resources"].get(key, {})
        held = r["held_calls"] - b.get("held_calls", 0)
        if held > 0:
            out.append({"time": when, "kind": "held", "resource": key, "count": held,
                        "seconds": round(r["held_seconds"] - b.get("held_seconds", 0.0), 3)})
        denied = r["denied_calls"] - b.get("denied_calls", 0)
        if denied > 0:
            out.append({"time": when, "kind": "stalled" if modes.get(key) == "hold" else "denied",
                        "resource": key, "count": denied})
    for kind, counter, resource in (("resident_killed", "resident_kills", "memory_resident"),
                                    ("compat_denied", "compat_denied", None)):
        n = after[counter] - before.get(counter, 0)
        if n > 0:
            out.append({"time": when, "kind": kind, "resource": resource, "count": n})
    return out


def read_states(directory: Path | None = None) -> list[dict]:
    """The state of every live group on the host; stale files are removed."""
    directory = directory or state_dir()
    out = []
    alive: dict[tuple, bool] = {}   # a daemon's thousand files name one supervisor
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being replaced, or not ours
        if doc.get("version") not in READ_VERSIONS:
            continue
        who = (doc["supervisor_pid"], doc["supervisor_start"])
        if who not in alive:
            alive[who] = _proc.alive(*who)
        if not alive[who]:
            log.info("removing stale state file %s (supervisor %d is gone)", path,
                     doc["supervisor_pid"])
            path.unlink(missing_ok=True)
            continue
        out.append(doc)
    return out
