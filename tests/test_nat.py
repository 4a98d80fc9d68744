"""NAT and published ports of `--net auto` containers (governor/container/
nat.py), as a user runs them: `--publish` serves a busybox httpd to a client
in a network namespace of the test's, masquerading is checked against a
responder in a third namespace that plays the outside world, and the rules
go with the container, after exit and after SIGKILL of `governor run`.

Everything is the test's own: a pool, a bridge and so an nftables table
(`ip governor-gvnat0`), two namespaces with a veth each; only traffic
between them and the container."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from _tenants import make_rootfs, wait_for

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, nftables)"),
              pytest.mark.usefixtures("host_net_lock"), pytest.mark.timeout(90)]
GOVERNOR = [sys.executable, "-m", "governor"]
POOL, BRIDGE = "10.231.77.0/24", "gvnat0"
TABLE = f"governor-{BRIDGE}"
TAG = f"gvt{os.getpid() % 100000}"
# name: (host side, namespace side, host address, namespace address)
SIDES = {"client": (f"{TAG}c", "198.18.77.1", "198.18.77.2"),
         "outside": (f"{TAG}o", "198.18.78.1", "198.18.78.2")}


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def in_ns(ns: str, *argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", f"{TAG}{ns}", *argv], capture_output=True,
                          text=True, **kw)


@pytest.fixture(scope="module")
def namespaces():
    """The client's and the outside world's namespaces, each on a veth to the
    host with a /30, default route via the host."""
    made = []
    try:
        for ns, (veth, host_addr, ns_addr) in SIDES.items():
            ip("netns", "add", f"{TAG}{ns}")
            made.append(ns)
            ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", f"{TAG}{ns}")
            ip("addr", "add", f"{host_addr}/30", "dev", veth)
            ip("link", "set", veth, "up")
            for args in (("addr", "add", f"{ns_addr}/30", "dev", "eth0"),
                         ("link", "set", "eth0", "up"), ("link", "set", "lo", "up"),
                         ("route", "add", "default", "via", host_addr)):
                ip("-n", f"{TAG}{ns}", *args)
        yield
    finally:
        for ns in made:
            ip("netns", "del", f"{TAG}{ns}")   # its veth goes with it
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=BRIDGE):
                ipr.link("del", index=index)


def env() -> dict:
    return {**os.environ, "GOVERNOR_NET_POOL": POOL, "GOVERNOR_BRIDGE": BRIDGE}


def governor(tmp_path: Path, name: str, *args: str) -> subprocess.Popen:
    rootfs = make_rootfs(tmp_path / name)
    (rootfs / "www").mkdir()
    (rootfs / "www" / "index.html").write_text(f"served by {name}\n")
    return subprocess.Popen(GOVERNOR + ["run", "--state-dir", str(tmp_path / "state"),
                                        "--name", name, "--rootfs", str(rootfs), *args],
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen) -> tuple[str, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=20)


def rules() -> list[dict]:
    """Our table's rules, through libnftables as the product reads them; []
    once the table is gone."""
    import nftables

    nft = nftables.Nftables()
    nft.set_json_output(True)
    rc, out, _ = nft.cmd(f"list table ip {TABLE}")
    return [] if rc else [x["rule"] for x in json.loads(out)["nftables"] if "rule" in x]


def client_get(port: int) -> str | None:
    """What an HTTP client in the client namespace gets from the host's
    address there (busybox's static wget crashes on this Debian)."""
    code = ("import sys,urllib.request\n"
            f"print(urllib.request.urlopen('http://{SIDES['client'][1]}:{port}/',"
            "timeout=2).read().decode(),end='')")
    r = in_ns("client", sys.executable, "-c", code, timeout=10)
    return r.stdout if r.returncode == 0 else None


def test_publish_serves_a_client_in_another_namespace(tmp_path, namespaces):
    server = governor(tmp_path, "web", "--net", "auto", "--publish", "18080:8080",
                      "--", "/bin/httpd", "-f", "-p", "8080", "-h", "/www")
    try:
        wait_for(lambda: client_get(18080), 15, "the published port to answer the client")
        assert client_get(18080) == "served by web\n"
        assert client_get(18081) is None     # nothing else is forwarded
        assert {r["comment"] for r in rules()} == {"gv2-web"}
    finally:
        _, err = stop(server)
    assert server.returncode == 128 + signal.SIGTERM, err
    assert rules() == []        # the table went with its last container
    assert client_get(18080) is None


class Responder:
    """A TCP server in the outside namespace that answers each connection
    with the address it came from, then exits after `count` of them."""

    def __init__(self, count: int):
        code = ("import socket,sys\ns=socket.socket()\n"
                "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                f"s.bind(('{SIDES['outside'][2]}',19000));s.listen()\n"
                "print('ready',flush=True)\n"
                f"for _ in range({count}):\n"
                "    c,a=s.accept();c.sendall((a[0]+'\\n').encode());c.close()\n")
        self.proc = subprocess.Popen(["ip", "netns", "exec", f"{TAG}outside", sys.executable,
                                      "-c", code], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline() == "ready\n"

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()


def seen_from_outside(tmp_path: Path, name: str, *args: str) -> str:
    """The source address the outside world sees for a container's connection."""
    p = governor(tmp_path, name, "--net", "auto", *args, "--", "/bin/nc",
                 SIDES["outside"][2], "19000")
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    return out.strip()


def test_masquerade_by_default_and_not_with_no_nat(tmp_path, namespaces):
    responder = Responder(2)
    try:
        assert seen_from_outside(tmp_path, "natted") == SIDES["outside"][1]   # the host's address
        assert seen_from_outside(tmp_path, "plain", "--no-nat") == "10.231.77.2"
    finally:
        responder.close()
    assert rules() == []


def test_sigkill_leaves_stale_rules_that_the_next_run_removes(tmp_path, namespaces):
    victim = governor(tmp_path, "victim", "--net", "auto", "--publish", "18090:8080/tcp",
                      "--", "sleep", "300")
    try:
        wait_for(lambda: len(rules()) == 3, 15, "the victim's three rules")
    finally:
        victim.kill()
        stop(victim)
    assert {r["comment"] for r in rules()} == {"gv2-victim"}   # its supervisor is gone
    again = governor(tmp_path, "next", "--net", "auto", "--publish", "18090:8080", "--", "true")
    _, err = again.communicate(timeout=30)
    assert again.returncode == 0, err
    assert "removed stale nftables rules of gv2-victim" in err, err
    assert rules() == []


@pytest.mark.parametrize("args, says", [
    (["--publish", "80"], "expected HOSTPORT:CONTAINERPORT"),
    (["--publish", "0:80"], "port 0 is not 1-65535"),
    (["--publish", "8080:80/sctp"], "expected HOSTPORT:CONTAINERPORT"),
    (["--publish", "8080:80", "--publish", "8080:81"], "published twice"),
    (["--net", "none", "--publish", "8080:80"], "needs --net auto"),
])
def test_bad_publish_values(tmp_path, args, says):
    argv = args if "--net" in args else ["--net", "auto", *args]
    p = governor(tmp_path, "bad", *argv, "--", "true")
    _, err = p.communicate(timeout=30)
    assert p.returncode == 2, err
    assert err.startswith("governor: --publish: ") and says in err, err
    assert rules() == []
