"""The table of governed calls (native/syscalls.h) and their names: from
libseccomp's tables, for the logs and for governed_calls, without
python-ptrace's debugger tables."""
from __future__ import annotations

import subprocess
import sys

import pytest

from governor import Limits
from governor._native import ffi, lib
from governor.supervisor import call_name, governed_calls

NO_PTRACE = "sorted(m for m in sys.modules if m.split('.')[0] == 'ptrace')"


@pytest.mark.parametrize("nr, compat, name", [
    (1, False, "write"),                     # x86_64
    (4, True, "write"),                      # i386 (int $0x80)
    (1 | lib.GOV_X32_BIT, True, "x32 write"),
    (56, False, "clone"),
    (120, True, "clone"),
    (1023, False, "1023"),                   # not in the table: its number
    (-1, False, None),
])
def test_call_names_come_from_libseccomp(nr, compat, name):
    assert call_name(nr, compat) == name


def test_governed_calls_are_named():
    writes = set(governed_calls(Limits(disk_write="1MiB/s")))
    assert {"write", "mmap", "mremap", "exit_group"} <= writes
    assert set(governed_calls(Limits(processes=4))) == {"clone", "clone3", "fork", "vfork"}
    assert governed_calls(Limits()) == []


def test_call_names_import_no_python_ptrace():
    """Every event gets a name, and governed_calls() one per call: neither
    loads python-ptrace (governor run itself: tests/test_layout.py)."""
    code = ("import sys; from governor import Limits; "
            "from governor.supervisor import call_name, governed_calls; "
            "call_name(1); call_name(4, True); governed_calls(Limits(disk_write='1MiB/s')); "
            f"print({NO_PTRACE})")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_table_names_arguments_a_call_has():
    rows = [lib.gov_syscall_of(nr) for nr in range(lib.GOV_NR_SYSCALLS)]
    rows = [c for c in rows if c != ffi.NULL]
    assert len(rows) > 60
    for c in rows:
        name = ffi.string(c.name).decode()
        for arg in (c.fd, c.fd_in, c.dirfd, c.path, c.open_flags):
            assert -1 <= arg <= 5, name
        if c.flags & (lib.GOV_SYS_ADDS_NAME | lib.GOV_SYS_OPEN):
            assert c.path >= 0, name
        assert c.always or c.when, name               # some limit stops it
        assert bool(c.when) == bool(c.ncond), name    # conditions exactly where they apply
