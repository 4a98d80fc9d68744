"""From what a run touched to the files of an image: every path walked as
the kernel walks it, so that each symlink on the way (/lib -> usr/lib,
python3 -> python3.11) is kept together with its target; the loader's files
of every ELF program and library (interpreter, DT_NEEDED); the interpreter
of every script that was run; whole Debian packages when asked."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from .dpkg import Dpkg
from .elf import Resolver, read_elf

# Never part of an image: the container makes its own (/proc, /dev, /tmp),
# or they are the host's run-time state.
PSEUDO = ("/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp", "/var/run", "/var/lock")
# Devices every container has (governor's minimal /dev): not a hardware need.
STANDARD_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
                    "/dev/tty", "/dev/ptmx", "/dev/pts", "/dev/console", "/dev/shm", "/dev/fd",
                    "/dev/stdin", "/dev/stdout", "/dev/stderr", "/dev/log")
_MAX_LINKS = 40


def _under(path: str, tops) -> bool:
    return any(path == t or path.startswith(t.rstrip("/") + "/") for t in tops)


@dataclass
class FileSet:
    """Host paths of an image, each with its kind: "dir", "file" or "symlink"."""

    entries: dict[str, str] = field(default_factory=dict)
    exclude: tuple[str, ...] = PSEUDO
    devices: set[str] = field(default_factory=set)     # /dev nodes the run opened

    def add(self, path: str) -> str | None:
        """Adds path as the kernel resolves it: every directory, every
        symlink on the way and the final object. Returns the real path of
        what it names, or None when it does not exist (or is excluded)."""
        todo = [p for p in path.split("/") if p]
        cur = "/"
        links = 0
        found: list[tuple[str, str]] = []
        while todo:
            part = todo.pop(0)
            if part == ".":
                continue
            if part == "..":
                cur = os.path.dirname(cur)
                continue
            here = os.path.join(cur, part)
            if _under(here, self.exclude):
                if here.startswith("/dev/") and not _under(here, STANDARD_DEVICES):
                    self._device(here)
                return None
            try:
                st = os.lstat(here)
            except OSError:
                return None
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    return None
                found.append((here, "symlink"))
                target = os.readlink(here)
                if target.startswith("/"):
                    cur = "/"
                todo = [p for p in target.split("/") if p] + todo
                continue
            if stat.S_ISDIR(st.st_mode):
                found.append((here, "dir"))
                cur = here
                continue
            if stat.S_ISREG(st.st_mode) and not todo:
                found.append((here, "file"))
                cur = here
                break
            return None      # a socket, fifo or device outside /dev, or a file used as a dir
        for p, kind in found:
            self.entries.setdefault(p, kind)
        return cur

    def _device(self, path: str) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            self.devices.add(path)

    def files(self) -> list[str]:
        return [p for p, k in self.entries.items() if k == "file"]

    def ordered(self) -> list[tuple[str, str]]:
        """Parents before children (the order a tar layer needs)."""
        return sorted(self.entries.items(), key=lambda e: e[0].split("/"))

    def content_size(self) -> int:
        seen, total = set(), 0
        for p in self.files():
            st = os.lstat(p)
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
        return total


def add_loader_needs(fs: FileSet, resolver: Resolver, executed: set[str]) -> list[str]:
    """For every ELF file in fs: its interpreter and DT_NEEDED closure; for
    every executed script: its #! interpreter. Repeats until nothing new
    comes. Returns sonames that could not be found."""
    missing: list[str] = []
    done: set[str] = set()
    while True:
        todo = [p for p in fs.files() if p not in done]
        if not todo:
            return sorted(set(missing))
        for path in todo:
            done.add(path)
            if read_elf(path) is not None:
                found, lost = resolver.closure(path)
                missing += lost
                for lib in found:
                    fs.add(lib)
            elif path in executed:
                interp = script_interpreter(path)
                if interp:
                    fs.add(interp)


def script_interpreter(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            first = f.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].strip().split()
    return os.fsdecode(words[0]) if words and words[0].startswith(b"/") else None


def add_packages(fs: FileSet, dpkg: Dpkg, names: list[str]) -> list[str]:
    """Every file of the packages and their dependency closure (their
    configuration files in /etc included). Returns the closure."""
    closure = dpkg.closure(names)
    for pkg in closure:
        for path in dpkg.files(pkg):
            fs.add(path)     # gone ones (a conffile the admin removed) are skipped
    return closure
