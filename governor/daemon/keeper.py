"""The keeper's side: a group that this process spawns and keeps, while the
host's daemon supervises its calls (`governor run --daemon`, or a program
that keeps many groups).

The keeper builds the group's filter, spawns the command paused (its init
shim is the keeper's child, as under `governor run` alone), hands the
listener to the daemon and lets the command run once the daemon has it. It
keeps its own duplicate of the listener for the group's life: if the
daemon dies, the calls waiting in the listener wait on, and `reconnect()`
hands it to the next daemon with resume=True.
"""
from __future__ import annotations

import errno
import os
import socket
import time
from pathlib import Path
from typing import Mapping, Sequence

from .. import _native
from .._errors import DaemonError, PolicyError, SpawnError, check
from ..container import Container
from ..limits import Limits
from ..supervisor import (Process, _check_area, _with_class_ceilings, filter_program,
                          spawn_command, traces_clones)
from . import default_socket, wire

lib = _native.lib
TRACED = ("a processes cap has the supervisor trace the group's clone calls, and traced tasks "
          "die with their tracer (PTRACE_O_EXITKILL): the group would not outlive a restart "
          "of the daemon; run it without --daemon")


class KeptGroup:
    """A group whose calls the daemon at socket_path (default:
    $GOVERNOR_RUN_DIR/daemon.sock) answers. DaemonError if there is none,
    or it refuses this process."""

    def __init__(self, name: str, limits: Limits | None = None, *,
                 socket_path: str | os.PathLike | None = None,
                 container: Container | None = None,
                 disk_area: Sequence[str | os.PathLike] | None = None):
        self.name, self.container = name, container
        self.limits = _with_class_ceilings(limits or Limits())
        wire.limits_to_wire(self.limits)   # a class not from a file: fail before anything
        if traces_clones(self.limits, "seccomp"):
            raise PolicyError(f"group {name!r}", "processes", TRACED)
        self.area = _check_area(name, self.limits,
                                container.writable_paths if container else disk_area)
        self.path = Path(socket_path or default_socket())
        self.proc: Process | None = None
        self.interface: str | None = None
        self.listener = -1
        self.lost_at: float | None = None   # when the daemon went away
        self.daemon_pid = 0
        self.conn: socket.socket | None = self._connect()

    def _connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            s.connect(str(self.path))
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            raise DaemonError(f"no daemon answers on {self.path} (start one with "
                              "`governor daemon`)") from None
        except OSError as e:
            s.close()
            raise DaemonError(f"{self.path}: {e.strerror or e}") from None
        return s

    def _request(self, msg: dict, fds=()) -> dict:
        if self.conn is None:
            raise DaemonError("the daemon is gone")
        try:
            wire.send(self.conn, msg, fds)
            answer, _ = wire.recv(self.conn)
        except OSError as e:
            answer = None
            if e.errno not in (None, errno.EPIPE, errno.ECONNRESET):   # it went away
                raise DaemonError(f"the daemon: {e.strerror or e}") from None
        if answer is None:
            self._lost()
            raise DaemonError("the daemon went away")
        if "error" in answer:
            raise DaemonError(f"daemon: {answer['error']}", answer.get("status", 125))
        return answer

    def _adopt(self, init: int, cmd: int, argv: Sequence[str], resume: bool) -> int | None:
        answer = self._request({
            "op": "adopt", "name": self.name, "limits": wire.limits_to_wire(self.limits),
            "init": init, "cmd": cmd, "argv": wire.shown_argv(argv), "disk_area": self.area,
            "interface": self.interface, "resume": resume}, [self.listener])
        self.daemon_pid = answer.get("daemon", 0)
        return answer.get("resumed")

    def spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
              cwd: str | None = None, stdin=None, stdout=None, stderr=None,
              console: tuple[int, int] = (-1, 0)) -> Process:
        """Starts argv as the group's command, as Group.spawn() does, and
        hands its calls to the daemon before it runs."""
        if self.proc is not None:
            raise DaemonError(f"group {self.name!r} has its command already", status=2)
        box = self.container
        rules = box.seccomp_rules() if box else None
        program = filter_program(self.limits, box is not None, "seccomp", rules)
        if box:
            box.claim(self.name)
        try:
            res = spawn_command(argv, program, container=box, name=self.name, env=env, cwd=cwd,
                                stdio=(stdin, stdout, stderr), paused=True, console=console)
        except BaseException:
            self.close()
            raise
        self.listener = res.listener
        proc = Process(None, res.cmd_pid, res.init_pid, res.status_fd, res.exec_fd, argv)
        try:
            if box:
                self.interface = box.start_network(res.init_pid)
            self._adopt(res.init_pid, res.cmd_pid, argv, resume=False)
            check(lib.gov_spawn_go(res, 1), "start the command")
        except BaseException:
            if res.go_fd >= 0:
                lib.gov_spawn_go(res, 0)   # it exits without running
            proc.kill()
            os.close(res.exec_fd)
            self.close()
            raise
        proc.read_exec_result()
        self.proc = proc
        if proc.exec_errno:
            proc.wait()
            raise SpawnError(proc.exec_errno, argv[0])
        return proc

    # ---- the daemon coming and going ----

    def fileno(self) -> int | None:
        """The connection to watch for the daemon's end (None: it is gone)."""
        return self.conn.fileno() if self.conn else None

    def check(self) -> bool:
        """Call when fileno() is readable: False if the daemon went away."""
        try:
            data = self.conn.recv(wire.MESSAGE_MAX, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if not data:
            self._lost()
        return self.conn is not None

    def _lost(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
            self.lost_at = time.monotonic()

    def reconnect(self) -> int | None:
        """Hands the group to a daemon that came back: the number of calls it
        re-adopted, or None while no daemon answers. DaemonError if the new
        daemon refuses the group."""
        try:
            self.conn = self._connect()
        except DaemonError:
            return None
        try:
            resumed = self._adopt(self.proc.init_pid, self.proc.pid, self.proc.argv, resume=True)
        except DaemonError:
            if self.conn is None:
                return None   # it went away again
            raise
        self.lost_at = None
        return resumed or 0

    def usage(self) -> dict | None:
        """The group's usage (Usage.as_dict()), None if the daemon is gone."""
        try:
            return self._request({"op": "usage"})["usage"]
        except DaemonError:
            return None

    def close(self) -> None:
        """The group is over: the daemon forgets it; the listener, the
        connection and the container's claim go."""
        if self.conn is not None:
            try:
                self._request({"op": "close"})
            except DaemonError:
                pass
            if self.conn is not None:
                self.conn.close()
                self.conn = None
        if self.listener >= 0:
            os.close(self.listener)
            self.listener = -1
        if self.container:
            self.container.release()
