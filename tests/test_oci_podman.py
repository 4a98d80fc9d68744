"""podman drives governor-oci: a busybox image imported from a rootfs, run
with --network none and with podman's own network (netavark) publishing a
port to the host's loopback; exec, stop, kill, rm -f; the limits podman's
flags set, measured inside the container. podman's storage, run state,
networks, events and governor-oci's root all live in the test's temporary
directory: nothing of the host's configuration is read or changed."""
import json
import os
import urllib.request
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _tenants import make_rootfs, wait_for

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")]
GOVERNOR_OCI = str(Path(sys.executable).parent / "governor-oci")
IMAGE = "localhost/busybox:governor-test"


class Podman:
    def __init__(self, top: Path):
        self.top = top
        self.oci_root = top / "oci-root"
        # governor-oci's state under the test's directory: podman passes no
        # --root (and conmon's cleanup does not pass podman's --runtime-flag)
        runtime = top / "governor-oci"
        runtime.write_text(f'#!/bin/sh\nexec {GOVERNOR_OCI} --root {self.oci_root} "$@"\n')
        runtime.chmod(0o755)
        (top / "storage.conf").write_text(f"""[storage]
driver = "overlay"
graphroot = "{top}/storage"
runroot = "{top}/run"
""")
        env_vars = [f"GOVERNOR_RUN_DIR={os.environ.get('GOVERNOR_RUN_DIR', top / 'gov-run')}",
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        (top / "containers.conf").write_text(f"""[containers]
cgroups = "disabled"
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{top}/events.log"
tmp_dir = "{top}/tmp"
runtime = "governor"
runtime_supports_json = ["governor"]
runtime_supports_nocgroup = ["governor"]
conmon_env_vars = {json.dumps(env_vars)}

[engine.runtimes]
governor = ["{runtime}"]

[network]
network_config_dir = "{top}/networks"
""")
        self.env = {**os.environ, "CONTAINERS_CONF": str(top / "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": str(top / "storage.conf"),
                    "CONTAINERS_REGISTRIES_CONF": "/dev/null"}

    def __call__(self, *args, timeout=60, check=False) -> subprocess.CompletedProcess:
        done = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {done.returncode}\n{done.stderr}")
        return done

    def containers(self) -> list[str]:
        return self("ps", "-aq", check=True).stdout.split()

    def mounts(self) -> list[str]:
        return [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                if str(self.top) in line]


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    top = tmp_path_factory.mktemp("podman")
    pm = Podman(top)
    rootfs = make_rootfs(top / "rootfs")
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(top / "busybox.tar"), "."], check=True)
    pm("import", str(top / "busybox.tar"), IMAGE, check=True)
    yield pm
    pm("rm", "-af", "-t", "0")
    pm("rmi", "-af")
    for line in reversed(pm.mounts()):   # whatever podman left mounted
        subprocess.run(["umount", "-l", line.split()[4]], capture_output=True)
    assert not pm.mounts()
    shutil.rmtree(top, ignore_errors=True)


def run(pm: Podman, *args, timeout=60) -> subprocess.CompletedProcess:
    return pm("run", "--rm", *args, timeout=timeout)


def test_run_echo_and_exit_status(podman):
    done = run(podman, "--network", "none", IMAGE, "sh", "-c",
               "echo hello; hostname; cat /proc/1/cmdline; echo; exit 3")
    assert done.returncode == 3, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "hello" and lines[2] == "governor-init\0", done.stdout
    assert not list(podman.oci_root.iterdir()), "governor-oci left its state behind"


def test_podman_sees_our_errors(podman):
    done = run(podman, "--network", "none", IMAGE, "/no/such/program")
    assert done.returncode != 0
    assert "executable file not found" in done.stderr, done.stderr


def test_defaults_of_a_podman_container(podman):
    """podman's config.json: its capabilities, masked and read-only paths,
    a read-only /sys, an empty read-only cgroup directory, no new user
    namespace: all as runc would give them."""
    done = run(podman, "--network", "none", IMAGE, "sh", "-c",
               "grep -E '^(CapBnd|NoNewPrivs):' /proc/self/status; "
               "head -c 10 /proc/keys | wc -c; "
               "(echo 1 > /proc/sys/kernel/hostname) 2>&1 | grep -c Read-only; "
               "touch /sys/x 2>&1 | grep -c Read-only; ls /sys/fs/cgroup | wc -l; "
               "cat /proc/net/dev | grep -c :")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "CapBnd:\t00000000a80425fb", done.stdout
    assert lines[1:] == ["NoNewPrivs:\t0", "0", "1", "1", "0", "1"], done.stdout


def test_exec_stop_kill_and_rm(podman):
    cid = podman("run", "-d", "--network", "none", IMAGE, "sh", "-c",
                 "trap '' TERM; while :; do sleep 1; done", check=True).stdout.strip()
    try:
        done = podman("exec", cid, "sh", "-c", "echo in-exec; ps -o comm | sort | uniq -c")
        assert done.returncode == 0, done.stderr
        assert "in-exec" in done.stdout
        assert podman("exec", cid, "sh", "-c", "exit 7").returncode == 7
        # SIGTERM is ignored: podman stop waits its timeout, then SIGKILL
        started = time.monotonic()
        done = podman("stop", "-t", "2", cid)
        took = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        assert 1.9 < took < 10, took
        status = podman("inspect", "-f", "{{.State.ExitCode}}", cid, check=True).stdout.strip()
        assert status == "137"
        podman("start", cid, check=True)
        assert podman("kill", "-s", "KILL", cid).returncode == 0
        wait_for(lambda: podman("inspect", "-f", "{{.State.Status}}", cid).stdout.strip()
                 == "exited", 10, "podman kill")
        podman("start", cid, check=True)
        assert podman("rm", "-f", "-t", "0", cid).returncode == 0
        assert cid not in podman.containers()
    finally:
        podman("rm", "-f", "-t", "0", cid)
    assert not list(podman.oci_root.iterdir())
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and
                 _cmdline(p).startswith("sh\0-c\0trap '' TERM")]
    assert leftovers == []


def _cmdline(p: Path) -> str:
    try:
        return (p / "cmdline").read_text()
    except OSError:
        return ""


def test_podman_network_and_a_published_port(podman, host_net_lock, tmp_path):
    """netavark's bridge, a port published on the host's loopback, a
    busybox httpd inside answering a request from the host."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hello from governor-oci\n")
    net = f"govtest{os.getpid()}"
    podman("network", "create", "--disable-dns", "--subnet", "10.231.77.0/24", net, check=True)
    try:
        cid = podman("run", "-d", "--network", net, "-p", "127.0.0.1:18481:8080",
                     "-v", f"{www}:/www", IMAGE, "httpd", "-f", "-p", "8080", "-h", "/www",
                     check=True).stdout.strip()
        body = wait_for(lambda: _get("http://127.0.0.1:18481/index.html"), 10, "httpd")
        assert body == "hello from governor-oci\n"
        inside = podman("exec", cid, "cat", "/proc/net/dev", check=True).stdout
        assert "eth0" in inside
        podman("rm", "-f", "-t", "0", cid, check=True)
    finally:
        podman("rm", "-af", "-t", "0")
        podman("network", "rm", "-f", net)


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read().decode()
    except OSError:
        return None


def _storage_device(podman) -> str:
    """The block device (in /dev) that holds podman's storage."""
    dev = os.stat(podman.top / "storage").st_dev
    for name in sorted(os.listdir("/dev")):
        st = os.stat(f"/dev/{name}")
        if stat.S_ISBLK(st.st_mode) and st.st_rdev == dev:
            return f"/dev/{name}"
    pytest.skip("the storage's device has no node in /dev")


# Limits set with podman's flags, measured inside the container.
def test_pids_limit_is_exact(podman):
    """--pids-limit 32: sh and 31 sleeps; the next fork fails (EAGAIN), as
    at a pids cgroup's limit (busybox sh then gives up)."""
    done = run(podman, "--network", "none", "--pids-limit", "32", IMAGE, "sh", "-c",
               "i=0; while [ $i -lt 64 ]; do sleep 30 & i=$((i+1)); echo $i; done")
    assert "can't fork: Resource temporarily unavailable" in done.stderr, done.stderr
    assert done.stdout.split()[-1] == "31", done.stdout


# A shell that spins on builtins only (no new task, which would start
# uncapped until the controller's next pass), timing its own CPU time
# against /proc/uptime: 1 s to settle, then about 4 s measured.
_SPIN = """spin() { while :; do read t _ < /proc/uptime; [ "${t%.*}" -ge "$1" ] && break; done; }
read t _ < /proc/uptime; spin $(( ${t%.*} + 1 ))
read t0 _ < /proc/uptime; read s0 < /proc/$$/stat
spin $(( ${t0%.*} + 5 ))
read t1 _ < /proc/uptime; read s1 < /proc/$$/stat
echo "$t0 $t1"; echo "$s0"; echo "$s1"
"""


def test_cpus_half_a_cpu(podman):
    done = run(podman, "--network", "none", "--cpus", "0.5", IMAGE, "sh", "-c", _SPIN)
    assert done.returncode == 0, done.stderr
    times, before, after = done.stdout.splitlines()

    def cpu(stat: str) -> float:
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    t0, t1 = map(float, times.split())
    share = (cpu(after) - cpu(before)) / (t1 - t0)
    print(f"--cpus 0.5: {share * 100:.1f}% of one CPU over {t1 - t0:.2f}s")
    assert abs(share - 0.5) <= 0.02, share


def test_device_write_bps(podman):
    """--device-write-bps on the device that holds podman's storage limits
    the container's writes to its own (overlay) files, whose st_dev is the
    overlay's anonymous device, not that one."""
    dev = _storage_device(podman)
    size = 3 * 1024 * 1024
    script = ("read t0 _ < /proc/uptime; dd if=/dev/zero of=/data bs=65536 count=48 2>/dev/null; "
              "read t1 _ < /proc/uptime; echo $t0 $t1; ls -l /data")
    done = run(podman, "--network", "none", "--device-write-bps", f"{dev}:1mb", IMAGE,
               "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    t0, t1 = map(float, done.stdout.splitlines()[0].split())
    assert str(size) in done.stdout.splitlines()[1]
    burst = 0.1 * 1024 * 1024
    rate = (size - burst) / (t1 - t0)
    print(f"--device-write-bps 1mb: {rate / 1024 / 1024:.3f} MiB/s over {t1 - t0:.2f}s")
    assert abs(rate / (1024 * 1024) - 1) <= 0.03, rate


def test_memory_limit_kills_past_it(podman):
    """--memory 64m: a process whose resident memory passes it is killed,
    as the OOM killer does at a cgroup's limit; one below it runs."""
    ok = run(podman, "--network", "none", "--memory", "64m", IMAGE, "sh", "-c",
             "dd if=/dev/zero of=/dev/null bs=32M count=2 2>/dev/null && echo fits")
    assert ok.returncode == 0 and "fits" in ok.stdout, ok.stderr
    # About 20 s natively: resident memory is sampled (every 0.2 s), and a
    # copy shorter than a few samples could end before one sees it.
    big = run(podman, "--network", "none", "--memory", "64m", IMAGE, "sh", "-c",
              "dd if=/dev/zero of=/dev/null bs=128M count=2000 2>/dev/null; echo status=$?")
    assert "status=137" in big.stdout, (big.stdout, big.stderr)


def test_governor_annotations_through_podman(podman):
    bad = run(podman, "--network", "none", "--annotation", "org.governor.limit.nonsense=1",
              IMAGE, "true")
    assert bad.returncode != 0
    assert "org.governor.limit.nonsense" in bad.stderr, bad.stderr
    done = run(podman, "--network", "none", "--annotation", "org.governor.limit.processes=3",
               "--annotation", "org.governor.on_exhausted.processes=deny", IMAGE, "sh", "-c",
               "sleep 5 & sleep 5 & sleep 5 & echo $?")
    assert "can't fork" in done.stderr or "Resource temporarily" in done.stderr, done.stderr


def test_a_seccomp_profile_through_podman(podman, tmp_path):
    """podman --security-opt seccomp=FILE: the profile applies with the
    governor's rules in one filter; a governed call it denies (pwrite64,
    under --device-write-bps) stays denied, an allowed one (write) is held."""
    from _tenants import TENANTS, compile_c

    tenant = compile_c(TENANTS / "oci_seccomp_tenant.c", tmp_path, ("-static",))
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        {"names": ["pwrite64"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}))
    args = ["--network", "none", "-v", f"{tenant}:/sctenant:ro",
            "--device-write-bps", f"{_storage_device(podman)}:1mb", IMAGE, "/sctenant"]
    done = run(podman, "--security-opt", f"seccomp={profile}", *args)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["getcwd EPERM", "pwrite64 EACCES"], done.stdout
    assert 0.3 < float(lines[2].split()[-2]) < 0.8, done.stdout   # as in test_oci.py
    default = run(podman, *args)    # podman's own profile: both allowed
    assert default.stdout.splitlines()[:2] == ["getcwd ok", "pwrite64 ok"], default.stdout
