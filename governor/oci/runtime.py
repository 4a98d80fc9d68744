"""What each governor-oci command does to a container (the CLI parses, this
acts). Errors are GovernorError (PolicyError for a bad config.json) with
the message a user should read."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from .. import _proc
from .._errors import GovernorError, PolicyError
from . import hooks
from .state import State, Store

# create and exec need the engine's modules; the other commands stay light
# (state, start, kill, delete run many times a second on a busy node).
_WAIT_SECONDS = 10


class Created:
    def __init__(self, state: State, status_fd: int):
        self.state = state
        self.status_fd = status_fd   # the container's init is our child: run waits on it


def _console(path: str | None, terminal: bool, source: str):
    """The console socket, connected (a terminal's master goes there)."""
    import socket

    if not terminal:
        return None
    if not path:
        raise PolicyError(source, "process.terminal", "a terminal needs --console-socket")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise GovernorError(f"--console-socket {path}: {e.strerror}") from None
    return s


def _spawn_error(e, process, what: str) -> GovernorError:
    """A failed spawn, as runc words it where podman and containerd look for
    the words ("executable file not found": podman's exit status 127)."""
    if e.step == "find the program":
        where = "" if "/" in process.args[0] else " in $PATH"
        return GovernorError(f"{what}: exec: {process.args[0]!r}: executable file not found{where}")
    return GovernorError(f"{what}: {e}")


def _write_pid_file(path: str | None, pid: int) -> None:
    if path:
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.replace(tmp, path)


def _wait_gone(pid: int, started: int, seconds: float = _WAIT_SECONDS) -> bool:
    deadline = time.monotonic() + seconds
    while _proc.alive(pid, started):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def create(store: Store, cid: str, bundle: str, pid_file: str | None, console_socket: str | None,
           log) -> Created:
    """The container, its init waiting before the command's exec, and its
    supervisor running. Nothing is left when it fails."""
    import datetime

    from .._errors import SpawnError
    from ..supervisor import filter_program, gov_spawn
    from . import build, config, limits as oci_limits

    directory = store.make(cid)
    init_pid = None
    try:
        spec = config.load(bundle)
        if spec.process is None:
            raise PolicyError(spec.path, "process", "is required to create a container")
        lim, ignored = oci_limits.from_spec(spec.resources, spec.annotations, spec.path)
        for key in ignored + spec.ignored:
            log.info(f"ignored: {key} (no cgroups: limits are enforced at the system calls)")
        rules, default = spec.seccomp or (None, None)
        program = (filter_program(lim, True, "seccomp", rules, default) if spec.seccomp
                   else filter_program(lim, True, "seccomp"))
        (directory / "filter.bpf").write_bytes(program)
        console = _console(console_socket, spec.process.terminal, spec.path)
        lifeline_r, lifeline_w = os.pipe2(os.O_CLOEXEC)
        try:
            res = gov_spawn(spec.process.args[0], spec.process.args, spec.process.env_dict(),
                            program, cwd=spec.process.cwd, setup=build.setup(spec),
                            search_path=spec.process.search_path(),
                            process=build.process_setup(spec.process,
                                                        console.fileno() if console else -1),
                            paused=True, detached=True, lifeline=lifeline_r)
        except SpawnError as e:
            os.close(lifeline_w)
            raise _spawn_error(e, spec.process, f"create {cid}") from None
        finally:
            os.close(lifeline_r)
            if console:
                console.close()
        init_pid = res.init_pid
        st = State(id=cid, bundle=spec.bundle, rootfs=spec.root, pid=init_pid,
                   pid_start=_proc.start_ticks(init_pid), cmd_pid=res.cmd_pid,
                   created=datetime.datetime.now(datetime.timezone.utc).isoformat(),
                   annotations=spec.annotations, poststart=hooks.as_json(spec.hooks["poststart"]),
                   poststop=hooks.as_json(spec.hooks["poststop"]))
        hooks.run(spec.hooks["prestart"] + spec.hooks["createRuntime"], "createRuntime", st)
        hooks.run_in_container(spec.hooks["createContainer"], "createContainer", st, init_pid)
        counted = lim.disk_space is not None or lim.disk_inodes is not None
        area = [spec.root] if counted and not spec.readonly else []
        _start_supervisor(store, st, res, lim, spec, area, lifeline_w, log)
        _write_pid_file(pid_file, init_pid)
        for fd in (res.listener, res.exec_fd, res.go_fd):
            os.close(fd)
        return Created(store.load(cid), res.status_fd)
    except BaseException:
        if init_pid:
            try:
                os.kill(init_pid, signal.SIGKILL)
                os.waitpid(init_pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        store.remove(cid)
        raise


def _start_supervisor(store, st, res, lim, spec, area, lifeline_w, log) -> None:
    from .._readable import readable
    from .supervisor import serve   # imports the engine's Supervisor: only here

    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        serve(store, st, res, lim, spec.process.args, area, spec.hooks["startContainer"],
              ready_w, log)
    os.close(ready_w)
    os.close(lifeline_w)
    try:
        ready = readable([ready_r], _WAIT_SECONDS)
        answer = os.read(ready_r, 4096).decode(errors="replace") if ready else "timed out"
    finally:
        os.close(ready_r)
    os.waitpid(pid, os.WNOHANG)
    if answer != "ok":
        raise GovernorError(f"create {st.id}: {answer}")


def start(store: Store, cid: str, log) -> None:
    from .client import request

    st = store.load(cid)
    status = st.current_status()
    if status != "created":
        raise GovernorError(f"cannot start a container that is {status}")
    request(store, cid, {"op": "start"})
    try:
        hooks.run(hooks.from_json(st.poststart), "poststart", store.load(cid))
    except GovernorError as e:
        log.warning(str(e))   # a failing poststart hook is only a warning (runtime-spec)


def pids(st: State) -> list[int]:
    """Every process of the container: everything in its pid namespace if
    it has its own, else its init's descendants."""
    import psutil

    if not st.alive():
        return []
    try:
        ns = os.stat(f"/proc/{st.pid}/ns/pid").st_ino
        own = ns != os.stat("/proc/self/ns/pid").st_ino
    except FileNotFoundError:
        return []
    if own:
        out = []
        for p in Path("/proc").iterdir():
            if p.name.isdigit() and int(p.name) != st.pid:
                try:
                    if os.stat(p / "ns/pid").st_ino == ns:
                        out.append(int(p.name))
                except OSError:
                    pass
        return sorted(out)
    try:
        return sorted(c.pid for c in psutil.Process(st.pid).children(recursive=True))
    except psutil.Error:
        return []


def kill(store: Store, cid: str, sig: int, all_processes: bool) -> None:
    st = store.load(cid)
    status = st.current_status()
    if status not in ("created", "running", "paused"):
        raise GovernorError(f"cannot kill a container that is {status}")
    targets = pids(st) if all_processes else [st.cmd_pid]
    for pid in targets:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    if status == "paused" and sig != signal.SIGCONT:
        for pid in targets:   # a stopped process takes no signal but SIGKILL
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def pause(store: Store, cid: str, stop: bool) -> None:
    """Without a cgroup freezer: SIGSTOP (SIGCONT) to every process."""
    st = store.load(cid)
    status = st.current_status()
    if status != ("running" if stop else "paused"):
        raise GovernorError(f"cannot {'pause' if stop else 'resume'} a container that is {status}")
    for pid in pids(st):
        try:
            os.kill(pid, signal.SIGSTOP if stop else signal.SIGCONT)
        except ProcessLookupError:
            pass
    st.status = "paused" if stop else "running"
    store.save(st)


def delete(store: Store, cid: str, force: bool, log) -> None:
    st = store.load(cid)
    status = st.current_status()
    if status in ("running", "paused") and not force:
        raise GovernorError(f"cannot delete container {cid} that is not stopped: {status}")
    if st.alive():
        os.kill(st.pid, signal.SIGKILL)
        if not _wait_gone(st.pid, st.pid_start):
            raise GovernorError(f"delete {cid}: its init (pid {st.pid}) does not die")
    if st.supervisor_alive() and not _wait_gone(st.supervisor_pid, st.supervisor_start):
        os.kill(st.supervisor_pid, signal.SIGKILL)
        _wait_gone(st.supervisor_pid, st.supervisor_start)
    try:
        hooks.run(hooks.from_json(st.poststop), "poststop", st)
    except GovernorError as e:
        log.warning(str(e))
    store.remove(cid)


def exec_process(store: Store, cid: str, process, console_socket: str | None,
                 pid_file: str | None, detach: bool, source: str) -> int:
    """Runs process (a config.Process) in the running container cid,
    governed with it. Its exit status (0 with detach)."""
    from .. import _native
    from .._errors import SpawnError
    from ..supervisor import gov_spawn
    from . import build
    from .client import request

    lib = _native.lib
    st = store.load(cid)
    status = st.current_status()
    if status != "running":
        raise GovernorError(f"cannot exec in a container that is {status}")
    program = (store.dir(cid) / "filter.bpf").read_bytes()
    console = _console(console_socket, process.terminal, source)
    try:
        res = gov_spawn(process.args[0], process.args, process.env_dict(), program,
                        cwd=process.cwd, setup=build.join(st.pid, st.cmd_pid),
                        search_path=process.search_path(),
                        process=build.process_setup(process, console.fileno() if console else -1),
                        paused=True, detached=True)
    except SpawnError as e:
        raise _spawn_error(e, process, f"exec {cid}") from None
    finally:
        if console:
            console.close()
    try:
        request(store, cid, {"op": "adopt", "init": res.init_pid, "cmd": res.cmd_pid},
                [res.listener])
    except BaseException:
        lib.gov_spawn_go(res, 0)
        os.kill(res.init_pid, signal.SIGKILL)
        os.waitpid(res.init_pid, 0)
        raise
    finally:
        os.close(res.listener)
    lib.gov_spawn_go(res, 1)
    err = os.read(res.exec_fd, 4)
    os.close(res.exec_fd)
    if len(err) == 4:
        os.waitpid(res.init_pid, 0)
        raise GovernorError(f"exec {process.args[0]}: {os.strerror(int.from_bytes(err, 'little'))}")
    _write_pid_file(pid_file, res.init_pid)
    if detach:
        os.close(res.status_fd)
        return 0
    _, status = os.waitpid(res.init_pid, 0)
    os.close(res.status_fd)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def wait_init(created: Created) -> int:
    """For run: the container's exit status (its init mirrors it)."""
    _, status = os.waitpid(created.state.pid, 0)
    os.close(created.status_fd)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
