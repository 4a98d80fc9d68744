"""Cores are written by the kernel, where no limit of the group reaches them
(issue 16: 3 x 61 MiB under disk_space=20MiB). Every group's command starts
with a hard RLIMIT_CORE of 0, which it cannot raise: a crash leaves no core."""
from __future__ import annotations

import pytest

from _tenants import needs_root
from governor import Limits, Supervisor

pytestmark = [needs_root, pytest.mark.timeout(60)]
MiB = 1 << 20


def test_a_crash_leaves_no_core(tenant, tmp_path, backend):
    area = tmp_path / "area"
    area.mkdir()
    report = tmp_path / "report"
    with Supervisor(backend=backend, publish_state=False) as sup, open(report, "w") as out:
        g = sup.group("cores", Limits(disk_space=20 * MiB), disk_area=[area])
        assert g.spawn([tenant, "3"], stdout=out, cwd=str(area)).wait(30) == 0
    lines = dict(line.split(" ", 1) for line in report.read_text().splitlines())
    assert lines["limit"] == "0 0"
    assert lines["raise"] == "1"  # EPERM: a hard limit is not raised back
    assert lines["aborted"] == "3"
    stored = sum(p.stat().st_blocks * 512 for p in area.rglob("*"))
    assert stored == 0, sorted(area.rglob("*"))
