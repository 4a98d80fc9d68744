"""cffi build script for governor._native (out-of-line API mode).

The cdef is the project's own headers, read as they are: one header per C
area, so the declarations Python sees are the ones the C compiles against.
"""
import pathlib
import re

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
HEADERS = ["gov.h", "bucket.h", "filter.h", "syscalls.h", "container.h", "spawn.h", "procfs.h",
           "share.h", "engine.h", "cpu.h", "fault.h"]
SOURCES = ["bucket.c", "argcond.c", "filter.c", "syscalls.c", "container.c", "spawn.c", "procfs.c",
           "tasks.c", "classify.c", "diskspace.c", "shmem.c", "iowrite.c", "keep.c", "engine.c",
           "holds.c", "verdict.c", "wakeups.c", "diskwalk.c", "events.c", "trace.c", "cpu.c",
           "share.c", "fault.c"]


def _cdef_text(header: str) -> str:
    """A header without the preprocessor lines cffi cannot parse."""
    text = (HERE / header).read_text()
    keep = [line for line in text.splitlines()
            if not re.match(r"\s*#\s*(include|ifndef|endif|define\s+GOV_\w+_H\b|define\s+GOV_H\b)", line)]
    return "\n".join(keep)


# make sanitize: the same engine built with sanitizers, into a directory of
# its own (tests/conftest.py loads it from there; the installed one stays).
SANITIZERS = {
    "address": ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"],
    "thread": ["-fsanitize=thread"],
}


def builder(sanitize: str | None = None) -> FFI:
    # -O1: whole stacks in reports, and a quicker build for make test.
    flags = SANITIZERS[sanitize] + ["-O1", "-g", "-fno-omit-frame-pointer"] if sanitize else []
    # setuptools wants paths relative to the checkout; FFI.compile() runs in its tmpdir.
    where = (lambda p: str(p)) if sanitize else (lambda p: str(p.relative_to(HERE.parent)))
    ffi = FFI()
    ffi.cdef("\n".join(_cdef_text(h) for h in HEADERS))
    ffi.set_source(
        "governor._native",
        "\n".join(f'#include "{h}"' for h in HEADERS),
        sources=[where(HERE / s) for s in SOURCES],
        include_dirs=[where(HERE)],
        libraries=["seccomp", "pthread"],
        extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"] + flags,
        extra_link_args=flags,
    )
    return ffi


ffibuilder = builder()

if __name__ == "__main__":
    import argparse
    import os
    ap = argparse.ArgumentParser(description="Builds governor._native; with --sanitize, "
                                 "into OUT/governor/ (make sanitize).")
    ap.add_argument("--sanitize", choices=sorted(SANITIZERS))
    ap.add_argument("out", nargs="?", default=".")
    args = ap.parse_args()
    builder(args.sanitize).compile(tmpdir=os.path.abspath(args.out), verbose=True)
