"""Fixtures of tests/compat: the report that `make compat` prints
($GOVERNOR_COMPAT_REPORT: a Markdown table, the one in README) and the
sources of the build test."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from _compat import COMPAT_SRC

_rows: list[tuple[str, ...]] = []


@pytest.fixture(scope="session")
def report():
    """report(program, how, result, native_seconds, governed_seconds): one
    row of the compatibility table."""
    def add(program: str, how: str, result: str, native: float, governed: float) -> None:
        ratio = f"{governed / native:.2f}x" if native > 0 else "-"
        _rows.append((program, how, result, f"{native:.2f} s", f"{governed:.2f} s", ratio))
    yield add
    path = os.environ.get("GOVERNOR_COMPAT_REPORT")
    if path and _rows:
        head = ("program", "under the governor", "result", "native", "governed", "time ratio")
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in _rows]
        Path(path).write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def lua_source() -> Path:
    """Lua 5.4's source tree (its own makefile and 40 C files), from the lupa
    sdist that `make setup` downloads from PyPI."""
    tarballs = sorted(COMPAT_SRC.glob("lupa-*.tar.gz"))
    assert tarballs, f"no lupa sdist in {COMPAT_SRC}: run make setup"
    return tarballs[-1]
