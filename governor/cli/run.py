"""`governor run [options] -- CMD ARGS...`: a command tree as one group under
limits, optionally in a container."""
from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import time

from .._errors import PolicyError, SpawnError
from .._readable import ready as wait_ready
from ..backends import NAMES as BACKENDS
from ..limits import KEYS, Limits, parse_assignments
from . import Log

# A plain group imports neither the container modules, nor policy files',
# nor metrics': a short run spends less on its command than on imports.

# After the command's exit, how long what its container wrote is still
# relayed (its writers die with its namespace: EOF comes at once).
DRAIN_SECONDS = 5.0
# Signals that `governor run` passes on to the command.
FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
TTY_SIGNALS = (signal.SIGINT, signal.SIGQUIT)


def add_parser(sub) -> None:
    run = sub.add_parser(
        "run", help="run a command tree as one group under limits",
        description="Run CMD and every process it starts as one group. Exit status: the "
                    "command's (128+N if signal N killed it); 127 if it is not found, 126 if "
                    "it cannot be executed, 2 for bad options or policy, 125 if governor itself failed.",
        epilog=f"limit keys: {', '.join(KEYS)}. Units: 4MiB/s, 500KB/s, 64MiB, plain integers.")
    run.add_argument("--name", help="group name (default: the command's base name)")
    run.add_argument("--limit", action="append", default=[], metavar="KEY=VALUE",
                     help="a limit, e.g. net_send=4MiB/s, processes=32, memory=256MiB")
    run.add_argument("--burst", action="append", default=[], metavar="KEY=SIZE",
                     help="bucket size of a rate limit (default: 0.1 s of the rate)")
    run.add_argument("--on-exhausted", action="append", default=[], metavar="KEY=hold|deny",
                     help="hold (default): the call waits; deny: it fails (EAGAIN, ENOMEM, "
                          "EDQUOT for disk_space and disk_inodes, which only deny)")
    run.add_argument("--policy", metavar="FILE", help="TOML policy file; --limit overrides it")
    run.add_argument("--class", dest="class_file", metavar="FILE",
                     help="a class of service (TOML) whose rates the group shares with the "
                          "other groups of the class")
    run.add_argument("--guarantee", action="append", default=[], metavar="KEY=RATE",
                     help="a rate of the class the group always gets when it asks")
    run.add_argument("--weight", type=float, metavar="W",
                     help="the group's share of what its class lends (default 1)")
    run.add_argument("--stats-json", metavar="FILE", help="write the group's usage here at the end")
    run.add_argument("--backend", choices=list(BACKENDS), default="seccomp",
                     help="how calls are intercepted: seccomp (user notification, default), "
                          "ptrace (seccomp RET_TRACE: only governed calls stop), ptrace-syscall "
                          "(PTRACE_SYSCALL: every call stops; slow)")
    run.add_argument("--metrics", metavar="ADDRESS:PORT",
                     help="serve Prometheus metrics of the group on http://ADDRESS:PORT/metrics")
    run.add_argument("--max-held", type=_count, default=None, metavar="N",
                     help="at most N calls of the group wait at once (held, or for data); a "
                          "call past them fails at once with EAGAIN (ENOMEM for memory) and "
                          "is logged (default 4096): what the supervisor keeps "
                          "per waiting call stays bounded whatever the command does")
    run.add_argument("--disk-area", action="append", default=[], metavar="DIR",
                     help="a directory whose contents count against disk_space and "
                          "disk_inodes (repeatable; a container's area is its rootfs and "
                          "volumes)")
    run.add_argument("--stop-timeout", type=_seconds, default=10.0, metavar="SECONDS",
                     help="after a SIGTERM, which is passed on to the command, kill the whole "
                          "group if the command is still running this much later (default 10)")
    host = run.add_argument_group(
        "daemon", "with --daemon the host's daemon (`governor daemon`) supervises the group: "
        "classes of service are shared with every group of the host, and `governor ps` comes "
        "from the daemon; this command stays the command's parent and keeps its group")
    host.add_argument("--daemon", action="store_true",
                      help="hand the group to the host's daemon (seccomp backend only, no "
                           "processes cap)")
    host.add_argument("--daemon-socket", metavar="PATH",
                      help="the daemon's socket (implies --daemon; default: "
                           "$GOVERNOR_RUN_DIR/daemon.sock, /run/governor/daemon.sock)")
    host.add_argument("--daemon-wait", type=_seconds, default=60.0, metavar="SECONDS",
                      help="if the daemon goes away, wait this long for it to come back (the "
                           "group's governed calls wait meanwhile), then kill the group "
                           "(default 60)")
    box = run.add_argument_group(
        "container", "with --rootfs the group runs in a container: its own root file system, "
        "pid, mount, uts, ipc, net and user namespaces, and uid range (needs --name)")
    box.add_argument("--rootfs", metavar="DIR", help="the container's root directory")
    box.add_argument("--read-only", action="store_true",
                     help="mount the rootfs read-only (its files are left as they are)")
    box.add_argument("--volume", action="append", default=[], metavar="HOSTDIR:PATH",
                     help="bind HOSTDIR at PATH inside, writable (repeatable)")
    box.add_argument("--allow-host-dir", action="store_true",
                     help="let --rootfs or --volume be a system directory of the host (/usr, "
                          "/etc, /var, /home, ...; refused otherwise): unless --read-only, its "
                          "files are shifted into the container's uid range, i.e. given to it")
    box.add_argument("--net", metavar="none|auto|ADDRESS/PREFIX", default=None,
                     help="none (default): own network namespace, loopback only; auto: the next "
                          "free address of the pool ($GOVERNOR_NET_POOL, default 10.88.0.0/16) "
                          "on a veth pair to the host's bridge ($GOVERNOR_BRIDGE, default gov0); "
                          "ADDRESS/PREFIX: that address of the pool")
    box.add_argument("--publish", "-p", action="append", default=[],
                     metavar="HOSTPORT:PORT[/tcp|udp]",
                     help="forward a port of the host's addresses to the container's PORT, as "
                          "podman run -p (repeatable; needs --net auto or an address)")
    box.add_argument("--no-nat", action="store_true",
                     help="do not masquerade the container's traffic to the world (with --net "
                          "auto or an address it is masqueraded by default)")
    box.add_argument("--state-dir", metavar="DIR",
                     help="container registry (default: $GOVERNOR_STATE_DIR or /var/lib/governor)")
    box.add_argument("--allow-syscall", action="append", default=[], metavar="NAME",
                     help="let the container make a system call that its default seccomp "
                          "profile denies, e.g. keyctl (repeatable; policy: [security] allow)")
    run.add_argument("-v", "--verbose", action="count", default=0,
                     help="log more (-v: spawns and denials, -vv: every hold)")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS...")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 <= value < 1e9:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of calls, got {text!r}") from None
    if not 1 <= value < 2**31:
        raise argparse.ArgumentTypeError(f"must be 1 or more (and below 2^31), got {text!r}")
    return value


def _policy(args) -> tuple[Limits, tuple[str, ...]]:
    """The policy file's limits and system call exceptions, with the command
    line's on top."""
    if args.policy:
        from ..policy import read_policy

        base = read_policy(args.policy)
        limits, allow = base.limits, base.allow_syscalls
    else:
        limits, allow = Limits(), ()
    if args.weight is not None and not args.class_file and limits.parent is None:
        raise PolicyError("--weight", None, "needs a class (--class FILE)")
    if args.class_file:
        from ..share import load_class

        parent = load_class(args.class_file)
    else:
        parent = limits.parent
    override = Limits(burst=parse_assignments(args.burst, "--burst"),
                      on_exhausted=parse_assignments(args.on_exhausted, "--on-exhausted"),
                      guarantee=parse_assignments(args.guarantee, "--guarantee"),
                      weight=args.weight, parent=parent,
                      source="--limit", **parse_assignments(args.limit, "--limit"))
    limits = limits.merged(override)
    if unset := limits.unset_bursts():   # the policy file's own are checked already
        key = unset[0]
        raise PolicyError("--burst", key, f"no limit {key} is set (--limit {key}=RATE or the "
                                          "policy's [limits])")
    return limits, allow + tuple(args.allow_syscall)


def _relay(container):
    """A container's stdio relay (governor/cli/_relay.py); a plain group
    keeps the caller's fds."""
    if not container:
        return None
    from ._relay import Relay

    return Relay.for_caller()


def check_writable(path: str, source: str, key: str | None) -> None:
    """A file that is written at the end: its directory must take it."""
    where = os.path.dirname(os.path.abspath(path))
    if not os.access(where, os.W_OK):
        raise PolicyError(source, key, f"cannot write into {where}")


def _container(args, allow_syscalls: tuple[str, ...]):
    """The container the options ask for, checked; None without --rootfs."""
    if not args.rootfs:
        for flag, given in (("--read-only", args.read_only), ("--volume", args.volume),
                            ("--net", args.net), ("--state-dir", args.state_dir),
                            ("--publish", args.publish), ("--no-nat", args.no_nat),
                            ("--allow-host-dir", args.allow_host_dir)):
            if given:
                raise PolicyError(flag, None, "needs --rootfs")
        if allow_syscalls:
            where = ("--allow-syscall", None) if args.allow_syscall else (args.policy,
                                                                          "security.allow")
            raise PolicyError(*where, "needs --rootfs: only containers have a seccomp profile")
        return None
    if args.disk_area:
        raise PolicyError("--disk-area", None, "a container's writable area is its rootfs "
                                               "and volumes")
    if not args.name:
        raise PolicyError("--rootfs", None, "a container needs --name (its hostname and uid range)")
    from ..container import Container, check_name

    check_name(args.name)
    return Container(rootfs=args.rootfs, read_only=args.read_only, volumes=args.volume,
                     net=args.net or "none", state_dir=args.state_dir,
                     allow_syscalls=allow_syscalls, nat=not args.no_nat,
                     publish=args.publish, allow_host_dir=args.allow_host_dir)


def _check_daemon_options(args) -> None:
    if not (args.daemon or args.daemon_socket):
        return
    if args.backend != "seccomp":
        raise PolicyError("--backend", args.backend, "--daemon takes the seccomp backend only: "
                          "a ptrace group's tasks die with their tracer, so they could not "
                          "outlive a restart of the daemon")
    if args.metrics:
        raise PolicyError("--metrics", None, "with --daemon the daemon serves the metrics of "
                                             "every group: governor daemon --metrics ADDRESS:PORT")
    if args.max_held is not None:
        raise PolicyError("--max-held", None, "with --daemon the daemon's engine holds the "
                                              "group's calls, with its own cap")


def _spawn_failed(e: SpawnError, command: str, container: Container | None) -> int:
    if e.step:
        print(f"governor: {e}", file=sys.stderr)
        return 125
    msg = "command not found" if e.errno == 2 else e.strerror
    where = f" in the rootfs {container.rootfs}" if container else ""
    print(f"governor: {command}: {msg}{where}", file=sys.stderr)
    return 127 if e.errno == 2 else 126


def _exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def main(args) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        print("governor run: missing command (governor run [options] -- CMD ARGS...)",
              file=sys.stderr)
        return 2
    try:
        _check_daemon_options(args)
        limits, allow_syscalls = _policy(args)
        # Bad addresses and paths fail before anything starts.
        if args.metrics:
            from ..monitor.metrics import parse_address

            parse_address(args.metrics)
        if args.stats_json:
            check_writable(args.stats_json, "--stats-json", None)
        container = _container(args, allow_syscalls)
        if container:  # before anything is made for it
            container.find_command(cmd[0])
        for d in args.disk_area:
            if not os.path.isdir(d):
                raise PolicyError("--disk-area", d, "is not a directory" if os.path.exists(d)
                                  else "does not exist")
    except PolicyError as e:
        print(f"governor: {e}", file=sys.stderr)
        return 2
    except SpawnError as e:
        return _spawn_failed(e, cmd[0], container)
    name = args.name or os.path.basename(cmd[0]) or "group"
    from ..supervisor import Supervisor

    log = Log("governor")
    log.bind(group=name)
    started = time.monotonic()
    if args.daemon or args.daemon_socket:
        return _run_under_daemon(args, cmd, name, limits, container, log, started)
    held = {} if args.max_held is None else {"max_held": args.max_held}
    with Supervisor(backend=args.backend, engines=1, **held) as sup:   # one group: one engine
        try:
            group = sup.group(name, limits, container=container,
                              disk_area=args.disk_area or None)
        except PolicyError as e:  # e.g. disk_space without a writable area
            print(f"governor: {e}", file=sys.stderr)
            return 2
        metrics = None
        if args.metrics:
            from ..monitor.metrics import serve_metrics

            metrics = serve_metrics(sup, args.metrics)
        relay = _relay(container)
        try:
            try:
                proc = group.spawn(cmd, **(relay.spawn_args() if relay else {}))
            except SpawnError as e:
                return _spawn_failed(e, cmd[0], container)
            if relay:
                relay.started()
            log.bind(pid=proc.pid)
            if args.backend == "seccomp" and not sup.sync_wakeup:
                log.warning("kernel lacks SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: slower round trips")
            log.info("started", argv=cmd, limits=dict(limits.items()))
            stop = _forward_signals(proc)
            _wait(proc, log, stop, args.stop_timeout, _EngineEvents(sup, log), relay)
        finally:
            if relay:
                relay.close()
            if metrics:
                metrics.shutdown()
                metrics.server_close()
        status = _exit_status(proc.returncode)
        _finish(args, log, name, cmd, status, started, group.limits, group.usage().as_dict())
    return status


def _finish(args, log, name: str, cmd: list[str], status: int, started: float, limits,
            usage: dict | None) -> None:
    log.info("exited", status=status, seconds=round(time.monotonic() - started, 3))
    if args.stats_json:
        import json

        report = {"group": name, "command": cmd, "exit_status": status,
                  "seconds": time.monotonic() - started, **limits.as_dict(), "usage": usage}
        with open(args.stats_json, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")


def _run_under_daemon(args, cmd: list[str], name: str, limits, container, log,
                      started: float) -> int:
    """The group is the daemon's to supervise; this process spawns it, stays
    its parent and keeps a duplicate of its listener (governor/daemon)."""
    from .._errors import DaemonError
    from ..daemon.keeper import KeptGroup

    relay = _relay(container)
    try:
        kept = KeptGroup(name, limits, socket_path=args.daemon_socket, container=container,
                         disk_area=args.disk_area or None)
        proc = kept.spawn(cmd, **(relay.spawn_args() if relay else {}))
    except (PolicyError, SpawnError, DaemonError) as e:
        if relay:
            relay.close()
        if isinstance(e, SpawnError):
            return _spawn_failed(e, cmd[0], container)
        print(f"governor: {e}", file=sys.stderr)
        return 2 if isinstance(e, PolicyError) else e.status
    try:
        if relay:
            relay.started()
        log.bind(pid=proc.pid)
        log.info("started", argv=cmd, limits=dict(limits.items()), daemon=kept.daemon_pid)
        stop = _forward_signals(proc)
        _wait(proc, log, stop, args.stop_timeout, _DaemonWatch(kept, proc, log, args.daemon_wait),
              relay)
        status = _exit_status(proc.returncode)
        usage = kept.usage()
        if usage is None and args.stats_json:
            log.warning("the daemon is gone: --stats-json has no usage")
    finally:
        if relay:
            relay.close()
        kept.close()
    _finish(args, log, name, cmd, status, started, kept.limits, usage)
    return status


def _forward_signals(proc) -> list[float]:
    """Passes signals on to the command; returns a list that gets the time
    of every SIGTERM (the stop timeout runs from the first)."""
    stops: list[float] = []

    def forward(sig, _frame):
        if sig == signal.SIGTERM:
            stops.append(time.monotonic())
        proc.send_signal(sig)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    # A terminal sends these to the whole foreground process group, command
    # included; passing them on would deliver them twice.
    for sig in TTY_SIGNALS:
        signal.signal(sig, signal.SIG_IGN if os.isatty(0) else forward)
    return stops


class _EngineEvents:
    """What the wait watches besides the command: the engine's events,
    logged as they come."""

    def __init__(self, sup: Supervisor, log):
        self.sup, self.log = sup, log
        self.capped = False   # a held_cap was logged as a warning

    def _held_cap(self, ev) -> None:
        """A warning the first time, then one line each with -v, as denials."""
        fields = dict(resource=ev.resource, call=ev.call, pid=ev.pid,
                      errno=errno.errorcode.get(ev.value, ev.value))
        if not self.capped:
            self.log.warning("denied a call: the group had max_held calls waiting already "
                             "(--max-held; later ones are logged with -v)", **fields)
            self.capped = True
        else:
            self.log.info("held_cap", **fields)

    def fds(self) -> list[int]:
        return [self.sup.event_fd]

    def timeout(self) -> float | None:
        return None

    def handle(self, ready: list) -> None:
        if self.sup.event_fd not in ready:
            return
        log = self.log
        for ev in self.sup.events():
            if ev.kind == "denied":
                log.info("denied", resource=ev.resource, call=ev.call, pid=ev.pid,
                         errno=errno.errorcode.get(ev.value, ev.value))
            elif ev.kind == "resident_killed":
                log.warning("killed the group's largest process: resident memory over "
                            "memory_resident", pid=ev.pid, rss=ev.value)
            elif ev.kind == "stalled":
                log.warning("calls held on a cap failed: no task of the group could free it "
                            "(every one was held or waited for the others)",
                            resource=ev.resource, used=ev.value,
                            limit=getattr(self.sup.groups[0].limits, ev.resource, None))
            elif ev.kind == "compat_denied":
                log.warning("refused a governed call through the i386/x32 entry",
                            call=ev.call, pid=ev.pid)
            elif ev.kind == "held_cap":
                self._held_cap(ev)
            elif ev.kind in ("held", "released"):
                log.debug(ev.kind, resource=ev.resource, call=ev.call, pid=ev.pid,
                          value=ev.value)


class _DaemonWatch:
    """What the wait watches under --daemon: the connection, whose end says
    the daemon went away; then a new daemon is tried every RETRY seconds,
    and after `wait` seconds without one the group is killed (its governed
    calls cannot go on without a supervisor)."""

    RETRY = 0.1

    def __init__(self, kept, proc, log, wait: float):
        self.kept, self.proc, self.log, self.wait = kept, proc, log, wait

    def fds(self) -> list[int]:
        return [self.kept.fileno()] if self.kept.conn else []

    def timeout(self) -> float | None:
        return None if self.kept.conn else self.RETRY

    def handle(self, ready: list) -> None:
        from .._errors import DaemonError

        kept = self.kept
        if kept.conn and kept.fileno() in ready and not kept.check():
            self.log.warning("the daemon went away: the group's governed calls wait for the "
                             "next one", wait=self.wait)
        if kept.conn:
            return
        try:
            resumed = kept.reconnect()
        except DaemonError as e:
            self.log.error("the new daemon refused the group: killing it", error=str(e))
            self.proc.kill()
            return
        if resumed is not None:
            self.log.warning("the group is back under a daemon", daemon=kept.daemon_pid,
                             calls_taken_over=resumed)
        elif time.monotonic() - kept.lost_at > self.wait:
            self.log.error("no daemon came back: killing the group", waited=self.wait)
            self.proc.kill()


def _wait(proc, log, stops: list[float], stop_timeout: float, watch, relay=None) -> None:
    """Waits for the command and what `watch` watches (no polling),
    relaying a container's stdio meanwhile and what is left of it after."""
    # A signal may land on another thread of this process; the wakeup fd makes
    # the wait return so that its handler (which forwards it) runs at once.
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    try:
        _wait_loop(proc, log, wake_r, stops, stop_timeout, watch, relay)
        if relay:
            relay.drain(DRAIN_SECONDS)
    finally:
        signal.set_wakeup_fd(old)
        os.close(wake_r)
        os.close(wake_w)


def _wait_loop(proc, log, wake_r, stops: list[float], stop_timeout: float, watch,
               relay) -> None:
    while proc.returncode is None:
        # As `docker stop`: SIGTERM, then the whole group is killed if the
        # command is still there (it may block or ignore SIGTERM).
        left = stops[0] + stop_timeout - time.monotonic() if stops else None
        if left is not None and left <= 0:
            log.warning("the command did not exit after SIGTERM: killing the group",
                        stop_timeout=stop_timeout)
            proc.kill()
            break
        timeout = watch.timeout()
        if left is not None:
            timeout = left if timeout is None else min(left, timeout)
        ready, writable = wait_ready(
            [proc.status_fd, wake_r, *watch.fds(), *(relay.readers() if relay else ())],
            relay.writers() if relay else [], timeout)
        if wake_r in ready:
            try:
                os.read(wake_r, 64)
            except BlockingIOError:
                pass
        watch.handle(ready)
        if relay:
            relay.handle(ready, writable)
        if proc.status_fd in ready:
            proc.wait()
