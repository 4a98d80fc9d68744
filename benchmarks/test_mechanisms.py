"""Per-call cost of each interception mechanism, through the measurement
code of `governor bench` (governor_bench/), as pytest-benchmark runs.

One test per row of `governor bench` and call (the governed 1-byte pwrite64,
the ungoverned getpid). A row whose backend is not available here (the
ptrace backends before they land) is skipped with the reason. Unlike
`governor bench`, which interleaves the rounds of all rows, each test runs
its rounds back to back; the ratios printed at the end (report.py) compare
medians of the same session.
"""
from __future__ import annotations

import pytest

import governor_bench as bench
from test_overhead import SCALE, measure

N_MECH = max(1000, int(50_000 * SCALE))


@pytest.mark.parametrize("mode", list(bench.MODES.values()))
@pytest.mark.parametrize("mech", bench.mechanisms(), ids=lambda m: m.key)
def test_mechanism(benchmark, bins, results, tmp_path, mech, mode):
    try:
        mech.open(bins, tmp_path)
    except bench.Unavailable as e:
        pytest.skip(f"{mech.label}: {e}")
    try:
        measure(benchmark, results, f"mech_{mech.key}_{mode}", N_MECH,
                lambda: mech.run(mode, N_MECH))
    finally:
        mech.close()
