"""containerd drives governor-oci through its runc shim (io.containerd.runc.v2),
as Kubernetes does through a RuntimeClass: a private containerd (its own
config, root, state and socket under the test's directory, the CRI plugin
off) and `ctr run --runc-binary governor-oci`."""
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from _tenants import make_rootfs, wait_for

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(shutil.which("containerd") is None or shutil.which("ctr") is None,
                                 reason="containerd is not installed")]
GOVERNOR_OCI = str(Path(sys.executable).parent / "governor-oci")


class Containerd:
    def __init__(self, top: Path):
        self.top, self.sock = top, top / "containerd.sock"
        self.oci_root = top / "oci-root"
        self.rootfs = make_rootfs(top / "rootfs")
        (top / "config.toml").write_text(f"""version = 2
root = "{top}/root"
state = "{top}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
""")
        self.log = open(top / "containerd.log", "w")
        self.proc = subprocess.Popen(["containerd", "--config", str(top / "config.toml")],
                                     stdout=self.log, stderr=self.log)
        wait_for(lambda: self.ctr("version").returncode == 0, 20, "containerd to serve")

    def ctr(self, *args, timeout=60) -> subprocess.CompletedProcess:
        return subprocess.run(["ctr", "--address", str(self.sock), *args], capture_output=True,
                              text=True, timeout=timeout)

    def run(self, flags: list[str], cid: str, *cmd: str) -> subprocess.CompletedProcess:
        """ctr run FLAGS --rootfs DIR ID CMD (--rootfs is a switch: the
        directory is the first argument, and flags go before it)."""
        return self.ctr("run", *flags, "--runc-binary", GOVERNOR_OCI, "--runc-root",
                        str(self.oci_root), "--rootfs", str(self.rootfs), cid, *cmd)

    def shims(self) -> list[int]:
        out = []
        for p in Path("/proc").iterdir():
            try:
                if p.name.isdigit() and str(self.top) in (p / "cmdline").read_text():
                    out.append(int(p.name))
            except OSError:
                pass
        return [pid for pid in out if pid != self.proc.pid]

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(20)
        self.log.close()


@pytest.fixture(scope="module")
def containerd(tmp_path_factory):
    c = Containerd(tmp_path_factory.mktemp("containerd"))
    yield c
    try:
        for line in c.ctr("task", "ls", "-q").stdout.split():
            c.ctr("task", "kill", "-s", "SIGKILL", line)
            c.ctr("task", "rm", "-f", line)
        for line in c.ctr("container", "ls", "-q").stdout.split():
            c.ctr("container", "rm", line)
        wait_for(lambda: not c.shims(), 20, "the shims to exit")
    finally:
        c.close()
    assert not [p for p in os.listdir(c.oci_root / "default")] if (c.oci_root / "default").exists() else True
    shutil.rmtree(c.top, ignore_errors=True)


def test_ctr_run_output_and_status(containerd):
    done = containerd.run(["--rm"], "c1", "sh", "-c", "echo hello from ctr; cat /proc/1/comm; exit 4")
    assert done.returncode == 4, done.stderr
    assert done.stdout.splitlines() == ["hello from ctr", "governor-init"], done.stdout
    assert os.listdir(containerd.oci_root / "default") == []


def test_exec_ps_pause_resume_kill(containerd):
    ctr = containerd.ctr
    assert containerd.run(["-d"], "c2", "sleep", "100").returncode == 0
    try:
        wait_for(lambda: "RUNNING" in ctr("task", "ls").stdout, 10, "c2 running")
        done = ctr("task", "exec", "--exec-id", "e1", "c2", "sh", "-c", "echo in-exec; exit 3")
        assert done.returncode == 3 and "in-exec" in done.stdout, done.stderr
        assert len(ctr("task", "ps", "c2").stdout.splitlines()) >= 2
        assert ctr("task", "pause", "c2").returncode == 0
        assert "PAUSED" in ctr("task", "ls").stdout
        assert ctr("task", "resume", "c2").returncode == 0
        assert "RUNNING" in ctr("task", "ls").stdout
        assert ctr("task", "kill", "-s", "SIGKILL", "c2").returncode == 0
        wait_for(lambda: "STOPPED" in ctr("task", "ls").stdout, 10, "c2 stopped")
    finally:
        ctr("task", "rm", "-f", "c2")
        ctr("container", "rm", "c2")
    assert os.listdir(containerd.oci_root / "default") == []


def test_ctr_with_a_terminal(containerd):
    """ctr -t: the shim's console socket gets the pty (script(1) gives ctr a
    terminal of its own)."""
    cmd = (f"ctr --address {containerd.sock} run -t --rm --runc-binary {GOVERNOR_OCI} "
           f"--runc-root {containerd.oci_root} --rootfs {containerd.rootfs} c3 sh -c 'tty; exit 2'")

    done = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert "/dev/pts/0" in done.stdout, (done.stdout, done.stderr)
