"""Shared memory a group's processes hold, for memory_resident.

RSS counts the pages of shared memory a process maps and has touched
(RssShmem), once per process that maps them, and not at all the pages of a
memfd held by an fd only. Here each shared object (memfd, SysV segment,
shared anonymous mapping, tmpfs file) that a process of the group maps or
holds by fd counts once, its allocated pages, in place of the processes'
RssShmem."""
from __future__ import annotations

import os

# /proc/PID/maps names of objects in shared memory.
_SHM_NAMES = ("/memfd:", "/SYSV", "/dev/zero (deleted)", "/dev/shm/")


def _rss_shmem(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssShmem:"):
                return int(line.split()[1]) * 1024
    return 0


def _add(seen: dict, path: str) -> None:
    st = os.stat(path)
    seen[(st.st_dev, st.st_ino)] = st.st_blocks * 512


def _mapped(pid: int, seen: dict) -> None:
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[1][3] == "s" and fields[5].startswith(_SHM_NAMES):
                try:
                    _add(seen, f"/proc/{pid}/map_files/{fields[0]}")
                except OSError:
                    pass


def _held(pid: int, seen: dict) -> None:
    fds = f"/proc/{pid}/fd"
    for fd in os.listdir(fds):
        try:
            if os.readlink(f"{fds}/{fd}").startswith(_SHM_NAMES):
                _add(seen, f"{fds}/{fd}")
        except OSError:
            pass


def shared_resident(pids) -> int:
    """Bytes to add to the processes' summed RSS (possibly negative): their
    shared objects once each, less the RssShmem that counted them."""
    seen: dict = {}
    rss_shmem = 0
    for pid in pids:
        try:
            rss_shmem += _rss_shmem(pid)
            _mapped(pid, seen)
            _held(pid, seen)
        except OSError:
            pass  # gone
    return sum(seen.values()) - rss_shmem
