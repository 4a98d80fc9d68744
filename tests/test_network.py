"""Container networking (governor/network.py) and charging net_send/net_recv
from a group's own interface (Group.attach_interface).

Tenants make their own network namespace with `unshare -n` inside a governed
group, wait for a line on stdin while the test sets up their veth, then work.
Everything runs on a test bridge and pool (gvtest0, 10.231.0.0/24) with a
temporary state directory; the bridge is removed at the end.
"""
from __future__ import annotations

import errno
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from _tenants import python_tenant, wait_for

from governor import GovernorError, Limits, PolicyError, Supervisor
from governor.container.network import NetConfig, Network

pytestmark = pytest.mark.usefixtures("host_net_lock")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
KiB, MiB = 1024, 1024 * 1024
BRIDGE, POOL = "gvtest0", "10.231.0.0/24"
GATEWAY = "10.231.0.1"
TOL = 0.03
RATE, BURST = 2 * MiB, 512 * KiB  # a burst that rides out a scheduler stall on a busy host

TENANT = r'''
import errno, json, os, socket, sys, time

def out(obj):
    print(json.dumps(obj), flush=True)

def go():
    assert sys.stdin.readline().strip() == "go"

def try_bind(family, address, opt=None):
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        if opt:
            s.setsockopt(*opt, 1)
        s.bind((address, 0))
        return 0
    except OSError as e:
        return e.errno
    finally:
        s.close()

mode = sys.argv[1]
go()
if mode == "serve":      # serve PORT NAME: answer one connection with NAME
    srv = socket.socket()
    srv.bind(("0.0.0.0", int(sys.argv[2])))
    srv.listen()
    srv.settimeout(20)
    out({"listening": True})
    conn, _ = srv.accept()
    conn.sendall(sys.argv[3].encode())
    conn.close()
elif mode == "ifaces":
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    socket.create_connection(srv.getsockname(), timeout=5).close()
    out({"ifaces": sorted(name for _, name in socket.if_nameindex()), "lo_works": True})
elif mode == "send":     # send HOST PORT SECONDS: TCP to HOST in 64 KiB writes
    s = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=20)
    buf, sent, start = b"x" * 65536, 0, time.monotonic()
    while time.monotonic() < start + float(sys.argv[4]):
        s.sendall(buf)
        sent += len(buf)
    s.close()
    out({"sent": sent, "seconds": time.monotonic() - start})
    sys.stdin.readline()   # stay alive until the test has settled
elif mode == "recv":     # recv PORT SECONDS: one TCP connection, 64 KiB reads
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 128 * 1024)  # a fixed window
    srv.bind(("0.0.0.0", int(sys.argv[2])))
    srv.listen()
    srv.settimeout(20)
    out({"listening": True})
    conn, _ = srv.accept()
    got, start = 0, time.monotonic()
    while time.monotonic() < start + float(sys.argv[3]):
        got += len(conn.recv(65536))
    conn.close()
    out({"received": got, "seconds": time.monotonic() - start})
    sys.stdin.readline()
elif mode == "loop":     # loop BYTES: TCP to itself over loopback
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    c = socket.create_connection(srv.getsockname(), timeout=20)
    a, _ = srv.accept()
    a.settimeout(20)
    total, got, start = int(sys.argv[2]), 0, time.monotonic()
    while got < total:
        c.sendall(b"y" * 65536)
        for _ in range(64):
            got += len(a.recv(65536))
            if got % 65536 == 0:
                break
    out({"looped": got, "seconds": time.monotonic() - start})
    sys.stdin.readline()
elif mode == "bind":     # bind HOST_ADDRESS OWN_ADDRESS
    host, own = sys.argv[2], sys.argv[3]
    out({"host": try_bind(socket.AF_INET, host),
         "own": try_bind(socket.AF_INET, own),
         "loopback": try_bind(socket.AF_INET, "127.0.0.1"),
         "freebind": try_bind(socket.AF_INET, host, (socket.SOL_IP, 15)),
         "transparent": try_bind(socket.AF_INET, host, (socket.SOL_IP, 19)),
         "freebind6": try_bind(socket.AF_INET6, "::1", (socket.IPPROTO_IPV6, 78))})
'''

DRIVER = r'''
import os, sys, time
from governor import Supervisor
from governor.container.network import NetConfig, Network
net = Network(NetConfig.from_env(pool=sys.argv[1], bridge=sys.argv[2], state_dir=sys.argv[3]))
with Supervisor(publish_state=False) as sup:
    group = sup.group("killed")
    proc = group.spawn(["unshare", "-n", "--", "sleep", "60"])
    deadline = time.monotonic() + 10
    while os.stat(f"/proc/{proc.pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    lease = net.setup("killed", net.parse("auto"), proc.pid)
    group.attach_interface(lease.ifname)
    print(lease.ifname, lease.address, flush=True)
    proc.wait()
'''


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    net = Network(NetConfig.from_env(pool=POOL, bridge=BRIDGE,
                                     state_dir=tmp_path_factory.mktemp("state")))
    if os.geteuid() == 0:
        with IPRoute() as ipr:
            net.ensure_bridge(ipr)  # the sinks listen on its address
    yield net
    if os.geteuid() == 0:
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=BRIDGE):
                ipr.link("del", index=index)


@pytest.fixture(scope="module")
def tenant(tmp_path_factory) -> str:
    return python_tenant(tmp_path_factory.mktemp("tenant"), "net_tenant.py", TENANT)


@pytest.fixture
def sup():
    with Supervisor(publish_state=False) as s:
        yield s


def link_exists(ifname: str) -> bool:
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=ifname))


def counters(ifname: str) -> tuple[int, int]:
    """(rx, tx) of the host side: the container's (sent, received)."""
    stats = Path(f"/sys/class/net/{ifname}/statistics")
    return int((stats / "rx_bytes").read_text()), int((stats / "tx_bytes").read_text())


class Tenant:
    """A tenant in its own network namespace, in group `group`."""

    def __init__(self, group, tenant: str, *args: str):
        self.stdin_r, self.stdin_w = os.pipe()
        self.stdout_r, stdout_w = os.pipe()
        try:
            self.proc = group.spawn(["unshare", "-n", "--", sys.executable, tenant, *args],
                                    stdin=self.stdin_r, stdout=stdout_w)
        finally:
            os.close(stdout_w)
            os.close(self.stdin_r)
        mine = os.stat("/proc/self/ns/net").st_ino
        wait_for(lambda: os.stat(f"/proc/{self.proc.pid}/ns/net").st_ino != mine, 10,
                 "the tenant's own network namespace")

    def go(self) -> None:
        os.write(self.stdin_w, b"go\n")

    def read(self, timeout: float = 20) -> dict:
        buf, deadline = b"", time.monotonic() + timeout
        while not buf.endswith(b"\n"):
            ready, _, _ = select.select([self.stdout_r], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise AssertionError(f"no line from the tenant in {timeout}s (got {buf!r})")
            data = os.read(self.stdout_r, 4096)
            if not data:
                raise AssertionError(f"tenant closed stdout after {buf!r}")
            buf += data
        return json.loads(buf)

    def finish(self) -> int:
        os.close(self.stdin_w)
        status = self.proc.wait(20)
        os.close(self.stdout_r)
        return status


# ---- --net values and leases (no namespaces needed) ----

@pytest.mark.parametrize("value, reason", [
    ("10.231.0.7/16", "bad prefix /16: the pool 10.231.0.0/24 has /24"),
    ("10.231.0.7/33", "bad prefix /33"),
    ("10.231.0.7/x", "bad prefix /x"),
    ("10.231.0.300/24", "'10.231.0.300' is not an IPv4 address"),
    ("web/24", "'web' is not an IPv4 address"),
    ("10.232.0.7/24", "10.232.0.7 is outside the pool 10.231.0.0/24"),
    ("10.231.0.0/24", "the pool's network address"),
    ("10.231.0.255/24", "the pool's broadcast address"),
    ("10.231.0.1/24", "the bridge's address"),
    ("bridged", "expected none, auto or ADDRESS/PREFIX"),
])
def test_bad_net_values_name_the_option_and_allocate_nothing(net, value, reason):
    with pytest.raises(PolicyError) as err:
        net.parse(value)
    assert err.value.source == "--net"
    assert str(err.value).startswith(f"--net: {value!r}: ")
    assert reason in str(err.value)
    assert net.leases() == []


def test_parse_good_values(net):
    assert net.parse("none").mode == "none"
    assert net.parse("auto").mode == "auto"
    req = net.parse("10.231.0.12/24")
    assert (req.mode, str(req.address)) == ("static", "10.231.0.12")


def test_bad_pool_and_bridge():
    with pytest.raises(PolicyError, match=r"pool: not an IPv4 network: '10.0.0.1/8'"):
        NetConfig.from_env(pool="10.0.0.1/8")
    with pytest.raises(PolicyError, match=r"too small"):
        NetConfig.from_env(pool="10.0.0.0/31")
    with pytest.raises(PolicyError, match=r"bridge: bad interface name 'a-very-long-bridge'"):
        NetConfig.from_env(bridge="a-very-long-bridge")


def test_taken_address_is_refused_and_auto_skips_it(net):
    a = net.reserve("web-a", net.parse("10.231.0.2/24"))
    try:
        with pytest.raises(PolicyError, match=r"--net: 10.231.0.2 is taken by container 'web-a'"):
            net.reserve("web-b", net.parse("10.231.0.2/24"))
        assert net.leases() == [a]
        b = net.reserve("web-b", net.parse("auto"))
        assert b.address == "10.231.0.3" and b.ifname == "gv3-web-b"
        net.release(b)
    finally:
        net.release(a)
    assert net.leases() == []


def test_settle_net_counts_interface_bytes_and_refuses_counters_going_back(sup):
    from governor._native import lib
    group = sup.group("settled")
    assert lib.gov_group_settle_net(group._engine, group.id, 1000, 300) == 0
    assert lib.gov_group_settle_net(group._engine, group.id, 1500, 300) == 0
    used = group.usage().resources
    assert (used["net_send"].used, used["net_recv"].used) == (1500, 300)
    assert lib.gov_group_settle_net(group._engine, group.id, 1400, 300) == -errno.EINVAL
    assert lib.gov_group_settle_net(group._engine, 4095, 0, 0) == -errno.ENOENT
    assert group.usage().resources["net_send"].used == 1500


# ---- namespaces, veth pairs, cleanup ----

@needs_root
def test_two_servers_on_one_port_answer_from_the_host(net, sup, tenant):
    leases, tenants = [], []
    try:
        for name, value in (("web-a", "auto"), ("web-b", "10.231.0.12/24")):
            t = Tenant(sup.group(name), tenant, "serve", "8080", name)
            tenants.append(t)
            leases.append(net.setup(name, net.parse(value), t.proc.pid))
            t.go()
            assert t.read() == {"listening": True}
        assert [x.address for x in leases] == ["10.231.0.2", "10.231.0.12"]
        for lease in leases:
            with socket.create_connection((lease.address, 8080), timeout=5) as c:
                assert c.recv(64) == lease.name.encode()
        assert [t.finish() for t in tenants] == [0, 0]
    finally:
        for t in tenants:
            t.proc.kill()
        for lease in leases:
            net.release(lease)
    assert not any(link_exists(x.ifname) for x in leases)
    assert net.leases() == []


@needs_root
def test_none_has_only_loopback(net, sup, tenant):
    t = Tenant(sup.group("alone"), tenant, "ifaces")
    assert net.setup("alone", net.parse("none"), t.proc.pid) is None
    t.go()
    assert t.read() == {"ifaces": ["lo"], "lo_works": True}
    assert t.finish() == 0
    assert net.leases() == []


@needs_root
def test_failed_setup_leaves_nothing(net):
    with pytest.raises(GovernorError, match=r"shares this process's network namespace"):
        net.setup("mine", net.parse("auto"), os.getpid())
    with pytest.raises(GovernorError, match=r"network namespace of pid 0: No such file"):
        net.setup("nobody", net.parse("10.231.0.9/24"), 0)
    assert net.leases() == []
    assert not link_exists("gv2-mine") and not link_exists("gv9-nobody")


@needs_root
def test_release_after_the_namespace_died(net, sup, tenant):
    t = Tenant(sup.group("short"), tenant, "ifaces")
    lease = net.setup("short", net.parse("auto"), t.proc.pid)
    assert link_exists(lease.ifname)
    t.go()
    t.read()
    assert t.finish() == 0
    wait_for(lambda: not link_exists(lease.ifname), 10, "the kernel to delete the veth pair")
    net.release(lease)
    net.release(lease)  # idempotent
    assert net.leases() == []


@needs_root
def test_supervisor_killed_leaves_no_veth_and_a_stale_lease(net, tmp_path, caplog):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    proc = subprocess.Popen([sys.executable, str(driver), POOL, BRIDGE,
                             str(net.config.state_dir)], stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "the driver did not set up its network in 20 s"
        ifname, address = proc.stdout.readline().split()
        assert link_exists(ifname)
        assert [x.address for x in net.leases()] == [address]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
    wait_for(lambda: not link_exists(ifname), 10, f"{ifname} to go with its namespace")
    assert net.leases() == []   # the driver's lease is stale
    with caplog.at_level("WARNING", logger="governor.container.network"):
        again = net.reserve("again", net.parse(f"{address}/24"))
    assert f"removing stale lease of {address} for killed (supervisor {proc.pid} is gone)" \
        in caplog.text
    net.release(again)
    assert not net.config.leases_path.read_text().count(address)


# ---- charging from the interface ----

class Sink:
    """Reads and drops whatever one connection sends, on GATEWAY. A process
    of its own: a thread of the test process stalls behind the GIL, and the
    tenant's rate with it."""

    def __init__(self):
        code = (f"import socket\ns = socket.create_server(({GATEWAY!r}, 0))\n"
                "print(s.getsockname()[1], flush=True)\ns.settimeout(20)\n"
                "c, _ = s.accept()\nc.settimeout(20)\nwhile c.recv(1 << 20): pass\n")
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                     text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        assert ready, "the sink did not start"
        self.port = int(self.proc.stdout.readline())

    def close(self):
        try:
            self.proc.wait(30)
        finally:
            self.proc.kill()
            self.proc.wait()
            self.proc.stdout.close()


def check_rate(moved: int, seconds: float, what: str) -> None:
    """A token bucket that starts full moves rate * t + BURST in t seconds."""
    allowed = RATE * seconds + BURST
    print(f"{what}: {moved} B in {seconds:.2f} s, allowed {allowed:.0f} B "
          f"({(moved - BURST) / seconds / MiB:.3f} MiB/s past the burst, limit "
          f"{RATE / MiB:.3f} MiB/s)")
    assert abs(moved - allowed) <= TOL * RATE * seconds


def settled(group, ifname: str):
    """The interface's (sent, received) once usage equals them, else None."""
    totals = counters(ifname)
    used = group.usage().resources
    return totals if (used["net_send"].used, used["net_recv"].used) == totals else None


@needs_root
def test_net_send_is_charged_from_the_interface(net, sup, tenant):
    """What crosses the interface (headers included) is the limit, and usage
    is what the interface moved, in both directions."""
    group = sup.group("sender", Limits(net_send=RATE, burst={"net_send": BURST}))
    sink = Sink()
    t = Tenant(group, tenant, "send", GATEWAY, str(sink.port), "4")
    lease = net.setup("sender", net.parse("auto"), t.proc.pid)
    try:
        group.attach_interface(lease.ifname)
        before = wait_for(lambda: settled(group, lease.ifname), 5, "a first settlement")
        t.go()
        done = t.read()
        sent, received = wait_for(lambda: settled(group, lease.ifname), 5,
                                  "usage to equal the interface counters")
        check_rate(sent - before[0], done["seconds"], "sent at the interface")
        assert sent - before[0] > done["sent"]  # headers count too
        assert received > before[1]             # the sink's ACKs
    finally:
        sink.close()
        group.detach_interface()
        t.finish()
        net.release(lease)


@needs_root
def test_net_recv_is_charged_from_the_interface(net, sup, tenant):
    group = sup.group("receiver", Limits(net_recv=RATE, burst={"net_recv": BURST}))
    t = Tenant(group, tenant, "recv", "9000", "6")
    lease = net.setup("receiver", net.parse("auto"), t.proc.pid)
    code = (f"import socket, time\nc = socket.create_connection(({lease.address!r}, 9000), 10)\n"
            "end = time.monotonic() + 20\n"
            "try:\n    while time.monotonic() < end: c.sendall(b'z' * 65536)\n"
            "except OSError: pass\n")
    sender = None
    try:
        group.attach_interface(lease.ifname)
        t.go()
        assert t.read() == {"listening": True}
        before = counters(lease.ifname)[1]
        sender = subprocess.Popen([sys.executable, "-c", code])
        done = t.read()   # the tenant closed the connection: the sender stops
        check_rate(counters(lease.ifname)[1] - before, done["seconds"],
                   "received at the interface")
        wait_for(lambda: settled(group, lease.ifname), 5, "usage to equal the interface counters")
    finally:
        if sender:
            sender.kill()
            sender.wait()
        group.detach_interface()
        t.finish()
        net.release(lease)


@needs_root
def test_loopback_traffic_is_refunded(net, sup, tenant):
    group = sup.group("looper", Limits(net_send=MiB))
    t = Tenant(group, tenant, "loop", str(3 * MiB))
    lease = net.setup("looper", net.parse("auto"), t.proc.pid)
    try:
        group.attach_interface(lease.ifname)
        t.go()
        looped = t.read()
        assert looped["looped"] == 3 * MiB
        print(f"loopback {looped['looped'] / looped['seconds'] / MiB:.2f} MiB/s at net_send=1MiB/s")

        def settled():
            used = group.usage().resources["net_send"].used
            return used == counters(lease.ifname)[0] and (used,)
        (used,) = wait_for(settled, 5, "net_send usage to equal the interface's")
        assert used < 64 * KiB  # a few neighbour and router solicitations
    finally:
        group.detach_interface()
        t.finish()
        net.release(lease)


@needs_root
def test_bind_rules_without_the_container_filter(net, sup, tenant):
    """In a network namespace of its own a host address is not there
    (EADDRNOTAVAIL); without a container's filter IP_FREEBIND and
    IP_TRANSPARENT still work, which is why a container's filter refuses
    them (tests/test_container_net.py)."""
    lease = net.reserve("binder", net.parse("auto"))  # before the spawn, as the CLI does
    try:
        t = Tenant(sup.group("binder"), tenant, "bind", GATEWAY,
                   lease.address)
        net.attach(t.proc.pid, lease)
        t.go()
        got = t.read()
        assert t.finish() == 0
    finally:
        net.release(lease)
    assert (got["host"], got["own"], got["loopback"]) == (errno.EADDRNOTAVAIL, 0, 0)
    assert (got["freebind"], got["transparent"], got["freebind6"]) == (0, 0, 0)
