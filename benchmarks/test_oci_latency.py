"""Start latency of a container, against runc, medians of rounds interleaved
in one run:

    python -m pytest benchmarks/test_oci_latency.py --benchmark-only -s

- governor-oci create + start + delete of a busybox /bin/true bundle, and
  runc's of the same bundle (each: the three commands as an engine calls
  them, waiting for the container's pid to end before delete);
- `governor run --name N --rootfs R -- /bin/true` against `runc run` of
  the same busybox (a copy: governor shifts its rootfs's owners).

- `governor run -- /bin/true` of a plain group (no rootfs) against the same
  `runc run`.

Goals (issue 10): governor-oci create+start+delete at most runc's time;
`governor run` of a container at most 2x `runc run`. Issue 12: `governor
run` of a plain group at most 1.5x `runc run`.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _tenants import make_rootfs  # noqa: E402

ROUNDS = 15
GOVERNOR_OCI = str(Path(sys.executable).parent / "governor-oci")
GOVERNOR = str(Path(sys.executable).parent / "governor")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    if os.geteuid() != 0 or shutil.which("runc") is None:
        pytest.skip("needs root and runc")
    b = tmp_path_factory.mktemp("bundle")
    make_rootfs(b / "rootfs")
    subprocess.run(["runc", "spec"], cwd=b, check=True)
    spec = json.loads((b / "config.json").read_text())
    spec["process"].update(terminal=False, args=["/bin/true"])
    (b / "config.json").write_text(json.dumps(spec))
    return b


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except OSError:
        return True


def lifecycle(runtime: list[str], bundle: Path, cid: str) -> float:
    """create, start, (the container's pid ends), delete: seconds."""
    pid_file = bundle / f"{cid}.pid"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": True}
    t = time.perf_counter()
    subprocess.run([*runtime, "create", "--bundle", str(bundle), "--pid-file", str(pid_file), cid],
                   **quiet)
    subprocess.run([*runtime, "start", cid], **quiet)
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.0005)
    subprocess.run([*runtime, "delete", cid], **quiet)
    return time.perf_counter() - t


def timed(argv: list[str]) -> float:
    t = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 0, done.stderr
    return time.perf_counter() - t


def test_create_start_delete_against_runc(bundle, tmp_path):
    ours, theirs = [], []
    for i in range(ROUNDS):   # interleaved: a busy moment hits both
        ours.append(lifecycle([GOVERNOR_OCI, "--root", str(tmp_path / "g")], bundle, f"g{i}"))
        theirs.append(lifecycle(["runc", "--root", str(tmp_path / "r")], bundle, f"r{i}"))
    m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
    print(f"\ncreate+start+delete: governor-oci {m_ours * 1e3:.1f} ms, runc {m_theirs * 1e3:.1f} ms, "
          f"ratio {m_ours / m_theirs:.2f}x (goal <= 1x)")


def test_governor_run_against_runc_run(bundle, tmp_path):
    # governor run shifts its rootfs into the container's uid range: a copy
    rootfs = make_rootfs(tmp_path / "rootfs")
    state = tmp_path / "state"
    ours, theirs = [], []
    for i in range(ROUNDS):
        ours.append(timed([GOVERNOR, "run", "--state-dir", str(state), "--name", "lat",
                           "--rootfs", str(rootfs), "--", "/bin/true"]))
        theirs.append(timed(["runc", "--root", str(tmp_path / "r"), "run", "--bundle", str(bundle),
                             f"rr{i}"]))
    m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
    print(f"\ngovernor run --rootfs: {m_ours * 1e3:.1f} ms, runc run {m_theirs * 1e3:.1f} ms, "
          f"ratio {m_ours / m_theirs:.2f}x (goal <= 2x)")


def test_plain_governor_run_against_runc_run(bundle, tmp_path):
    ours, theirs = [], []
    for i in range(ROUNDS):
        ours.append(timed([GOVERNOR, "run", "--", "/bin/true"]))
        theirs.append(timed(["runc", "--root", str(tmp_path / "r"), "run", "--bundle", str(bundle),
                             f"rp{i}"]))
    m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
    print(f"\ngovernor run (plain group): {m_ours * 1e3:.1f} ms, runc run {m_theirs * 1e3:.1f} ms, "
          f"ratio {m_ours / m_theirs:.2f}x (goal <= 1.5x)")


def test_python_floor(tmp_path):
    """What any Python program costs here: the floor under every
    governor-oci command."""
    floor = statistics.median(timed([sys.executable, "-c", "pass"]) for _ in range(ROUNDS))
    bare = statistics.median(timed([sys.executable, "-S", "-c", "pass"]) for _ in range(ROUNDS))
    print(f"\npython -c pass: {floor * 1e3:.1f} ms (without site: {bare * 1e3:.1f} ms)")
