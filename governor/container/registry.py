"""The host's container registry: one JSON file in the state directory
(``$GOVERNOR_STATE_DIR`` or ``/var/lib/governor``), read and rewritten under
an flock, so that concurrent supervisors see one another.

    {"containers": {NAME: {"uid_base": 1000000, "shifted": [HOST PATHS]}},
     "leases": {NAME: {"pid": SUPERVISOR PID, "start": ITS START TIME}}}

Other parts keep their own top-level keys in the same document (through
``Registry.locked()``), e.g. the network's address leases.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .. import _proc
from .._errors import GovernorError, PolicyError
from . import uidranges
from .uidranges import ID_RANGE

log = logging.getLogger(__name__)


def state_dir() -> Path:
    return Path(os.environ.get("GOVERNOR_STATE_DIR", "/var/lib/governor"))


class Registry:
    def __init__(self, directory: Path | str | None = None):
        self.dir = Path(directory) if directory else state_dir()
        self.path = self.dir / "registry.json"

    @contextmanager
    def locked(self) -> Iterator[dict]:
        """The document, exclusively; written back (atomically) when the
        block ends without an exception."""
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock = os.open(self.dir / "registry.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise GovernorError(f"registry: cannot open {self.dir}: {e.strerror}") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                doc = json.loads(self.path.read_text())
            except FileNotFoundError:
                doc = {}
            except (OSError, ValueError) as e:
                raise GovernorError(f"registry: cannot read {self.path}: {e}") from None
            doc.setdefault("containers", {})
            doc.setdefault("leases", {})
            yield doc
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
            os.replace(tmp, self.path)
        finally:
            os.close(lock)

    @staticmethod
    def take_lease(doc: dict, name: str) -> None:
        """Takes the running lease of container name for this process,
        removing one that a dead supervisor left. PolicyError if it runs."""
        lease = doc["leases"].get(name)
        if lease and _proc.alive(lease.get("pid"), lease.get("start")):
            raise PolicyError("--name", name, f"container is running already "
                              f"(governor pid {lease['pid']})")
        if lease:
            log.warning("removed the stale lease of container %s: its supervisor "
                        "(pid %s) is gone", name, lease.get("pid"))
        doc["leases"][name] = _proc.identity()._asdict()

    def entry(self, doc: dict, name: str) -> dict:
        """Container name's record, with its uid base: the same for the same
        name every time, distinct from every other container's of any
        registry of the host (uidranges.py)."""
        entry = doc["containers"].setdefault(name, {"shifted": []})
        if "uid_base" in entry:
            uidranges.note(self.path, name, entry["uid_base"])
        else:
            own = {n: c["uid_base"] for n, c in doc["containers"].items() if "uid_base" in c}
            entry["uid_base"] = uidranges.take(self.path, name, own)
        return entry

    def release(self, name: str) -> None:
        with self.locked() as doc:
            lease = doc["leases"].get(name)
            if lease and lease.get("pid") == os.getpid():
                del doc["leases"][name]

    @staticmethod
    def owner_of(doc: dict, path: str, uid: int) -> str | None:
        """The container whose files path holds: recorded as shifted for
        it, or owned (uid) by its range."""
        for name, c in doc["containers"].items():
            if path in c.get("shifted", ()):
                return name
        for name, c in doc["containers"].items():
            if "uid_base" in c and c["uid_base"] <= uid < c["uid_base"] + ID_RANGE:
                return name
        return None
