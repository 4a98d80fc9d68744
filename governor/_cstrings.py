"""C strings for the engine's requests. cffi frees what ffi.new made once
its Python object is gone, but a struct field or a char *[] holding the
pointer keeps nothing alive: every buffer goes into the caller's keep list,
which lives until the C call has returned."""
from __future__ import annotations

import os
from collections.abc import Iterable

from ._native import ffi


def cstr(keep: list, s: str | bytes):
    """A NUL-terminated copy of s (a str encoded as a file name is)."""
    p = ffi.new("char[]", os.fsencode(s))
    keep.append(p)
    return p


def cstr_array(keep: list, items: Iterable[str | bytes]):
    """A char *[] of items, ending with NULL (so never empty)."""
    arr = ffi.new("char *[]", [cstr(keep, s) for s in items] + [ffi.NULL])
    keep.append(arr)
    return arr
