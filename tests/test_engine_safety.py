"""The engine is memory-safe when its objects die under it, and fails closed
in the corners of issue 15: every test here failed before its fix."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _tenants import compile_c, wait_for
from governor import GovernorError, Limits, Supervisor

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (pid namespaces)")
HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("backend", ["seccomp", "ptrace"])
def test_groups_and_engines_freed_while_their_tenants_call(backend, tmp_path):
    """A listener freed by gov_group_remove between epoll_wait and the
    engine's look at its event, and a ptrace stop that reached a group that
    gov_engine_free had freed (an ASan build reported both use-after-frees
    within seconds; a plain build rarely crashes, MALLOC_PERTURB_ helps)."""
    env = dict(os.environ, MALLOC_PERTURB_="165", MALLOC_CHECK_="3")
    out = subprocess.run([sys.executable, str(HERE / "_churn.py"), backend, "3", str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=150)
    assert out.returncode == 0, out.stderr[-3000:]
    assert int(out.stdout.split()[-1]) >= 4


def test_a_tracee_whose_group_is_gone_is_killed(tmp_path):
    """Its next governed call used to run ungoverned (group -1)."""
    with Supervisor(backend="ptrace") as sup:
        g = sup.group("gone", Limits(disk_write="1GiB/s"))
        out = tmp_path / "out"
        p = g.spawn(["/bin/sh", "-c", f"for i in $(seq 300); do echo $i >> {out}; sleep 0.02; done"])
        wait_for(lambda: g.usage().notifications > 5, 10, "governed writes")
        sup._forget(g)   # the engine forgets the group; its command still runs
        assert p.wait(20) == -signal.SIGKILL
        assert len(out.read_text().split()) < 300


SPAWN_ONCE = """
import os, signal, sys
signal.alarm(20)
os.closerange(3, 4096)
from governor import GovernorError, Limits, Supervisor
from governor._errors import GovernorError
with Supervisor(publish_state=False, engines=1) as sup:
    g = sup.group("fault", Limits(disk_write="1MiB/s"))
    before = sorted(os.listdir("/proc/self/fd"))
    try:
        g.spawn(["/bin/true"])
    except GovernorError as e:
        print("error:", e)
    assert sorted(os.listdir("/proc/self/fd")) == before, os.listdir("/proc/self/fd")
    me = os.getpid()
    assert not any(open(f"/proc/{me}/task/{t}/children").read().split()
                   for t in os.listdir(f"/proc/{me}/task"))
"""


@pytest.fixture(scope="module")
def fault_shim(tmp_path_factory) -> Path:
    return compile_c(HERE / "fault_shim.c", tmp_path_factory.mktemp("shim"),
                     ("-shared", "-fPIC", "-ldl"))


@pytest.mark.parametrize("call", ["pidfd_open", "pidfd_getfd"])
def test_spawn_fails_without_hanging_when_the_listener_cannot_be_taken(fault_shim, call):
    """The supervisor used to block reading the exec pipe while the command
    waited for "go": the spawn never returned."""
    nr = {"pidfd_open": 434, "pidfd_getfd": 438}[call]
    env = dict(os.environ, LD_PRELOAD=str(fault_shim), GOV_FAULT_SYSCALL=str(nr))
    out = subprocess.run([sys.executable, "-c", SPAWN_ONCE], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "error: [Errno 1]" in out.stdout


def test_spawn_under_every_fd_limit_leaks_nothing():
    """Each step of a spawn runs out of fds in turn (RLIMIT_NOFILE): it
    fails or works, and leaves no fd and no process behind."""
    out = subprocess.run([sys.executable, str(HERE / "_fdlimit_spawn.py")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok ")


def test_a_memory_call_the_engine_cannot_measure_fails_with_enomem():
    """With the supervisor out of fds the engine cannot read the caller's
    /proc status: a mapping of 200 MiB under a 64 MiB cap used to go
    through; it fails with ENOMEM."""
    out = subprocess.run([sys.executable, str(HERE / "_map_out_of_fds.py")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["errno", "12", "0"]


def test_a_spawn_the_engine_refuses_leaves_nothing_behind():
    """gov_group_add_init fails past 64 roots (ENOSPC): the spawned command,
    its init and its fds used to stay."""
    def fds():
        return sorted(os.listdir("/proc/self/fd"))

    with Supervisor(publish_state=False, engines=1) as sup:
        g = sup.group("roots", Limits(disk_write="1MiB/s"))
        procs = [g.spawn(["/bin/sleep", "60"]) for _ in range(64)]
        before, kids = fds(), set(_children())
        with pytest.raises(GovernorError, match="add init"):
            g.spawn(["/bin/sleep", "60"])
        assert fds() == before
        assert set(_children()) == kids
        for p in procs:
            p.kill()


def _children() -> list[int]:
    me = os.getpid()
    return [int(pid) for t in os.listdir(f"/proc/{me}/task")
            for pid in open(f"/proc/{me}/task/{t}/children").read().split()]
