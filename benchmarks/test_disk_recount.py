"""The exact recount of a disk_space area against `du -s` over the same tree
(20,000 files in 200 directories, page cache warm), medians of 7 rounds in
one run:

    python -m pytest benchmarks/test_disk_recount.py --benchmark-only -s

The recount is measured as a group's creation with that area (which opens
the area and counts it once), `du -s` as a process run from Python.
"""
import itertools
import os
import shutil
import statistics
import subprocess
import time

import pytest

from governor import Limits, Supervisor

DIRS, FILES = 200, 100
ROUNDS = 7


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    root = tmp_path_factory.mktemp("area")
    for d in range(DIRS):
        (root / f"d{d}").mkdir()
        for f in range(FILES):
            (root / f"d{d}" / f"f{f}").write_bytes(b"x" * (f * 97))
    return root


def test_recount_against_du(benchmark, tree):
    du = shutil.which("du")
    if du is None:
        pytest.skip("du is not installed")
    names = itertools.count()
    with Supervisor(publish_state=False) as sup:
        def recount():
            sup.group(f"b{next(names)}", Limits(disk_space="1GiB"), disk_area=[tree]).close()

        benchmark.pedantic(recount, rounds=ROUNDS, warmup_rounds=1)
    times = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        subprocess.run([du, "-s", str(tree)], check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    ours, theirs = benchmark.stats.stats.median, statistics.median(times)
    benchmark.extra_info.update(du_median_s=theirs, ratio=ours / theirs)
    print(f"\n{DIRS * FILES} files: recount {ours * 1e3:.1f} ms, du -s {theirs * 1e3:.1f} ms, "
          f"ratio {ours / theirs:.2f}x")
