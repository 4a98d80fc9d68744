"""A plain group (no container) has a pid namespace of its own, and so a
/proc of its own: /proc/<getpid()> is the caller, as CPython's own
test_signal expects of it, while every other mount stays the host's."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tenants import needs_root, python_tenant  # noqa: E402

from governor import Limits, Supervisor  # noqa: E402

pytestmark = [needs_root, pytest.mark.timeout(60)]

SELF = r"""
import os, signal, sys
pid = os.getpid()
with open(f"/proc/{pid}/status") as f:
    fields = dict(line.split(":", 1) for line in f)
print("status_pid", fields["Pid"].strip() == str(pid))
print("cmdline", open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[1].decode().endswith("self.py"))
# CPython's test_signal: pidfd_send_signal on the fd of /proc/<pid>.
got = []
signal.signal(signal.SIGUSR1, lambda *a: got.append(1))
fd = os.open(f"/proc/{pid}", os.O_DIRECTORY)
signal.pidfd_send_signal(fd, signal.SIGUSR1)
print("pidfd_send_signal", got == [1])
# The host's other mounts are there as before.
print("mounts", any(line.split()[4] == sys.argv[1] for line in open("/proc/self/mountinfo")))
"""


def _proc_mounts() -> int:
    return sum(line.split()[4] == "/proc" for line in open("/proc/self/mountinfo"))


def test_proc_of_getpid_is_the_caller(tmp_path, backend):
    tenant = python_tenant(tmp_path, "self.py", SELF)
    out = tmp_path / "out"
    proc_mounts = _proc_mounts()
    with Supervisor(backend=backend, publish_state=False) as sup, open(out, "w") as f:
        g = sup.group("self", Limits(processes=8))
        p = g.spawn([sys.executable, tenant, "/"], stdout=f, stderr=f)
        assert p.wait(30) == 0, out.read_text()
    assert out.read_text().split() == ["status_pid", "True", "cmdline", "True",
                                       "pidfd_send_signal", "True", "mounts", "True"]
    assert _proc_mounts() == proc_mounts   # its /proc never reached the host's
