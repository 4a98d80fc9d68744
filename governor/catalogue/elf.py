"""What an ELF file needs to run, read from the file itself (pyelftools), as
the dynamic loader would, never by running `ldd` on it: its interpreter
(PT_INTERP), its libraries (DT_NEEDED, searched through DT_RPATH/DT_RUNPATH,
/etc/ld.so.conf and the default directories), its machine, the x86-64 ISA
level its GNU property note asks for and the kernel its ABI tag names."""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

# e_machine -> the architecture's name as uname(2) and OCI say it (GOARCH for OCI).
MACHINES = {"EM_X86_64": ("x86_64", "amd64"), "EM_AARCH64": ("aarch64", "arm64"),
            "EM_386": ("i686", "386"), "EM_ARM": ("armv7l", "arm"),
            "EM_RISCV": ("riscv64", "riscv64"), "EM_PPC64": ("ppc64le", "ppc64le"),
            "EM_S390": ("s390x", "s390x")}
# GNU_PROPERTY_X86_ISA_1_NEEDED bits -> x86-64 micro-architecture levels.
ISA_LEVELS = ((8, 4), (4, 3), (2, 2), (1, 1))
DEFAULT_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
                "/lib", "/usr/lib")
ELF_MAGIC = b"\x7fELF"


@dataclass
class ElfInfo:
    path: str
    arch: str                                   # uname's name: x86_64, aarch64, ...
    interpreter: str | None = None              # PT_INTERP
    needed: list[str] = field(default_factory=list)       # DT_NEEDED sonames
    search: list[str] = field(default_factory=list)       # DT_RPATH/DT_RUNPATH, $ORIGIN expanded
    isa_level: int | None = None                # x86-64-vN from the ISA_1_NEEDED note
    abi_kernel: tuple[int, int, int] | None = None   # NT_GNU_ABI_TAG: lowest kernel


def is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == ELF_MAGIC
    except OSError:
        return False


def read_elf(path: str) -> ElfInfo | None:
    """The ELF facts of path, or None when it is not a readable ELF file."""
    if not is_elf(path):
        return None
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            info = ElfInfo(path, MACHINES.get(elf["e_machine"], (elf["e_machine"],))[0])
            origin = os.path.dirname(os.path.realpath(path))
            for seg in elf.iter_segments():
                kind = seg["p_type"]
                if kind == "PT_INTERP":
                    info.interpreter = seg.get_interp_name()
                elif kind == "PT_DYNAMIC":
                    for tag in seg.iter_tags():
                        d = tag.entry.d_tag
                        if d == "DT_NEEDED":
                            info.needed.append(tag.needed)
                        elif d in ("DT_RPATH", "DT_RUNPATH"):
                            text = tag.rpath if d == "DT_RPATH" else tag.runpath
                            info.search += [p.replace("$ORIGIN", origin).replace("${ORIGIN}", origin)
                                            for p in text.split(":") if p]
                elif kind == "PT_NOTE":
                    _read_notes(seg, info)
            return info
    except (ELFError, OSError, ValueError, KeyError, AttributeError):
        return None   # truncated or odd: not something the loader would run either


def _read_notes(seg, info: ElfInfo) -> None:
    for note in seg.iter_notes():
        if note["n_type"] == "NT_GNU_PROPERTY_TYPE_0":
            for prop in note["n_desc"]:
                if prop["pr_type"] == "GNU_PROPERTY_X86_ISA_1_NEEDED":
                    bits = prop["pr_data"]
                    info.isa_level = next((lvl for bit, lvl in ISA_LEVELS if bits & bit), None)
        elif note["n_type"] == "NT_GNU_ABI_TAG":
            d = note["n_desc"]
            info.abi_kernel = (d["abi_major"], d["abi_minor"], d["abi_tiny"])


def ld_so_dirs(conf: str = "/etc/ld.so.conf") -> list[str]:
    """The directories of ld.so.conf and its includes, in order."""
    dirs: list[str] = []

    def read(path: str, depth: int) -> None:
        try:
            lines = open(path).read().splitlines()
        except OSError:
            return
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if line.startswith("include") and depth < 8:
                pattern = line.split(None, 1)[1] if " " in line else ""
                if not pattern.startswith("/"):
                    pattern = os.path.join(os.path.dirname(path), pattern)
                for inc in sorted(glob.glob(pattern)):
                    read(inc, depth + 1)
            elif line.startswith("/"):
                dirs.append(line)

    read(conf, 0)
    return dirs


class Resolver:
    """Finds the files an ELF program loads, as ld.so does: interpreter,
    then the DT_NEEDED closure breadth-first."""

    def __init__(self):
        self.dirs = ld_so_dirs() + [d for d in DEFAULT_DIRS]
        self._cache: dict[str, ElfInfo | None] = {}

    def info(self, path: str) -> ElfInfo | None:
        if path not in self._cache:
            self._cache[path] = read_elf(path)
        return self._cache[path]

    def find(self, soname: str, search: list[str], arch: str) -> str | None:
        if "/" in soname:
            return soname if os.path.exists(soname) else None
        for d in search + self.dirs:
            candidate = os.path.join(d, soname)
            if os.path.exists(candidate):
                other = self.info(candidate)
                if other is None or other.arch == arch:   # skip a library of another machine
                    return candidate
        return None

    def closure(self, path: str) -> tuple[list[str], list[str]]:
        """(files the loader opens for path: interpreter and libraries, as
        named on the search path; sonames it could not find)."""
        first = self.info(path)
        if first is None:
            return [], []
        found: list[str] = []
        missing: list[str] = []
        if first.interpreter:
            found.append(first.interpreter)
        queue, seen = [first], set()
        while queue:
            elf = queue.pop(0)
            for soname in elf.needed:
                if soname in seen:
                    continue
                seen.add(soname)
                lib = self.find(soname, elf.search + first.search, first.arch)
                if lib is None:
                    missing.append(soname)
                    continue
                found.append(lib)
                if (info := self.info(lib)) is not None:
                    queue.append(info)
        return found, missing
