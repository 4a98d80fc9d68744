"""The engine looks at a write's fd on every call (close, dup2 and exec are
not notified); a tenant must not be able to make it charge socket bytes as
disk by reusing an fd number."""
import os
import socket
import threading
from pathlib import Path

import pytest

from _tenants import compile_c
from governor import Limits, Supervisor

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (pid namespaces)")
MiB = 1 << 20


@pytest.fixture(scope="module")
def tenant(tmp_path_factory):
    src = Path(__file__).with_name("fdreuse_tenant.c")
    return str(compile_c(src, tmp_path_factory.mktemp("fdreuse")))


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
