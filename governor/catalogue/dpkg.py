"""Debian's package database, read directly (/var/lib/dpkg/status and
info/*.list), as `dpkg -S` and `dpkg-query` read it: which package owns a
file, a package's files and configuration files, its dependency closure and
installed sizes."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cached_property

from .._errors import CatalogueError

DPKG_DIR = "/var/lib/dpkg"
_DEP = re.compile(r"^\s*([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?")


@dataclass
class Package:
    name: str
    arch: str
    version: str
    installed_kib: int
    depends: list[list[str]] = field(default_factory=list)   # alternatives per dependency
    provides: list[str] = field(default_factory=list)
    conffiles: list[str] = field(default_factory=list)
    description: str = ""        # its first line


def _parse_deps(text: str) -> list[list[str]]:
    deps = []
    for clause in text.split(","):
        alts = [m.group(1) for a in clause.split("|") if (m := _DEP.match(a))]
        if alts:
            deps.append(alts)
    return deps


class Dpkg:
    def __init__(self, root: str = DPKG_DIR):
        self.root = root

    @cached_property
    def packages(self) -> dict[str, Package]:
        """Installed packages by name (and by name:arch)."""
        try:
            text = open(os.path.join(self.root, "status"), encoding="utf-8",
                        errors="replace").read()
        except OSError as e:
            raise CatalogueError(f"dpkg: cannot read {self.root}/status: {e.strerror}") from None
        out: dict[str, Package] = {}
        for stanza in text.split("\n\n"):
            fields: dict[str, str] = {}
            key = None
            for line in stanza.splitlines():
                if line[:1] in (" ", "\t") and key:
                    fields[key] += "\n" + line.strip()
                elif ":" in line:
                    key, _, value = line.partition(":")
                    fields[key] = value.strip()
            if "install ok installed" not in fields.get("Status", ""):
                continue
            pkg = Package(fields["Package"], fields.get("Architecture", ""),
                          fields.get("Version", ""), int(fields.get("Installed-Size", "0") or 0),
                          _parse_deps(fields.get("Pre-Depends", "") + ","
                                      + fields.get("Depends", "")),
                          [m.group(1) for p in fields.get("Provides", "").split(",")
                           if (m := _DEP.match(p))],
                          [c.split()[0] for c in fields.get("Conffiles", "").splitlines()
                           if c.strip()],
                          fields.get("Description", "").split("\n")[0])
            out[pkg.name] = pkg
            out[f"{pkg.name}:{pkg.arch}"] = pkg
        return out

    @cached_property
    def _providers(self) -> dict[str, str]:
        prov: dict[str, str] = {}
        for pkg in {p.name: p for p in self.packages.values()}.values():
            for virtual in pkg.provides:
                prov.setdefault(virtual, pkg.name)
        return prov

    def package(self, name: str) -> Package:
        pkg = self.packages.get(name)
        if pkg is None:
            raise CatalogueError(f"--package: {name}: not an installed Debian package")
        return pkg

    def files(self, name: str) -> list[str]:
        """The paths a package installed (its .list file), directories included."""
        pkg = self.package(name)
        for candidate in (f"{pkg.name}:{pkg.arch}.list", f"{pkg.name}.list"):
            try:
                with open(os.path.join(self.root, "info", candidate), encoding="utf-8",
                          errors="surrogateescape") as f:
                    return [line.rstrip("\n") for line in f if line.strip() not in ("", "/.")]
            except FileNotFoundError:
                continue
        return []

    def closure(self, names: list[str]) -> list[str]:
        """names and every package they depend on (Depends, Pre-Depends),
        the first installed alternative of each, virtual ones resolved."""
        done: list[str] = []
        todo = [self.package(n).name for n in names]
        while todo:
            name = todo.pop()
            if name in done:
                continue
            done.append(name)
            for alts in self.packages[name].depends:
                for alt in alts:
                    real = alt if alt in self.packages else self._providers.get(alt)
                    if real:
                        todo.append(self.packages[real].name)
                        break
        return sorted(done)

    def installed_size(self, names: list[str]) -> int:
        """Bytes, as dpkg's Installed-Size says (KiB, rounded up per file)."""
        return sum(self.packages[n].installed_kib for n in names) * 1024

    @cached_property
    def _owners(self) -> dict[str, str]:
        """Every path a package lists -> the package (the first one, for
        directories that many list)."""
        owners: dict[str, str] = {}
        info = os.path.join(self.root, "info")
        try:
            names = os.listdir(info)
        except OSError:
            return owners
        for entry in names:
            if entry.endswith(".list"):
                pkg = entry[:-5].split(":")[0]
                with open(os.path.join(info, entry), encoding="utf-8",
                          errors="surrogateescape") as f:
                    for line in f:
                        owners.setdefault(line.rstrip("\n"), pkg)
        return owners

    def owner(self, path: str) -> str | None:
        """The package that installed path (as `dpkg -S`), or None. On a
        merged-/usr system dpkg may list /lib/x or /usr/lib/x for the same
        file: both are tried, and the path with its directory resolved."""
        real = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
        for p in dict.fromkeys((path, real)):
            for candidate in (p, p[4:] if p.startswith("/usr/") else "/usr" + p):
                if candidate in self._owners:
                    return self._owners[candidate]
        return None
