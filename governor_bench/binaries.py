"""The C helpers of `governor bench`, built on demand.

Their sources ship in the package (governor_bench/benchsrc/); the first use
compiles them with the system C compiler into a cache directory named by a
hash of the sources and the compiler, so an installed governor measures with
exactly the code in its package, and benchmarks/ uses the same binaries.
"""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from governor._errors import GovernorError

SRC = Path(__file__).resolve().parent / "benchsrc"
# tenant_loop: times N calls; floor_*: minimal supervisors; *_exec: tenants
# for the Python loops; tcp_pair: a macro workload.
HELPERS = ("tenant_loop", "floor_allow", "floor_notify", "floor_trace", "notify_exec",
           "trace_exec", "tcp_pair")
CFLAGS = ["-O2", "-Wall", "-Wextra"]


def _compiler() -> str:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and (path := shutil.which(name)):
            return path
    raise GovernorError("governor bench builds small C helpers and needs a C compiler: "
                        "none found (set CC, or install gcc)")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "governor" / "bench"


def build(out: Path | None = None) -> dict[str, str]:
    """Compiles every helper (once per source version) and returns
    {name: path}. GovernorError when there is no compiler or it fails."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        raise GovernorError("governor bench needs Linux on x86_64 "
                            f"(this is {platform.system()} on {platform.machine()})")
    cc = _compiler()
    h = hashlib.sha256(f"{cc} {CFLAGS}".encode())
    for src in sorted(SRC.iterdir()):
        if src.suffix in (".c", ".h"):
            h.update(src.name.encode() + src.read_bytes())
    out = (out or cache_dir()) / h.hexdigest()[:16]
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in HELPERS:
        exe = out / name
        if not exe.exists():
            _compile(cc, SRC / f"{name}.c", exe)
        paths[name] = str(exe)
    return paths


def _compile(cc: str, src: Path, exe: Path) -> None:
    # Into a temporary name, then renamed: a concurrent or interrupted build
    # never leaves a half-written helper behind.
    fd, tmp = tempfile.mkstemp(prefix=f".{exe.name}.", dir=exe.parent)
    os.close(fd)
    try:
        p = subprocess.run([cc, *CFLAGS, "-I", str(SRC), "-o", tmp, str(src)],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise GovernorError(f"compiling {src}: {cc} exited {p.returncode}: "
                                f"{p.stderr.strip()}")
        os.replace(tmp, exe)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
