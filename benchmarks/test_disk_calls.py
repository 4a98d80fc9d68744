"""What a disk area costs the calls it adds to the filter: 2,000 creating
opens (open O_CREAT|O_EXCL, close, unlink) and 2,000 sendmsg on a unix
socketpair, by a small C program (tests/tenants/disk_calls_tenant.c), in a group with disk_space against the same
group with disk_write only (which intercepts writes, not these calls), the
two alternating. Medians of 15 rounds in one run:

    python -m pytest benchmarks/test_disk_calls.py --benchmark-only -s
"""
import statistics
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _tenants import TENANTS, compile_c  # noqa: E402

from governor import Limits, Supervisor  # noqa: E402

ROUNDS, CALLS = 15, 2000


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    return str(compile_c(TENANTS / "disk_calls_tenant.c", tmp_path_factory.mktemp("calls")))


@pytest.mark.parametrize("call", ["create", "sendmsg"])
def test_disk_area_calls(benchmark, program, tmp_path, call):
    """Each round runs the program in both groups, one after the other, so
    that a busy machine weighs on both alike; the ratio is of the medians."""
    times = {"disk_space": [], "disk_write": []}
    with Supervisor(publish_state=False) as sup:
        groups = {"disk_space": sup.group("area", Limits(disk_write="100GiB/s", disk_space="100GiB"),
                                          disk_area=[tmp_path]),
                  "disk_write": sup.group("plain", Limits(disk_write="100GiB/s"))}

        def both():
            for name, g in groups.items():
                t = time.perf_counter()
                assert g.spawn([program, call, str(tmp_path), str(CALLS)]).wait(60) == 0
                times[name].append(time.perf_counter() - t)

        benchmark.pedantic(both, rounds=ROUNDS, warmup_rounds=1)
    area, plain = (statistics.median(times[k][1:]) for k in ("disk_space", "disk_write"))
    benchmark.extra_info.update(calls=CALLS, area_median_s=area, plain_median_s=plain,
                                ratio=area / plain)
    print(f"\n{CALLS} {call}: {area * 1e3:.1f} ms with a disk area, {plain * 1e3:.1f} ms "
          f"without, ratio {area / plain:.2f}x, {(area - plain) / CALLS * 1e6:.1f} us a call")
