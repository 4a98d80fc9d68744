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

from _tenants import wait_for
from governor import Limits, Supervisor

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
