"""Containers: namespaces, root file system, /dev, /tmp, uid ranges,
isolation between containers, cleanup, and bad input."""
import fcntl
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import termios
import tty
from pathlib import Path

import psutil
import pytest

from _tenants import TENANTS, compile_c, login_terminal, make_rootfs, wait_for
from governor import GovernorError, Limits, PolicyError, SpawnError, Supervisor
from governor.container import Container
from governor.container import uidranges
from governor.container.registry import Registry
from governor.container.uidranges import FIRST_BASE, ID_RANGE

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)")
GOVERNOR = [sys.executable, "-m", "governor"]
@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


def run(box: Container, name: str, script: str, timeout: float = 20,
        limits: Limits | None = None) -> tuple[int, str]:
    """Runs sh -c script in a fresh container; (status, stdout+stderr)."""
    out = box.rootfs + ".out"
    with Supervisor(publish_state=False) as sup, open(out, "w") as f:
        g = sup.group(name, limits or Limits(processes=64), container=box)
        status = g.spawn(["sh", "-c", script], stdout=f, stderr=f).wait(timeout)
    return status, Path(out).read_text()


def cli(*args, state_dir, timeout=30):
    return subprocess.run(GOVERNOR + ["run", "--state-dir", str(state_dir), *args],
                          capture_output=True, text=True, timeout=timeout)


def registry(state_dir: Path) -> dict:
    path = state_dir / "registry.json"
    return json.loads(path.read_text()) if path.exists() else {"containers": {}, "leases": {}}


def governor_inits(under: Path) -> list[int]:
    """Container inits whose mounts come from beneath under (a test's tmp_path)."""
    pids = []
    for p in psutil.process_iter(["name"]):
        try:
            if p.info["name"] == "governor-init" and \
                    str(under) in Path(f"/proc/{p.pid}/mountinfo").read_text():
                pids.append(p.pid)
        except OSError:
            pass
    return pids


def test_pid_1_hostname_and_namespaces(tmp_path, state):
    box = Container(rootfs=str(make_rootfs(tmp_path / "a")), state_dir=str(state))
    status, out = run(box, "web-a", "echo pid=$$; hostname; cat /proc/1/cmdline; echo; "
                                    "cat /proc/1/comm; id -u; ls /proc | grep -c '^[0-9]'; "
                                    "kill -9 1 || echo kill-refused; "
                                    "hostname other || echo hostname-refused; "
                                    "mount -o remount,ro / || echo remount-refused; "
                                    "echo 0 > /proc/sys/net/ipv4/ip_forward || echo sysctl-refused; "
                                    "echo links: $(grep -o '^ *[a-z0-9]*:' /proc/net/dev)")
    assert status == 0, out
    lines = out.splitlines()
    assert lines[:5] == ["pid=2", "web-a", "governor-init\0", "governor-init", "0"], out
    assert int(lines[5]) <= 4, out   # init, sh, ls, grep: no host process
    for refused in ("kill-refused", "hostname-refused", "remount-refused", "sysctl-refused"):
        assert refused in out
    assert "links: lo:\n" in out, out   # --net none: its own namespace, loopback only


def test_no_typing_into_the_hosts_terminal_nor_raw_sockets(tmp_path, state):
    """The container shares governor's controlling terminal; TIOCSTI would
    let container root type commands into the host's shell."""
    rootfs = make_rootfs(tmp_path / "a")
    prog = compile_c(TENANTS / "escape_tenant.c", tmp_path, ("-static",))
    shutil.copy(prog, rootfs / "bin" / "escape")
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        r = subprocess.run(GOVERNOR + ["run", "--state-dir", str(state), "--name", "a",
                                       "--rootfs", str(rootfs), "--", "/bin/escape"],
                           stdin=slave, capture_output=True, text=True, timeout=30,
                           start_new_session=True,
                           preexec_fn=login_terminal)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "tiocsti=1 high=1 raw=1\n"   # EPERM each
        os.set_blocking(slave, False)
        with pytest.raises(BlockingIOError):
            os.read(slave, 16)   # nothing was typed
    finally:
        os.close(master)
        os.close(slave)


def test_host_files_are_not_reachable(tmp_path, state):
    marker = tmp_path / "host-marker"
    marker.write_text("host secret\n")
    box = Container(rootfs=str(make_rootfs(tmp_path / "a")), state_dir=str(state))
    status, out = run(box, "a", f"test -e {marker} && echo visible; echo root: $(ls /); "
                                f"cat /proc/1/root/{marker} || echo no-way")
    assert status == 0, out
    assert "visible" not in out and "host secret" not in out and "no-way" in out, out
    assert "root: bin dev etc proc tmp\n" in out, out


def test_dev_and_tmp(tmp_path, state):
    box = Container(rootfs=str(make_rootfs(tmp_path / "a")), state_dir=str(state))
    status, out = run(box, "a", "ls /dev; echo hello > /dev/null && echo null-ok; "
                                "stat -c '%a %F' /tmp; echo x > /tmp/f && cat /tmp/f; "
                                "grep -E ' /(dev/pts|tmp|proc) ' /proc/self/mounts")
    assert status == 0, out
    devices = {"full", "null", "random", "tty", "urandom", "zero", "pts", "ptmx"}
    assert devices <= set(out.split()), out
    assert {"sda", "kmsg", "mem"}.isdisjoint(out.split()), out
    assert "null-ok" in out and "1777 directory" in out and "\nx\n" in out, out
    mounts = [line.split()[:3] for line in out.splitlines() if line.startswith(("devpts",
                                                                                  "tmpfs", "proc"))]
    assert ["devpts", "/dev/pts", "devpts"] in mounts, out
    assert ["tmpfs", "/tmp", "tmpfs"] in mounts and ["proc", "/proc", "proc"] in mounts, out


def test_orphans_are_reaped_by_pid_1(tmp_path, state):
    box = Container(rootfs=str(make_rootfs(tmp_path / "a")), state_dir=str(state))
    # The orphan's parent exits at once: it is reparented to pid 1. Once it
    # ends, its /proc entry goes only if pid 1 reaps it (a zombie stays).
    status, out = run(box, "a", "orphan=$(sh -c 'sleep 0.3 >/dev/null & echo $!'); "
                                "echo parent=$(cut -d' ' -f4 /proc/$orphan/stat 2>/dev/null); "
                                "for i in $(seq 100); do test -e /proc/$orphan || break; "
                                "sleep 0.1; done; test -e /proc/$orphan && echo zombie || echo reaped")
    assert status == 0, out
    assert "reaped" in out and "zombie" not in out, out


def test_uid_range_per_name_reused_and_distinct(tmp_path, state):
    rootfs_a = make_rootfs(tmp_path / "a")
    box = Container(rootfs=str(rootfs_a), state_dir=str(state))
    status, out = run(box, "a", "id -u; touch /made-inside; echo x > /tmp/x")
    assert status == 0 and out.split()[0] == "0", out
    base = registry(state)["containers"]["a"]["uid_base"]
    made = os.lstat(rootfs_a / "made-inside")
    assert (made.st_uid, made.st_gid) == (base, base)
    assert os.lstat(rootfs_a / "bin" / "busybox").st_uid == base   # shifted on first use
    assert os.stat(rootfs_a).st_mode & 0o777 == 0o700
    # The same name again: the same range; another name: another one.
    box = Container(rootfs=str(rootfs_a), state_dir=str(state))
    status, _ = run(box, "a", "touch /again")
    assert status == 0 and os.lstat(rootfs_a / "again").st_uid == base
    rootfs_b = make_rootfs(tmp_path / "b")
    box_b = Container(rootfs=str(rootfs_b), state_dir=str(state))
    status, _ = run(box_b, "b", "touch /made-by-b")
    other = os.lstat(rootfs_b / "made-by-b").st_uid
    assert status == 0 and other >= base + ID_RANGE
    assert registry(state)["containers"]["b"]["uid_base"] == other


def test_containers_cannot_read_each_others_files(tmp_path, state):
    rootfs_a, rootfs_b = make_rootfs(tmp_path / "a"), make_rootfs(tmp_path / "b")
    box_a = Container(rootfs=str(rootfs_a), state_dir=str(state))
    assert run(box_a, "a", "echo secret-of-a > /data.txt")[0] == 0
    box_b = Container(rootfs=str(rootfs_b), state_dir=str(state))
    status, out = run(box_b, "b", f"cat {rootfs_a}/data.txt /data.txt; echo root: $(ls /)")
    assert "secret-of-a" not in out and out.count("No such file or directory") == 2, out
    assert "root: bin dev etc proc tmp\n" in out, out
    # Even on the host, B's uid cannot open A's files: A's top dir is 0700 and A's.
    base_b = box_b.uid_base
    peek = subprocess.run(["/bin/busybox", "cat", str(rootfs_a / "data.txt")], user=base_b,
                          group=base_b, extra_groups=[], capture_output=True, text=True)
    assert peek.returncode != 0 and "Permission denied" in peek.stderr
    # Nor can B be given A's rootfs.
    with pytest.raises(PolicyError, match="holds the files of container 'a'"):
        with Supervisor(publish_state=False) as sup:
            sup.group("b", container=Container(rootfs=str(rootfs_a), state_dir=str(state)))
    assert registry(state)["leases"] == {}


def test_read_only_rootfs_with_a_writable_volume(tmp_path, state):
    rootfs = make_rootfs(tmp_path / "ro")
    data = tmp_path / "data"
    data.mkdir()
    box = Container(rootfs=str(rootfs), read_only=True, volumes=[f"{data}:/srv/data"],
                    state_dir=str(state))
    assert box.writable_paths == [str(data)]
    status, out = run(box, "ro", "touch /nope; echo v > /srv/data/file && echo volume-ok; "
                                 "echo t > /tmp/t && echo tmp-ok")
    assert status == 0, out
    assert "Read-only file system" in out and "volume-ok" in out and "tmp-ok" in out, out
    assert not (rootfs / "nope").exists()
    assert os.lstat(data / "file").st_uid == box.uid_base
    assert os.lstat(rootfs / "bin" / "busybox").st_uid == 0   # read-only: not shifted


def test_a_symlink_in_the_rootfs_cannot_redirect_a_mount(tmp_path, state):
    rootfs = make_rootfs(tmp_path / "a")
    outside = tmp_path / "outside"
    outside.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    (data / "payload").write_text("x")
    box = Container(rootfs=str(rootfs), volumes=[f"{data}:/srv"], state_dir=str(state))
    # Checked when the container is made (test_bad_input_fails_cleanly);
    # a tenant's link made after that check still meets the set-up's.
    (rootfs / "srv").symlink_to(outside)
    with Supervisor(publish_state=False) as sup:
        g = sup.group("a", container=box)
        with pytest.raises(SpawnError) as err:
            g.spawn(["sh", "-c", "true"])
    assert err.value.step == "mount /srv"
    assert list(outside.iterdir()) == []
    assert "outside" not in Path("/proc/self/mountinfo").read_text()


def test_network_step_runs_before_the_command(tmp_path, state):
    """Container.start_network(init_pid) runs with the namespaces made and
    the command not yet started; if it fails, nothing is left."""
    seen = {}

    class Probe(Container):
        def start_network(self, init_pid):
            seen["netns"] = os.readlink(f"/proc/{init_pid}/ns/net")
            seen["children"] = psutil.Process(init_pid).children()
            seen["exe"] = seen["children"][0].exe()
            if self.read_only:
                raise RuntimeError("network set-up failed")

    rootfs = make_rootfs(tmp_path / "a")
    box = Probe(rootfs=str(rootfs), state_dir=str(state))
    status, out = run(box, "a", "readlink /proc/self/ns/net")
    assert status == 0 and out.strip() == seen["netns"] != os.readlink("/proc/self/ns/net")
    assert seen["exe"] == os.path.realpath(sys.executable)   # not exec'd yet
    with Supervisor(publish_state=False) as sup:
        g = sup.group("a", container=Probe(rootfs=str(rootfs), read_only=True,
                                           state_dir=str(state)))
        with pytest.raises(RuntimeError):
            g.spawn(["sh", "-c", "touch /tmp/ran"])
        assert governor_inits(tmp_path) == []
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                       for p in seen["children"])
    assert registry(state)["leases"] == {}


def test_one_command_at_a_time(tmp_path, state):
    box = Container(rootfs=str(make_rootfs(tmp_path / "a")), state_dir=str(state))
    with Supervisor(publish_state=False) as sup:
        g = sup.group("a", container=box)
        p = g.spawn(["sleep", "300"])
        with pytest.raises(GovernorError, match="runs a command already"):
            g.spawn(["true"])
        p.kill()
        assert g.spawn(["sh", "-c", "exit 3"]).wait(10) == 3


def test_cleanup_after_exit(tmp_path, state):
    rootfs = make_rootfs(tmp_path / "a")
    r = cli("--name", "a", "--rootfs", str(rootfs), "--", "/bin/sh", "-c",
            "sleep 300 & echo started", state_dir=state)
    assert r.returncode == 0 and "started" in r.stdout, r.stderr
    assert governor_inits(tmp_path) == []
    assert str(rootfs) not in Path("/proc/self/mountinfo").read_text()
    assert registry(state)["leases"] == {}


def test_cleanup_after_sigkill_and_stale_lease(tmp_path, state):
    rootfs = make_rootfs(tmp_path / "a")
    gov = subprocess.Popen(GOVERNOR + ["run", "--state-dir", str(state), "--name", "a",
                                       "--rootfs", str(rootfs), "--", "/bin/sh", "-c",
                                       "sleep 300 & sleep 300"])
    try:
        def tenant():
            kids = psutil.Process(gov.pid).children(recursive=True)
            sleeps = [k.pid for k in kids if k.name() == "sleep"]
            return len(sleeps) == 2 and [k.pid for k in kids]
        pids = wait_for(tenant, 20, "the container's two sleeps")
        assert registry(state)["leases"]["a"]["pid"] == gov.pid
        # Its mounts never reach the host's mount namespace.
        assert str(rootfs) not in Path("/proc/self/mountinfo").read_text()
        assert str(rootfs) in Path(f"/proc/{pids[0]}/mountinfo").read_text()
        assert len(governor_inits(tmp_path)) == 1
    finally:
        gov.send_signal(signal.SIGKILL)
        gov.wait(10)
    for pid in pids:
        wait_for(lambda: not psutil.pid_exists(pid) or
                 psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 5, f"pid {pid} gone")
    assert governor_inits(tmp_path) == []
    assert str(rootfs) not in Path("/proc/self/mountinfo").read_text()
    r = cli("--name", "a", "--rootfs", str(rootfs), "--", "/bin/echo", "again", state_dir=state)
    assert r.returncode == 0 and r.stdout == "again\n", r.stderr
    assert "removed the stale lease of container a" in r.stderr
    assert f"pid {gov.pid}" in r.stderr
    assert registry(state)["leases"] == {}


@pytest.mark.parametrize("case", ["missing", "file", "no-command", "volume", "volume-on-link",
                                  "volume-on-file", "net", "no-name"])
def test_bad_input_fails_cleanly(tmp_path, state, case):
    rootfs = make_rootfs(tmp_path / "a")
    (tmp_path / "file").write_text("")
    (rootfs / "srv").symlink_to("/etc")   # as a tenant could leave it
    (tmp_path / "www").mkdir()
    vol = f"{tmp_path}/www:/srv/www"
    args = {"missing": (["--rootfs", str(tmp_path / "nope")], 2, "--rootfs: ", "no such directory"),
            "file": (["--rootfs", str(tmp_path / "file")], 2, "--rootfs: ", "not a directory"),
            "no-command": (["--rootfs", str(rootfs), "--", "/bin/httpd-missing"], 127,
                           "/bin/httpd-missing: ", "command not found in the rootfs"),
            "volume": (["--rootfs", str(rootfs), "--volume", "/tmp:relative"], 2, "--volume: ",
                       "absolute"),
            "volume-on-link": (["--rootfs", str(rootfs), "--volume", vol], 2, "--volume: ",
                               f"{vol}: /srv in the rootfs is a symlink"),
            "volume-on-file": (["--rootfs", str(rootfs), "--volume", f"{tmp_path}/www:/etc/passwd"],
                               2, "--volume: ", "/etc/passwd in the rootfs is not a directory"),
            "net": (["--rootfs", str(rootfs), "--net", "10.88.0.5/40"], 2, "--net: ",
                    "bad prefix /40"),
            "no-name": (["--rootfs", str(rootfs)], 2, "--rootfs: ", "needs --name")}
    argv, code, prefix, reason = args[case]
    if case != "no-name":
        argv = ["--name", "a"] + argv
    if "--" not in argv:
        argv += ["--", "/bin/sh", "-c", "true"]
    r = cli(*argv, state_dir=state)
    assert r.returncode == code, r.stderr
    assert r.stderr.startswith("governor: " + prefix) and reason in r.stderr, r.stderr
    assert registry(state) == {"containers": {}, "leases": {}}   # nothing recorded
    assert governor_inits(tmp_path) == []
    assert os.lstat(rootfs / "bin" / "busybox").st_uid == 0        # nothing shifted


def test_a_running_name_is_refused(tmp_path, state):
    rootfs = make_rootfs(tmp_path / "a")
    r_fd, w_fd = os.pipe()
    first = subprocess.Popen(GOVERNOR + ["run", "--state-dir", str(state), "--name", "a",
                                         "--rootfs", str(rootfs), "--", "/bin/sh", "-c",
                                         "echo up; read x"], stdin=r_fd,
                             stdout=subprocess.PIPE, text=True)
    os.close(r_fd)
    try:
        assert first.stdout.readline() == "up\n"
        r = cli("--name", "a", "--rootfs", str(make_rootfs(tmp_path / "b")), "--",
                "/bin/sh", "-c", "true", state_dir=state)
        assert r.returncode == 2
        assert f"--name: a: container is running already (governor pid {first.pid})" in r.stderr
        assert registry(state)["leases"]["a"]["pid"] == first.pid   # the first one's, intact
    finally:
        os.write(w_fd, b"done\n")
        os.close(w_fd)
        assert first.wait(20) == 0
    assert registry(state)["leases"] == {}


@pytest.fixture
def own_ledger(tmp_path, monkeypatch):
    """A ledger of uid ranges of the test's own, no /etc/subuid ranges, and
    no uid in use (other tests' containers run meanwhile)."""
    monkeypatch.setattr(uidranges, "LEDGER_DIR", tmp_path / "ledger")
    monkeypatch.setattr(uidranges, "_reserved_ranges", lambda: [])
    monkeypatch.setattr(uidranges, "_ids_in_use", lambda: set())
    return tmp_path / "ledger" / "uid-ranges.json"


def test_uid_bases_skip_subuid_ranges_and_each_other(tmp_path, monkeypatch, own_ledger):
    monkeypatch.setattr(uidranges, "_reserved_ranges",
                        lambda: [(FIRST_BASE + 10, FIRST_BASE + 20)])
    r = Registry(tmp_path)
    with r.locked() as doc:
        bases = [r.entry(doc, name)["uid_base"] for name in ("a", "b", "a")]
    assert bases == [FIRST_BASE + ID_RANGE, FIRST_BASE + 2 * ID_RANGE, FIRST_BASE + ID_RANGE]
    with r.locked() as doc:   # written back, read again
        assert r.entry(doc, "b")["uid_base"] == FIRST_BASE + 2 * ID_RANGE



def test_two_registries_never_hand_out_one_uid_range(tmp_path, own_ledger, monkeypatch):
    """Two --state-dir registries on one host: each base is taken under a
    host-wide lock and recorded in a host-wide ledger, so the second skips
    the first's; a range whose registry is gone is free again; a slot with
    a uid in use by a process is skipped."""
    one, two = Registry(tmp_path / "one"), Registry(tmp_path / "two")
    with one.locked() as doc:
        first = one.entry(doc, "web")["uid_base"]
        # One's claim is in flight: its registry does not record the base yet.
        with two.locked() as doc2:
            second = two.entry(doc2, "web")["uid_base"]
    assert (first, second) == (FIRST_BASE, FIRST_BASE + ID_RANGE)
    ledger = json.loads(own_ledger.read_text())["ranges"]
    assert ledger[str(first)] == {"registry": str(one.path), "name": "web"}
    shutil.rmtree(one.dir)   # its containers and their ranges are gone
    monkeypatch.setattr(uidranges, "_ids_in_use", lambda: {FIRST_BASE + 1000})
    with two.locked() as doc:
        third = two.entry(doc, "db")["uid_base"]
    assert third == FIRST_BASE + 2 * ID_RANGE   # FIRST_BASE+1000 runs a process
    assert str(first) not in json.loads(own_ledger.read_text())["ranges"]


def test_a_process_in_a_range_keeps_it_from_being_handed_out(tmp_path, own_ledger,
                                                            monkeypatch):
    """The uids in use are read from the host's processes."""
    monkeypatch.undo()
    monkeypatch.setattr(uidranges, "LEDGER_DIR", tmp_path / "ledger")
    sleeper = subprocess.Popen(["sleep", "60"], user=FIRST_BASE + 77, group=FIRST_BASE + 77,
                               extra_groups=[])
    try:
        wait_for(lambda: FIRST_BASE + 77 in uidranges._ids_in_use(), 5, "the sleeper's uid")
        r = Registry(tmp_path / "state")
        with r.locked() as doc:
            base = r.entry(doc, "a")["uid_base"]
        assert not base <= FIRST_BASE + 77 < base + ID_RANGE
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_host_file_hard_linked_into_a_rootfs_is_not_given_away(tmp_path, state):
    """A host file with a hard link in the rootfs would have been chowned
    into the container's range, and the container could then rewrite it.
    The run is refused (exit 2 naming the link), nothing is shifted or
    recorded, and the host file keeps its owner and content. Hard links
    among the rootfs's own files are fine."""
    rootfs = make_rootfs(tmp_path / "a")
    host_file = tmp_path / "host.conf"
    host_file.write_text("host secret\n")
    os.chown(host_file, 0, 0)
    os.link(host_file, rootfs / "etc" / "linked.conf")
    os.link(rootfs / "etc" / "passwd", rootfs / "etc" / "passwd.hard")   # both inside
    r = cli("--name", "a", "--rootfs", str(rootfs), "--", "/bin/sh", "-c",
            "echo tenant > /etc/linked.conf", state_dir=state)
    assert r.returncode == 2, r.stderr
    assert r.stderr == (f"governor: --rootfs: {rootfs}/etc/linked.conf: a hard link of a file "
                        "with 1 other link(s) outside the container's files; its owner is not "
                        "changed for the container (copy it instead)\n")
    st = os.stat(host_file)
    assert (st.st_uid, st.st_gid, host_file.read_text()) == (0, 0, "host secret\n")
    assert os.lstat(rootfs / "bin" / "busybox").st_uid == 0   # nothing shifted
    assert registry(state) == {"containers": {}, "leases": {}}
    assert governor_inits(tmp_path) == []
    os.unlink(rootfs / "etc" / "linked.conf")
    r = cli("--name", "a", "--rootfs", str(rootfs), "--", "/bin/cat", "/etc/passwd.hard",
            state_dir=state)
    assert r.returncode == 0 and r.stdout.startswith("root:x:0:0"), r.stderr
    assert os.stat(rootfs / "etc" / "passwd").st_uid == box_base(state, "a")


def box_base(state: Path, name: str) -> int:
    return registry(state)["containers"][name]["uid_base"]


@pytest.mark.parametrize("option,value,named", [
    ("--rootfs", "/usr", "/usr"),
    ("--rootfs", "/bin", "/usr/bin"),          # resolved: /bin is a link on merged-/usr hosts
    ("--rootfs", "/usr/local/lib", "/usr/local/lib"),
    ("--volume", "/etc:/data", "/etc"),
    ("--volume", "/home:/data", "/home"),
    ("--volume", "/var:/data", "/var"),
])
def test_system_directories_are_refused(tmp_path, state, option, value, named):
    """Refused before anything is made. The command is missing from the
    rootfs on purpose: were the refusal to break, the run would stop at the
    command's look-up (exit 127), which comes before any file is shifted,
    instead of giving the host's files to a container."""
    rootfs = make_rootfs(tmp_path / "a")
    args = [option, value] + (["--rootfs", str(rootfs)] if option == "--volume" else [])
    before = {p: os.lstat(p) for p in ("/usr/bin/busybox", "/etc/passwd", "/etc")}
    r = cli("--name", "a", *args, "--", "/no-such-command", state_dir=state)
    assert r.returncode == 2, r.stderr
    real = os.path.realpath(named)
    assert r.stderr.startswith(f"governor: {option}: {real}: "), r.stderr
    assert "--allow-host-dir" in r.stderr or "governor's state" in r.stderr, r.stderr
    assert {p: os.lstat(p) for p in before} == before   # owners, modes, times: untouched
    assert registry(state) == {"containers": {}, "leases": {}}


def test_allow_host_dir_and_the_state_directory(tmp_path, state):
    """--allow-host-dir lifts the refusal of a system directory (checked
    without running: the run would shift it); a directory holding the
    registry is refused even so (the tenant could rewrite its uid base)."""
    box = Container(rootfs="/usr", read_only=True, allow_host_dir=True, state_dir=str(state))
    assert box.rootfs == "/usr"
    rootfs = make_rootfs(tmp_path / "a")
    state.mkdir()
    with pytest.raises(PolicyError) as ei:
        Container(rootfs=str(rootfs), volumes=[f"{tmp_path}:/data"], allow_host_dir=True,
                  state_dir=str(state))
    assert str(ei.value) == f"--volume: {tmp_path}: holds governor's state ({state})"
    r = subprocess.run(GOVERNOR + ["run", "--allow-host-dir", "--", "true"], text=True,
                       capture_output=True, timeout=30)
    assert r.returncode == 2 and r.stderr == "governor: --allow-host-dir: needs --rootfs\n"


# runc's defaults, which `governor run --rootfs` gives every container.
def test_masked_and_read_only_proc_paths(tmp_path, state):
    """Masked: empty to read (files are /dev/null, directories an empty
    read-only tmpfs); read-only: writes fail with EROFS, though container
    root could write there otherwise. Checked for every default path this
    kernel has (it has no /proc/kcore nor /proc/sysrq-trigger)."""
    from governor.container.setup import DEFAULT_MASKED, DEFAULT_READONLY
    masked_files = [p for p in DEFAULT_MASKED if os.path.isfile(p) and p.startswith("/proc")]
    masked_dirs = [p for p in DEFAULT_MASKED if os.path.isdir(p) and p.startswith("/proc")]
    readonly = [p for p in DEFAULT_READONLY if os.path.exists(p)]
    assert "/proc/keys" in masked_files and "/proc/sys" in readonly
    box = Container(rootfs=str(make_rootfs(tmp_path / "a")), state_dir=str(state))
    script = "; ".join(
        [f"echo {f} bytes=$(head -c 64 {f} | wc -c)" for f in masked_files] +
        [f"echo {d} entries=$(ls -A {d} | wc -l)" for d in masked_dirs] +
        [f"(touch {d}/x) 2>&1 | grep -q 'Read-only' && echo {d} erofs" for d in masked_dirs] +
        ["(echo x > /proc/sys/kernel/hostname) 2>&1 | grep -q 'Read-only' && echo sysctl erofs"] +
        [f"grep -q ' {p} ro,' /proc/self/mountinfo && echo {p} ro" for p in readonly] +
        ["ls -A /sys 2>/dev/null | wc -l"])
    status, out = run(box, "masked", script, limits=Limits())
    assert status == 0, out
    lines = out.splitlines()
    for f in masked_files:
        assert f"{f} bytes=0" in lines, out
    for d in masked_dirs:
        assert f"{d} entries=0" in lines and f"{d} erofs" in lines, out
    for p in readonly:
        assert f"{p} ro" in lines, out
    assert "sysctl erofs" in lines, out
    assert lines[-1] == "0", out    # no /sys: nothing of the host's hardware
    assert Path("/proc/timer_list").stat().st_size == 0 and Path("/proc/timer_list").read_text()


def test_bounding_set_is_dockers_and_no_new_privs(tmp_path, state):
    box = Container(rootfs=str(make_rootfs(tmp_path / "a")), state_dir=str(state))
    status, out = run(box, "caps", "grep -E '^(CapBnd|CapEff|NoNewPrivs):' /proc/self/status",
                      limits=Limits())
    assert status == 0, out
    fields = dict(line.split(":\t") for line in out.splitlines())
    # CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE
    # NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP
    assert fields["CapBnd"] == "00000000a80425fb", out
    assert fields["CapEff"] == "00000000a80425fb", out
    assert fields["NoNewPrivs"] == "1", out


# ---- stdio: pipes or a pty of the container's own, relayed by governor run ----

def test_a_tenant_cannot_reach_the_host_file_behind_its_stdout(tmp_path, state):
    """`governor run ... >> host.log`: the tenant's stdout is a pipe that
    governor relays into host.log, so its ftruncate, fallocate and reopen
    through /proc/self/fd/1 reach nothing, and the link names a pipe, not
    the host's path. The host file keeps its content, size and owner, and
    gets the tenant's output appended."""
    rootfs = make_rootfs(tmp_path / "a")
    prog = compile_c(Path(__file__).parent / "hostile" / "stdio_tenant.c", tmp_path, ("-static",))
    shutil.copy(prog, rootfs / "bin" / "stdio_tenant")
    log = tmp_path / "host.log"
    log.write_text("host data\n")
    os.chown(log, 0, 0)
    before = os.stat(log)
    with open(log, "a") as out:
        r = subprocess.run(GOVERNOR + ["run", "--state-dir", str(state), "--name", "a",
                                       "--rootfs", str(rootfs), "--", "/bin/stdio_tenant"],
                           stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE,
                           text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    line = "ftruncate=EINVAL fallocate=ESPIPE reopen=EACCES link=pipe:\n"
    assert log.read_text() == "host data\n" + line
    after = os.stat(log)
    assert after.st_size == len("host data\n" + line) and after.st_blocks <= 8
    assert (after.st_uid, after.st_gid, after.st_mode) == (before.st_uid, before.st_gid,
                                                           before.st_mode)


def test_relayed_stdio_behaves_as_native(tmp_path, state):
    """Input to EOF, stdout and stderr apart, the exit status; with
    `| head -1` the tenant's writer dies of SIGPIPE, as natively (141)."""
    rootfs = make_rootfs(tmp_path / "a")
    argv = GOVERNOR + ["run", "--state-dir", str(state), "--name", "a", "--rootfs", str(rootfs),
                       "--"]
    r = subprocess.run(argv + ["/bin/sh", "-c", "cat; echo err >&2; exit 4"], input="one\ntwo",
                       capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout) == (4, "one\ntwo"), r.stderr
    assert r.stderr.endswith("err\n"), r.stderr
    r = subprocess.run(argv + ["/bin/dd", "if=/dev/zero", "bs=65536", "count=128"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout == bytes(8 << 20), r.stderr   # every byte
    # 2>&1 into one file: one pipe, so the order is kept.
    out = tmp_path / "both"
    with open(out, "w") as f:
        r = subprocess.run(argv + ["/bin/sh", "-c", "for i in 1 2 3; do echo o$i; echo e$i >&2; "
                                                   "done"],
                           stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                           timeout=30)
    assert r.returncode == 0 and out.read_text() == "o1\ne1\no2\ne2\no3\ne3\n"
    writer = subprocess.Popen(argv + ["/bin/sh", "-c", "while echo y; do :; done"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        assert writer.stdout.readline() == b"y\n"
        writer.stdout.close()   # as head does after its line
        assert writer.wait(30) == 128 + signal.SIGPIPE
    finally:
        writer.kill()
        writer.wait()


def read_until(fd: int, text: bytes, timeout: float = 20) -> bytes:
    """What the pty master gives until text has come (or a failure)."""
    import select
    import time
    got, deadline = b"", time.monotonic() + timeout
    while text not in got:
        left = deadline - time.monotonic()
        assert left > 0, f"no {text!r} from the terminal; got {got!r}"
        if select.select([fd], [], [], left)[0]:
            try:
                got += os.read(fd, 4096)
            except OSError:   # EIO: every slave closed
                break
    return got


def test_a_terminal_is_relayed_through_a_pty_of_the_containers_own(tmp_path, state):
    """With a terminal as stdin, the command gets a pty of its container's
    /dev/pts (not the host's terminal) of the caller's size, as its
    controlling terminal; the caller's terminal is raw while it runs and
    restored when it ends, also after a SIGTERM."""
    rootfs = make_rootfs(tmp_path / "a")
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 31, 97, 0, 0))
    cooked = termios.tcgetattr(slave)
    try:
        gov = subprocess.Popen(
            GOVERNOR + ["run", "--state-dir", str(state), "--name", "a", "--rootfs", str(rootfs),
                        "--", "/bin/sh", "-c", "busybox tty; busybox stty size; read line; "
                                               "echo got:$line; sleep 300"],
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            preexec_fn=login_terminal)
        try:
            out = read_until(master, b"31 97")
            assert b"/dev/pts/0\r\n31 97" in out, out
            assert not termios.tcgetattr(slave)[3] & termios.ICANON   # raw meanwhile
            os.write(master, b"hello\r")
            assert b"got:hello" in read_until(master, b"got:hello")
            gov.send_signal(signal.SIGTERM)   # passed on: sh dies of it
            assert gov.wait(30) == 128 + signal.SIGTERM
        finally:
            gov.kill()
            gov.wait()
        assert termios.tcgetattr(slave) == cooked
    finally:
        os.close(master)
        os.close(slave)
