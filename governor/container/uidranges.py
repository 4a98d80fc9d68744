"""The host's ledger of container uid ranges, shared by every registry.

Each registry (``--state-dir``) hands out uid bases, but two registries on
one host must never hand out the same range: the containers of one could
then open the files of the other. So a base is taken under a host-wide
flock, and a slot is free only if no registry's ledger entry holds it, no
running process has a uid in it, and /etc/subuid and /etc/subgid do not
give it away:

    /var/lib/governor/uid-ranges.json
    {"ranges": {"1000000": {"registry": "/srv/state/registry.json", "name": "web-a"}}}

An entry whose registry no longer records that name with that base (the
state directory was deleted, or the claim failed before the registry was
written) is dropped when a base is next handed out, unless that registry
is locked (a claim in flight has not written its base yet).
"""
from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil

from .._errors import GovernorError

ID_RANGE = 65536          # uids (and gids) per container
FIRST_BASE = 1_000_000    # far above the uids of host users and system services
MAX_BASE = 2**32 - 2 - ID_RANGE   # 2**32-1 is the invalid uid
LEDGER_DIR = Path("/var/lib/governor")   # host-wide, whatever the registry's directory


def _reserved_ranges() -> list[tuple[int, int]]:
    """[start, end) ranges handed out in /etc/subuid and /etc/subgid."""
    ranges = []
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            fields = line.strip().split(":")
            if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                ranges.append((int(fields[1]), int(fields[1]) + int(fields[2])))
    return ranges


def _ids_in_use() -> set[int]:
    """The uids and gids of the host's processes (of containers of any
    registry, or of anything else that took ids up there)."""
    ids: set[int] = set()
    for p in psutil.process_iter(["uids", "gids"]):
        for key in ("uids", "gids"):
            if p.info[key]:
                ids.update(p.info[key])
    return ids


def _held(registry: str, name: str, base: int) -> bool:
    """Does that registry still give name that base? Yes too while its
    lock is taken: a claim that took the base may not have written it yet."""
    try:
        lock = os.open(Path(registry).parent / "registry.lock", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False   # the registry is gone
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        doc = json.loads(Path(registry).read_text())
        return doc["containers"][name]["uid_base"] == base
    except BlockingIOError:
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False
    finally:
        os.close(lock)


@contextmanager
def _ledger() -> Iterator[dict]:
    """The ledger, under the host-wide lock; written back when the block
    ends without an exception."""
    path = LEDGER_DIR / "uid-ranges.json"
    try:
        LEDGER_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = os.open(LEDGER_DIR / "uid-ranges.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                       0o600)
    except OSError as e:
        raise GovernorError(f"uid ranges: cannot open {LEDGER_DIR}: {e.strerror}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            doc = {}
        except (OSError, ValueError) as e:
            raise GovernorError(f"uid ranges: cannot read {path}: {e}") from None
        doc.setdefault("ranges", {})
        yield doc
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
    finally:
        os.close(lock)


def take(registry: Path, name: str, own: dict[str, int]) -> int:
    """A base for container name of the registry at `registry` (its
    registry.json, locked by the caller), whose containers hold the bases
    `own` (name -> base): the first 65536-aligned slot above FIRST_BASE
    that is free on the whole host."""
    registry = str(Path(registry).resolve())
    with _ledger() as doc:
        ranges = doc["ranges"]
        for base, holder in list(ranges.items()):
            if holder.get("registry") == registry:
                live = own.get(holder.get("name")) == int(base)
            else:
                live = _held(holder.get("registry", ""), holder.get("name", ""), int(base))
            if not live:
                del ranges[base]
        taken = [(b, b + ID_RANGE) for b in [*own.values(), *map(int, ranges)]]
        taken += _reserved_ranges()
        in_use = sorted(i for i in _ids_in_use() if i >= FIRST_BASE)
        for base in range(FIRST_BASE, MAX_BASE + 1, ID_RANGE):
            if any(start < base + ID_RANGE and base < end for start, end in taken):
                continue
            if any(base <= i < base + ID_RANGE for i in in_use):
                continue
            ranges[str(base)] = {"registry": registry, "name": name}
            return base
    raise GovernorError("registry: no free uid range left on this host")


def note(registry: Path, name: str, base: int) -> None:
    """Records a base that a registry handed out before the ledger existed,
    so that other registries skip it from now on."""
    registry = str(Path(registry).resolve())
    with _ledger() as doc:
        doc["ranges"].setdefault(str(base), {"registry": registry, "name": name})
