"""The OCI runtime-tools validation suite (../shared/oci-runtime-tools, the
tests runc and crun are checked against), its core subset run against
governor-oci and runc side by side: every count governor-oci gets is at
least as good as runc's on this machine. `make oci-validation` runs all of
it and prints both tables."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]
# shared/ lies beside the checkout (CI), or beside the work trees' folder
SUITE = next((p / "shared" / "oci-runtime-tools" / "run" for p in (_REPO.parent, _REPO.parent.parent)
              if (p / "shared" / "oci-runtime-tools" / "run").exists()),
             _REPO.parent / "shared" / "oci-runtime-tools" / "run")
GOVERNOR_OCI = str(Path(sys.executable).parent / "governor-oci")
CORE = ("create", "state", "kill", "delete", "default", "linux_ns_itype", "linux_ns_nopath",
        "linux_ns_path", "linux_ns_path_type", "linux_masked_paths", "linux_readonly_paths",
        "linux_uid_mappings", "pidfile")

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(not SUITE.exists(), reason=f"no validation suite at {SUITE}"),
              pytest.mark.skipif(shutil.which("runc") is None or shutil.which("go") is None,
                                 reason="needs runc and golang-go (make setup)")]


def counts(runtime: str, out: Path) -> dict[str, tuple[int, int]]:
    done = subprocess.run([str(SUITE), runtime, *CORE], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "OUT": str(out)})
    assert done.returncode == 0, done.stdout + done.stderr
    table = {}
    for line in done.stdout.splitlines():
        m = re.match(r"(\S+) rc=\d+ ok=(\d+) not_ok=(\d+)", line)
        if m:
            table[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    assert set(table) == set(CORE), done.stdout
    return table


@pytest.mark.timeout(1200)
def test_core_subset_passes_where_runc_passes(tmp_path):
    ours = counts(GOVERNOR_OCI, tmp_path / "governor-oci")
    theirs = counts("runc", tmp_path / "runc")
    for test in CORE:
        print(f"{test}: governor-oci ok={ours[test][0]} not_ok={ours[test][1]}, "
              f"runc ok={theirs[test][0]} not_ok={theirs[test][1]}")
    worse = {t: (ours[t], theirs[t]) for t in CORE
             if ours[t][0] < theirs[t][0] or ours[t][1] > theirs[t][1]}
    assert not worse, worse
