"""The file tracer of `governor capture`: every path a command and its
descendants execute, map, open or stat, as they named it, resolved against
their cwd or dirfd (ReproZip's approach).

The calls that take a path stop for the tracer through seccomp RET_TRACE: a
few BPF instructions put in front of the group's own filter (so the engine
still sees, and charges, everything else at full speed). The tracer is one
thread that PTRACE_SEIZEs the command while it waits before exec and follows
its forks, clones and execs. It never changes a call: it reads the path,
then resumes. Executed files come from the exec event itself (AT_EXECFN in
the new image's auxiliary vector), mapped files from /proc/PID/maps at each
exit, so execve stays the engine's."""
from __future__ import annotations

import ctypes
import errno
import logging
import os
import queue
import signal
import struct
import threading
from dataclasses import dataclass, field

log = logging.getLogger(__name__)
_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)

PTRACE_CONT, PTRACE_DETACH = 7, 17
PTRACE_GETEVENTMSG, PTRACE_SEIZE, PTRACE_LISTEN = 0x4201, 0x4206, 0x4208
PTRACE_GET_SYSCALL_INFO = 0x420E
OPTIONS = (0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x40 | 0x80 | 0x100000)
# SYSGOOD FORK VFORK CLONE EXEC EXIT SECCOMP EXITKILL
EV_FORK, EV_VFORK, EV_CLONE, EV_EXEC, EV_EXIT, EV_SECCOMP, EV_STOP = 1, 2, 3, 4, 6, 7, 128
WALL, WNOTHREAD = 0x40000000, 0x20000000
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_EXECFN = 31
O_CREAT = 0o100
AUDIT_ARCH_X86_64 = 0xC000003E
SECCOMP_RET_TRACE = 0x7FF00000
_CLK_TCK = os.sysconf("SC_CLK_TCK")
GROUP_STOPS = (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)

# x86_64 call number -> (name, index of the dirfd argument or None, index of
# the path argument, what it tells: "open", "stat" or "create").
CALLS = {
    2: ("open", None, 0, "open"), 4: ("stat", None, 0, "stat"), 6: ("lstat", None, 0, "stat"),
    21: ("access", None, 0, "stat"), 76: ("truncate", None, 0, "open"),
    83: ("mkdir", None, 0, "create"), 85: ("creat", None, 0, "open"),
    89: ("readlink", None, 0, "stat"), 257: ("openat", 0, 1, "open"),
    258: ("mkdirat", 0, 1, "create"), 262: ("newfstatat", 0, 1, "stat"),
    267: ("readlinkat", 0, 1, "stat"), 269: ("faccessat", 0, 1, "stat"),
    332: ("statx", 0, 1, "stat"), 437: ("openat2", 0, 1, "open"), 439: ("faccessat2", 0, 1, "stat"),
}
# Flags word of each open-like call (openat2: the first field of its struct).
_FLAGS_ARG = {2: 1, 257: 2}


def filter_prefix(skip: set[str] = frozenset()) -> bytes:
    """BPF (struct sock_filter[]) that returns SECCOMP_RET_TRACE for the
    path calls of CALLS on x86_64 and falls through to the filter after it
    for everything else; calls named in skip (those the group's own filter
    must see) are left to it."""
    numbers = [nr for nr, c in CALLS.items() if c[0] not in skip]
    ld, jeq, ja, ret = 0x20, 0x15, 0x05, 0x06     # BPF_LD|W|ABS, JMP|JEQ|K, JMP|JA, RET|K
    prog = [(ld, 0, 0, 4)]                            # seccomp_data.arch
    n = len(numbers)
    # arch check; nr load; n compares; ja over the ret; ret TRACE; (group filter)
    prog.append((jeq, 0, n + 3, AUDIT_ARCH_X86_64))
    prog.append((ld, 0, 0, 0))                        # seccomp_data.nr
    for i, nr in enumerate(numbers):
        prog.append((jeq, n - i, 0, nr))              # to the ret TRACE below
    prog.append((ja, 0, 0, 1))
    prog.append((ret, 0, 0, SECCOMP_RET_TRACE))
    return b"".join(struct.pack("HBBI", *ins) for ins in prog)


@dataclass
class Trace:
    """What a traced run touched. paths: absolute path as named -> the set
    of what was done to it ("exec", "open", "stat", "map"); created: paths
    the run made itself (absent when first named). Of every task that
    exited: its CPU seconds (summed), and the highest resident (VmHWM) and
    committed (VmData + VmStk) memory of a process."""

    paths: dict[str, set[str]] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)
    tasks_seen: int = 0
    exited_cpu: float = 0.0
    exited: set[int] = field(default_factory=set)
    peak_resident: int = 0
    peak_committed: int = 0

    def add(self, path: str, how: str) -> None:
        self.paths.setdefault(path, set()).add(how)


def _ptrace(req: int, pid: int, addr=0, data=0) -> int:
    rc = _libc.ptrace(req, pid, ctypes.c_void_p(addr), ctypes.c_void_p(data))
    if rc == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return rc


def _read_string(pid: int, addr: int, limit: int = 4096) -> str | None:
    """The NUL-terminated string at addr in pid's memory, page by page."""
    out = b""
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        while len(out) < limit:
            chunk = 4096 - (addr + len(out)) % 4096
            data = os.pread(fd, chunk, addr + len(out))
            if not data:
                return None
            nul = data.find(b"\0")
            if nul >= 0:
                return os.fsdecode(out + data[:nul])
            out += data
    except OSError:
        return None
    finally:
        os.close(fd)
    return None


def _read_u64(pid: int, addr: int) -> int | None:
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.pread(fd, 8, addr)
        finally:
            os.close(fd)
    except OSError:
        return None
    return struct.unpack("Q", data)[0] if len(data) == 8 else None


def _base(pid: int, dirfd: int) -> str | None:
    """The directory a relative path starts from: the task's cwd or dirfd."""
    link = f"/proc/{pid}/cwd" if dirfd == AT_FDCWD else f"/proc/{pid}/fd/{dirfd}"
    try:
        base = os.readlink(link)
    except OSError:
        return None
    return base if base.startswith("/") else None


def _join(pid: int, dirfd: int, path: str) -> str | None:
    if path.startswith("/"):
        return path
    base = _base(pid, dirfd)
    return None if base is None else os.path.join(base, path)


class FileTracer:
    """Pass as Group.spawn(tracer=...). `filter` goes in front of the group's
    filter; attach() is called with the command's pid while it waits before
    exec. The trace is complete once `done` is set (every tracee gone)."""

    def __init__(self, skip: set[str] = frozenset()):
        self.filter = filter_prefix(skip)
        self.trace = Trace()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._pids: queue.Queue = queue.Queue()
        self._attached: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="governor-capture-tracer",
                                        daemon=True)
        self._thread.start()

    def attach(self, pid: int) -> None:
        """Seizes pid from the tracer thread (ptrace requests must all come
        from the thread that attached); raises what PTRACE_SEIZE raised."""
        self._pids.put(pid)
        err = self._attached.get(timeout=10)
        if err:
            raise err

    def stop(self) -> None:
        """Before a spawn that failed: the thread waits for nothing more."""
        self._pids.put(None)

    def _run(self) -> None:
        try:
            pid = self._pids.get()
            if pid is None:
                return
            try:
                _ptrace(PTRACE_SEIZE, pid, 0, OPTIONS)
            except OSError as e:
                self._attached.put(e)
                return
            self._attached.put(None)
            self.trace.tasks_seen = 1
            self._loop()
        except BaseException as e:   # noqa: BLE001 - handed to the capture, which fails
            self.error = e
            log.exception("capture tracer failed")
        finally:
            self.done.set()

    def _loop(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, WALL | WNOTHREAD)
            except ChildProcessError:
                return                     # every tracee is gone
            except InterruptedError:
                continue
            if not os.WIFSTOPPED(status):
                continue                   # exited or killed
            sig, event = os.WSTOPSIG(status), status >> 16
            deliver = 0
            if event == EV_SECCOMP:
                self._on_call(pid)
            elif event == EV_EXEC:
                self._on_exec(pid)
            elif event in (EV_FORK, EV_VFORK, EV_CLONE):
                self.trace.tasks_seen += 1
            elif event == EV_EXIT:
                self._on_exit(pid)
            elif event == EV_STOP:
                if sig in GROUP_STOPS:     # a group-stop: the real parent sees it
                    self._resume(PTRACE_LISTEN, pid)
                    continue
            elif event == 0:
                deliver = sig              # a signal for the tracee
            self._resume(PTRACE_CONT, pid, deliver)

    @staticmethod
    def _resume(req: int, pid: int, sig: int = 0) -> None:
        try:
            _ptrace(req, pid, 0, sig)
        except OSError as e:
            if e.errno != errno.ESRCH:     # killed meanwhile (SIGKILL): nothing to resume
                raise

    def _on_call(self, pid: int) -> None:
        info = ctypes.create_string_buffer(88)
        try:
            _ptrace(PTRACE_GET_SYSCALL_INFO, pid, 88, ctypes.addressof(info))
        except OSError:
            return
        op, arch = struct.unpack_from("B3xI", info.raw)
        nr, *args = struct.unpack_from("Q6Q", info.raw, 24)
        if op != 3 or arch != AUDIT_ARCH_X86_64 or nr not in CALLS:   # 3: a RET_TRACE stop
            return
        name, dirfd_arg, path_arg, how = CALLS[nr]
        raw = _read_string(pid, args[path_arg])
        if raw is None or raw == "":
            return                         # a bad pointer, or fstatat(fd, "", AT_EMPTY_PATH)
        dirfd = ctypes.c_int(args[dirfd_arg]).value if dirfd_arg is not None else AT_FDCWD
        path = _join(pid, dirfd, raw)
        if path is None:
            return
        path = os.path.normpath(path) if "/./" in path or path.endswith("/.") else path
        if path in self.trace.created:
            return
        flags = (O_CREAT if nr == 85 else args[_FLAGS_ARG[nr]] if nr in _FLAGS_ARG
                 else (_read_u64(pid, args[2]) or 0) if nr == 437 else 0)
        exists = os.path.lexists(path)
        if not exists and (how == "create" or flags & O_CREAT):
            self.trace.created.add(path)
            return
        if how == "create":
            how = "stat"                   # mkdir of what exists: it must exist
        self.trace.add(path, how)

    def cpu_snapshot(self) -> tuple[float, set[int]]:
        """(CPU seconds of the tasks that exited, their tids), together."""
        with self._lock:
            return self.trace.exited_cpu, set(self.trace.exited)

    def _account(self, tid: int) -> None:
        fields = {}
        try:
            for line in open(f"/proc/{tid}/status"):
                key, _, value = line.partition(":")
                fields[key] = value.split()
            tgid = int(fields["Tgid"][0])
            stat = open(f"/proc/{tgid}/task/{tid}/stat").read()
        except (OSError, KeyError, ValueError, IndexError):
            return
        ticks = stat.rsplit(")", 1)[1].split()
        cpu = (int(ticks[11]) + int(ticks[12])) / _CLK_TCK     # utime, stime
        kib = {k: int(fields[k][0]) for k in ("VmHWM", "VmData", "VmStk") if k in fields}
        with self._lock:
            self.trace.exited_cpu += cpu
            self.trace.exited.add(tid)
            self.trace.peak_resident = max(self.trace.peak_resident, kib.get("VmHWM", 0) * 1024)
            self.trace.peak_committed = max(self.trace.peak_committed,
                                            (kib.get("VmData", 0) + kib.get("VmStk", 0)) * 1024)

    def _on_exec(self, pid: int) -> None:
        """The new image's AT_EXECFN: the file name execve was given."""
        try:
            auxv = open(f"/proc/{pid}/auxv", "rb").read()
        except OSError:
            return
        for i in range(0, len(auxv) - 15, 16):
            key, value = struct.unpack_from("QQ", auxv, i)
            if key == AT_EXECFN:
                name = _read_string(pid, value)
                if name:
                    path = _join(pid, AT_FDCWD, name)
                    if path:
                        self.trace.add(path, "exec")
                break
        try:
            self.trace.add(os.readlink(f"/proc/{pid}/exe"), "exec")
        except OSError:
            pass

    def _on_exit(self, pid: int) -> None:
        """Files the task has mapped (libraries, the program, its
        interpreter); its CPU time and its process's memory peaks."""
        self._account(pid)
        try:
            lines = open(f"/proc/{pid}/maps").read().splitlines()
        except OSError:
            return
        for line in lines:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith("/") and not parts[5].endswith(" (deleted)"):
                self.trace.add(parts[5], "map")
