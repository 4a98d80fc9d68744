"""governor-oci driven as an engine drives it: create, start, state, kill,
delete, exec, ps, pause; what the container sees; the supervisor's life
and death; bad bundles."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _tenants import make_rootfs, wait_for
from governor.oci.spec import default_spec

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)")
GOVERNOR_OCI = str(Path(sys.executable).parent / "governor-oci")


@pytest.fixture
def oci(tmp_path):
    root = tmp_path / "root"

    def call(*args, timeout=30, stdout=None, **kw):
        """Files, not pipes, for stdio: a container inherits the caller's
        (as under runc), so a pipe would stay open while it runs."""
        with open(tmp_path / "stdout", "w+") as out, open(tmp_path / "stderr", "w+") as err:
            done = subprocess.run([GOVERNOR_OCI, "--root", str(root), *args],
                                  stdout=stdout or out, stderr=err, timeout=timeout, **kw)
            out.seek(0)
            err.seek(0)
            done.stdout, done.stderr = out.read(), err.read()
        return done
    call.root = root
    yield call
    for cid in (os.listdir(root) if root.exists() else []):
        call("delete", "--force", cid)
    assert not root.exists() or os.listdir(root) == []


def bundle(tmp_path: Path, args: list[str], **changes) -> Path:
    b = tmp_path / "bundle"
    if not (b / "rootfs").exists():
        make_rootfs(b / "rootfs")
    spec = default_spec()
    spec["process"].update(terminal=False, args=args)
    spec["root"]["readonly"] = False
    for key, value in changes.items():
        target = spec
        *path, last = key.split("__")
        for p in path:
            target = target.setdefault(p, {})
        target[last] = value
    (b / "config.json").write_text(json.dumps(spec))
    return b


def state(oci, cid: str) -> dict:
    done = oci("state", cid)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] not in "ZX"
    except OSError:
        return False


def test_lifecycle(oci, tmp_path):
    out = tmp_path / "out"
    b = bundle(tmp_path, ["sh", "-c", "echo started; read x; echo got $x; exit 5"])
    r, w = os.pipe()
    with open(out, "w") as f:
        done = oci("create", "--bundle", str(b), "--pid-file", str(tmp_path / "pid"), "c1",
                   stdin=r, stdout=f)
    os.close(r)
    assert done.returncode == 0, done.stderr
    st = state(oci, "c1")
    assert st["status"] == "created" and st["id"] == "c1" and st["bundle"] == str(b)
    assert int((tmp_path / "pid").read_text()) == st["pid"]
    assert out.read_text() == ""   # nothing runs before start
    assert oci("start", "c1").returncode == 0
    wait_for(lambda: out.read_text() == "started\n", 10, "the process's output")
    assert state(oci, "c1")["status"] == "running"
    assert oci("start", "c1").returncode == 1   # started already
    os.write(w, b"hi\n")
    os.close(w)
    wait_for(lambda: state(oci, "c1")["status"] == "stopped", 10, "stopped")
    assert out.read_text() == "started\ngot hi\n"
    assert oci("delete", "c1").returncode == 0
    assert not alive(st["pid"])
    done = oci("state", "c1")
    assert done.returncode == 1 and "does not exist" in done.stderr


def test_kill_by_name_and_number_and_delete_force(oci, tmp_path):
    b = bundle(tmp_path, ["sh", "-c", "trap 'echo term' TERM; while :; do sleep 1; done"])
    assert oci("create", "--bundle", str(b), "c2").returncode == 0
    assert oci("start", "c2").returncode == 0
    pid = state(oci, "c2")["pid"]
    assert oci("delete", "c2").returncode == 1          # running: needs --force
    assert oci("kill", "c2", "15").returncode == 0       # trapped: still running
    time.sleep(0.3)
    assert state(oci, "c2")["status"] == "running"
    assert oci("kill", "c2", "KILL").returncode == 0
    wait_for(lambda: state(oci, "c2")["status"] == "stopped", 10, "stopped")
    assert oci("kill", "c2", "KILL").returncode == 1     # not running any more
    assert oci("delete", "--force", "c2").returncode == 0
    assert not alive(pid)
    assert oci("kill", "c2", "NOSUCHSIGNAL").returncode != 0


def test_exec_ps_pause_resume(oci, tmp_path):
    b = bundle(tmp_path, ["sleep", "60"])
    assert oci("create", "--bundle", str(b), "c3").returncode == 0
    assert oci("start", "c3").returncode == 0
    done = oci("exec", "c3", "sh", "-c", "echo $$; hostname; cat /proc/1/comm; exit 4")
    assert done.returncode == 4, done.stderr
    assert done.stdout.splitlines()[1:] == ["governor", "governor-init"], done.stdout
    proc = tmp_path / "process.json"
    proc.write_text(json.dumps({"args": ["sleep", "30"], "cwd": "/", "env": ["PATH=/bin"]}))
    done = oci("exec", "--process", str(proc), "--detach", "--pid-file",
               str(tmp_path / "exec.pid"), "c3")
    assert done.returncode == 0, done.stderr
    exec_pid = int((tmp_path / "exec.pid").read_text())
    pids = json.loads(oci("ps", "--format", "json", "c3").stdout)
    assert len(pids) >= 3 and exec_pid in pids   # sleep 60, the exec's init, sleep 30
    assert oci("pause", "c3").returncode == 0
    assert state(oci, "c3")["status"] == "paused"
    stat = Path(f"/proc/{pids[-1]}/stat").read_text()
    assert stat.split(")")[1].split()[0] == "T"
    assert oci("resume", "c3").returncode == 0
    assert state(oci, "c3")["status"] == "running"
    assert oci("delete", "--force", "c3").returncode == 0
    wait_for(lambda: not alive(exec_pid), 10, "the exec'd process to die with the container")


def test_killing_the_supervisor_kills_the_container(oci, tmp_path):
    b = bundle(tmp_path, ["sleep", "60"])
    assert oci("create", "--bundle", str(b), "c4").returncode == 0
    assert oci("start", "c4").returncode == 0
    doc = json.loads((oci.root / "c4" / "state.json").read_text())
    os.kill(doc["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: not alive(doc["cmd_pid"]) and not alive(doc["pid"]), 10,
             "the container to die with its supervisor")
    assert state(oci, "c4")["status"] == "stopped"
    assert oci("delete", "--force", "c4").returncode == 0
    assert not (oci.root / "c4").exists()


def test_a_created_container_deleted_without_start(oci, tmp_path):
    b = bundle(tmp_path, ["sh", "-c", "touch /ran"])
    assert oci("create", "--bundle", str(b), "c5").returncode == 0
    doc = json.loads((oci.root / "c5" / "state.json").read_text())
    assert oci("delete", "c5").returncode == 0
    assert not alive(doc["pid"]) and not alive(doc["supervisor_pid"])
    assert not (b / "rootfs" / "ran").exists()


def test_run_returns_the_status_and_leaves_nothing(oci, tmp_path):
    b = bundle(tmp_path, ["sh", "-c", "exit 9"])
    done = oci("run", "--bundle", str(b), "c6")
    assert done.returncode == 9, done.stderr
    assert not (oci.root / "c6").exists()


def test_what_the_process_gets(oci, tmp_path):
    """user, groups, cwd, env, rlimits, capabilities (kept across exec by a
    non-root user through the ambient set, as the kernel wants), no_new_privs,
    oom_score_adj, hostname, sysctl, masked and read-only paths, a device,
    a bind mount read-only."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("shared\n")
    script = ("id; pwd; echo $GREETING; ulimit -n; grep -E '^(CapBnd|CapEff|NoNewPrivs):' "
              "/proc/self/status; cat /proc/self/oom_score_adj; hostname; "
              "cat /proc/sys/net/ipv4/ip_forward; head -c 5 /proc/keys | wc -c; "
              "(echo 1 > /proc/sys/kernel/domainname) 2>&1 | grep -c Read-only; "
              "ls -l /dev/fuse | cut -c1; cat /data/f; (echo x > /data/f) 2>&1 | grep -c Read-only")
    b = bundle(tmp_path, ["sh", "-c", script],
               process__user={"uid": 1000, "gid": 1000, "additionalGids": [5, 7]},
               process__cwd="/tmp", process__env=["PATH=/bin", "GREETING=hi"],
               process__rlimits=[{"type": "RLIMIT_NOFILE", "soft": 99, "hard": 99}],
               process__capabilities={k: ["CAP_KILL", "CAP_CHOWN"] for k in
                                      ("bounding", "effective", "permitted", "inheritable",
                                       "ambient")},
               process__noNewPrivileges=True, process__oomScoreAdj=300,
               hostname="box7", linux__sysctl={"net.ipv4.ip_forward": "1"},
               linux__devices=[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}],
               mounts=default_spec()["mounts"] + [
                   {"destination": "/data", "type": "bind", "source": str(data),
                    "options": ["rbind", "ro"]}])
    (b / "rootfs" / "tmp").mkdir(exist_ok=True)
    done = oci("run", "--bundle", str(b), "c7")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "uid=1000 gid=1000 groups=5,7", "/tmp", "hi", "99",
        "CapEff:\t0000000000000021", "CapBnd:\t0000000000000021", "NoNewPrivs:\t1",
        "300", "box7", "1", "0", "1", "c", "shared", "1"], done.stdout


def test_user_namespace_with_mappings(oci, tmp_path):
    b = bundle(tmp_path, ["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u"],
               linux__namespaces=default_spec()["linux"]["namespaces"] + [{"type": "user"}],
               linux__uidMappings=[{"containerID": 0, "hostID": 200000, "size": 65536}],
               linux__gidMappings=[{"containerID": 0, "hostID": 200000, "size": 65536}])
    done = oci("run", "--bundle", str(b), "c8")
    assert done.returncode == 0, done.stderr
    assert [line.split() for line in done.stdout.splitlines()] == [
        ["0", "200000", "65536"], ["0", "200000", "65536"], ["0"]]


def test_console_socket(oci, tmp_path):
    """terminal: true: the pty's master arrives on the console socket (as
    podman's conmon and containerd's shim receive it), the process's stdio
    is the pty."""
    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    b = bundle(tmp_path, ["sh", "-c", "tty; echo on-the-tty"], process__terminal=True)
    done = oci("create", "--bundle", str(b), "--console-socket", path, "c9")
    assert done.returncode == 0, done.stderr
    conn, _ = server.accept()
    msg, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    master = fds[0]
    assert msg.startswith(b"/dev/pts/")
    assert oci("start", "c9").returncode == 0
    seen = b""
    deadline = time.monotonic() + 10
    while b"on-the-tty" not in seen and time.monotonic() < deadline:
        try:
            seen += os.read(master, 1024)
        except OSError:
            break
    os.close(master)
    conn.close()
    server.close()
    assert b"/dev/pts/0" in seen and b"on-the-tty" in seen, seen


@pytest.mark.parametrize("change, key", [
    ({"process": {"args": []}}, "process.args"),
    ({"process": {"args": ["sh"], "cwd": "relative"}}, "process.cwd"),
    ({"root": {"path": "nope"}}, "root.path"),
    ({"linux": {"namespaces": [{"type": "time-travel"}]}}, "linux.namespaces[0].type"),
    ({"mounts": [{"destination": "/x", "type": "bind", "source": "/no/such"}]}, "mounts[0].source"),
    ({"process": {"args": ["sh"], "cwd": "/", "rlimits": [{"type": "RLIMIT_BOGUS", "soft": 1,
                                                          "hard": 1}]}},
     "process.rlimits[0].type"),
    ({"annotations": {"org.governor.limit.bogus": "1"}}, "annotations.org.governor.limit.bogus"),
    ({"annotations": {"org.governor.limit.net_send": "fast"}},
     "annotations.org.governor.limit.net_send"),
    ({"annotations": {"org.governor.on_exhausted.processes": "maybe"}},
     "annotations.org.governor.on_exhausted.processes"),
    ({"linux": {"resources": {"pids": {"limit": "many"}}}}, "linux.resources.pids.limit"),
])
def test_bad_bundles_fail_create_naming_the_key(oci, tmp_path, change, key):
    b = bundle(tmp_path, ["true"])
    spec = json.loads((b / "config.json").read_text())
    for section, value in change.items():
        if isinstance(value, dict) and isinstance(spec.get(section), dict):
            spec[section].update(value)
        else:
            spec[section] = value
    (b / "config.json").write_text(json.dumps(spec))
    done = oci("create", "--bundle", str(b), "bad")
    assert done.returncode == 2, done.stderr
    assert key in done.stderr, done.stderr
    assert not (oci.root / "bad").exists()


def test_a_missing_program_fails_create_as_runc_says_it(oci, tmp_path):
    """The program is looked up inside the container, after its mounts (a
    program brought by a bind mount is found), in the process's PATH."""
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "hello").write_text("#!/bin/sh\necho hello from the mount\n")
    (tools / "hello").chmod(0o755)
    mounts = default_spec()["mounts"] + [{"destination": "/opt/tools", "type": "bind",
                                          "source": str(tools), "options": ["rbind", "ro"]}]
    b = bundle(tmp_path, ["hello"], process__env=["PATH=/opt/tools:/bin"], mounts=mounts)
    done = oci("run", "--bundle", str(b), "found")
    assert done.returncode == 0 and done.stdout == "hello from the mount\n", done.stderr
    b = bundle(tmp_path, ["nosuchprogram"])
    done = oci("create", "--bundle", str(b), "missing")
    assert done.returncode == 1
    assert "exec: 'nosuchprogram': executable file not found in $PATH" in done.stderr, done.stderr
    assert not (oci.root / "missing").exists()


def test_governed_through_annotations(oci, tmp_path):
    """org.governor.limit.disk_write: dd in the container is held to it."""
    b = bundle(tmp_path, ["sh", "-c", "read t0 _ < /proc/uptime; "
                                      "dd if=/dev/zero of=/f bs=65536 count=32 2>/dev/null; "
                                      "read t1 _ < /proc/uptime; echo $t0 $t1"],
               annotations={"org.governor.limit.disk_write": "1MiB/s"})
    done = oci("run", "--bundle", str(b), "c10")
    assert done.returncode == 0, done.stderr
    t0, t1 = map(float, done.stdout.split())
    # 2 MiB at 1 MiB/s, less the 0.1 s burst: 1.9 s. Above by a second or two
    # if dd is kept off the CPU, which the engine does not control.
    assert 1.7 < t1 - t0 < 2 * 1.9, (t0, t1)


def test_features_and_spec(oci, tmp_path):
    done = oci("features")
    assert done.returncode == 0
    features = json.loads(done.stdout)
    assert "startContainer" in features["hooks"] and "user" in features["linux"]["namespaces"]
    assert oci("spec", "--bundle", str(tmp_path)).returncode == 0
    assert json.loads((tmp_path / "config.json").read_text())["process"]["noNewPrivileges"]
    assert oci("spec", "--bundle", str(tmp_path)).returncode == 1   # exists already


def test_seccomp_profile_in_the_same_filter(oci, tmp_path):
    """linux.seccomp: calls it denies fail with its errno, a governed call
    (pwrite64, under disk_write) that it denies stays denied, and a governed
    call that it allows (write) is still held to the limit."""
    from _tenants import TENANTS, compile_c

    b = bundle(tmp_path, ["/bin/sctenant"],
               annotations={"org.governor.limit.disk_write": "1MiB/s"})
    tenant = compile_c(TENANTS / "oci_seccomp_tenant.c", tmp_path, ("-static",))
    shutil.copy(tenant, b / "rootfs" / "bin" / "sctenant")
    spec = json.loads((b / "config.json").read_text())
    spec["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        {"names": ["pwrite64"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        {"names": ["no_such_call_of_2099"], "action": "SCMP_ACT_ERRNO"}]}
    (b / "config.json").write_text(json.dumps(spec))
    done = oci("run", "--bundle", str(b), "s1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["getcwd EPERM", "pwrite64 EACCES"], done.stdout
    seconds = float(lines[2].split()[-2])
    # 512 KiB at 1 MiB/s, less the 0.1 s burst: 0.4 s (at half the rate, 0.8 s).
    assert lines[2].startswith("write 524288 bytes") and 0.3 < seconds < 0.8, done.stdout
    del spec["linux"]["seccomp"]
    (b / "config.json").write_text(json.dumps(spec))
    done = oci("run", "--bundle", str(b), "s2")
    assert done.stdout.splitlines()[:2] == ["getcwd ok", "pwrite64 ok"], done.stdout


def test_a_created_container_is_not_measured_before_it_runs(oci, tmp_path):
    """Between create and start the command waits before exec, a fork of the
    caller: its resident memory is not the container's. A memory limit below
    it must not kill the container while it waits."""
    b = bundle(tmp_path, ["sh", "-c", "exit 7"], linux__resources__memory__limit=8 << 20)
    done = oci("create", "--bundle", str(b), "c1")
    assert done.returncode == 0, done.stderr
    time.sleep(1.0)   # five rounds of the supervisor's resident-memory sampling
    assert state(oci, "c1")["status"] == "created"
    assert oci("start", "c1").returncode == 0
    wait_for(lambda: state(oci, "c1")["status"] == "stopped", 10, "stopped")
    assert oci("delete", "c1").returncode == 0
