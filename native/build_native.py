"""cffi build script for governor._native (out-of-line API mode).

The cdef is the project's own headers, read as they are: one header per C
area, so the declarations Python sees are the ones the C compiles against.
"""
import pathlib
import re

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
HEADERS = ["gov.h", "bucket.h", "filter.h", "container.h", "spawn.h", "procfs.h", "share.h",
           "engine.h", "cpu.h"]
SOURCES = ["bucket.c", "argcond.c", "filter.c", "container.c", "spawn.c", "procfs.c", "tasks.c",
           "classify.c", "diskspace.c", "shmem.c", "iowrite.c", "keep.c", "engine.c", "trace.c", "cpu.c", "share.c"]


def _cdef_text(header: str) -> str:
    """A header without the preprocessor lines cffi cannot parse."""
    text = (HERE / header).read_text()
    keep = [line for line in text.splitlines()
            if not re.match(r"\s*#\s*(include|ifndef|endif|define\s+GOV_\w+_H\b|define\s+GOV_H\b)", line)]
    return "\n".join(keep)


ffibuilder = FFI()
ffibuilder.cdef("\n".join(_cdef_text(h) for h in HEADERS))
ffibuilder.set_source(
    "governor._native",
    "\n".join(f'#include "{h}"' for h in HEADERS),
    sources=[str((HERE / s).relative_to(HERE.parent)) for s in SOURCES],
    include_dirs=[str(HERE.relative_to(HERE.parent))],
    libraries=["seccomp", "pthread"],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
