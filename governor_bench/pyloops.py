"""Reference supervisors written in pure Python, for `governor bench` only.

Each does per governed call what the engine does for a 1-byte pwrite64 in a
group with a disk_write limit: find out what the fd is (pidfd_getfd + fstat),
charge the group's token bucket when it is a regular file, let the call go.
They measure what the C engine saves on the same kernel mechanism:

- notify_loop: seccomp user notification, the listener driven through
  fcntl.ioctl (NOTIF_RECV / NOTIF_SEND with FLAG_CONTINUE);
- ptrace_loop: python-ptrace, stopping at the seccomp RET_TRACE stops of
  the bench filter (the same mechanism as the ptrace backend), or at every
  syscall entry and exit with PTRACE_SYSCALL.

The tenant is started by a small C exec helper (benchsrc/notify_exec.c,
trace_exec.c) that installs the filter, so no Python runs between fork and
exec. Both loops handle one single-threaded tenant, which is all the bench
needs; they return the tenant's stdout.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import signal
import socket
import stat
import struct
import subprocess
import time

from ptrace.binding import func as pt
from ptrace.debugger import PtraceDebugger

from governor._errors import GovernorError

_NR_PIDFD_GETFD = 438
_GOVERNED = {1: "write", 18: "pwrite64"}   # x86_64 numbers of the bench filter's calls
# <linux/seccomp.h>: _IOWR('!', 0, struct seccomp_notif), _IOWR('!', 1,
# struct seccomp_notif_resp), _IOW('!', 4, __u64).
_NOTIF_RECV, _NOTIF_SEND, _NOTIF_SET_FLAGS = 0xC0502100, 0xC0182101, 0x40082104
_NOTIF = struct.Struct("QIIiIQ6Q")         # id, pid, flags, nr, arch, ip, args[6]
_RESP = struct.Struct("QqiI")              # id, val, error, flags
_FLAG_CONTINUE, _SYNC_WAKE_UP = 1, 1
_PTRACE_O_TRACESECCOMP, _PTRACE_O_EXITKILL = 0x80, 0x100000
_PTRACE_EVENT_SECCOMP = 7
_libc = ctypes.CDLL(None, use_errno=True)


class Bucket:
    """A token bucket: `rate` bytes per second, `burst` bytes deep."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst, self.tokens = rate, burst, burst
        self.last = time.monotonic()

    def take(self, cost: int) -> float:
        """Charges cost; returns how long the call must wait (0: go now)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        wait = 0.0 if self.tokens >= 0 else -self.tokens / self.rate
        self.tokens -= cost
        return wait


class _Charger:
    """Looks a tenant's fd up and charges the bucket for regular files."""

    def __init__(self, bucket: Bucket):
        self.bucket, self.pidfds = bucket, {}

    def charge(self, pid: int, fd: int, count: int) -> float:
        pidfd = self.pidfds.get(pid)
        if pidfd is None:
            pidfd = self.pidfds[pid] = os.pidfd_open(pid)
        mine = _libc.syscall(_NR_PIDFD_GETFD, pidfd, fd, 0)
        if mine < 0:
            return 0.0   # a bad fd: the call fails on its own, uncharged
        try:
            regular = stat.S_ISREG(os.fstat(mine).st_mode)
        finally:
            os.close(mine)
        return self.bucket.take(count) if regular else 0.0

    def close(self) -> None:
        for fd in self.pidfds.values():
            os.close(fd)


def _deadline_passed(deadline: float, proc: subprocess.Popen, what: str) -> None:
    if time.monotonic() > deadline:
        proc.kill()
        raise GovernorError(f"{what}: the tenant did not finish in time")


def notify_loop(notify_exec: str, argv: list[str], bucket: Bucket,
                timeout: float = 300) -> str:
    """Runs argv under the bench filter with this process as its seccomp
    notification supervisor; returns the tenant's stdout."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    proc = subprocess.Popen([notify_exec, str(theirs.fileno()), *argv], pass_fds=[theirs.fileno()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    theirs.close()
    charger = _Charger(bucket)
    listener = -1
    try:
        mine.settimeout(10)
        _, fds, _, _ = socket.recv_fds(mine, 1, 1)
        if not fds:
            raise GovernorError(f"notify_exec sent no listener: {proc.stderr.read().decode()}")
        listener = fds[0]
        try:
            fcntl.ioctl(listener, _NOTIF_SET_FLAGS, _SYNC_WAKE_UP)  # as the engine does
        except OSError:
            pass
        mine.send(b"g")
        poll = select.poll()
        poll.register(listener, select.POLLIN)
        req = bytearray(_NOTIF.size)
        deadline = time.monotonic() + timeout
        while True:
            events = poll.poll(1000)
            _deadline_passed(deadline, proc, "python notify loop")
            if not events:
                continue
            if not events[0][1] & select.POLLIN:
                break   # POLLHUP: every filtered task is gone
            req[:] = bytes(_NOTIF.size)   # the kernel wants a zeroed buffer
            try:
                fcntl.ioctl(listener, _NOTIF_RECV, req, True)
            except OSError as e:
                if e.errno == errno.ENOENT:
                    continue  # the task went away
                raise GovernorError(f"SECCOMP_IOCTL_NOTIF_RECV: {e.strerror}") from e
            nid, pid, _, nr, _, _, fd, _, count, *_ = _NOTIF.unpack(req)
            wait = charger.charge(pid, fd, count) if nr in _GOVERNED else 0.0
            if wait:
                time.sleep(wait)   # a hold: only when the limit binds
            try:
                fcntl.ioctl(listener, _NOTIF_SEND, _RESP.pack(nid, 0, 0, _FLAG_CONTINUE))
            except OSError as e:
                if e.errno != errno.ENOENT:  # ENOENT: interrupted or killed meanwhile
                    raise GovernorError(f"SECCOMP_IOCTL_NOTIF_SEND: {e.strerror}") from e
        out = proc.stdout.read().decode()
        if proc.wait(timeout=10) != 0:
            raise GovernorError(f"{argv[0]} exited {proc.returncode} under the python notify "
                                f"loop: {proc.stderr.read().decode().strip()}")
        return out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        charger.close()
        mine.close()
        if listener >= 0:
            os.close(listener)
        proc.stdout.close()
        proc.stderr.close()


def ptrace_loop(trace_exec: str, argv: list[str], bucket: Bucket, every_call: bool = False,
                timeout: float = 300) -> str:
    """Runs argv as a python-ptrace tracee; returns the tenant's stdout.

    every_call=False: the bench filter's RET_TRACE stops only (the ptrace
    backend's mechanism); True: PTRACE_SYSCALL, a stop at every syscall's
    entry and exit."""
    proc = subprocess.Popen([trace_exec, *(["--all"] if every_call else []), *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    charger = _Charger(bucket)
    status = None
    try:
        process = PtraceDebugger().addProcess(proc.pid, is_attached=True)  # the SIGSTOP
        process.setoptions(_PTRACE_O_EXITKILL |
                           (pt.PTRACE_O_TRACESYSGOOD if every_call else _PTRACE_O_TRACESECCOMP))
        resume = pt.ptrace_syscall if every_call else pt.ptrace_cont
        deadline = time.monotonic() + timeout
        entering, sig = False, 0
        while True:
            resume(proc.pid, sig)
            _, status = os.waitpid(proc.pid, 0)
            if not os.WIFSTOPPED(status):
                break
            _deadline_passed(deadline, proc, "python-ptrace loop")
            sig, stop = 0, os.WSTOPSIG(status)
            if every_call and stop == signal.SIGTRAP | 0x80:
                entering = not entering
                governed = entering
            else:
                governed = status >> 16 == _PTRACE_EVENT_SECCOMP
                if stop != signal.SIGTRAP:
                    sig = stop   # the tenant's own signal: deliver it
            if governed:
                regs = process.getregs()
                if regs.orig_rax in _GOVERNED:
                    wait = charger.charge(proc.pid, regs.rdi, regs.rdx)
                    if wait:
                        time.sleep(wait)
        out = proc.stdout.read().decode()
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise GovernorError(f"{argv[0]} exited {code} under python-ptrace: "
                                f"{proc.stderr.read().decode().strip()}")
        return out
    finally:
        if status is None or os.WIFSTOPPED(status):
            proc.kill()   # PTRACE_O_EXITKILL would too, once we are gone
            try:
                _, status = os.waitpid(proc.pid, 0)
            except ChildProcessError:
                pass      # python-ptrace reaped it already
        # Reaped here, not by Popen: tell it, so that it never waits again.
        proc.returncode = 0 if status is None else os.waitstatus_to_exitcode(status)
        charger.close()
        proc.stdout.close()
        proc.stderr.close()
