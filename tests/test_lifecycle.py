"""Nothing is left behind: processes, fds, listeners; the group fails closed."""
import os
import signal
import subprocess
import sys

import psutil
import pytest

from _tenants import wait_for
from governor import Limits, Supervisor

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (pid namespaces)")
GOVERNOR = [sys.executable, "-m", "governor"]


def alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_background_processes_die_with_the_command(backend):
    r, w = os.pipe()
    with Supervisor(backend=backend) as sup:
        g = sup.group("bg", Limits(disk_write="1MiB/s"))
        p = g.spawn(["/bin/sh", "-c", "sleep 300 & read x"], stdin=r)
        os.close(r)
        pids = wait_for(lambda: len(g.pids()) >= 2 and g.pids(), 10, "sh and sleep")
        os.write(w, b"go\n")
        os.close(w)
        assert p.wait(10) == 0
    for pid in pids:
        wait_for(lambda: not alive(pid), 5, f"pid {pid} to be gone")


@pytest.mark.parametrize("limit", ["processes=8", "cpu=30%"])
def test_sigkill_of_governor_run_kills_the_group(tmp_path, limit):
    gov = subprocess.Popen(GOVERNOR + ["run", "--limit", limit, "--",
                                       "/bin/sh", "-c", "sleep 300 & sleep 300"])
    try:
        def group_pids():
            kids = psutil.Process(gov.pid).children(recursive=True)
            sleeps = [k.pid for k in kids if k.name() == "sleep"]
            return len(sleeps) == 2 and [k.pid for k in kids]
        pids = wait_for(group_pids, 15, "the group's two sleeps")
    finally:
        gov.send_signal(signal.SIGKILL)
        gov.wait(10)
    for pid in pids:
        wait_for(lambda: not alive(pid), 5, f"pid {pid} to be gone")


def test_no_fd_is_left_open_and_none_reaches_the_tenant(tmp_path, backend):
    before = set(os.listdir("/proc/self/fd"))
    out = tmp_path / "fds"
    with Supervisor(backend=backend) as sup:
        for name in ("a", "b", "c"):  # other groups' listeners exist meanwhile
            g = sup.group(name, Limits(disk_write="100MiB/s"))
            with open(out, "w") as f:
                p = g.spawn(["/bin/sh", "-c", "ls -l /proc/$$/fd"], stdout=f)
                assert p.wait(10) == 0
            listing = out.read_text()
            assert "seccomp" not in listing, listing
            fds = {line.split()[8] for line in listing.splitlines()[1:]}
            assert fds <= {"0", "1", "2", "10"}, listing  # 10: sh's copy of its script fd
        assert g.usage().resources["disk_write"].used > 0
    after = set(os.listdir("/proc/self/fd"))
    assert after == before, f"leaked fds: {sorted(after - before)}"


def test_closed_groups_free_their_name_and_engine_slot(backend):
    with Supervisor(backend=backend) as sup:
        for _ in range(3):
            g = sup.group("again", Limits(processes=4))
            p = g.spawn(["/bin/sh", "-c", "sleep 300"])
            pids = wait_for(lambda: g.pids(), 10, "the group's sleep")
            g.close()
            assert p.returncode == -signal.SIGKILL
            for pid in pids:
                wait_for(lambda: not alive(pid), 5, f"pid {pid} to be gone")
