"""Export between two hosts: two network namespaces on this machine, each
with its own sshd (its own config, host key and addresses), its own
governor state directory and container pool, joined by a bridge of the
test's own. A throwaway key pair logs in as root. The exports run on host
A, over ssh, as an operator would; host B answers with this worktree's
governor (--remote-governor). Everything is removed at the end: sshd by
pid, namespaces, links, files."""
import json
import os
import shutil
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from _catalogue import GOVERNOR_BIN, PAGE, capture_web, dump, gov, gov_json, www  # noqa: F401
from _tenants import wait_for

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root (netns, sshd)"),
              pytest.mark.skipif(not os.path.exists("/usr/sbin/sshd"),
                                 reason="needs openssh-server (make setup installs it)"),
              pytest.mark.usefixtures("host_net_lock")]
TAG = f"{os.getpid() % 100000}"
LINK = f"gvxb{TAG}"                     # the test's bridge in the root namespace
NET = "10.231.45"                       # root .1, host A .2, host B .3
PORT = 18432


def sh(*args, check=True, **kw):
    return subprocess.run([str(a) for a in args], check=check, capture_output=True, text=True,
                          **kw)


class Host:
    def __init__(self, name: str, address: str, pool: str, top: Path):
        self.name, self.address, self.pool = name, address, pool
        self.netns = f"gvx{name}{TAG}"
        self.dir = top / name
        self.state = self.dir / "state"
        self.dir.mkdir()
        self.sshd = None

    def start(self, keys: Path) -> None:
        sh("ip", "netns", "add", self.netns)
        sh("ip", "link", "add", f"{LINK}{self.name}", "type", "veth", "peer", "name", "eth0",
           "netns", self.netns)
        sh("ip", "link", "set", f"{LINK}{self.name}", "master", LINK, "up")
        for cmd in (("addr", "add", f"{self.address}/24", "dev", "eth0"),
                    ("link", "set", "eth0", "up"), ("link", "set", "lo", "up")):
            sh("ip", "-n", self.netns, *cmd)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.dir / "host_key")
        env = {"GOVERNOR_STATE_DIR": self.state, "GOVERNOR_RUN_DIR": self.dir / "run",
               "GOVERNOR_NET_POOL": self.pool, "GOVERNOR_BRIDGE": f"gvxc{self.name}{TAG}"}
        (self.dir / "sshd_config").write_text(f"""
ListenAddress {self.address}:22
HostKey {self.dir}/host_key
PidFile none
AuthorizedKeysFile {keys}/client_key.pub
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
SetEnv {' '.join(f'{k}={v}' for k, v in env.items())}
""")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)    # sshd's privilege separation
        self.sshd = subprocess.Popen(["ip", "netns", "exec", self.netns, "/usr/sbin/sshd", "-D",
                                      "-e", "-f", str(self.dir / "sshd_config")],
                                     stdout=subprocess.DEVNULL, stderr=open(self.dir / "sshd.log", "w"))

    def known_host(self) -> str:
        return f"{self.address} " + (self.dir / "host_key.pub").read_text()

    def stop(self) -> None:
        if self.state.exists():
            gov(self.state, "stop", "shop", env={"GOVERNOR_RUN_DIR": str(self.dir / "run")})
        if self.sshd:
            # ip netns exec execs sshd: the pid is sshd's. Its sessions go with it.
            for child in psutil.Process(self.sshd.pid).children(recursive=True):
                child.kill()
            self.sshd.send_signal(signal.SIGTERM)
            self.sshd.wait(10)
        # Its veth pair now, not when the kernel gets to the namespace's end.
        sh("ip", "link", "del", f"{LINK}{self.name}", check=False)
        sh("ip", "netns", "del", self.netns, check=False)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    top = tmp_path_factory.mktemp("hosts")
    keys = top / "keys"
    keys.mkdir()
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", keys / "client_key")
    a = Host("a", f"{NET}.2", "10.231.46.0/24", top)
    b = Host("b", f"{NET}.3", "10.231.47.0/24", top)
    made_run_sshd = not Path("/run/sshd").exists()
    sh("ip", "link", "add", LINK, "type", "bridge")
    sh("ip", "addr", "add", f"{NET}.1/24", "dev", LINK)
    sh("ip", "link", "set", LINK, "up")
    try:
        for h in (a, b):
            h.start(keys)
        (keys / "known_hosts").write_text(a.known_host() + b.known_host())
        config = keys / "ssh_config"
        config.write_text("".join(f"""
Host host{h.name}
  HostName {h.address}
  User root
  IdentityFile {keys}/client_key
  IdentitiesOnly yes
  UserKnownHostsFile {keys}/known_hosts
  StrictHostKeyChecking yes
""" for h in (a, b)))
        for h in (a, b):
            wait_for(lambda: sh("ssh", "-F", config, f"host{h.name}", "true",
                                check=False).returncode == 0, 20, f"sshd of host {h.name}",
                     interval=0.2)
        yield a, b, config
    finally:
        for h in (a, b):
            h.stop()
        sh("ip", "link", "del", LINK, check=False)
        if made_run_sshd:
            shutil.rmtree("/run/sshd", ignore_errors=True)
    # Nothing left behind.
    namespaces = sh("ip", "netns", "list").stdout
    assert all(h.netns not in namespaces for h in (a, b))
    wait_for(lambda: LINK not in sh("ip", "-o", "link").stdout, 10, "the test's links to go")
    assert not [h for h in (a, b) if psutil.pid_exists(h.sshd.pid)]


def on(host, config, *args, timeout=180):
    """governor ARGS, run on host over ssh (with that host's state directory)."""
    cmd = shlex.join([GOVERNOR_BIN, *map(str, args)])
    return subprocess.run(["ssh", "-F", str(config), f"host{host.name}", cmd],
                          capture_output=True, text=True, timeout=timeout)


def export(a, b, config, group, *extra, remote=GOVERNOR_BIN):
    """governor export GROUP to host b, run on host a."""
    return on(a, config, "export", group, "--to", f"ssh://host{b.name}", "--ssh-config", config,
              "--remote-governor", remote, *extra)


def fetch_in(host, url: str) -> str | None:
    p = subprocess.run(["ip", "netns", "exec", host.netns, sys.executable, "-c",
                        "import sys, urllib.request; "
                        "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())",
                        url], capture_output=True, text=True, timeout=30)
    return p.stdout if p.returncode == 0 else None


@pytest.fixture(scope="module")
def shop_on_a(hosts, www):  # noqa: F811
    a, b, config = hosts
    page, _ = capture_web(a.state, www, PORT)
    assert page == PAGE
    assert gov(a.state, "groups", "create", "shop", "--class", "silver",
               "--limit", "memory=96MiB").returncode == 0
    assert gov(a.state, "groups", "assign", "shop", "web").returncode == 0
    return hosts


def test_export_then_serve_on_the_other_host_with_the_same_limits(shop_on_a):
    a, b, config = shop_on_a
    p = export(a, b, config, "shop", "--json")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert result["sent"] == result["blobs"] == 3        # manifest, config, layer
    here = {r["resource"]: r for r in gov_json(a.state, "admit", "shop")["rows"]}
    assert here["memory"]["asked"] == 48 * 2**20          # silver: half of 96 MiB guaranteed
    remote = json.loads(on(b, config, "installed", "--json").stdout)
    assert [(r["container"], r["limits"]["memory"]) for r in remote] == [("shop-web", 96 * 2**20)]
    local = gov(a.state, "groups", "show", "shop", "--json")
    assert remote[0]["limits"] == json.loads(local.stdout)["allocation"]["limits"]
    assert json.loads(gov(a.state, "hosts", "--json").stdout)[0]["url"] == "ssh://hostb"
    p = on(b, config, "start", "shop", "--json")
    assert p.returncode == 0, p.stderr
    address = json.loads(p.stdout)[0]["address"]
    assert address.startswith("10.231.47.")
    page = wait_for(lambda: fetch_in(b, f"http://{address}:{PORT}/index.html"), 30,
                    "the exported container to serve on host B")
    assert page == PAGE
    ps = json.loads(on(b, config, "ps", "--json").stdout)
    assert [s["limits"]["memory"] for s in ps if s["group"] == "shop-web"] == [96 * 2**20]
    # A second export has nothing left to send, and the group is there already.
    p = export(a, b, config, "shop")
    assert p.returncode == 2 and "group 'shop' exists here already" in p.stderr, p.stderr


def test_a_full_remote_refuses_with_its_table(shop_on_a):
    a, b, config = shop_on_a
    assert gov(a.state, "groups", "create", "big", "--class", "gold",
               "--limit", "memory=200MiB").returncode == 0
    assert gov(a.state, "groups", "assign", "big", "web").returncode == 0
    (b.state / "host.toml").write_text('[capacity]\nmemory = "160MiB"\n[reserve]\nmemory = 0\n')
    try:
        before = dump(b.state)
        p = export(a, b, config, "big")
        assert p.returncode == 1, p.stderr
        row = [line for line in p.stdout.splitlines() if line.startswith("memory")][0]
        # shop's 48 MiB guaranteed already; big asks 200 MiB of 160.
        assert "48.0MiB" in row and "200.0MiB" in row and "NO" in row, p.stdout
        assert "cannot hold group 'big': memory" in p.stderr
        assert dump(b.state) == before
    finally:
        (b.state / "host.toml").unlink()


@pytest.mark.parametrize("fact, value, resource", [("arch", '"aarch64"', "arch"),
                                                    ("kernel", '"5.4.0"', "kernel")])
def test_a_remote_of_another_arch_or_kernel_refuses(shop_on_a, fact, value, resource):
    a, b, config = shop_on_a
    if gov(a.state, "groups", "show", "other").returncode != 0:
        gov(a.state, "groups", "create", "other", "--class", "bronze")
        gov(a.state, "groups", "assign", "other", "web")
    (b.state / "host.toml").write_text(f"[facts]\n{fact} = {value}\n")
    try:
        before = dump(b.state)
        p = export(a, b, config, "other", "--json")
        assert p.returncode == 1, p.stderr
        adm = json.loads(p.stdout)
        assert adm["refused"] == [resource] and adm["host"]
        assert dump(b.state) == before
    finally:
        (b.state / "host.toml").unlink()


def test_unreachable_host_exit_2_and_nothing_changes(shop_on_a):
    a, b, config = shop_on_a
    before = dump(a.state)
    p = on(a, config, "export", "shop", "--to", f"ssh://{NET}.3:2222", "--ssh-config", config,
           "--remote-governor", GOVERNOR_BIN)
    assert p.returncode == 2
    assert f"cannot reach ssh://{NET}.3:2222" in p.stderr and "refused" in p.stderr
    assert dump(a.state) == before


def test_a_broken_copy_leaves_nothing_installed_and_a_second_try_completes(shop_on_a):
    """The export runs under governor run with net_send=1MiB/s, so the layer
    takes seconds to send; the test kills the ssh connection that carries it
    once part of it has arrived."""
    a, b, config = shop_on_a
    gov(a.state, "groups", "create", "slow", "--class", "bronze")
    gov(a.state, "groups", "assign", "slow", "web")
    # A store of its own on host B for this group: a fresh state directory.
    b_fresh = b.dir / "fresh"
    remote_gov = f"env GOVERNOR_STATE_DIR={b_fresh} {GOVERNOR_BIN}"
    slow = subprocess.Popen(
        ["ssh", "-F", str(config), "hosta", shlex.join(
            [GOVERNOR_BIN, "run", "--limit", "net_send=1MiB/s", "--", GOVERNOR_BIN, "export",
             "slow", "--to", "ssh://hostb", "--ssh-config", str(config), "--remote-governor",
             remote_gov])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def partial():
            tmp = b_fresh / "tmp"
            return tmp.exists() and any(f.stat().st_size > 256 * 1024 for f in tmp.iterdir()
                                        if f.name.startswith("blob-"))
        wait_for(partial, 60, "part of the layer to arrive on host B", interval=0.05)
        carriers = [p for p in psutil.process_iter(["name", "cmdline"])
                    if p.info["name"] == "ssh" and "receive" in " ".join(p.info["cmdline"] or [])]
        assert len(carriers) == 1
        carriers[0].kill()
        out, err = slow.communicate(timeout=60)
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.communicate()
    assert slow.returncode == 2, err
    assert "copy to ssh://hostb failed" in err
    # Nothing half-installed: no application, group or container; no partial blob.
    assert dump(b_fresh)["apps"] == [] and dump(b_fresh)["groups"] == []
    assert dump(b_fresh)["index"]["manifests"] == []
    assert not (b_fresh / "containers").exists() or not any((b_fresh / "containers").iterdir())
    whole = len(list((b_fresh / "store/blobs/sha256").iterdir()))
    assert whole == 2            # manifest and config arrived whole; the layer did not
    p = export(a, b, config, "slow", "--json", remote=remote_gov)
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert (result["sent"], result["blobs"]) == (1, 3)       # only the layer
    assert [r["container"] for r in result["installed"]] == ["slow-web"]
    assert not [f for f in (b_fresh / "tmp").iterdir() if f.name.startswith("blob-")]
