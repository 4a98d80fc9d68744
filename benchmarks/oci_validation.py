"""Runs the OCI runtime-tools validation suite (../shared/oci-runtime-tools)
against governor-oci and runc side by side and prints the README's table:
`make oci-validation`. The suite's tests that read cgroup files are listed
apart: governor-oci enforces limits without cgroups, by design."""
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_oci_validation import GOVERNOR_OCI, SUITE  # noqa: E402

CGROUP_TESTS = re.compile(r"^(linux_cgroups_|delete_resources$)")


def run(runtime: str, out: Path) -> dict[str, tuple[int, int, int]]:
    done = subprocess.run([str(SUITE), runtime], capture_output=True, text=True,
                          env={**os.environ, "OUT": str(out)})
    table = {}
    for line in done.stdout.splitlines():
        m = re.match(r"(\S+) rc=\d+ ok=(\d+) not_ok=(\d+) skip=(\d+)", line)
        if m:
            table[m.group(1)] = tuple(int(m.group(i)) for i in (2, 3, 4))
    return table


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        ours = run(GOVERNOR_OCI, Path(tmp) / "governor-oci")
        theirs = run("runc", Path(tmp) / "runc")
    print("| test | governor-oci ok / not ok | runc ok / not ok |")
    print("|---|---:|---:|")
    apart = []
    for test in sorted(set(ours) | set(theirs)):
        row = (f"| {test} | {'%d / %d' % ours[test][:2] if test in ours else '-'} | "
               f"{'%d / %d' % theirs[test][:2] if test in theirs else '-'} |")
        if CGROUP_TESTS.match(test):
            apart.append(row)
        else:
            print(row)
    print("\nReading cgroup files (governor-oci has no cgroups, by design):\n")
    print("| test | governor-oci ok / not ok | runc ok / not ok |")
    print("|---|---:|---:|")
    print("\n".join(apart))
    return 0


if __name__ == "__main__":
    sys.exit(main())
