"""Builds, shells, process pools, git and tar: the same output natively and
under both backends, with limits that never bind and, where a program copes
with a cap by waiting or retrying, limits that bind."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from _compat import BACKENDS, NEVER_BINDS, needs_root, run
from _tenants import SHIM

pytestmark = needs_root
MAKE = ["make", "-j4", "MYCFLAGS=$(LOCAL) -std=c99 -DLUA_USE_LINUX", "MYLIBS=-ldl"]


def digests(root: Path, pattern: str = "**/*") -> dict[str, str]:
    """sha256 of every regular file below root, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.glob(pattern)) if p.is_file() and not p.is_symlink()}


def lua_tree(tarball: Path, where: Path) -> Path:
    """A fresh copy of Lua 5.4's source tree at `where` (the same path for
    every build, so that what the compiler records is the same)."""
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        members = [m for m in tar.getmembers() if "/third-party/lua54/" in m.name]
        tar.extractall(where, members=members, filter="data")
    src = next(where.glob("*/third-party/lua54"))
    (src / ".git").unlink(missing_ok=True)  # the sdist's link to lupa's submodule
    return src


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("backend", BACKENDS)
def test_parallel_build_under_a_small_processes_cap(backend, lua_source, tmp_path, report):
    """make -j4 of Lua (40 C files, its own makefile) with processes=6, which
    binds (make, 4 jobs of sh, gcc, cc1 and as want more), then Lua's own
    test suite with the result, under the same cap: the same objects, the same
    binary, the same test output as natively."""
    where = tmp_path / "build"
    limits = ("processes=6",) + tuple(x for x in NEVER_BINDS if not x.startswith("processes"))
    results = {}
    for how in (None, backend):
        src = lua_tree(lua_source, where)
        built = run(MAKE, how, limits, cwd=src, timeout=900)
        assert built.rc == 0, f"make under {how or 'native'}: {built.err[-3000:]}"
        tested = run(["../lua", "-e_U=true", "all.lua"], how, limits, cwd=src / "testes")
        assert tested.rc == 0 and "final OK" in tested.out, tested.out[-2000:] + tested.err[-2000:]
        results[how] = (digests(src, "*.o") | digests(src, "lua"), built, tested)
    (native, nb, nt), (governed, gb, gt) = results[None], results[backend]
    assert len(native) > 30 and governed == native
    assert gt.out.splitlines()[-1] == nt.out.splitlines()[-1]
    report("make -j4 of Lua 5.4 (40 C files)", f"{backend}, processes=6",
           "same objects and binary", nb.seconds, gb.seconds)
    report("Lua 5.4's own test suite (all.lua)", f"{backend}, processes=6", "final OK",
           nt.seconds, gt.seconds)


NEST = r'''
nest() {
  if [ "$1" -eq 0 ]; then echo leaf; return; fi
  echo "$1:$(nest $(($1 - 1)) | cat)"
}
nest 6
echo "$(echo "$(echo "$(echo deep | tr a-z A-Z)" | rev)" | sed s/P/p/)"
'''
PIPES = r'''
seq 1 20000 | awk '{ print $1 % 97 }' | sort -n | uniq -c | sort -k2n | md5sum
for i in $(seq 1 60); do md5sum <<< "job $i" > "out.$i" & done
wait
cat $(ls out.* | sort -t. -k2n) | md5sum
exec 3< <(seq 5); while read -u 3 x; do printf '%s ' "$((x * x))"; done; echo
'''
XARGS = "seq 1 300 | xargs -P 8 -n 3 sh -c 'for x; do echo $((x * x)); done' sh | sort -n | md5sum"
POOLS = r'''
import concurrent.futures as cf, hashlib, multiprocessing as mp

def work(n):
    return hashlib.sha256(str(n).encode() * 1000).hexdigest()[:8]

if __name__ == "__main__":
    for method in ("fork", "forkserver", "spawn"):
        with mp.get_context(method).Pool(4) as pool:
            print(method, hashlib.md5("".join(pool.map(work, range(200))).encode()).hexdigest())
    with cf.ProcessPoolExecutor(4) as ex:
        print("processes", hashlib.md5("".join(ex.map(work, range(200))).encode()).hexdigest())
    with cf.ThreadPoolExecutor(8) as ex:
        print("threads", hashlib.md5("".join(ex.map(work, range(200))).encode()).hexdigest())
'''

# (name, argv builder, a binding cap or None): a shell that waits for its
# jobs, or retries a fork, copes with a cap; nested substitutions and process
# pools need all their tasks at once and fail at a cap below that, natively
# (a pids limit) as under the governor (tests/test_processes.py), so they run
# with limits that never bind.
SCRIPTS = {
    "bash: $(...) nested 6 deep, pipelines": (lambda d: ["bash", "-c", NEST], None),
    "bash: pipelines, 60 background jobs, process substitution":
        (lambda d: ["bash", "-c", PIPES], "processes=8"),
    "xargs -P 8": (lambda d: ["bash", "-c", XARGS], "processes=6"),
    "version-manager shim exec'ing python3": (lambda d: [str(d / "shims" / "python3"), "-c",
                                                         "import sys; print(sys.version_info[:2])"],
                                              "processes=8"),
    "Python multiprocessing (fork, forkserver, spawn) and concurrent.futures pools":
        (lambda d: [sys.executable, str(d / "pools.py")], None),
}


@pytest.mark.timeout(700)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts(name, backend, tmp_path, report):
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "version").write_text("python3\n")
    (shims / "python3").write_text(SHIM)
    (shims / "python3").chmod(0o755)
    (tmp_path / "pools.py").write_text(POOLS)  # spawn and forkserver import it again
    argv, cap = SCRIPTS[name]
    limits = NEVER_BINDS if cap is None else (cap,) + tuple(
        x for x in NEVER_BINDS if not x.startswith("processes"))
    outs = []
    for how in (None, backend):
        work = tmp_path / (how or "native")
        work.mkdir()
        res = run(argv(tmp_path), how, limits, cwd=work, timeout=300)
        assert res.rc == 0, f"{name} under {how or 'native'}: exit {res.rc}\n{res.err[-3000:]}"
        outs.append(res)
    native, governed = outs
    assert governed.out == native.out and native.out
    report(name, f"{backend}, {cap or 'limits never bind'}", "same output",
           native.seconds, governed.seconds)


@pytest.mark.timeout(700)
@pytest.mark.parametrize("backend", BACKENDS)
def test_git_clone_and_tar_round_trip_under_disk_write(backend, lua_source, tmp_path, report):
    """A repository of Lua's tree with 3 commits, cloned locally and packed
    with tar and unpacked again, with disk_write=32MiB/s: the same files."""
    origin = lua_tree(lua_source, tmp_path / "origin")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    made = run(git + ["init", "-q"], cwd=origin)
    assert made.rc == 0, made.err
    for i, part in enumerate(("l*.c", "l*.h", "*")):
        assert run(git + ["add", "-A", "--", part], cwd=origin).rc == 0
        assert run(git + ["commit", "-q", "-m", f"part {i}"], cwd=origin).rc == 0
    limits = ("disk_write=32MiB/s",) + tuple(x for x in NEVER_BINDS if not x.startswith("disk_w"))
    trees, seconds = {}, {}
    for how in (None, backend):
        work = tmp_path / (how or "native")
        work.mkdir()
        script = (f"set -e; git clone -q --no-hardlinks {origin} clone; git -C clone log --oneline "
                  f"| wc -l; tar -cf tree.tar clone; mkdir back; tar -xf tree.tar -C back")
        res = run(["bash", "-c", script], how, limits, cwd=work, timeout=300)
        assert res.rc == 0 and res.out.strip() == "3", res.err[-3000:]
        # The index and the reflogs record times; everything else must match.
        trees[how] = {k: v for k, v in digests(work / "back" / "clone").items()
                      if k != ".git/index" and not k.startswith(".git/logs/")}
        seconds[how] = res.seconds
    native = trees[None]
    assert native and trees[backend] == native
    assert any(k.startswith(".git/objects/") for k in native)
    report("git clone (local, 3 commits) + tar round trip", f"{backend}, disk_write=32MiB/s",
           "same files", seconds[None], seconds[backend])


def run_in_area(argv, backend, quota: str, area: Path, cwd=None, timeout: float = 900):
    """argv natively (backend None), or under `governor run` with
    disk_space=quota over --disk-area area and the limits that never bind."""
    return run(argv, backend, NEVER_BINDS + (f"disk_space={quota}",), cwd=cwd, timeout=timeout,
               options=("--disk-area", str(area)))


@pytest.mark.compat_full
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("backend", BACKENDS)
def test_unpack_and_build_in_a_disk_space_area(backend, lua_source, tmp_path, report):
    """Lua's sources unpacked with tar and built with make -j4 inside a
    disk_space area whose quota does not bind (every growing call is
    charged, every new file counted): the same objects and binary as
    natively."""
    results = {}
    for how in (None, backend):
        area = tmp_path / "area"
        shutil.rmtree(area, ignore_errors=True)
        area.mkdir()
        unpacked = run_in_area(["tar", "-xzf", str(lua_source), "-C", str(area)], how, "1GiB",
                               area)
        assert unpacked.rc == 0, unpacked.err[-3000:]
        src = next(area.glob("*/third-party/lua54"))
        (src / ".git").unlink(missing_ok=True)
        built = run_in_area(MAKE, how, "1GiB", area, cwd=src)
        assert built.rc == 0, f"make under {how or 'native'}: {built.err[-3000:]}"
        results[how] = (digests(src, "*.o") | digests(src, "lua"), unpacked, built)
    (native, nu, nb), (governed, gu, gb) = results[None], results[backend]
    assert len(native) > 30 and governed == native
    report("tar -xzf of lupa's sdist, then make -j4 of its Lua", f"{backend}, disk_space=1GiB",
           "same objects and binary", nu.seconds + nb.seconds, gu.seconds + gb.seconds)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", BACKENDS)
def test_tar_meets_a_full_quota_as_it_meets_a_full_disk(backend, lua_source, tmp_path, report):
    """tar -x of lupa's sdist (larger than 2 MiB unpacked) into a 2 MiB
    area stops as it does on a full 2 MiB tmpfs: tar fails (exit 2) with
    the error for each file it cannot write, nothing past the limit is
    stored, nothing hangs. The governed error is EDQUOT where the full disk
    gives ENOSPC."""
    disk = tmp_path / "tmpfs"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True)
    try:
        native = run(["tar", "-xzf", str(lua_source), "-C", str(disk)], timeout=120)
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    area = tmp_path / "area"
    area.mkdir()
    governed = run_in_area(["tar", "-xzf", str(lua_source), "-C", str(area)], backend, "2MiB",
                           area, timeout=120)
    assert native.rc == governed.rc == 2, (native.rc, governed.rc, governed.err[-2000:])
    assert "No space left on device" in native.err
    assert "Disk quota exceeded" in governed.err and "No space" not in governed.err
    stored = sum(max(p.lstat().st_size, p.lstat().st_blocks * 512)
                 for p in [area, *area.rglob("*")])
    assert stored <= 2 * 1024 * 1024
    report("tar -x into a full area (2 MiB) / a full 2 MiB tmpfs", f"{backend}, disk_space=2MiB",
           "tar exits 2, EDQUOT / ENOSPC", native.seconds, governed.seconds)
