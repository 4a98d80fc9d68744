"""governor-oci: an OCI runtime with runc's command line, whose containers
run under the governor (limits enforced at the system calls, no cgroups).

    governor-oci [--root DIR] [--log FILE] [--log-format text|json] COMMAND ...

Exit status: 0, 1 when the command failed, 2 for bad options or a bad
config.json; `run` and `exec` return the container process's status. Errors
go to stderr and, with --log, to the log file (as runc writes them, so that
podman and containerd show them)."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from .._errors import GovernorError, PolicyError
from ..inputfile import read_text

# Global flags that podman and containerd's shim pass, which mean something
# only with cgroups or other runtimes: accepted, ignored, logged.
_IGNORED_FLAGS = ("--systemd-cgroup", "--rootless", "--criu", "--cgroup-manager", "--debug",
                  "--log-level")


class RuntimeLog:
    """runc's log: one line per message, JSON ({"level", "msg", "time"}) or
    text, to --log; warnings and errors to stderr too."""

    def __init__(self, path: str | None, fmt: str):
        self.path, self.fmt = path, fmt

    def _write(self, level: str, msg: str, **extra) -> None:
        if not self.path:
            return
        import datetime

        now = datetime.datetime.now(datetime.timezone.utc).isoformat()
        if self.fmt == "json":
            line = json.dumps({"level": level, "msg": msg, "time": now, **extra})
        else:
            fields = "".join(f" {k}={json.dumps(v)}" for k, v in extra.items())
            line = f"time={json.dumps(now)} level={level} msg={json.dumps(msg)}{fields}"
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass

    def info(self, msg: str, **extra) -> None:
        self._write("info", msg, **extra)

    def warning(self, msg: str, **extra) -> None:
        self._write("warning", msg, **extra)

    def error(self, msg: str, **extra) -> None:
        self._write("error", msg, **extra)


def parse_signal(text: str) -> int:
    """"KILL", "SIGKILL", "9" -> 9."""
    if text.isdigit():
        n = int(text)
        if 0 < n < signal.NSIG:
            return n
    else:
        name = text.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        if hasattr(signal.Signals, name):
            return int(signal.Signals[name])
    raise PolicyError("kill", None, f"unknown signal {text!r}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="governor-oci", description="An OCI runtime (runc's command line) whose containers "
        "run under the governor: limits from linux.resources and org.governor.* annotations, "
        "enforced at the system calls, without cgroups.")
    p.add_argument("--root", help="state directory (default /run/governor-oci)")
    p.add_argument("--log", help="log file (runc's format)")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    for flag in _IGNORED_FLAGS:
        if flag in ("--cgroup-manager", "--log-level", "--criu", "--rootless"):
            p.add_argument(flag, nargs="?", const=True, help="accepted, ignored")
        else:
            p.add_argument(flag, action="store_true", help="accepted, ignored (no cgroups)")
    sub = p.add_subparsers(dest="command", required=True)

    def with_id(name: str, help_: str):
        c = sub.add_parser(name, help=help_)
        c.add_argument("id")
        return c

    for name in ("create", "run"):
        c = with_id(name, "create a container" if name == "create" else
                    "create and start a container, wait for it, delete it")
        c.add_argument("--bundle", "-b", default=".")
        c.add_argument("--console-socket")
        c.add_argument("--pid-file")
        for flag in ("--no-pivot", "--no-new-keyring"):
            c.add_argument(flag, action="store_true", help="accepted, ignored")
        c.add_argument("--preserve-fds", type=int, default=0)
        if name == "run":
            c.add_argument("--detach", "-d", action="store_true")
            c.add_argument("--keep", action="store_true", help="do not delete it when it ends")
    with_id("start", "start a created container")
    with_id("state", "print the container's OCI state")
    c = with_id("kill", "send a signal to the container's process")
    c.add_argument("signal", nargs="?", default="SIGTERM")
    c.add_argument("--all", "-a", action="store_true", help="to every process of the container")
    c = with_id("delete", "delete a stopped (or with --force any) container")
    c.add_argument("--force", "-f", action="store_true")
    c = with_id("exec", "run a process in a running container")
    c.add_argument("--process", "-p", help="process.json (an OCI process object)")
    c.add_argument("--detach", "-d", action="store_true")
    c.add_argument("--tty", "-t", action="store_true")
    c.add_argument("--console-socket")
    c.add_argument("--pid-file")
    c.add_argument("--cwd")
    c.add_argument("--env", "-e", action="append", default=[])
    c.add_argument("--user", "-u", help="UID[:GID]")
    c.add_argument("--additional-gids", "-g", action="append", default=[], type=int)
    c.add_argument("--cap", "-c", action="append", default=[])
    c.add_argument("--no-new-privs", action="store_true")
    c.add_argument("--preserve-fds", type=int, default=0)
    for flag in ("--process-label", "--apparmor", "--cgroup"):
        c.add_argument(flag, help="accepted, ignored")
    c.add_argument("--ignore-paused", action="store_true")
    c.add_argument("args", nargs=argparse.REMAINDER)
    c = with_id("ps", "list the container's processes")
    c.add_argument("--format", "-f", choices=("table", "json"), default="table")
    c.add_argument("ps_args", nargs=argparse.REMAINDER)
    with_id("pause", "stop every process of the container (SIGSTOP: no freezer)")
    with_id("resume", "continue a paused container")
    sub.add_parser("features", help="what this runtime supports (JSON)")
    c = sub.add_parser("spec", help="write a default config.json")
    c.add_argument("--bundle", "-b", default=".")
    c.add_argument("--rootless", action="store_true")
    c = sub.add_parser("list", help="list containers")
    c.add_argument("--format", "-f", choices=("table", "json"), default="table")
    c.add_argument("--quiet", "-q", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    log = RuntimeLog(args.log, args.log_format)
    for flag in _IGNORED_FLAGS:
        if getattr(args, flag[2:].replace("-", "_"), None):
            log.info(f"{flag} ignored: governor-oci uses no cgroups")
    try:
        return _dispatch(args, log)
    except PolicyError as e:
        return _fail(log, str(e), 2)
    except GovernorError as e:
        return _fail(log, str(e), 1)


def _fail(log: RuntimeLog, msg: str, code: int) -> int:
    log.error(msg)
    print(f"governor-oci: {msg}", file=sys.stderr)
    return code


def _dispatch(args, log: RuntimeLog) -> int:
    from .state import Store

    store = Store(args.root)
    cmd = args.command
    if cmd == "features":
        from .spec import features
        print(json.dumps(features(), indent=2))
        return 0
    if cmd == "spec":
        from .spec import write_default
        write_default(args.bundle, args.rootless)
        return 0
    if cmd == "state":
        print(json.dumps(store.load(args.id).oci(), indent=2))
        return 0
    if cmd == "list":
        states = [store.load(i) for i in store.ids()]
        if args.quiet:
            print("\n".join(s.id for s in states))
        elif args.format == "json":
            print(json.dumps([s.oci() for s in states]))
        else:
            print("ID\tPID\tSTATUS\tBUNDLE\tCREATED")
            for s in states:
                o = s.oci()
                print(f"{s.id}\t{o['pid']}\t{o['status']}\t{s.bundle}\t{s.created}")
        return 0
    from . import runtime
    if getattr(args, "preserve_fds", 0):
        raise PolicyError("--preserve-fds", None, "passing extra fds to the container is not "
                          "supported yet")
    if cmd in ("create", "run"):
        created = runtime.create(store, args.id, args.bundle, args.pid_file, args.console_socket,
                                 log)
        if cmd == "create":
            os.close(created.status_fd)
            return 0
        runtime.start(store, args.id, log)
        if args.detach:
            os.close(created.status_fd)
            return 0
        status = runtime.wait_init(created)
        if not args.keep:
            runtime.delete(store, args.id, True, log)
        return status
    if cmd == "start":
        runtime.start(store, args.id, log)
    elif cmd == "kill":
        runtime.kill(store, args.id, parse_signal(args.signal), args.all)
    elif cmd == "delete":
        from .state import NotFound
        try:
            runtime.delete(store, args.id, args.force, log)
        except NotFound:
            if not args.force:
                raise
    elif cmd in ("pause", "resume"):
        runtime.pause(store, args.id, cmd == "pause")
    elif cmd == "ps":
        st = store.load(args.id)
        pids = runtime.pids(st)
        if args.format == "json":
            print(json.dumps(pids))
        else:
            print("PID")
            print("\n".join(map(str, pids)))
    elif cmd == "exec":
        return _exec(store, args, runtime)
    return 0


def _exec(store, args, runtime) -> int:
    from . import config

    st = store.load(args.id)
    if args.process:
        source = args.process
        try:
            doc = json.loads(read_text(source))
        except (ValueError, RecursionError) as e:
            raise PolicyError(source, None, f"not valid JSON: {e}") from None
        process = config.parse_process(doc, source)
    else:
        source = "exec"
        base = config.load(st.bundle).process
        cmd = args.args[1:] if args.args[:1] == ["--"] else args.args
        if not cmd:
            raise PolicyError("exec", None, "needs a command or --process")
        base.args = cmd
        base.env = base.env + args.env
        base.cwd = args.cwd or base.cwd
        base.terminal = args.tty
        if args.user:
            uid, _, gid = args.user.partition(":")
            base.uid, base.gid = int(uid), int(gid or 0)
        base.groups = base.groups + args.additional_gids
        base.no_new_privs = base.no_new_privs or args.no_new_privs
        if args.cap and base.caps:
            base.caps = {k: tuple(dict.fromkeys(v + tuple(args.cap))) if k != "ambient" else v
                         for k, v in base.caps.items()}
        process = base
    return runtime.exec_process(store, args.id, process, args.console_socket, args.pid_file,
                                args.detach, source)


if __name__ == "__main__":
    sys.exit(main())
