"""`governor start` and `stop`: a group's installed containers run under
one detached supervisor process per group, which outlives the command that
started it.

`start` launches `runner.daemon(GROUP)` in a new Python, in a session
of its own; that process (the group's supervisor) starts every container
with its limits (`Container`, `--net auto`), records its pid and start
time in the catalogue, says "ready" (or what failed) through a pipe, and
then waits. `stop` finds it by pid and start time, sends SIGTERM and waits
until it is gone: the supervisor kills its containers, gives back their
addresses and marks them stopped. If it was killed instead, its containers
died with it (they fail closed) and `stop` marks them."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import psutil

from .. import _proc
from .._errors import CatalogueError, GovernorError
from .._readable import readable
from .catalogue import Catalogue, Installed
from .db import dumps

log = logging.getLogger(__name__)
READY_TIMEOUT = 60
STOP_TIMEOUT = 20


def running(catalogue: Catalogue, group: str) -> dict | None:
    """The group's supervisor ({"pid", "start"}) if it runs."""
    for row in catalogue.installed(group):
        if row.supervisor and _proc.alive(row.supervisor.get("pid"), row.supervisor.get("start")):
            return row.supervisor
    return None


def log_path(catalogue: Catalogue, group: str) -> str:
    d = catalogue.state_dir / "logs"
    d.mkdir(parents=True, exist_ok=True)
    return str(d / f"{group}.log")


def start(catalogue: Catalogue, group: str, timeout: float = READY_TIMEOUT) -> list[Installed]:
    """Starts the group's containers under a detached supervisor; returns
    them once every one runs. CatalogueError if the group is not installed
    or runs; GovernorError with the supervisor's reason if it failed."""
    catalogue.group(group)
    if not catalogue.installed(group):
        raise CatalogueError(f"group {group!r} is not installed (governor install {group})",
                             key="group")
    sup = running(catalogue, group)
    if sup:
        raise CatalogueError(f"group {group!r} runs already (supervisor pid {sup['pid']})",
                             key="group")
    r, w = os.pipe()
    logfile = open(log_path(catalogue, group), "ab")
    try:
        env = {**os.environ, "GOVERNOR_STATE_DIR": str(catalogue.state_dir)}
        proc = subprocess.Popen([sys.executable, "-c", "import sys; from governor.catalogue."
                                 "runner import daemon; sys.exit(daemon(*sys.argv[1:]))", group,
                                 str(w)], stdin=subprocess.DEVNULL, stdout=logfile,
                                stderr=logfile, pass_fds=(w,), start_new_session=True, env=env)
    finally:
        os.close(w)
        logfile.close()
    try:
        message = _read_ready(r, timeout)
    finally:
        os.close(r)
    proc.wait()      # it forked the supervisor and left at once
    if message != "ready":
        raise GovernorError(f"start {group}: {message or 'the supervisor exited'} "
                            f"(log: {log_path(catalogue, group)})")
    return catalogue.installed(group)


def _read_ready(fd: int, timeout: float) -> str:
    data, deadline = b"", time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not readable([fd], left):
            return f"no answer from the supervisor in {timeout:.0f} s"
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def stop(catalogue: Catalogue, group: str, timeout: float = STOP_TIMEOUT) -> list[Installed]:
    """Stops the group's supervisor and with it its containers."""
    catalogue.group(group)
    rows = catalogue.installed(group)
    if not rows:
        raise CatalogueError(f"group {group!r} is not installed", key="group")
    sup = running(catalogue, group)
    if not sup:
        raise CatalogueError(f"group {group!r} is not running", key="group")
    proc = psutil.Process(sup["pid"])
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except psutil.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
    _mark(catalogue, group, None, lambda row: "stopped" if row.state == "running" else row.state)
    return catalogue.installed(group)


def _mark(catalogue: Catalogue, group: str, supervisor: dict | None, state, address=None) -> None:
    with catalogue.db.transaction() as c:
        for row in catalogue.installed(group):
            c.execute("UPDATE installed SET state = ?, supervisor = ?, address = ? "
                      "WHERE container = ?",
                      (state(row) if callable(state) else state, dumps(supervisor),
                       (address or {}).get(row.container), row.container))


# ---- the supervisor process ----

def supervise(group: str, ready_fd: int) -> int:
    """The group's supervisor: starts its containers, answers on ready_fd,
    and runs until SIGTERM or until every container has exited."""
    from ..container import Container
    from ..limits import Limits
    from ..supervisor import Supervisor

    stop_now = {"flag": False}
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)

    def on_signal(sig, _frame):
        stop_now["flag"] = True
        try:
            os.write(wake_w, b"x")
        except BlockingIOError:
            pass

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    catalogue = Catalogue()
    rows = catalogue.installed(group)
    me = _proc.identity()._asdict()
    procs = {}
    try:
        with Supervisor() as sup:
            try:
                groups = {}
                for row in rows:
                    config = catalogue.store.image(row.app, row.manifest).config.get("config", {})
                    argv = config.get("Entrypoint") or []
                    argv += config.get("Cmd") or []
                    if not argv:
                        raise CatalogueError(f"application {row.app!r} has no entrypoint")
                    env = dict(e.split("=", 1) for e in config.get("Env", []) if "=" in e)
                    box = Container(rootfs=row.rootfs, volumes=[tuple(v) for v in row.volumes],
                                    net="auto", state_dir=str(catalogue.state_dir))
                    groups[row.container] = g = sup.group(row.container, Limits(**row.limits),
                                                          container=box)
                    out = open(catalogue.state_dir / "logs" / f"{row.container}.log", "ab")
                    procs[row.container] = g.spawn(argv, env=env,
                                                   cwd=config.get("WorkingDir") or "/",
                                                   stdin=subprocess.DEVNULL, stdout=out, stderr=out)
                    out.close()
                addresses = {name: g.container.lease.address if g.container.lease else None
                             for name, g in groups.items()}
                _mark(catalogue, group, me, "running", addresses)
            except (GovernorError, OSError) as e:
                os.write(ready_fd, f"{e}\n".encode())
                return 2
            os.write(ready_fd, b"ready\n")
            os.close(ready_fd)
            log.info("group %s runs: %s", group, json.dumps(addresses))
            while not stop_now["flag"] and any(p.returncode is None for p in procs.values()):
                fds = [p.status_fd for p in procs.values() if p.returncode is None]
                ready = readable(fds + [wake_r])
                for name, p in procs.items():
                    if p.returncode is None and p.status_fd in ready:
                        p.wait()
                        with catalogue.db.transaction() as c:
                            c.execute("UPDATE installed SET state = ? WHERE container = ?",
                                      (f"exited {p.returncode}", name))
            for g in groups.values():
                g.close()
    finally:
        _mark(catalogue, group, None, lambda row: "stopped" if row.state == "running" else row.state)
        catalogue.close()
    return 0


def daemon(group: str, ready_fd: str) -> int:
    """The entry of the process start() launches: it forks once more, so that
    the supervisor is nobody's child to reap (the caller may be a
    long-lived process, such as a web console), and leaves."""
    if os.fork():
        os._exit(0)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return supervise(group, int(ready_fd))
