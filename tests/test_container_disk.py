"""disk_space of a container, through `governor run --rootfs`: the quota counts
the container's writable area (its rootfs, then its volumes), refuses with
EDQUOT, gives space back on delete and survives a restart."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from _tenants import make_rootfs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)")
GOVERNOR = [sys.executable, "-m", "governor"]
MiB = 1 << 20


def du(path: Path) -> int:
    """Bytes stored under path, as disk_space counts them (hard links once)."""
    seen, total = set(), 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            blocks = st.st_blocks * 512
            total += max(st.st_size, blocks) if stat.S_ISREG(st.st_mode) else blocks
    return total


def governor_run(state, rootfs, quota, script, *extra):
    return subprocess.run(GOVERNOR + ["run", "--state-dir", str(state), "--name", "quota",
                                      "--rootfs", str(rootfs), "--limit", f"disk_space={quota}",
                                      *extra, "--", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60)


def test_container_quota_edquot_delete_and_restart(tmp_path):
    rootfs, state = make_rootfs(tmp_path / "rootfs"), tmp_path / "state"
    base = du(rootfs)  # the busybox image counts: it is stored in the writable area
    quota = base + 4 * MiB
    # 64 KiB blocks until dd fails: the file stops below the quota, EDQUOT said.
    p = governor_run(state, rootfs, quota, "dd if=/dev/zero of=/big bs=64k count=200")
    assert p.returncode != 0, p.stderr
    assert "quota" in p.stderr.lower(), p.stderr  # "Disk quota exceeded"
    size = (rootfs / "big").stat().st_size
    assert 3 * MiB <= size <= 4 * MiB, size
    assert du(rootfs) <= quota
    # A restart counts what the first run stored: 1 MiB more does not fit.
    p = governor_run(state, rootfs, quota, "dd if=/dev/zero of=/more bs=64k count=16")
    assert p.returncode != 0 and "quota" in p.stderr.lower(), p.stderr
    # Deleting gives the space back, in the same run.
    p = governor_run(state, rootfs, quota,
                     "rm /big /more && dd if=/dev/zero of=/again bs=64k count=32")
    assert p.returncode == 0, p.stderr
    assert (rootfs / "again").stat().st_size == 2 * MiB
    assert not (rootfs / "big").exists()


def test_read_only_rootfs_quota_counts_the_volume_only(tmp_path):
    rootfs, state = make_rootfs(tmp_path / "rootfs"), tmp_path / "state"
    data = tmp_path / "data"
    data.mkdir()
    p = governor_run(state, rootfs, "1MiB", "dd if=/dev/zero of=/data/f bs=64k count=32",
                     "--read-only", "--volume", f"{data}:/data")
    assert p.returncode != 0 and "quota" in p.stderr.lower(), p.stderr
    assert (data / "f").stat().st_size <= MiB
