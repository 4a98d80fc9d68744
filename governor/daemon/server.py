"""`governor daemon`: one Supervisor for every group that keepers on this host
hand it (governor/daemon/__init__.py has the picture).

The daemon's loop is one thread: the socket, a connection per group, the
engines' event fd. Requests are short (make a group, read its usage), so
they are answered in turn. Only root, or members of a configured group,
may connect (SO_PEERCRED); a group's init must be the connecting process's
child, so nobody can point the daemon at processes that are not theirs.
"""
from __future__ import annotations

import fcntl
import grp
import json
import logging
import os
import resource
import selectors
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from .. import _proc
from .._errors import DaemonError, GovernorError, PolicyError
from ..supervisor import Group, Supervisor
from . import default_records, default_socket, wire

log = logging.getLogger(__name__)
BACKLOG = 512
REFUSED_MAX = 64    # refused connections waiting for their request
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


@dataclass
class Member:
    """A group the daemon supervises for a keeper, over one connection."""
    conn: socket.socket
    group: Group
    keeper: int
    stem: str          # its record files: STEM.keep (native/keep.h), STEM.json (who it is)


def _status_field(pid: int, key: str) -> str | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _raise_fd_limit() -> None:
    """A group costs the daemon two fds (its listener, its keeper's
    connection), and more while its calls are classified: take the hard
    limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Daemon:
    """socket_path, records: see governor/daemon/__init__.py; unix_group: a
    group whose members may connect besides root; engines: as Supervisor's.
    DaemonError if another daemon has these records or this socket."""

    def __init__(self, socket_path: str | os.PathLike | None = None,
                 records: str | os.PathLike | None = None, unix_group: str | None = None,
                 engines: int | None = None):
        self.path = Path(socket_path or default_socket())
        self.records = Path(records or default_records())
        self.gid = None
        if unix_group is not None:
            try:
                self.gid = grp.getgrnam(unix_group).gr_gid
            except KeyError:
                raise PolicyError("--group", None, f"no such group {unix_group!r}") from None
        if len(os.fsencode(self.path)) > 107:
            raise PolicyError("--socket", None, f"{self.path} is longer than a unix socket "
                                                "path may be (107 bytes)")
        self.records.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = open(self.records / "lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise DaemonError(f"another daemon keeps its groups in {self.records}") from None
        self.classes: dict = {}                   # class file -> Class, shared by its groups
        self.members: dict[int, Member] = {}      # connection fd -> member
        self.refused: dict[int, socket.socket] = {}   # fd -> a connection refused, not yet asked
        self.stopping = False
        try:
            self.waiting = self._sweep()
            _raise_fd_limit()
            self.sup = Supervisor(engines=engines)
        except BaseException:
            self._lock.close()
            raise
        self.sel = selectors.DefaultSelector()
        # Before the socket answers: whoever sees it may stop the daemon.
        self._signals = self._catch_signals()
        try:
            self.server = self._listen()
        except BaseException:
            self._release_signals()
            self.sel.close()
            self.sup.close()
            self._lock.close()
            raise
        self.sel.register(self.server, selectors.EVENT_READ, self._accept)
        self.sel.register(self.sup.event_fd, selectors.EVENT_READ, self._events)
        log.info("daemon on %s, records in %s, %d engines", self.path, self.records,
                 self.sup.engines)

    # ---- set-up ----

    def _listen(self) -> socket.socket:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            probe.connect(str(self.path))
            raise DaemonError(f"another daemon answers on {self.path}")
        except (FileNotFoundError, ConnectionRefusedError):
            pass   # none, or a socket left by a daemon that was killed
        finally:
            probe.close()
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        server.bind(str(self.path))
        if self.gid is not None:
            os.chown(self.path, -1, self.gid)
        os.chmod(self.path, 0o660 if self.gid is not None else 0o600)
        server.listen(BACKLOG)
        server.setblocking(False)
        return server

    def _sweep(self) -> dict[str, str]:
        """Record files of a daemon before this one: those of groups that
        still run wait for their keepers (name -> stem); the others go."""
        waiting = {}
        for side in self.records.glob("*.json"):
            stem = side.stem
            try:
                name = json.loads(side.read_text())["name"]
            except (OSError, ValueError, KeyError, TypeError):
                name = None
            if name is not None and self._alive(stem):
                waiting[name] = stem
            else:
                self._remove_records(stem)
        for keep in self.records.glob("*.keep"):
            if keep.stem not in waiting.values():
                keep.unlink(missing_ok=True)
        return waiting

    @staticmethod
    def _alive(stem: str) -> bool:
        pid, _, start = stem.partition("-")     # STEM is PID-START (_proc.Identity)
        return pid.isdigit() and start.isdigit() and _proc.alive(int(pid), int(start))

    def _remove_records(self, stem: str) -> None:
        for suffix in (".keep", ".json"):
            (self.records / (stem + suffix)).unlink(missing_ok=True)

    # ---- the loop ----

    def _catch_signals(self) -> tuple:
        """SIGTERM and SIGINT stop serve(). They are unblocked here: a mask
        inherited from whatever started the daemon would leave it deaf to
        them (engine threads block every signal, so this thread gets them)."""
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        old_fd = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        handlers = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        old_mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        self.sel.register(wake_r, selectors.EVENT_READ, lambda _s: wake_r.recv(64))
        return wake_r, wake_w, old_fd, handlers, old_mask

    def _release_signals(self) -> None:
        wake_r, wake_w, old_fd, handlers, old_mask = self._signals
        self.sel.unregister(wake_r)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        for sig, h in handlers.items():
            signal.signal(sig, h)
        signal.set_wakeup_fd(old_fd)
        wake_r.close()
        wake_w.close()

    def serve(self) -> None:
        """Until SIGTERM or SIGINT: then the daemon goes (close()), and its
        groups wait for the next one (their keepers hold their listeners)."""
        while not self.stopping:
            for key, _ in self.sel.select():
                key.data(key.fileobj)

    def _on_signal(self, sig, _frame) -> None:
        self.stopping = True

    def close(self) -> None:
        """Leaves every group to the next daemon: connections close (keepers
        wait), record files stay."""
        for m in list(self.members.values()):
            self.sel.unregister(m.conn)
            m.conn.close()
        self.members.clear()
        for conn in list(self.refused.values()):
            self._forget_refused(conn)
        self._release_signals()
        self.sel.close()
        self.sup.close()
        self.server.close()
        self.path.unlink(missing_ok=True)
        self._lock.close()

    def _accept(self, server: socket.socket) -> None:
        try:
            conn, _ = server.accept()
        except BlockingIOError:
            return
        pid, uid, gid = wire.peer(conn)
        if not self._allowed(pid, uid, gid):
            self._refuse(conn, uid)
            return
        conn.setblocking(True)
        conn.settimeout(5)   # a keeper that sends half a request does not stall the others
        self.sel.register(conn, selectors.EVENT_READ, self._request)

    def _refuse(self, conn: socket.socket, uid: int) -> None:
        """Answers the refusal at once, and closes the connection only once
        its request is read (or it closed): closed earlier, the client's send
        fails with EPIPE, or its read with ECONNRESET, before it sees why."""
        who = f"uid {uid}" + (f" (not in group {grp.getgrgid(self.gid).gr_name})"
                              if self.gid is not None else "")
        conn.setblocking(False)
        self._answer(conn, {"error": f"the daemon serves root only: permission denied for "
                                     f"{who}", "status": 125})
        if len(self.refused) >= REFUSED_MAX:   # clients that never ask: the oldest goes
            self._forget_refused(next(iter(self.refused.values())))
        self.refused[conn.fileno()] = conn
        self.sel.register(conn, selectors.EVENT_READ, self._forget_refused)

    def _forget_refused(self, conn: socket.socket) -> None:
        try:
            conn.recv(wire.MESSAGE_MAX)   # its request (fds sent with it are dropped)
        except OSError:
            pass
        self.sel.unregister(conn)
        del self.refused[conn.fileno()]
        conn.close()

    def _allowed(self, pid: int, uid: int, gid: int) -> bool:
        if uid == 0 or self.gid is None:
            return uid == 0
        groups = (_status_field(pid, "Groups") or "").split()
        return gid == self.gid or str(self.gid) in groups

    @staticmethod
    def _answer(conn: socket.socket, msg: dict) -> None:
        try:
            wire.send(conn, msg)
        except OSError:
            pass   # the keeper is gone: its connection's end says so

    def _request(self, conn: socket.socket) -> None:
        member = self.members.get(conn.fileno())
        try:
            msg, fds = wire.recv(conn, 1)
        except (OSError, DaemonError) as e:
            msg, fds = {"op": "?", "error": str(e)}, []
        if msg is None:      # the keeper closed: its group is over
            self._drop(conn)
            return
        op = msg.get("op")
        try:
            if op == "adopt" and member is None:
                answer = self._adopt(conn, msg, fds)
                fds = []
            elif op == "usage" and member is not None:
                answer = {"usage": member.group.usage().as_dict()}
            elif op == "close" and member is not None:
                self._answer(conn, {"ok": True})
                self._drop(conn)
                return
            else:
                answer = {"error": msg.get("error") or f"unexpected request {op!r}", "status": 2}
        except DaemonError as e:
            answer = {"error": str(e), "status": e.status}
        except PolicyError as e:
            answer = {"error": str(e), "status": 2}
        except GovernorError as e:
            answer = {"error": str(e), "status": 125}
        finally:
            for fd in fds:
                os.close(fd)
        self._answer(conn, answer)

    def _drop(self, conn: socket.socket) -> None:
        self.sel.unregister(conn)
        member = self.members.pop(conn.fileno(), None)
        conn.close()
        if member is None:
            return
        member.group.close()
        self._remove_records(member.stem)
        # A class file no group uses is read again next time: it may have changed.
        used = {c.file for m in self.members.values() if m.group.limits.parent is not None
                for c in m.group.limits.parent.path()}
        self.classes = {f: c for f, c in self.classes.items() if f in used}

    # ---- adopting a group ----

    def _adopt(self, conn: socket.socket, msg: dict, fds: list[int]) -> dict:
        """Makes the keeper's group, with its listener (fds[0], which the
        engine takes over)."""
        name, init, cmd = msg.get("name"), msg.get("init"), msg.get("cmd")
        resume = bool(msg.get("resume"))
        if len(fds) != 1 or not isinstance(name, str) or not name \
                or not isinstance(init, int) or not isinstance(cmd, int):
            raise DaemonError("adopt: needs a name, the init's and the command's pids and "
                              "the listener", status=2)
        keeper = wire.peer(conn)[0]
        if _status_field(init, "PPid") != str(keeper) or _status_field(cmd, "PPid") != str(init):
            raise DaemonError(f"adopt: process {init} is not the connecting process's child, "
                              f"or {cmd} is not its", status=2)
        stem = f"{init}-{_proc.start_ticks(init)}"
        if name in self.sup._groups:
            raise DaemonError(f"a group {name!r} runs under the daemon already", status=2)
        other = self.waiting.get(name)
        if other and other != stem and self._alive(other):
            raise DaemonError(f"a group {name!r} runs under the daemon already (its keeper has "
                              "not come back since the daemon restarted)", status=2)
        limits = wire.limits_from_wire(msg.get("limits"), f"group {name!r}", self.classes)
        group = self.sup.group(name, limits, disk_area=msg.get("disk_area") or None)
        res = SimpleNamespace(init_pid=init, cmd_pid=cmd, listener=fds[0], status_fd=-1,
                              exec_fd=-1, resumed=0)
        try:
            resumed = group.keep(str(self.records / f"{stem}.keep"), resume=resume)
            (self.records / f"{stem}.json").write_text(json.dumps(
                {"name": name, "keeper": keeper, "argv": msg.get("argv", [])}))
            fds.clear()   # the engine's now, even if adopt fails
            group.adopt(res, wire.shown_argv(msg.get("argv", [])), resume=resumed)
            if msg.get("interface"):
                group.attach_interface(msg["interface"])
        except BaseException:
            group.close()
            self._remove_records(stem)
            raise
        self.waiting.pop(name, None)
        self.members[conn.fileno()] = Member(conn, group, keeper, stem)
        if resumed:
            log.info("group %s is back (keeper %d): %d waiting calls re-adopted", name, keeper,
                     res.resumed)
        return {"ok": True, "daemon": os.getpid(), "resumed": res.resumed if resumed else None}

    # ---- events ----

    def _events(self, _fd) -> None:
        for ev in self.sup.events():
            if ev.kind == "denied":
                log.info("group %s: %s denied (%s) pid %d", ev.group, ev.call, ev.resource,
                         ev.pid)
            elif ev.kind == "stalled":
                log.warning("group %s: calls held on %s failed: no task could free it",
                            ev.group, ev.resource)
            elif ev.kind == "resident_killed":
                log.warning("group %s: killed pid %d, resident memory over the limit",
                            ev.group, ev.pid)
            elif ev.kind == "events_lost":
                log.warning("engine events were lost (too many at once)")

