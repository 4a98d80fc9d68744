"""Containers on the network, as a user runs them: `governor run --rootfs
--net auto|ADDRESS/PREFIX`. Two containers serve one port at two addresses,
bind rules, cleanup after exit and after SIGKILL, bad --net values.

A test-only pool and bridge (GOVERNOR_NET_POOL, GOVERNOR_BRIDGE), removed at
the end of the module; tests/test_network.py covers the module underneath."""
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from _tenants import TENANTS, compile_c, make_rootfs, wait_for

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, veth)"),
              pytest.mark.usefixtures("host_net_lock")]
GOVERNOR = [sys.executable, "-m", "governor"]
POOL, BRIDGE, GATEWAY = "10.231.9.0/24", "gvct0", "10.231.9.1"


@pytest.fixture(scope="module", autouse=True)
def test_bridge():
    yield
    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=BRIDGE):
            ipr.link("del", index=index)


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


def env() -> dict:
    return {**os.environ, "GOVERNOR_NET_POOL": POOL, "GOVERNOR_BRIDGE": BRIDGE}


def governor(state, name, rootfs, *args, **kw):
    """governor run --rootfs, in the background."""
    return subprocess.Popen(GOVERNOR + ["run", "--state-dir", str(state), "--name", name,
                                        "--rootfs", str(rootfs), *args],
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def leases(state) -> list[dict]:
    path = state / "network" / f"{BRIDGE}.json"
    return json.loads(path.read_text())["leases"] if path.exists() else []


def veths() -> list[str]:
    """Host-side veths of containers (gv<offset>-<name>) other than the bridge."""
    with IPRoute() as ipr:
        names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    return [n for n in names if n.startswith("gv") and n != BRIDGE and "-" in n]


def answer(address: str) -> bytes | None:
    try:
        return urllib.request.urlopen(f"http://{address}:8080/", timeout=2).read()
    except OSError:
        return None


def stop(proc) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(15)
    finally:
        proc.stdout.close()
        proc.stderr.close()


def test_two_containers_serve_one_port_at_two_addresses(tmp_path, state):
    servers = []
    try:
        for name, net in (("web-a", "auto"), ("web-b", "10.231.9.12/24")):
            rootfs = make_rootfs(tmp_path / name)
            (rootfs / "www").mkdir()
            (rootfs / "www" / "index.html").write_text(f"this is {name}\n")
            servers.append(governor(state, name, rootfs, "--net", net, "--",
                                    "/bin/httpd", "-f", "-p", "8080", "-h", "/www"))
        wait_for(lambda: answer("10.231.9.2") and answer("10.231.9.12"), 15,
                 "both containers to answer on port 8080")
        assert answer("10.231.9.2") == b"this is web-a\n"
        assert answer("10.231.9.12") == b"this is web-b\n"
        assert sorted(x["address"] for x in leases(state)) == ["10.231.9.12", "10.231.9.2"]
        assert len(veths()) == 2
    finally:
        statuses = [stop(p) for p in servers]
    assert statuses == [128 + signal.SIGTERM] * 2   # SIGTERM passed on to httpd
    assert veths() == [] and leases(state) == []


def test_bind_rules(tmp_path, state):
    """A container binds its own address and loopback. The host's address is
    not in its namespace, and the options that would bind it anyway are
    refused by its filter."""
    rootfs = make_rootfs(tmp_path / "binder")
    shutil.copy(compile_c(TENANTS / "escape_tenant.c", tmp_path, ("-static",)),
                rootfs / "bin" / "escape")
    p = governor(state, "binder", rootfs, "--net", "10.231.9.20/24", "--",
                 "/bin/escape", "bind", GATEWAY, "10.231.9.20")
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    got = dict(kv.split("=") for kv in out.split())
    assert got == {"host": "99", "own": "0", "loopback": "0",   # 99: EADDRNOTAVAIL
                   "freebind": "1", "transparent": "1", "freebind6": "1"}, out   # 1: EPERM


def test_sigkill_of_governor_leaves_no_veth_and_a_stale_lease(tmp_path, state):
    rootfs = make_rootfs(tmp_path / "victim")
    p = governor(state, "victim", rootfs, "--net", "auto", "--", "sleep", "300")
    try:
        wait_for(lambda: veths() and leases(state), 15, "the container's veth and lease")
    finally:
        p.kill()
        stop(p)
    wait_for(lambda: not veths(), 10, "the veth to go with the container's namespace")
    assert [x["name"] for x in leases(state)] == ["victim"]   # the lease outlives its owner
    # The next run of the same name starts cleanly and says what it removed.
    again = governor(state, "victim", rootfs, "--net", "auto", "--", "true")
    _, err = again.communicate(timeout=30)
    assert again.returncode == 0, err
    assert "stale lease" in err, err
    assert leases(state) == [] and veths() == []


@pytest.mark.parametrize("value, says", [
    ("10.231.9.300/24", "not an IPv4 address"),
    ("10.99.0.5/24", "outside"),
    ("10.231.9.5/25", "prefix"),
    ("10.231.9.1/24", "bridge"),
    ("10.231.9.255/24", "broadcast"),
    ("sometimes", "none, auto or ADDRESS/PREFIX"),
])
def test_bad_net_values(tmp_path, state, value, says):
    rootfs = make_rootfs(tmp_path / "bad")
    p = governor(state, "bad", rootfs, "--net", value, "--", "true")
    _, err = p.communicate(timeout=30)
    assert p.returncode == 2, err
    assert "--net" in err and says in err, err
    assert leases(state) == [] and veths() == []
    registry = state / "registry.json"
    assert not registry.exists() or not json.loads(registry.read_text())["leases"]


def test_a_taken_address_is_refused_before_anything_starts(tmp_path, state):
    first = governor(state, "owner", make_rootfs(tmp_path / "owner"), "--net", "10.231.9.30/24",
                     "--", "sleep", "300")
    try:
        wait_for(lambda: leases(state), 15, "the first container's lease")
        second = governor(state, "thief", make_rootfs(tmp_path / "thief"),
                          "--net", "10.231.9.30/24", "--", "true")
        _, err = second.communicate(timeout=30)
        assert second.returncode == 2, err
        assert "10.231.9.30 is taken by container 'owner'" in err, err
        assert [x["name"] for x in leases(state)] == ["owner"]
        assert "thief" not in json.loads((state / "registry.json").read_text())["leases"]
    finally:
        stop(first)


SINK = """
import socket, sys
srv = socket.create_server(("0.0.0.0", 0))
srv.settimeout(30)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.settimeout(30)
got = 0
while data := conn.recv(1 << 16):
    got += len(data)
print(got, flush=True)
"""


def test_net_send_is_charged_what_crossed_the_interface(tmp_path, state):
    """2 MiB/s through the container's veth: what crosses the interface
    (payload, TCP/IP headers, ACKs) is charged and flows at the limit; the
    payload, a few percent less, all arrives."""
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    stats = tmp_path / "stats.json"
    try:
        port = int(sink.stdout.readline())
        size = 8 << 20
        p = governor(state, "sender", make_rootfs(tmp_path / "sender"), "--net", "auto",
                     "--limit", "net_send=2MiB/s", "--stats-json", str(stats), "--",
                     "sh", "-c", f"dd if=/dev/zero bs=16k count={size >> 14} 2>/dev/null | "
                                 f"nc {GATEWAY} {port}")
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        received = int(sink.stdout.readline())
    finally:
        sink.kill()
        sink.wait(10)
    report = json.loads(stats.read_text())
    used = report["usage"]["resources"]["net_send"]["used"]
    rate = used / report["seconds"] / (1 << 20)
    print(f"\n{received} B of payload, {used} B charged in {report['seconds']:.2f} s = "
          f"{rate:.3f} MiB/s at the interface")
    assert received == size
    assert received < used <= 1.1 * received   # payload plus TCP/IP headers and ACKs
    # Coarse: the run (about 4 s) includes the container's start and a 0.1 s
    # burst. Above the limit is the engine's fault; below it, a slow start
    # on a loaded machine (CI: 1.88 with a 4.52 s run), so that side is loose.
    assert 1.5 <= rate <= 2.1, rate


def test_each_command_of_a_container_is_charged_at_its_own_veth(tmp_path, state):
    """A container runs one command at a time, and each gets a new veth whose
    counters start at zero: the group's net_send must follow the new one as
    it followed the first (usage grows by what its veth counted)."""
    from governor import Container, Limits, Supervisor

    box = Container(rootfs=str(make_rootfs(tmp_path / "twice")), net="auto", pool=POOL,
                    bridge=BRIDGE, state_dir=str(state))
    with Supervisor(publish_state=False) as sup:
        g = sup.group("twice", Limits(net_send="64MiB/s"), container=box)
        for _ in range(2):
            before = g.usage().resources["net_send"].used
            sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE,
                                    text=True)
            r, w = os.pipe()
            try:
                port = int(sink.stdout.readline())
                proc = g.spawn(["sh", "-c", f"dd if=/dev/zero bs=64k count=16 2>/dev/null | "
                                            f"nc {GATEWAY} {port}; read x"], stdin=r)
                assert int(sink.stdout.readline()) == 1 << 20
                counter = Path(f"/sys/class/net/{box.lease.ifname}/statistics/rx_bytes")
                wait_for(lambda: g.usage().resources["net_send"].used - before ==
                         int(counter.read_text()), 5,
                         "usage to grow by what this command's veth counted")
            finally:
                os.write(w, b"\n")
                os.close(w)
                os.close(r)
                sink.kill()
                sink.wait(10)
            assert proc.wait(10) == 0
