"""Native AIO moves bytes without any call the engine governs (issue 16: 100
MiB in 0.16 s under disk_write=1MiB/s). Every group refuses it with ENOSYS,
as a kernel built without it would; glibc's POSIX aio, which runs on
threads that make ordinary calls, keeps working and is charged."""
from __future__ import annotations

import errno
from pathlib import Path

import pytest

from _tenants import needs_root
from governor import Limits, Supervisor

pytestmark = [needs_root, pytest.mark.timeout(60)]
MiB = 1 << 20


def on_disk(path: Path) -> int:
    """What the file takes on disk, as du counts it."""
    return path.stat().st_blocks * 512


@pytest.mark.parametrize("metered", [True, False], ids=["disk_write", "cpu"])
def test_native_aio_is_refused_and_posix_aio_works(tenant, tmp_path, backend, metered):
    """In every group, whatever it limits."""
    limits = Limits(disk_write="1MiB/s") if metered else Limits(cpu=1.0)
    target, report = tmp_path / "data", tmp_path / "report"
    with Supervisor(backend=backend, publish_state=False) as sup, open(report, "w") as out:
        g = sup.group("aio", limits)
        assert g.spawn([tenant, str(target), "100"], stdout=out).wait(30) == 0
        u = g.usage().resources
    lines = dict(line.split(" ", 1) for line in report.read_text().splitlines())
    calls = lines["io_setup"].split()
    errnos = {"io_setup": int(calls[0]), **{calls[i]: int(calls[i + 1])
                                           for i in range(1, len(calls), 2)}}
    assert errnos == dict.fromkeys(errnos, errno.ENOSYS) and len(errnos) == 6, errnos
    assert lines["native"] == "0"
    assert lines["posix"] == str(MiB)
    # Only what POSIX aio wrote is on disk, and it was charged.
    assert on_disk(target) <= 2 * MiB
    if metered:
        assert u["disk_write"].used >= MiB
