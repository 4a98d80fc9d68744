"""Supervisor, Group and Process: the library API over the C engine."""
from __future__ import annotations

import errno
import os
import resource
import select
import signal
import struct
import threading
import time
from collections import namedtuple
from collections.abc import Mapping, Sequence

from . import _log, _native, backends
from ._cstrings import cstr, cstr_array
from ._errors import GovernorError, PolicyError, SpawnError, check
from .limits import NEEDS_AREA, RATE_KEYS, Limits
from .rules import ALLOW, Action, Rule, c_rules

# Imported where used, so that a plain group's `governor run` does without
# them: psutil, containers, CPU caps, state files; the annotations below name
# some of them.
ffi, lib = _native.ffi, _native.lib
log = _log.getLogger(__name__)

# The engine's resources, in gov.h's order (GOV_NET_SEND = 0 ...): the index
# of each comes from the cdef, never from this list's order.
RESOURCES = tuple(sorted(("net_send", "net_recv", "disk_write", "disk_read", "processes", "memory",
                          "disk_space", "disk_inodes"), key=lambda r: getattr(lib, "GOV_" + r.upper())))
assert [getattr(lib, "GOV_" + r.upper()) for r in RESOURCES] == list(range(lib.GOV_NRES))
_EVENTS = {lib.GOV_EV_HELD: "held", lib.GOV_EV_RELEASED: "released", lib.GOV_EV_DENIED: "denied",
           lib.GOV_EV_COMPAT: "compat_denied", lib.GOV_EV_LISTENER_CLOSED: "listener_closed",
           lib.GOV_EV_OVERFLOW: "events_lost", lib.GOV_EV_STALLED: "stalled",
           lib.GOV_EV_HELD_CAP: "held_cap", lib.GOV_EV_SYNC_WAKEUP: "sync_wakeup"}
_FILTER_MAX = 1 << 16
BACKENDS = dict(zip(backends.NAMES, (lib.GOV_BACKEND_SECCOMP, lib.GOV_BACKEND_PTRACE,
                                     lib.GOV_BACKEND_PTRACE_SYSCALL)))
_TICK_SECONDS = 0.05  # groups with their own interface settle net charges every tick
_SAMPLE_SECONDS = 0.2   # a group's psutil sample, at most this often
_PUBLISH_SECONDS = 1.0  # its state file, at most this often
# Samples and state files take turns within this share of one CPU: with many
# groups each one's come less often (a thousand: every few seconds), rather
# than the sampler eating a core.
_SAMPLER_SHARE = 0.1
_LEND_MEMBERS = 100   # lending runs every tick for classes of up to this many groups in all


# Records, as namedtuples: dataclasses imports inspect, a tenth of what a
# short `governor run` costs.


class ResourceUsage(namedtuple("ResourceUsage", "used held_calls held_seconds denied_calls "
                               "borrowed", defaults=(0, 0, 0.0, 0, 0))):
    """used: bytes moved (rates) or the current level (processes, memory,
    disk_space); borrowed: of a rate a class shares, the bytes borrowed
    beyond the guarantee."""

    __slots__ = ()


class Usage(namedtuple("Usage", "resources tasks peak_tasks memory peak_memory notifications "
                       "compat_denied held_now resident pss peak_resident resident_kills "
                       "cpu_seconds", defaults=(0,) * 11 + (0.0,))):
    """A group's usage: per resource (a dict of ResourceUsage), and peaks of
    tasks and committed memory. Sampled: resident (RSS of the group's
    processes), pss (proportional set size: shared pages split), cpu_seconds
    (CPU time of the live processes). resident_kills: processes killed for
    memory_resident."""

    __slots__ = ()

    def as_dict(self) -> dict:
        return {
            "resources": {k: v._asdict() for k, v in self.resources.items()},
            "tasks": self.tasks, "peak_tasks": self.peak_tasks,
            "memory": self.memory, "peak_memory": self.peak_memory,
            "resident": self.resident, "pss": self.pss, "peak_resident": self.peak_resident,
            "resident_kills": self.resident_kills, "cpu_seconds": self.cpu_seconds,
            "notifications": self.notifications, "compat_denied": self.compat_denied,
            "held_now": self.held_now,
        }


class Event(namedtuple("Event", "kind group resource pid value call", defaults=(None,))):
    """call: the system call's name ("x32 write" for the x32 table)."""

    __slots__ = ()


def call_name(nr: int, compat: bool = False) -> str | None:
    """A call's name for logs, from libseccomp's tables (native/syscalls.h):
    the x86_64 table, the i386 one for a compat call, "x32 write" for an
    x32 one."""
    if nr < 0:
        return None
    buf = ffi.new("char[]", 64)
    check(lib.gov_syscall_name(nr, compat, buf, len(buf)), "gov_syscall_name")
    return ffi.string(buf).decode()


def governed_calls(limits: Limits) -> list[str]:
    """The system calls a group with these limits intercepts (x86_64 names),
    from the table the engine builds its filters from (native/syscalls.h)."""
    table = ffi.new("unsigned char[]", lib.GOV_NR_SYSCALLS)
    lib.gov_filter_governed(_c_limits(limits), table, lib.GOV_NR_SYSCALLS)
    return [ffi.string(lib.gov_syscall_of(nr).name).decode()
            for nr in range(lib.GOV_NR_SYSCALLS) if table[nr]]


def traces_clones(limits: Limits, backend: str) -> bool:
    """Whether a group's clone calls stop in the engine's tracer instead of
    notifying (gov.h, trace_clones): under seccomp with a processes cap, so
    that a signal never fails a fork with EINTR. Not where Yama forbids
    ptrace (ptrace_scope 3): the clone calls notify then."""
    return backend == "seccomp" and limits.processes is not None and _ptrace_allowed()


def _ptrace_allowed() -> bool:
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            return f.read().strip() != "3"
    except OSError:
        return True


def _c_limits(limits: Limits, container: bool = False, backend: str = "seccomp"):
    c = ffi.new("struct gov_limits *")
    c.fixed_sched = limits.cpu is not None
    c.container = container
    c.trace_clones = traces_clones(limits, backend)
    for i, key in enumerate(RESOURCES):
        value = getattr(limits, key)
        if value is None:
            continue
        r = c.r[i]
        r.set = 1
        r.mode = lib.GOV_DENY if limits.mode_of(key) == "deny" else lib.GOV_HOLD
        if key in RATE_KEYS:
            r.rate = float(value)
            r.burst = float(limits.burst_of(key))
        else:
            r.cap = int(value)
    return c


def _with_class_ceilings(limits: Limits) -> Limits:
    """A rate that a class of the group shares and that the group does not
    limit itself is limited by the nearest class's ceiling (so its calls are
    governed at all)."""
    if limits.parent is None:
        return limits
    ceilings = {}
    for cls in reversed(limits.parent.path()):   # the nearest class last, so it wins
        ceilings.update({k: cls.ceiling_of(k) for k in cls.rates})
    missing = {k: v for k, v in ceilings.items() if getattr(limits, k) is None}
    return limits.merged(Limits(**missing)) if missing else limits


def filter_program(limits: Limits, container: bool, backend: str,
                   rules: Sequence[Rule] | None = None, default_action: Action = ALLOW) -> bytes:
    """A group's BPF program (struct sock_filter[]): the governor's rules and
    the extra ones (governor/rules.py). governor-oci builds its containers'
    with it too."""
    buf = ffi.new("char[]", _FILTER_MAX)
    extra, _keep = c_rules(rules, default_action) if rules is not None else (ffi.NULL, None)
    rc = lib.gov_filter_build(_c_limits(limits, container, backend), BACKENDS[backend], extra, buf,
                              _FILTER_MAX)
    if rc in (-errno.EOPNOTSUPP, -errno.E2BIG):
        raise PolicyError("seccomp rules", None, "these rules cannot be combined into one "
                          "filter (argument ranges that overlap other comparisons, or too "
                          "many comparisons for one system call)")
    n = check(rc, "seccomp filter")
    return ffi.buffer(buf, n)[:]


def _interface_totals(ifname: str, ifindex: int) -> tuple[int, int] | None:
    """(sent, received) by the container behind host-side veth ifname: its
    rx is the container's tx. None once the interface is gone (or its name
    now belongs to another interface)."""
    stats = f"/sys/class/net/{ifname}"
    try:
        with open(f"{stats}/ifindex") as f:
            if int(f.read()) != ifindex:
                return None
        with open(f"{stats}/statistics/rx_bytes") as f:
            sent = int(f.read())
        with open(f"{stats}/statistics/tx_bytes") as f:
            received = int(f.read())
    except (OSError, ValueError):
        return None
    return sent, received


def _pss(pid: int) -> int:
    """PSS from /proc/PID/smaps_rollup: one small read, kept by the kernel."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    """pid's descendant processes, from /proc/PID/task/TID/children: the
    group's own tree (psutil's children() reads every process of the host)."""
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except (OSError, ValueError):
                continue
            out += kids
            todo += kids
    return out


def _which(command: str, search: str) -> str | None:
    """The first executable file named command in the directories of PATH
    search (as shutil.which, whose module costs a short run 2 ms)."""
    if not search:
        return None
    for d in search.split(os.pathsep):
        path = os.path.join(d, command)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _raise_nofile() -> None:
    """The soft RLIMIT_NOFILE up to the hard one: a supervisor holds an fd
    per listener, spawn and cached pidfd (each engine's pidfd cache takes an
    eighth of the limit it finds, native/classify.h). Its commands inherit
    it, as a container's processes get a high nofile from docker."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass   # an infinite hard limit above the kernel's nr_open: keep it


def _find_command(command: str, env: Mapping[str, str]) -> str:
    path = _which(command, env.get("PATH", os.defpath)) if "/" not in command else command
    if path is None or not os.path.exists(path):
        raise SpawnError(2, command)  # ENOENT
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise SpawnError(13, command)  # EACCES
    return path


def gov_spawn(path: str, argv: Sequence[str], env: Mapping[str, str], program: bytes, *,
              cwd: str | None = None, stdio=(None, None, None), setup=None, process=None,
              trace: bool = False, paused: bool = False, detached: bool = False,
              lifeline: int = -1, search_path: str | None = None):
    """native/spawn.h's gov_spawn: the init shim and the command, filter
    installed and listener taken (struct gov_spawn_res). stdio: None
    (inherit), an fd, a file object or subprocess.DEVNULL each; setup,
    process: a container's (governor/container/setup.py); search_path: a
    PATH to look path up in, inside the container. SpawnError, with
    .step for a container's set-up, if it fails; nothing is left then."""
    keep: list = []
    req = ffi.new("struct gov_spawn_req *")
    req.path = cstr(keep, path)
    req.argv = cstr_array(keep, argv)
    req.envp = cstr_array(keep, [f"{k}={v}" for k, v in env.items()])
    req.cwd = cstr(keep, cwd) if cwd else ffi.NULL
    req.search_path = cstr(keep, search_path) if search_path is not None else ffi.NULL
    c_filter = ffi.new("char[]", program)
    req.filter, req.filter_len = c_filter, len(program)
    req.timeout_ms = 10000
    req.trace, req.paused = trace, paused
    req.detached, req.lifeline = detached, lifeline
    if setup:
        req.container = setup.c_struct(keep)
    if process:
        req.process = process.c_struct(keep)
    opened = []
    res = ffi.new("struct gov_spawn_res *")
    try:
        for i, f in enumerate(stdio):
            if isinstance(f, int) and f < 0:
                import subprocess   # here only: a plain `governor run` does without it

                if f != subprocess.DEVNULL:
                    raise GovernorError(f"spawn: bad fd {f} for "
                                        f"{('stdin', 'stdout', 'stderr')[i]}")
                f = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                opened.append(f)
            req.stdio[i] = -1 if f is None else (f if isinstance(f, int) else f.fileno())
        rc = lib.gov_spawn(req, res)
    finally:
        for fd in opened:
            os.close(fd)
    if rc == -1 and os.geteuid() != 0:  # EPERM from clone(CLONE_NEWPID)
        raise GovernorError("spawn: governor needs root: each group runs in its own "
                            "pid namespace")
    if rc < 0 and res.fail_step:
        step = ffi.string(lib.gov_container_step_name(res.fail_step)).decode()
        step = setup.step(step, res.fail_index) if setup else step
        raise SpawnError(-rc, f"{argv[0]}: container {step}", step=step)
    if rc < 0:
        raise SpawnError(-rc, argv[0])
    return res


def spawn_command(argv: Sequence[str], program: bytes, *, container: Container | None = None,
                  name: str = "", env: Mapping[str, str] | None = None, cwd: str | None = None,
                  stdio=(None, None, None), trace: bool = False, paused: bool = False,
                  console: tuple[int, int] = (-1, 0)):
    """gov_spawn() of argv as a group's command, looked up in its PATH (a
    container's inside the rootfs; env defaults to the container's or
    ours): the init shim and the command, filter installed, listener
    taken. A container's command starts paused, for its network.
    console: (socket, std fd mask): a container's command makes a pty,
    sends its master over the socket and takes the slave as those std fds
    (governor/cli/_relay.py)."""
    if container:
        env = dict(container.default_env() if env is None else env)
        path = container.find_command(argv[0], env)
    else:
        env = dict(os.environ if env is None else env)
        path = _find_command(argv[0], env)
    setup = process = None
    if container:
        from .container.setup import ProcessSetup

        setup = container.setup(name)
        process = ProcessSetup(console_fd=console[0], console_stdio=console[1])
    return gov_spawn(path, argv, env, program, cwd=cwd, stdio=stdio,
                     setup=setup, process=process, trace=trace,
                     paused=paused or container is not None)


class Process:
    """The root command of a spawn. Its exit ends its namespace: every task it
    left behind is killed by the kernel. group: None when the process that
    spawned it hands its calls to a supervisor elsewhere (governor/daemon)."""

    def __init__(self, group: "Group | None", pid: int, init_pid: int, status_fd: int,
                 exec_fd: int, argv: Sequence[str]):
        self.group, self.pid, self.init_pid, self.argv = group, pid, init_pid, list(argv)
        self._status_fd, self._exec_fd = status_fd, exec_fd
        self.returncode: int | None = None
        self.exec_errno: int | None = None

    def read_exec_result(self) -> None:
        data = os.read(self._exec_fd, 4)
        os.close(self._exec_fd)
        self._exec_fd = -1
        if len(data) == 4:
            self.exec_errno = struct.unpack("i", data)[0]
        elif self.group is not None:   # None: a daemon's group (governor/daemon/keeper.py)
            self.group._running.add(self.init_pid)

    def wait(self, timeout: float | None = None) -> int:
        """Waits for the command; returns its status like subprocess: the
        exit code, or -N when signal N killed it. TimeoutError on timeout."""
        if self.returncode is not None:
            return self.returncode
        # poll, not select: a keeper of many groups has fds past FD_SETSIZE.
        poller = select.poll()
        poller.register(self._status_fd, select.POLLIN)
        if not poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999))):
            raise TimeoutError(f"{self.argv[0]} (pid {self.pid}) still running after {timeout}s")
        data = os.read(self._status_fd, 4)
        os.close(self._status_fd)
        self._status_fd = -1
        try:
            os.waitpid(self.init_pid, 0)  # the namespace is gone with it
        except ChildProcessError:
            pass  # a detached init (governor-oci): its parent reaps it
        if self.group:
            self.group.forget_init(self.init_pid)
        if len(data) < 4:  # the init was killed from outside
            self.returncode = -signal.SIGKILL
        else:
            status = struct.unpack("i", data)[0]
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def poll(self) -> int | None:
        try:
            return self.wait(0)
        except TimeoutError:
            return None

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """Kills the command and everything in its group namespace."""
        if self.returncode is None:
            try:
                os.kill(self.init_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait()

    @property
    def status_fd(self) -> int:
        return self._status_fd


class Group:
    """Processes that share one allocation. Create with Supervisor.group()."""

    def __init__(self, sup: "Supervisor", name: str, limits: Limits, shard: int, gid: int,
                 container: Container | None, bpf: bytes):
        self.supervisor, self.name, self.limits, self.id = sup, name, limits, gid
        self._shard, self._engine = shard, sup._engines[shard]  # the engine that answers it
        self._traces_clones = traces_clones(limits, sup.backend)
        self._lend_seen: dict[str, tuple] = {}   # per shared rate: borrowed, held at the last tick
        self.container = container
        self._interface: tuple[str, int] | None = None  # host-side veth: name, index
        self._filter = bpf
        self._inits: set[int] = set()
        # Inits whose command has exec'd: before, it is a fork of this
        # process, whose memory is not the tenant's (memory_resident).
        self._running: set[int] = set()
        self._processes: list[Process] = []
        self._foreign: dict[int, list[str]] = {}   # init -> argv, of commands others wait for
        self._peak_tasks = 0
        self._peak_memory = 0
        self._sampled = {"tasks": 0, "memory": 0, "resident": 0, "cpu": 0.0, "pss": 0}
        self._peak_resident = 0
        self._resident_kills = 0
        self._due = {"sample": 0.0, "publish": 0.0}   # when the sampler looks at it next
        self.started = time.time()

    def spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
              cwd: str | None = None, stdin=None, stdout=None, stderr=None,
              tracer=None, console: tuple[int, int] = (-1, 0)) -> Process:
        """Starts argv in the group. SpawnError(ENOENT) if it is not found.

        stdin, stdout, stderr: None (inherit), an fd, a file object or
        subprocess.DEVNULL. No other fd of this process reaches the command.
        console: see spawn_command (containers only).
        tracer (seccomp backend; `governor capture`'s file tracer): its
        `filter` (BPF) goes in front of the group's, and its `attach(pid)`
        runs while the command waits before exec."""
        if not argv:
            raise GovernorError("spawn: empty command")
        box = self.container
        if box and any(p.returncode is None for p in self._processes):
            raise GovernorError(f"spawn: container {self.name!r} runs a command already")
        bpf = (tracer.filter if tracer else b"") + self._filter
        # A tracer's attach comes before the command runs: paused.
        res = spawn_command(argv, bpf, container=box, name=self.name, env=env, cwd=cwd,
                            stdio=(stdin, stdout, stderr), console=console,
                            trace=self.supervisor.backend != "seccomp",
                            paused=bool(tracer or self._traces_clones))
        proc = Process(self, res.cmd_pid, res.init_pid, res.status_fd, res.exec_fd, argv)
        self._start(proc, res, trace=self.supervisor.backend != "seccomp", tracer=tracer)
        proc.read_exec_result()  # after the engine has the listener: the child may write
        self._processes.append(proc)
        log.info("spawned", extra={"group": self.name, "pid": proc.pid, "argv": list(argv)})
        if proc.exec_errno:
            proc.wait()
            raise SpawnError(proc.exec_errno, argv[0])
        return proc

    def adopt(self, res, argv: Sequence[str], resume: bool = False) -> Process | None:
        """Takes over a command that gov_spawn() started paused (and perhaps
        detached, from another process): the engine gets its listener, its
        init roots the group's tasks. It runs once gov_spawn_go(res, 1);
        Process.read_exec_result() then says whether its exec worked.
        resume: the command runs, and a dead supervisor had its listener:
        the calls in the group's record file (keep()) that still wait are
        taken over (res.resumed: how many)."""
        listener = res.listener   # ours until the engine takes it
        try:
            check(lib.gov_group_add_init(self._engine, self.id, res.init_pid), "add init")
            self._inits.add(res.init_pid)
            listener = -1
            if resume:
                res.resumed = check(lib.gov_group_resume(self._engine, self.id, res.listener),
                                    "resume")
            else:
                check(lib.gov_group_add_listener(self._engine, self.id, res.listener),
                      "add listener")
            if self._traces_clones:
                check(lib.gov_group_add_tracee(self._engine, self.id, res.cmd_pid),
                      "attach tracer")
            if self.supervisor._cpu:
                self.supervisor._cpu.rebalance(self)
        except BaseException:
            if listener >= 0:
                os.close(listener)
            os.kill(res.init_pid, signal.SIGKILL)
            self.forget_init(res.init_pid)
            raise
        if res.status_fd < 0:
            # Another process waits for it (governor-oci exec, a daemon's
            # keeper): forget_init then. It runs at once.
            self._running.add(res.init_pid)
            self._foreign[res.init_pid] = list(argv)
            return None
        proc = Process(self, res.cmd_pid, res.init_pid, res.status_fd, res.exec_fd, argv)
        self._processes.append(proc)
        return proc

    def _start(self, proc: Process, res, trace: bool, tracer=None) -> None:
        """Hands the command's calls to the engine (its listener, or a tracer
        that attaches while it waits), sets up a container's network and its
        CPU reservation, then lets a waiting command exec. On failure the
        command is killed (before it runs, if it was waiting)."""
        sup = self.supervisor
        listener = -1 if trace else res.listener   # ours until the engine takes it
        try:
            check(lib.gov_group_add_init(self._engine, self.id, res.init_pid), "add init")
            self._inits.add(res.init_pid)
            if not trace:
                listener = -1
                check(lib.gov_group_add_listener(self._engine, self.id, res.listener),
                      "add listener")
            if trace or self._traces_clones:
                check(lib.gov_group_add_tracee(self._engine, self.id, res.cmd_pid),
                      "attach tracer")
            if self.container and (ifname := self.container.start_network(proc.init_pid)):
                self.attach_interface(ifname)
            if tracer:
                tracer.attach(res.cmd_pid)
            if sup._cpu:
                sup._cpu.rebalance(self)  # the command starts under its reservation
            if res.go_fd >= 0:
                check(lib.gov_spawn_go(res, 1), "start the command")
        except BaseException:
            if res.go_fd >= 0:
                lib.gov_spawn_go(res, 0)  # it exits without running
            if listener >= 0:
                os.close(listener)
            proc.kill()
            os.close(res.exec_fd)
            raise

    def keep(self, path: str, resume: bool = False) -> bool:
        """Keeps the group's received calls and usage in a record file at
        path (native/keep.h), so that a supervisor started after this one
        dies can take the group over; resume: the file is a dead
        supervisor's (usage starts from it; then adopt(resume=True)).
        Whether something was resumed."""
        return check(lib.gov_group_keep(self._engine, self.id, os.fsencode(path), int(resume)),
                     f"record file {path}") == 1

    def commands(self) -> list[list[str]]:
        """The argv of each running command of the group."""
        return [p.argv for p in self._processes if p.returncode is None] + \
            list(self._foreign.values())

    def forget_init(self, init_pid: int) -> None:
        """init_pid ended: its tree is no longer the group's."""
        self._foreign.pop(init_pid, None)
        if init_pid in self._inits:
            self._inits.discard(init_pid)
            self._running.discard(init_pid)
            lib.gov_group_drop_init(self._engine, self.id, init_pid)
            if self.container:
                # Its namespace died, and its veth with it: nothing left to
                # settle against (the last settlement is at most 50 ms old).
                self._interface = None

    def pids(self) -> list[int]:
        """Every live process of the group (of commands that have exec'd)."""
        return [pid for init in list(self._running) for pid in _descendants(init)]

    def attach_interface(self, host_ifname: str) -> None:
        """Charges net_send and net_recv from what crosses the group's own
        network interface, seen from the host side of its veth pair: the
        supervisor settles the engine's per-call estimates with the
        interface's counters every 50 ms (debt, or a refund for traffic
        that never left the namespace, such as loopback). The group's usage
        then counts every byte the interface moved, headers included."""
        try:
            with open(f"/sys/class/net/{host_ifname}/ifindex") as f:
                index = int(f.read())
        except (OSError, ValueError):
            raise GovernorError(f"attach_interface: no interface {host_ifname!r}") from None
        check(lib.gov_group_attach_net(self._engine, self.id), "attach interface")
        self._interface = (host_ifname, index)
        self._settle_net()

    def detach_interface(self) -> None:
        """Settles one last time and stops: call before the interface goes."""
        self._settle_net()
        self._interface = None

    def _settle_net(self) -> None:
        iface = self._interface
        totals = _interface_totals(*iface) if iface else None
        if totals is None:
            return
        rc = lib.gov_group_settle_net(self._engine, self.id, *totals)
        if rc == -errno.EINVAL:
            # Counters that went back: a veth's include its peer's, which go
            # with the peer's namespace. The interface is being torn down.
            self._interface = None
            return
        check(rc, "settle net")

    def _sample(self) -> None:
        """Tasks, committed and resident memory, by psutil: levels and peaks
        for what the engine does not count itself, and for monitoring."""
        import psutil

        tasks = memory = resident = pss = 0
        cpu = 0.0
        largest = (0, None)
        pids = self.pids()
        for pid in pids:
            try:
                info = psutil.Process(pid)
                with info.oneshot():
                    if info.status() == psutil.STATUS_ZOMBIE:
                        continue   # exited: holds no slot under the engine's cap either
                    tasks += info.num_threads()
                    mem = info.memory_info()
                    times = info.cpu_times()
                cpu += times.user + times.system
                pss += _pss(pid)
                memory += mem.data
                resident += mem.rss
                largest = max(largest, (mem.rss, info), key=lambda t: t[0])
            except psutil.Error:
                pass
        cap = self.limits.memory_resident
        if cap is not None:
            # memfds held by fd, SysV segments, shared pages: once each
            # (their reads cost, so only where a limit needs them).
            from governor.monitor.shmem import shared_resident
            resident += shared_resident(pids)
        self._sampled = {"tasks": tasks, "memory": memory, "resident": resident, "cpu": cpu,
                         "pss": pss}
        if cap is not None and resident > cap and largest[1] is not None:
            self._kill_for_resident(largest[1], largest[0], resident, cap)
        self._peak_tasks = max(self._peak_tasks, tasks)
        self._peak_memory = max(self._peak_memory, memory)
        self._peak_resident = max(self._peak_resident, resident)

    def _kill_for_resident(self, proc: psutil.Process, rss: int, resident: int, cap: int) -> None:
        """Like an OOM kill: the group's largest process goes."""
        import psutil

        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            return
        self._resident_kills += 1
        log.warning("killed pid %d (rss %d): group %s resident %d > memory_resident %d",
                    proc.pid, rss, self.name, resident, cap)
        self.supervisor._post(Event("resident_killed", self.name, "memory_resident", proc.pid, rss))

    def usage(self) -> Usage:
        u = ffi.new("struct gov_usage *")
        check(lib.gov_group_usage(self._engine, self.id, u), "usage")
        res = {}
        for i, key in enumerate(RESOURCES):
            r = u.r[i]
            res[key] = ResourceUsage(int(r.used), int(r.held_calls), r.held_ns / 1e9, int(r.denied),
                                     int(r.borrowed))
        # Levels from the last sample (the engine counts only at the calls it
        # sees); peaks from both.
        return Usage(resources=res, tasks=self._sampled["tasks"],
                     peak_tasks=max(int(u.peak_tasks), self._peak_tasks),
                     memory=self._sampled["memory"],
                     peak_memory=max(int(u.peak_memory), self._peak_memory),
                     notifications=int(u.notifications), compat_denied=int(u.compat_denied),
                     held_now=int(u.held_now), resident=self._sampled["resident"],
                     pss=self._sampled["pss"],
                     peak_resident=self._peak_resident, resident_kills=self._resident_kills,
                     cpu_seconds=self._sampled["cpu"])

    def kill(self) -> None:
        """Kills every process of the group."""
        for proc in self._processes:
            proc.kill()

    def close(self) -> None:
        """Kills the group's processes and frees its engine state; its name
        can then be used again. Usage is no longer available afterwards."""
        self.kill()
        self.supervisor._forget(self)
        if self.container:
            self.container.release()


def _check_area(name: str, limits: Limits, dirs) -> list[str]:
    """The area's directories, resolved; PolicyError naming what is wrong."""
    source = f"group {name!r}"
    area = []
    for d in dirs or ():
        path = os.path.realpath(d)
        if not os.path.isdir(path):
            what = "is not a directory" if os.path.exists(path) else "does not exist"
            raise PolicyError(source, "disk_area", f"{os.fspath(d)!r} {what}")
        area.append(path)
    for a in area:
        for b in area:
            if a != b and b.startswith(a.rstrip("/") + "/"):
                raise PolicyError(source, "disk_area", f"{b!r} is inside {a!r}: list it once")
    if len(set(area)) != len(area):
        raise PolicyError(source, "disk_area", "a directory is listed twice")
    if len(area) > lib.GOV_DISK_DIRS:
        raise PolicyError(source, "disk_area", f"at most {lib.GOV_DISK_DIRS} directories")
    for key in ("disk_space", "disk_inodes"):
        if getattr(limits, key) is not None and not area:
            raise PolicyError(source, key, NEEDS_AREA)
    return area


class Supervisor:
    """Owns the engine thread and the groups. Use as a context manager: on
    exit every group's processes are killed and every fd is closed."""

    def __init__(self, backend: str = "seccomp", publish_state: bool = True,
                 sync_wakeup: bool = True, engines: int | None = None,
                 max_held: int = lib.GOV_MAX_HELD):
        """backend: how calls reach the engine: "seccomp" (user notification),
        "ptrace" (seccomp RET_TRACE: only governed calls stop) or
        "ptrace-syscall" (PTRACE_SYSCALL: every call stops; slow).
        publish_state: write per-group state files for `governor ps`
        (into $GOVERNOR_RUN_DIR or /run/governor). sync_wakeup=False: do
        without SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP even where the kernel has
        it (only to measure what it saves). engines: how many engine threads
        share the groups (each group lives on one; default: one per CPU this
        process may run on). max_held: how many calls of one group may wait
        at once (held, or waiting for data); a call past them is denied
        (EAGAIN, ENOMEM for memory) and a "held_cap" event says so."""
        if backend not in BACKENDS:
            raise GovernorError(f"backend {backend!r} is not available "
                                f"(available: {', '.join(BACKENDS)})")
        if engines is None:
            engines = len(os.sched_getaffinity(0))
        if isinstance(engines, bool) or not isinstance(engines, int) or not 1 <= engines <= 1024:
            raise GovernorError(f"engines: expected 1 to 1024 engine threads, got {engines!r}")
        if isinstance(max_held, bool) or not isinstance(max_held, int) or \
                not 1 <= max_held < 2**31:
            raise GovernorError(f"max_held: expected a number of calls from 1, got {max_held!r}")
        self.backend = backend
        self._max_held = max_held
        _raise_nofile()   # before the engines size their pidfd caches
        self._engines = []
        try:
            for _ in range(engines):
                p = ffi.new("struct gov_engine **")
                check(lib.gov_engine_new(p), "engine")
                self._engines.append(p[0])
                lib.gov_engine_set_sync_wakeup(p[0], int(sync_wakeup))
                if len(self._engines) > 1:
                    check(lib.gov_engine_share_event_fd(p[0], self._engines[0]), "engine events")
        except GovernorError:
            for e in self._engines:
                lib.gov_engine_free(e)
            raise
        self._load = [0] * engines   # groups per engine
        self._cclasses: dict = {}    # Class -> the engine's handle
        self._members: dict = {}     # Class -> its groups
        self._groups: dict[str, Group] = {}
        self._names: dict[tuple, str] = {}   # (engine index, group id) -> name
        self._stop = threading.Event()
        self._py_events: list[Event] = []   # events raised in Python (resident kills)
        self._py_events_lock = threading.Lock()
        self._publish_state = publish_state
        self._publisher = None   # made by the sampler at its first publish
        self._cpu: CpuController | None = None
        self._sampler: threading.Thread | None = None   # started with the first command

    def __enter__(self) -> "Supervisor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def sync_wakeup(self) -> bool | None:
        """Whether the listeners use SYNC_WAKE_UP: False when the kernel lacks
        it or sync_wakeup=False was asked (None until a group ran)."""
        v = max(lib.gov_engine_sync_wakeup(e) for e in self._engines)
        return None if v < 0 else bool(v)

    @property
    def engines(self) -> int:
        """How many engine threads share the groups."""
        return len(self._engines)

    def group(self, name: str, limits: Limits | None = None,
              container: Container | None = None,
              disk_area: Sequence[str | os.PathLike] | None = None,
              rules: Sequence[Rule] | None = None, default_action: Action = ALLOW) -> Group:
        """A new group. With a container, its commands run inside it; the
        container's name (its hostname, its uid range) is the group's, and
        disk_space counts its writable area (its rootfs unless read-only, and
        its volumes). disk_area: for a group without a container, the
        directories whose contents count against disk_space and disk_inodes. rules: extra
        seccomp rules for its filter (governor/rules.py), and the action of
        a call they do not match; None: a container's default profile
        (governor/container/profile.py), nothing for a plain group."""
        if name in self._groups:
            raise GovernorError(f"group {name!r} exists already")
        limits = _with_class_ceilings(limits or Limits())
        self._check_guarantees(name, limits)
        if limits.cpu is not None:
            from .monitor.cpu import refusal

            if why := refusal():
                raise PolicyError(f"group {name!r}", "cpu", why)
        if container and disk_area:
            raise GovernorError(f"group {name!r}: a container brings its own disk area")
        area = _check_area(name, limits, container.writable_paths if container else disk_area)
        if rules is None and container:
            rules = container.seccomp_rules()
        bpf = filter_program(limits, container is not None, self.backend, rules, default_action)
        if container:
            container.claim(name)
        shard = self._load.index(min(self._load))   # the engine with the fewest groups
        engine = self._engines[shard]
        try:
            gid = check(lib.gov_group_new(engine, _c_limits(limits, container is not None,
                                                             self.backend),
                                             BACKENDS[self.backend]), "new group")
            check(lib.gov_group_set_max_held(engine, gid, self._max_held), "max_held")
            if limits.disk_space is not None or limits.disk_inodes is not None:
                keep: list = []
                rc = lib.gov_group_disk_area(engine, gid, cstr_array(keep, area), len(area))
                if rc < 0:
                    lib.gov_group_remove(engine, gid)
                    check(rc, f"group {name!r}: disk area")
        except GovernorError:
            if container:
                container.release()
            raise
        g = Group(self, name, limits, shard, gid, container, bpf)
        if limits.parent is not None:
            self._join_class(g)
        self._load[shard] += 1
        self._groups[name] = g
        if limits.cpu is not None and self._cpu is None:
            from .monitor.cpu import CpuController

            self._cpu = CpuController(self)
        self._names[(shard, gid)] = name
        self._start_sampler()
        return g

    # ---- classes of service (governor/share.py, native/share.h) ----

    def _check_guarantees(self, name: str, limits: Limits) -> None:
        """The guarantees of a class's groups (and the rates of its classes)
        may not add up to more than its rate."""
        cls = limits.parent
        if cls is None:
            return
        for key, value in limits.guarantee.items():
            owner = next(c for c in cls.path() if key in c.rates)
            taken = sum(g.limits.guarantee.get(key, 0) for g in self._members.get(owner, ())
                        if g.limits.parent is owner)
            taken += sum(c.rates.get(key, 0) for c in self._cclasses if c.parent is owner)
            if taken + value > owner.rates[key] * (1 + 1e-9):
                raise PolicyError(f"group {name!r}", f"guarantee {key}",
                                  f"class {owner.name!r} has {owner.rates[key]:.0f} B/s and "
                                  f"guarantees {taken:.0f} B/s already")

    def _cclass(self, cls):
        """The engine's handle of a class (made with its parents on first use)."""
        if cls not in self._cclasses:
            parent = self._cclass(cls.parent) if cls.parent else ffi.NULL
            if cls.parent is not None:
                siblings = [c for c in self._cclasses if c.parent is cls.parent]
                for key, rate in cls.rates.items():
                    if key in cls.parent.rates and rate + sum(c.rates.get(key, 0)
                                                              for c in siblings) > \
                            cls.parent.rates[key] * (1 + 1e-9):
                        raise PolicyError(cls.source, f"rates {key}", f"the classes of "
                                          f"{cls.parent.name!r} ask for more than it has")
            arrays = [ffi.new("double[]", [float(d.get(key, 0)) for key in RESOURCES])
                      for d in (cls.rates, {k: cls.ceiling_of(k) for k in cls.rates},
                                {k: cls.burst_of(k) for k in cls.rates})]
            handle = lib.gov_class_new(parent, *arrays)
            if handle == ffi.NULL:
                raise GovernorError(f"class {cls.name!r}: out of memory")
            self._cclasses[cls] = handle
        return self._cclasses[cls]

    def _join_class(self, g: Group) -> None:
        handle = self._cclass(g.limits.parent)
        for i, key in enumerate(RESOURCES):
            if key in RATE_KEYS and any(key in c.rates for c in g.limits.parent.path()):
                check(lib.gov_group_set_class(g._engine, g.id, i, handle,
                                              float(g.limits.guarantee.get(key, 0)),
                                              float(g.limits.burst_of(key))), "class")
        self._members.setdefault(g.limits.parent, []).append(g)

    def _lend(self) -> None:
        """Splits what each class has spare among the groups that borrow now,
        by weight. Spare: its rate less the guarantees in use (of groups
        that used any of theirs in the last tick); a group borrows if it
        borrowed in the last tick or waits."""
        u = ffi.new("struct gov_usage *")
        for cls, members in [(c, list(m)) for c, m in self._members.items()]:
            for key in cls.rates:
                seen = []
                for g in members:
                    check(lib.gov_group_usage(g._engine, g.id, u), "usage")
                    r = u.r[RESOURCES.index(key)]
                    now = (int(r.used) - int(r.borrowed), int(r.borrowed), int(r.held_ns))
                    last = g._lend_seen.get(key, now)
                    g._lend_seen[key] = now
                    seen.append((g, now[0] != last[0], now[1:] != last[1:]))
                spare = cls.rates[key] - sum(g.limits.guarantee.get(key, 0)
                                             for g, own, _ in seen if own)
                active = sum(g.limits.weight_of() for g, _, busy in seen if busy)
                for g, _, busy in seen:
                    w = g.limits.weight_of()
                    share = w / (active + (0 if busy else w))
                    rate = spare * share if spare > 0 and len(members) > 1 else 0.0
                    lib.gov_group_set_borrow(g._engine, g.id, RESOURCES.index(key), rate,
                                             float(g.limits.burst_of(key)))

    def _forget(self, group: Group) -> None:
        if self._publisher:
            self._publisher.remove(group)
        if self._cpu:
            self._cpu.forget(group)
        if self._groups.get(group.name) is group:
            del self._groups[group.name]
            del self._names[(group._shard, group.id)]
            if group.limits.parent is not None:
                self._members[group.limits.parent].remove(group)
            self._load[group._shard] -= 1
            check(lib.gov_group_remove(group._engine, group.id), "remove group")

    @property
    def event_fd(self) -> int:
        """Readable when events() has something; for select/poll loops."""
        return lib.gov_engine_event_fd(self._engines[0])

    def _post(self, event: Event) -> None:
        with self._py_events_lock:
            self._py_events.append(event)
        os.write(self.event_fd, (1).to_bytes(8, "little"))  # wakes event_fd waiters

    def events(self) -> list[Event]:
        buf = ffi.new("struct gov_event[]", 256)
        with self._py_events_lock:
            out, self._py_events = self._py_events, []
        for shard, engine in enumerate(self._engines):
            while (n := lib.gov_engine_events(engine, buf, 256)) > 0:
                for e in buf[0:n]:
                    res = RESOURCES[e.resource] if 0 <= e.resource < len(RESOURCES) else None
                    out.append(Event(_EVENTS.get(e.type, str(e.type)),
                                     self._names.get((shard, e.group), "?"), res, int(e.pid),
                                     int(e.value),
                                     call_name(int(e.nr), e.type == lib.GOV_EV_COMPAT)))
        return out

    @property
    def groups(self) -> list[Group]:
        return list(self._groups.values())

    def _start_sampler(self) -> None:
        """The thread that settles, samples, lends and publishes, from the
        first group on: a supervisor without groups (governor-oci's light
        commands, a daemon before its first run) runs none."""
        if self._sampler is None:
            self._sampler = threading.Thread(target=self._sample_loop, name="governor-sampler",
                                             daemon=True)
            self._sampler.start()

    def _sample_loop(self) -> None:
        tick, turn = 0, 0
        while not self._stop.wait(_TICK_SECONDS):
            tick += 1
            members = sum(map(len, self._members.values()))
            if members and tick % max(1, members // _LEND_MEMBERS) == 0:
                try:
                    self._lend()
                except GovernorError:
                    pass  # a group closed meanwhile
            groups = self.groups
            for g in groups:
                if g._interface:
                    try:
                        g._settle_net()
                    except GovernorError:
                        pass  # closed meanwhile
            turn = self._take_turns(groups, turn,
                                    time.monotonic() + _SAMPLER_SHARE * _TICK_SECONDS)

    def _take_turns(self, groups: list[Group], turn: int, until: float) -> int:
        """Samples and publishes the groups that are due, round robin from
        `turn`, until `until`; where the next tick goes on. Groups with a
        memory_resident limit first: their sample enforces it."""
        if self._publish_state and self._publisher is None:
            from .monitor.state import Publisher

            self._publisher = Publisher()
        urgent = [g for g in groups if g.limits.memory_resident is not None]
        n = len(groups)
        for i, g in [(-1, g) for g in urgent] + [((turn + k) % n, groups[(turn + k) % n])
                                                 for k in range(n)]:
            now = time.monotonic()
            if now >= until:
                return turn if i < 0 else i
            try:
                if now >= g._due["sample"]:
                    g._due["sample"] = now + _SAMPLE_SECONDS
                    g._sample()
                if self._publisher and now >= g._due["publish"]:
                    g._due["publish"] = now + _PUBLISH_SECONDS
                    self._publisher.publish(g)
            except GovernorError:
                pass  # closed meanwhile
        return turn

    def close(self) -> None:
        if not self._engines:
            return
        self._stop.set()
        if self._sampler:
            self._sampler.join()
        if self._cpu:
            self._cpu.close()
        for g in self.groups:
            g.kill()
            if self._publisher:
                self._publisher.remove(g)
            if g.container:
                g.container.release()
        for engine in self._engines:
            lib.gov_engine_free(engine)
        self._engines = []
        for handle in self._cclasses.values():
            lib.gov_class_put(handle)
        self._cclasses = {}
