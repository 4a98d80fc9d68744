"""The engine looks at a write's fd on every call (close, dup2, exec and the
clone family are not notified); a tenant must not be able to make it charge
socket bytes as disk by reusing an fd number: by close, dup2, another
thread, exec, or a killed task whose tid comes back. And background forks in
a write-limited group never fail with EINTR."""
import os
import socket
import threading
from pathlib import Path

import pytest

from _tenants import TENANTS, compile_c
from governor import Limits, Supervisor

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (pid namespaces)")
MiB = 1 << 20


@pytest.fixture(scope="module")
def tenant(tmp_path_factory):
    return str(compile_c(TENANTS / "fdreuse_tenant.c", tmp_path_factory.mktemp("fdreuse")))


def sink():
    """A loopback server outside the group; counts what it receives."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(20)
    got = []

    def serve():
        conn, _ = srv.accept()
        n = 0
        with conn:
            while data := conn.recv(1 << 16):
                n += len(data)
        got.append(n)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, t, got


@pytest.mark.parametrize("mode", ["close", "dup2", "thread", "exec"])
def test_socket_on_a_reused_fd_number_is_charged_as_network(tenant, tmp_path, mode, backend):
    srv, t, got = sink()
    with Supervisor(backend=backend) as sup:
        g = sup.group(mode, Limits(net_send="100MiB/s", disk_write="100MiB/s"))
        p = g.spawn([tenant, mode, str(srv.getsockname()[1]), str(tmp_path / "file")])
        assert p.wait(20) == 0
        t.join(20)
        u = g.usage().resources
    srv.close()
    assert got == [MiB]
    assert u["net_send"].used == MiB, f"socket bytes charged as net_send: {u['net_send'].used}"
    assert u["disk_write"].used == 3, f"disk_write: {u['disk_write'].used}"


def peer_pid_server(path: Path):
    """Answers one connection with the connecting process's host pid."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)
    srv.settimeout(20)

    def serve():
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        with conn:
            cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            conn.sendall(str(int.from_bytes(cred[:4], "little")).encode())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv


def test_a_new_task_with_a_killed_tasks_tid_inherits_nothing(tenant, tmp_path):
    """A child writes a file through fd N, is killed, and a new task takes its
    tid at once (clone3 with set_tid) with N a socket: its sends are network."""
    srv, t, got = sink()
    file = tmp_path / "file"
    peer = peer_pid_server(Path(f"{file}.peer"))
    with Supervisor() as sup:
        g = sup.group("tid", Limits(net_send="100MiB/s", disk_write="100MiB/s"))
        p = g.spawn([tenant, "tid", str(srv.getsockname()[1]), str(file)])
        rc = p.wait(20)
        t.join(20)
        u = g.usage().resources
    srv.close()
    peer.close()
    if rc == 7:
        pytest.skip("clone3 with set_tid refused here")
    assert rc == 0
    assert got == [MiB]
    assert u["net_send"].used == MiB, f"socket bytes charged as net_send: {u['net_send'].used}"
    assert u["disk_write"].used == 3, f"disk_write: {u['disk_write'].used}"


def test_background_forks_in_a_write_limited_group_never_fail(tmp_path):
    """busybox sh forks with a SIGCHLD handler without SA_RESTART: a notified
    fork that a signal met before the engine received it failed with EINTR
    ("can't fork: Interrupted system call"). The clone family is not
    notified for write limits."""
    script = "for i in $(seq 50); do /bin/true & done; wait"
    with Supervisor() as sup:
        g = sup.group("forks", Limits(disk_write="100MiB/s"))
        for i in range(5):
            err = tmp_path / f"err{i}"
            with open(err, "w") as f:
                rc = g.spawn(["/bin/busybox", "sh", "-c", script], stderr=f).wait(60)
            assert rc == 0 and "fork" not in err.read_text(), err.read_text()
