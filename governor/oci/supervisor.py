"""The per-container supervisor: forked by `governor-oci create`, it outlives
it (as conmon's runtime does, or runsc's sandbox) and holds the engine and
the container's seccomp listener for the container's whole life.

    create ── gov_spawn (init, paused) ── fork ──> this supervisor
                                                     engine, group, listener
                                                     ROOT/ID/sock: start, adopt (exec)
    the container's init ── its lifeline pipe ──────── held here

The init is not its child (it is the caller's, as runc's init is): the
caller (conmon, containerd's shim) reaps it and reads its exit status. The
supervisor learns of the end from the init's status pipe, records it in
state.json and exits. If the supervisor is killed, the lifeline's write end
closes and the init kills the container: it fails closed.

Requests on ROOT/ID/sock (SOCK_SEQPACKET, one JSON message, fds as
SCM_RIGHTS): {"op": "start"}, {"op": "adopt", "init": PID, "cmd": PID}
with the listener of an `exec`'d process. Answers: {"ok": true} or
{"error": "..."}."""
from __future__ import annotations

import json
import os
import socket
from types import SimpleNamespace

from .. import _native, _proc
from .._errors import GovernorError
from .._readable import readable
from ..limits import Limits
from ..supervisor import Supervisor
from . import hooks
from .client import REQUEST_MAX, ShortPath
from .state import State, Store

ffi, lib = _native.ffi, _native.lib


class ContainerSupervisor:
    def __init__(self, store: Store, st: State, res, limits: Limits, argv: list[str],
                 disk_area: list[str], start_hooks: list, log):
        self.store, self.st, self.res, self.argv, self.log = store, st, res, argv, log
        self.start_hooks = start_hooks
        self.sup = Supervisor(engines=1)   # one group: one engine thread
        self.group = self.sup.group(st.id, limits, disk_area=disk_area or None)
        self.proc = self.group.adopt(res, argv)
        self.execs: dict[int, int] = {}   # pidfd -> exec'd init
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        with ShortPath(store.dir(st.id)) as path:
            self.server.bind(path)
        self.server.listen(8)

    def run(self) -> None:
        """Until the container's command ends."""
        try:
            while self.proc.returncode is None:
                watched = [self.server, self.proc.status_fd, *self.execs]
                ready = readable(watched)
                if self.proc.status_fd in ready:
                    self.proc.wait()
                    break
                for fd in ready:
                    if fd in self.execs:
                        self.group.forget_init(self.execs.pop(fd))
                        os.close(fd)
                if self.server in ready:
                    self._serve_one()
        finally:
            self._finish()

    def _finish(self) -> None:
        code = self.proc.returncode
        try:
            st = self.store.load(self.st.id)
            st.status = "stopped"
            st.exit_status = 128 - code if code is not None and code < 0 else code
            self.store.save(st)
        except (GovernorError, OSError):
            pass   # deleted with --force meanwhile: nothing to record
        self.server.close()
        self.sup.close()
        for fd in self.execs:
            os.close(fd)
        self.log.info("container stopped", id=self.st.id, status=code)

    def _serve_one(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            conn.settimeout(30)
            try:
                data, fds, _, _ = socket.recv_fds(conn, REQUEST_MAX, 4)
                msg = json.loads(data)
                op = msg.get("op")
                if op == "start":
                    answer = self._start()
                elif op == "adopt":
                    answer = self._adopt(msg, fds)
                else:
                    answer = {"error": f"unknown request {op!r}"}
            except (OSError, ValueError, GovernorError) as e:
                answer = {"error": str(e)}
            try:
                conn.send(json.dumps(answer).encode())
            except OSError:
                pass

    def _start(self) -> dict:
        st = self.store.load(self.st.id)
        if st.status != "created" or self.res.go_fd < 0:
            return {"error": f"cannot start a container that is {st.current_status()}"}
        try:
            hooks.run_in_container(self.start_hooks, "startContainer", st, self.st.pid)
        except GovernorError as e:
            return {"error": str(e)}
        lib.gov_spawn_go(self.res, 1)
        self.proc.read_exec_result()
        if self.proc.exec_errno:
            return {"error": f"exec {self.argv[0]}: {os.strerror(self.proc.exec_errno)}"}
        st.status = "running"
        self.store.save(st)
        return {"ok": True}

    def _adopt(self, msg: dict, fds: list[int]) -> dict:
        if len(fds) != 1 or not isinstance(msg.get("init"), int):
            for fd in fds:
                os.close(fd)
            return {"error": "adopt: needs the init's pid and one listener"}
        init = msg["init"]
        res = SimpleNamespace(init_pid=init, cmd_pid=msg.get("cmd", 0), listener=fds[0],
                              status_fd=-1, exec_fd=-1)
        pidfd = os.pidfd_open(init)
        self.group.adopt(res, [])
        self.execs[pidfd] = init
        return {"ok": True}


def serve(store: Store, st: State, res, limits: Limits, argv: list[str], disk_area: list[str],
          start_hooks: list, ready_w: int, log) -> None:
    """The supervisor's process (a fork of create): never returns."""
    code = 0
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        cs = ContainerSupervisor(store, st, res, limits, argv, disk_area, start_hooks, log)
        st.status = "created"
        st.supervisor_pid, st.supervisor_start = _proc.identity()
        store.save(st)
        os.write(ready_w, b"ok")
        os.close(ready_w)
        cs.run()
    except BaseException as e:   # the parent reports it; nothing may escape a fork
        try:
            os.write(ready_w, f"supervisor: {e}".encode())
        except OSError:
            log.error(f"supervisor: {e}", id=st.id)
        code = 1
    finally:
        os._exit(code)

