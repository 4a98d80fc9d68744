"""Shared helpers for test_caps.py and test_hostile.py: a C tenant program
(compiled once per session into a temporary directory) and small utilities.
Not a conftest: imported explicitly by the test files that need it."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

TENANTS = Path(__file__).resolve().parent / "tenants"   # the C tenants of tests and benchmarks

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="spawning a group needs root")


def compile_c(src: Path, directory: Path, flags: tuple[str, ...] = ()) -> Path:
    """Builds one C file (TENANTS / "NAME.c" mostly) into directory;
    returns the program. Skips the test if there is no gcc."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    exe = directory / src.stem
    subprocess.run([gcc, "-O1", "-Wall", *flags, "-o", str(exe), str(src), "-lpthread"], check=True,
                   capture_output=True, timeout=60)
    return exe


def python_tenant(directory: Path, name: str, source: str) -> str:
    """Writes a Python tenant program into directory; returns its path."""
    path = directory / name
    path.write_text(source)
    return str(path)


def compile_tenant(directory: Path) -> Path:
    """tests/tenants/tenant.c, the tenant of test_caps.py and test_hostile.py."""
    return compile_c(TENANTS / "tenant.c", directory)


def open_fds() -> dict[str, str]:
    """This process's fds: fd -> what it links to."""
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass  # closed meanwhile (the listing's own fd, a sampler's read)
    return out


def under_tsan() -> bool:
    """Whether the engine loaded is make sanitize's TSan build. TSan runs a
    signal handler only when its thread next enters a function TSan knows:
    the tracer's wake-up (native/trace.c), a handler that jumps out of a raw
    waitid or pause, is then lost, and a group with a tracer hangs. Tests
    leave the tracer out under TSan."""
    from governor import _native

    return Path(_native.__file__).parent.parent.name == "sanitize-thread"


def socket_answers(path) -> bool:
    """Whether a SOCK_SEQPACKET unix socket at path accepts a connection
    (a daemon's socket is up)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def login_terminal() -> None:
    """preexec_fn for a command on a pty, as at a login: fd 0 becomes its
    controlling terminal, and SIGINT and SIGQUIT get their default action
    (a test run started in the background of a non-interactive shell
    inherits them ignored, and a ^C must reach the command)."""
    import fcntl
    import signal
    import termios
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    for sig in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


def read_line(fd: int, timeout: float) -> bytes:
    """The next line on fd, with its newline, read a byte at a time (what
    follows stays in the pipe); AssertionError if none comes within timeout
    or fd reaches its end first."""
    import selectors
    buf, deadline = b"", time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError(f"no line within {timeout:.0f} s (got {buf!r})")
            data = os.read(fd, 1)
            if not data:
                raise AssertionError(f"end of output after {buf!r}")
            buf += data
    return buf


def wait_for(condition, timeout: float, what: str, interval: float = 0.01):
    """Polls an observable condition until it holds; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def host_pid(pids, pid: int) -> int | None:
    """Of the host pids `pids`, the one whose pid in its group's namespace
    is `pid` (the last field of NSpid): a tenant sees only that one."""
    for host in pids:
        try:
            status = Path(f"/proc/{host}/status").read_text()
        except OSError:
            continue
        nspid = [line.split()[-1] for line in status.splitlines() if line.startswith("NSpid:")]
        if nspid == [str(pid)]:
            return host
    return None


def read_kv(path: Path) -> dict[str, str]:
    """'a=1 b=2' on the file's last line -> {'a': '1', 'b': '2'}."""
    line = path.read_text().strip().splitlines()[-1]
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


def children_of(pid: int) -> list[int]:
    """pid's children, from /proc/PID/task/*/children (each thread's)."""
    return [int(c) for t in os.listdir(f"/proc/{pid}/task")
            for c in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]


def group_tasks(init_pid: int) -> dict[int, int]:
    """Every process below a group's init (the init excluded), read from /proc
    through /proc/PID/task/TID/children, with its live threads: 0 for a
    zombie, and its leader not counted once it has exited."""
    out, stack = {}, [init_pid]
    while stack:
        pid = stack.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        live = 0
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    stack += [int(c) for c in f.read().split()]
            except OSError:
                continue
            live += not (int(tid) == pid and state in "ZX")
        if pid != init_pid:
            out[pid] = live
    return out


def live_tasks(init_pid: int) -> int:
    """The group's live tasks as /proc shows them (zombies excluded)."""
    return sum(group_tasks(init_pid).values())


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time), or None if pid is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(data.rsplit(")", 1)[1].split()[19])


# A version manager's shim, as pyenv's: a bash script that works out the
# version with nested substitutions, then execs the real program.
SHIM = r'''#!/bin/bash
set -e
program="${0##*/}"
root="$(cd "$(dirname "$0")" && pwd)"
version="$(cat "$root/version" 2>/dev/null | head -n 1 | tr -d '[:space:]')"
real="$(PATH="${PATH#"$root":}" command -v "$version")"
prefix="$(dirname "$(dirname "$real")")"
[ -n "$(printf '%s' "$prefix" | sed -e 's/x/y/')" ]
exec "$real" "$@"
'''

APPLETS = ("sh", "cat", "echo", "hostname", "id", "ls", "touch", "sleep", "stat", "test",
           "seq", "grep", "mount", "dd", "rm", "wc", "du", "nc", "true")


def make_rootfs(path: Path) -> Path:
    """A busybox-static root file system, as a user would make one."""
    (path / "bin").mkdir(parents=True)
    (path / "etc").mkdir()
    shutil.copy("/bin/busybox", path / "bin" / "busybox")
    for applet in APPLETS:
        os.symlink("busybox", path / "bin" / applet)
    (path / "bin" / "httpd").symlink_to("/bin/busybox")  # absolute: resolved inside
    (path / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
    return path
