"""Is that process still the one we recorded? One answer for every record
that names a supervisor (state files, leases, the registry, the catalogue,
the daemon's keeper records, OCI state).

A process's identity is its pid and its start time in clock ticks since
boot (field 22 of /proc/PID/stat). The pair is exact: a pid the kernel
hands to another process later comes with another start time. A zombie is
not alive: it has exited and waits only for its parent to read its status;
it will never again act on what it recorded."""
from __future__ import annotations

import os
from collections import namedtuple

# start: clock ticks since boot. collections' namedtuple, not typing's: the
# OCI runtime's commands pay for every import (governor/oci/state.py).
Identity = namedtuple("Identity", "pid start")


def start_ticks(pid: int) -> int | None:
    """pid's start time in clock ticks, or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2:].split()   # the name may hold ") "
        return None if fields[0] in (b"Z", b"X") else int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def identity(pid: int | None = None) -> Identity | None:
    """pid's identity (this process's by default), None if it is gone."""
    pid = os.getpid() if pid is None else pid
    start = start_ticks(pid)
    return None if start is None else Identity(pid, start)


def alive(pid, start) -> bool:
    """Whether pid is alive and is the process that started at start.

    Records written before this module stored a float instead: the wall
    clock start time psutil gave (boot time + ticks / CLK_TCK). Such a
    start is still read, compared as psutil compared it, within a second:
    the kernel's boot time in /proc/stat is whole seconds and moves when the
    clock is stepped, so a narrower window could make a live supervisor of
    an old record look dead; and a process that took a dead supervisor's
    pid started within a second of it only if the supervisor died within
    that second and the pids wrapped round meanwhile."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    ticks = start_ticks(pid)
    if ticks is None or isinstance(start, bool):
        return False
    if isinstance(start, int):
        return ticks == start
    if isinstance(start, float):
        return abs(_boot_time() + ticks / os.sysconf("SC_CLK_TCK") - start) < 1.0
    return False


def _boot_time() -> int:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return int(line.split()[1])
    raise OSError("/proc/stat has no btime line")
