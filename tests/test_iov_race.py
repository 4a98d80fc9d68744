"""A tenant whose threads change their iovecs between the notification and
the kernel's read of them (tests/tenants/iovrace_tenant.c) gets no byte uncharged:
the file's size against the group's disk_write charge, under both backends.
Before the settlement of iovec writes (native/iowrite.h, and the exit stop
under ptrace), 0.1% to 1.4% of the bytes went uncharged."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tenants import TENANTS, compile_c, needs_root  # noqa: E402

from governor import Limits, Supervisor  # noqa: E402

pytestmark = [needs_root, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def racer(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("iovrace")
    return str(compile_c(TENANTS / "iovrace_tenant.c", d))


@pytest.mark.parametrize("call", ["writev", "pwritev2"])
def test_no_byte_of_a_raced_iovec_goes_uncharged(racer, tmp_path, backend, call):
    target, report = tmp_path / "data", tmp_path / "report"
    with Supervisor(backend=backend, publish_state=False) as sup, open(report, "w") as out:
        g = sup.group("racer", Limits(disk_write="64GiB/s"))   # never binds
        assert g.spawn([racer, str(target), "1", call], stdout=out).wait(30) == 0
        charged = g.usage().resources["disk_write"].used
    size = target.stat().st_size
    assert int(report.read_text()) == size > 0
    # The report itself is a charged write to a file too.
    assert charged == size + len(report.read_text()), (
        f"{size - charged + len(report.read_text())} bytes uncharged" if charged < size else charged)
