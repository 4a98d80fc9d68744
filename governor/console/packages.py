"""Debian packages installed on the host, as the Applications page lists
them: name, version, installed size, first line of the description, and
the programs each puts in a bin directory. Read from dpkg's database (the
catalogue's reader) once, and again when dpkg's status file changes."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from .._errors import CatalogueError
from ..catalogue.dpkg import DPKG_DIR, Dpkg

BIN_DIRS = ("/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/games", "/usr/local/bin")


@dataclass
class HostPackage:
    name: str
    version: str
    arch: str
    size: int                      # bytes, as dpkg's Installed-Size says
    description: str
    binaries: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return vars(self).copy()


def _binaries(paths: list[str]) -> list[str]:
    out = []
    for p in paths:
        if os.path.dirname(p) in BIN_DIRS and os.path.isfile(p) and os.access(p, os.X_OK):
            out.append(p)
    return sorted(out)


class HostPackages:
    def __init__(self, root: str = DPKG_DIR):
        self.root = root
        self._lock = threading.Lock()
        self._stamp = None
        self._list: list[HostPackage] = []

    def all(self) -> list[HostPackage]:
        try:
            stamp = os.stat(os.path.join(self.root, "status")).st_mtime_ns
        except OSError:
            return []          # not a Debian host: nothing to list
        with self._lock:
            if stamp != self._stamp:
                dpkg = Dpkg(self.root)
                unique = {p.name: p for p in dpkg.packages.values()}
                self._list = [HostPackage(p.name, p.version, p.arch, p.installed_kib * 1024,
                                          p.description, _binaries(dpkg.files(p.name)))
                              for p in sorted(unique.values(), key=lambda p: p.name)]
                self._stamp = stamp
            return self._list

    def search(self, query: str, limit: int = 50) -> tuple[list[HostPackage], int]:
        """Packages whose name, description or a program's name holds every
        word of query; the first `limit` of them and how many there are."""
        words = query.lower().split()
        found = [p for p in self.all()
                 if all(w in p.name.lower() or w in p.description.lower()
                        or any(w in os.path.basename(b).lower() for b in p.binaries)
                        for w in words)]
        return found[:limit], len(found)

    def get(self, name: str) -> HostPackage:
        for p in self.all():
            if p.name == name:
                return p
        raise CatalogueError(f"{name!r} is not an installed Debian package", key="package")
