"""disk_space: the bytes a group stores in its writable area (here a temporary
directory given as disk_area), enforced with EDQUOT, counted again on delete
and across supervisors. The tenants are small Python programs."""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tenants import needs_root, python_tenant, wait_for  # noqa: E402

from governor import GovernorError, Limits, PolicyError, Supervisor  # noqa: E402

pytestmark = [needs_root, pytest.mark.timeout(60)]

KiB, MiB = 1 << 10, 1 << 20
CHUNK = 64 * KiB
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

TENANT = r'''
import ctypes, errno, json, os, sys

cmd, out, args = sys.argv[1], sys.argv[2], sys.argv[3:]
CHUNK = 64 * 1024
FALLOC_FL_KEEP_SIZE = 1
libc = ctypes.CDLL(None, use_errno=True)


def result(**kw):
    with open(out, "a") as f:
        f.write(json.dumps(kw) + "\n")


def err_of(call, *a):
    try:
        call(*a)
        return 0
    except OSError as e:
        return e.errno


def fill(path, limit=256 << 20, flags=os.O_APPEND):
    """CHUNK writes until one fails (or limit): (bytes written, errno)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o644)
    n = 0
    try:
        while n < limit:
            n += os.write(fd, b"x" * CHUNK)
        return n, 0
    except OSError as e:
        return n, e.errno
    finally:
        os.close(fd)


if cmd == "fill":
    if args[2:] == ["together"]:
        sys.stdin.buffer.read()  # EOF when the test closes the pipe: all writers start at once
    n, err = fill(args[0], flags=os.O_APPEND if args[1] == "append" else 0)
    result(written=n, errno=err)
elif cmd == "fill_delete_fill":
    n, err = fill(args[0])
    os.unlink(args[0])
    n2, err2 = fill(args[0], limit=2 * CHUNK)
    result(written=n, errno=err, written_after=n2, errno_after=err2)
elif cmd == "resize":
    path, quota = args[0], int(args[1])
    os.chdir(os.path.dirname(path))  # truncate() gets a relative path: resolved from the cwd
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    keep = libc.fallocate(fd, FALLOC_FL_KEEP_SIZE, ctypes.c_long(0), ctypes.c_long(2 * quota))
    result(ftruncate_past=err_of(os.ftruncate, fd, 2 * quota),
           truncate_past=err_of(os.truncate, os.path.basename(path), 2 * quota),
           ftruncate_within=err_of(os.ftruncate, fd, quota // 2),
           size_within=os.fstat(fd).st_size,
           fallocate_past=err_of(os.posix_fallocate, fd, 0, 2 * quota),
           fallocate_keep_size_past=0 if keep == 0 else ctypes.get_errno(),
           fallocate_within=err_of(os.posix_fallocate, fd, 0, 3 * quota // 4),
           size_end=os.fstat(fd).st_size)
elif cmd == "copy":
    how, src, dst, length = args[0], args[1], args[2], int(args[3])
    i = os.open(src, os.O_RDONLY)
    o = os.open(dst, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        if how == "copy_file_range":
            copied = os.copy_file_range(i, o, length)
        elif how == "sendfile":
            copied = os.sendfile(o, i, None, length)
        else:  # splice, through a pipe
            r, w = os.pipe()
            os.set_blocking(w, False)
            copied = 0
            while copied < length:
                n = os.splice(i, w, min(length - copied, 65536))
                if n == 0:
                    break
                copied += os.splice(r, o, n)
        err = 0
    except OSError as e:
        copied, err = 0, e.errno
    result(copied=copied, errno=err)
elif cmd == "hold_deleted":
    held, other, size = args[0], args[1], int(args[2])
    keep, _ = os.open(held, os.O_WRONLY | os.O_CREAT, 0o644), None
    os.write(keep, b"x" * size)
    os.unlink(held)
    n, err = fill(other, limit=size)
    os.close(keep)
    n2, err2 = fill(other, limit=2 * CHUNK)
    result(written=n, errno=err, written_after=n2, errno_after=err2)
elif cmd == "outside":
    n, err = fill(args[0], limit=int(args[1]))
    null = os.open("/dev/null", os.O_WRONLY)
    null_err = err_of(lambda: [os.write(null, b"x" * CHUNK) for _ in range(64)])
    r, w = os.pipe()
    pipe_err = 0
    for _ in range(64):
        pipe_err = pipe_err or err_of(os.write, w, b"x" * 4096)
        os.read(r, 4096)
    result(written=n, errno=err, null_errno=null_err, pipe_errno=pipe_err)
elif cmd == "mkdirs":
    base, shape = args[0], args[1]
    os.chdir(base)
    made, err = 0, 0
    while made < 100000:
        name = "d" if shape == "nested" else "d%d" % made
        try:
            os.mkdir(name)
        except OSError as e:
            err = e.errno
            break
        made += 1
        if shape == "nested":
            os.chdir(name)
    result(made=made, errno=err)
else:
    sys.exit(64)
'''


@pytest.fixture(scope="module")
def tenant(tmp_path_factory) -> str:
    return python_tenant(tmp_path_factory.mktemp("tenant"), "disk_tenant.py", TENANT)


@pytest.fixture
def area(tmp_path) -> Path:
    d = tmp_path / "area"
    d.mkdir()
    return d


def stored(directory: Path) -> int:
    """What the area stores, counted as the engine counts it: per inode
    max(size, blocks * 512) for files, blocks * 512 otherwise, links once."""
    seen, total = set(), 0
    dev = os.stat(directory).st_dev
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(root, d)).st_dev == dev]
        for name in [""] + dirs + files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) in seen or st.st_dev != dev:
                continue
            seen.add((st.st_dev, st.st_ino))
            blocks = st.st_blocks * 512
            total += max(st.st_size, blocks) if Path(root, name).is_file() else blocks
    return total


def spawn(group, tenant: str, out: Path, *args, stdin=None):
    with open(out.with_suffix(".err"), "a") as err:
        return group.spawn([PYTHON, tenant, args[0], str(out), *map(str, args[1:])], stdin=stdin,
                           stderr=err)


def result(proc, out: Path, timeout: float = 30) -> dict:
    assert proc.wait(timeout) == 0, out.with_suffix(".err").read_text()
    return json.loads(out.read_text().splitlines()[-1])


def run(group, tenant: str, out: Path, *args) -> dict:
    return result(spawn(group, tenant, out, *args), out)


def quota_group(sup, area: Path, quota: int, name: str = "t"):
    return sup.group(name, Limits(disk_space=quota), disk_area=[area])


@pytest.mark.parametrize("mode", ["append", "position"])
def test_writer_gets_edquot_at_the_quota(tenant, tmp_path, area, mode):
    quota = 1 * MiB
    with Supervisor(publish_state=False) as sup:
        g = quota_group(sup, area, quota)
        r = run(g, tenant, tmp_path / "out", "fill", area / "f", mode)
        u = g.usage().resources["disk_space"]
    assert r["errno"] == errno.EDQUOT, r
    # It stopped at the quota: no byte past it, less than one call short of it.
    assert stored(area) <= quota
    assert r["written"] > quota - 2 * CHUNK, r
    assert u.denied_calls >= 1
    assert u.used == stored(area)


@pytest.mark.parametrize("round_", range(3))
@pytest.mark.parametrize("outputs", ["disk", "tmpfs"])
def test_parallel_writers_stay_within_the_quota(tenant, tmp_path, area, round_, outputs):
    """Writers racing each other: a recount while another writer's call is
    still running must count that call's growth too, and a file being
    created as it walks. (Missed, the area went a block past its quota, and
    every write of the group failed with EDQUOT, even to its results and
    stderr on tmpfs: about half the rounds, before the walker let the
    growths in flight land.)"""
    quota, writers = 2 * MiB, 4
    out = Path(tempfile.mkdtemp(dir="/dev/shm")) if outputs == "tmpfs" else tmp_path
    go_r, go_w = os.pipe()
    try:
        with Supervisor(publish_state=False) as sup:
            g = quota_group(sup, area, quota)
            procs = [spawn(g, tenant, out / f"out{i}", "fill", area / f"f{i}", "append",
                           "together", stdin=go_r) for i in range(writers)]
            os.close(go_r)
            os.close(go_w)
            results = [result(p, out / f"out{i}") for i, p in enumerate(procs)]
            used = g.usage().resources["disk_space"].used
    finally:
        if outputs == "tmpfs":
            shutil.rmtree(out)
    assert all(r["errno"] == errno.EDQUOT for r in results), results
    assert used == stored(area) <= quota
    assert sum(r["written"] for r in results) > quota - (writers + 1) * CHUNK, results


def test_deleting_gives_the_space_back(tenant, tmp_path, area):
    quota = 1 * MiB
    with Supervisor(publish_state=False) as sup:
        g = quota_group(sup, area, quota)
        r = run(g, tenant, tmp_path / "out", "fill_delete_fill", area / "f")
        used = g.usage().resources["disk_space"].used
    assert r["errno"] == errno.EDQUOT, r
    assert (r["written_after"], r["errno_after"]) == (2 * CHUNK, 0), r
    assert used == stored(area) and used < quota // 2


def test_truncate_and_fallocate(tenant, tmp_path, area):
    quota = 1 * MiB
    with Supervisor(publish_state=False) as sup:
        g = quota_group(sup, area, quota)
        r = run(g, tenant, tmp_path / "out", "resize", area / "f", quota)
        used = g.usage().resources["disk_space"].used
    assert r["fallocate_keep_size_past"] == errno.EDQUOT, r
    assert r["ftruncate_past"] == errno.EDQUOT, r
    assert r["truncate_past"] == errno.EDQUOT, r
    assert r["ftruncate_within"] == 0 and r["size_within"] == quota // 2, r
    assert r["fallocate_past"] == errno.EDQUOT, r
    assert r["fallocate_within"] == 0 and r["size_end"] == 3 * quota // 4, r
    assert used == stored(area) <= quota


@pytest.mark.parametrize("how", ["copy_file_range", "sendfile", "splice"])
def test_copies_into_the_area(tenant, tmp_path, area, how):
    quota = 1 * MiB
    src = tmp_path / "src"
    src.write_bytes(os.urandom(2 * quota))
    with Supervisor(publish_state=False) as sup:
        g = quota_group(sup, area, quota)
        past = run(g, tenant, tmp_path / "out", "copy", how, src, area / "a", 2 * quota)
        # One call for the whole copy, except splice (64 KiB per call, up to the quota).
        full = stored(area)
        assert full <= quota and (full > quota - 2 * CHUNK if how == "splice" else full < CHUNK)
        (area / "a").unlink()
        within = run(g, tenant, tmp_path / "out", "copy", how, src, area / "b", quota // 2)
    assert (past["copied"], past["errno"]) == (0, errno.EDQUOT), past
    assert (within["copied"], within["errno"]) == (quota // 2, 0), within
    assert stored(area) <= quota


def test_usage_survives_a_restart(tenant, tmp_path, area):
    quota = 1 * MiB
    with Supervisor(publish_state=False) as sup:
        g = quota_group(sup, area, quota)
        first = run(g, tenant, tmp_path / "out", "fill", area / "f", "append")
    before = stored(area)
    assert first["errno"] == errno.EDQUOT
    (area / "f").unlink()
    (area / "kept").write_bytes(b"x" * (600 * KiB))  # written by someone else meanwhile
    kept = stored(area)
    with Supervisor(publish_state=False) as sup:
        g = quota_group(sup, area, quota)
        assert g.usage().resources["disk_space"].used == kept
        second = run(g, tenant, tmp_path / "out", "fill", area / "g", "append")
    assert second["errno"] == errno.EDQUOT
    assert second["written"] <= quota - kept + CHUNK < first["written"]
    assert stored(area) <= quota and before <= quota


def test_hard_links_count_once_and_mounts_are_not_crossed(tmp_path, area):
    (area / "f").write_bytes(b"x" * (256 * KiB))
    os.link(area / "f", area / "link")
    (area / "mnt").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "disk-space-test", str(area / "mnt")],
                   check=True)
    try:
        (area / "mnt" / "big").write_bytes(b"x" * (2 * MiB))  # another filesystem
        with Supervisor(publish_state=False) as sup:
            used = quota_group(sup, area, MiB).usage().resources["disk_space"].used
        expected = stored(area)
    finally:
        subprocess.run(["umount", str(area / "mnt")], check=True)
    assert 256 * KiB < used == expected < 2 * 256 * KiB


def test_open_deleted_file_still_counts(tenant, tmp_path, area):
    quota = 1 * MiB
    with Supervisor(publish_state=False) as sup:
        g = quota_group(sup, area, quota)
        r = run(g, tenant, tmp_path / "out", "hold_deleted", area / "held", area / "other",
                640 * KiB)
    assert r["errno"] == errno.EDQUOT, r
    assert r["written"] <= quota - 640 * KiB, r
    assert (r["written_after"], r["errno_after"]) == (2 * CHUNK, 0), r


def test_writes_outside_the_area_are_not_charged(tenant, tmp_path, area):
    quota = 256 * KiB
    outside = tmp_path / "outside"  # the same filesystem, not in the area
    outside.mkdir()
    with Supervisor(publish_state=False) as sup:
        g = quota_group(sup, area, quota)
        r = run(g, tenant, tmp_path / "out", "outside", outside / "f", 4 * MiB)
        u = g.usage().resources["disk_space"]
    assert r == {"written": 4 * MiB, "errno": 0, "null_errno": 0, "pipe_errno": 0}
    assert u.denied_calls == 0
    assert u.used == stored(area) < quota


@pytest.mark.parametrize("shape", ["flat", "nested"])
def test_mkdir_flood_is_bounded(tenant, tmp_path, area, shape):
    quota = 256 * KiB
    with Supervisor(publish_state=False) as sup:
        g = quota_group(sup, area, quota)
        r = run(g, tenant, tmp_path / "out", "mkdirs", area, shape)
    assert r["errno"] == errno.EDQUOT, r
    assert r["made"] <= quota // 4096
    assert stored(area) <= quota


def test_usage_reported_and_published(tenant, tmp_path, area, monkeypatch):
    """`governor ps --json` shows the bytes stored next to the limit."""
    monkeypatch.setenv("GOVERNOR_RUN_DIR", str(tmp_path / "run"))
    (area / "f").write_bytes(b"x" * (100 * KiB))
    with Supervisor() as sup:
        quota_group(sup, area, MiB, name="stored")

        def published():
            files = list((tmp_path / "run").glob("*.json"))
            return files and json.loads(files[0].read_text())

        doc = wait_for(published, 5, "a state file")
        ps = subprocess.run([sys.executable, "-m", "governor", "ps"], capture_output=True,
                            text=True, timeout=30, env={**os.environ})
    assert doc["limits"]["disk_space"] == MiB
    assert doc["usage"]["resources"]["disk_space"]["used"] == stored(area)
    assert "DISK_SPACE" in ps.stdout and "of 1.0MiB" in ps.stdout, ps.stdout


# ---- bad input ----

def test_disk_space_needs_an_area(area):
    with Supervisor(publish_state=False) as sup:
        with pytest.raises(PolicyError) as ei:
            sup.group("t", Limits(disk_space="1MiB"))
        assert ei.value.key == "disk_space" and "writable area" in ei.value.reason
        assert sup.groups == []
        sup.group("t", Limits(disk_space="1MiB"), disk_area=[area])  # the name is free


@pytest.mark.parametrize("bad,words", [
    ("missing", "does not exist"), ("file", "not a directory"), ("nested", "inside"),
])
def test_bad_area(tmp_path, area, bad, words):
    (tmp_path / "file").write_text("")
    (area / "sub").mkdir()
    dirs = {"missing": [tmp_path / "missing"], "file": [tmp_path / "file"],
            "nested": [area, area / "sub"]}[bad]
    with Supervisor(publish_state=False) as sup:
        with pytest.raises(PolicyError) as ei:
            sup.group("t", Limits(disk_space="1MiB"), disk_area=dirs)
        assert ei.value.key == "disk_area" and words in ei.value.reason, ei.value
        assert sup.groups == []


def test_disk_space_cannot_hold():
    with pytest.raises(PolicyError) as ei:
        Limits(disk_space="1MiB", on_exhausted={"disk_space": "hold"})
    assert ei.value.key == "disk_space" and "deny" in ei.value.reason
    assert Limits(disk_space="1MiB").mode_of("disk_space") == "deny"
    with pytest.raises(PolicyError):
        Limits(disk_space="1MiB/s")
    assert issubclass(PolicyError, GovernorError)


def test_cli_disk_space_without_area_exits_2(tmp_path):
    marker = tmp_path / "started"
    r = subprocess.run([sys.executable, "-m", "governor", "run", "--limit", "disk_space=1MiB",
                        "--", "/bin/sh", "-c", f"touch {marker}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "disk_space" in r.stderr and "writable area" in r.stderr
    assert "Traceback" not in r.stderr
    assert not marker.exists()


def test_cli_disk_area_quota_stops_dd(tmp_path, area):
    """`governor run --disk-area DIR`: dd into the area fails at the quota
    with EDQUOT, as it would against a filesystem quota, and the command's
    own exit status comes back."""
    r = subprocess.run([sys.executable, "-m", "governor", "run", "--limit", "disk_space=1MiB",
                        "--disk-area", str(area), "--", "dd", "if=/dev/zero",
                        f"of={area / 'x'}", "bs=64k", "count=40"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Disk quota exceeded" in r.stderr
    assert 1 * MiB - 2 * CHUNK < stored(area) <= 1 * MiB


@pytest.mark.parametrize("bad, words", [("missing", "does not exist"),
                                        ("file", "is not a directory"),
                                        ("container", "rootfs and volumes")])
def test_cli_bad_disk_area_exits_2_naming_it(tmp_path, area, bad, words):
    (tmp_path / "file").write_text("")
    marker = tmp_path / "started"
    extra = {"missing": ["--disk-area", str(tmp_path / "missing")],
             "file": ["--disk-area", str(tmp_path / "file")],
             "container": ["--disk-area", str(area), "--rootfs", str(tmp_path), "--name", "c"]}
    r = subprocess.run([sys.executable, "-m", "governor", "run", "--limit", "disk_space=1MiB",
                        *extra[bad], "--", "/bin/sh", "-c", f"touch {marker}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "--disk-area" in r.stderr and words in r.stderr and "Traceback" not in r.stderr
    assert not marker.exists()


# One thread makes a file in the area (argv[1]) and then computes, making no
# call, until told to stop (at most 20 s); the main thread writes 12 KiB to
# argv[2], a file outside the area on the same filesystem, and prints
# whether the other thread was still computing when the write returned.
SPINNER = r'''
import os, sys, threading, time
area, out = sys.argv[1], sys.argv[2]
stop = threading.Event()
def make_then_compute():
    os.close(os.open(os.path.join(area, "new"), os.O_WRONLY | os.O_CREAT, 0o600))
    end = time.monotonic() + 20
    while not stop.is_set() and time.monotonic() < end:
        pass
spinner = threading.Thread(target=make_then_compute)
spinner.start()
while not os.path.exists(os.path.join(area, "new")):
    time.sleep(0.01)
fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
os.write(fd, b"x" * 12288)
alive = spinner.is_alive()
stop.set()
spinner.join()
print(alive)
'''


def test_a_write_outside_the_area_does_not_wait_for_a_thread_that_computes(tmp_path, area):
    """The quota is nearly used up, so a write to a file outside the area
    (same filesystem) needs a count to find its file is not the area's.
    A count that begins while a file is being made in the area may miss it,
    and then does not settle a target it did not find; but a thread whose
    last call made a file and which then computes looks to the engine as if
    that call were still in flight. Counts kept being asked for until the
    thread made another call: the write waited as long as it computed (7.7 s
    in an 8 s run)."""
    (area / "big").write_bytes(bytes(50 << 10))
    with Supervisor(publish_state=False, engines=1) as sup:
        g = quota_group(sup, area, 64 * KiB)
        r, w = os.pipe()
        p = g.spawn([PYTHON, "-c", SPINNER, str(area), str(tmp_path / "out")], stdout=w)
        os.close(w)
        try:
            assert p.wait(60) == 0
            said = os.read(r, 100).decode().strip()
        finally:
            p.kill()
            os.close(r)
    assert said == "True", "the write returned only once the other thread stopped"
    assert (tmp_path / "out").stat().st_size == 12288
