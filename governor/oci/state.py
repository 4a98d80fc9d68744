"""Containers on disk, under the runtime's root (--root, or
$GOVERNOR_OCI_ROOT, default /run/governor-oci): one directory per container, ROOT/ID/, holding

    state.json   what `state` prints, and what the other commands need to find
                 the container's processes (pids with their start times)
    filter.bpf   the container's seccomp filter, for `exec`
    sock         the supervisor's socket (start, exec)

state.json is replaced by rename, so readers never see half of it. A pid is
trusted only with its start time (governor/_proc.py): a pid reused
by another process after the container died is not mistaken for it."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .. import _proc
from .._errors import GovernorError

DEFAULT_ROOT = "/run/governor-oci"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,1023}$")
OCI_VERSION = "1.0.2"


class NotFound(GovernorError):
    pass


class State:
    """A container's record. A plain class: dataclasses cost this process
    more to import than it spends on everything else `state` does."""

    FIELDS = {
        "id": None, "bundle": None, "rootfs": None,
        "pid": 0,                # the container's init (the OCI state's pid)
        "pid_start": 0,
        "cmd_pid": 0,            # the container's process (signals go there)
        "supervisor_pid": 0, "supervisor_start": 0,
        "status": "creating",    # creating, created, running, paused, stopped
        "created": "", "exit_status": None, "annotations": {},
        "poststart": [],         # hooks to run after start
        "poststop": [],          # hooks to run at delete
    }

    def __init__(self, **values):
        unknown = set(values) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"unknown state fields: {sorted(unknown)}")
        for name, default in self.FIELDS.items():
            setattr(self, name, values.get(name, default))

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.FIELDS}

    def alive(self) -> bool:
        return _proc.alive(self.pid, self.pid_start)

    def supervisor_alive(self) -> bool:
        return _proc.alive(self.supervisor_pid, self.supervisor_start)

    def current_status(self) -> str:
        """The status now: a container whose init is gone is stopped, whatever
        the file says (its supervisor may have been killed)."""
        if self.status in ("created", "running") and not self.alive():
            return "stopped"
        return self.status

    def oci(self) -> dict:
        """The OCI state document."""
        status = self.current_status()
        return {"ociVersion": OCI_VERSION, "id": self.id, "status": status,
                "pid": self.pid if status in ("created", "running") else 0,
                "bundle": self.bundle, "rootfs": self.rootfs, "created": self.created,
                "annotations": self.annotations, "owner": ""}


class Store:
    def __init__(self, root: str | None):
        """root: --root, else $GOVERNOR_OCI_ROOT, else /run/governor-oci
        (podman passes no --root; its conmon_env_vars can set the variable)."""
        self.root = Path(root or os.environ.get("GOVERNOR_OCI_ROOT") or DEFAULT_ROOT)

    def dir(self, cid: str) -> Path:
        return self.root / cid

    @staticmethod
    def check_id(cid: str) -> None:
        if not _ID.match(cid or ""):
            raise GovernorError(f"invalid container id {cid!r}: letters, digits and "
                                "'_.+-', starting with a letter or digit")

    def make(self, cid: str) -> Path:
        """ROOT/ID, new; GovernorError if the container exists."""
        self.check_id(cid)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            (self.root / cid).mkdir(mode=0o700)
        except FileExistsError:
            raise GovernorError(f"container with id {cid!r} exists already") from None
        return self.root / cid

    def load(self, cid: str) -> State:
        self.check_id(cid)
        try:
            doc = json.loads((self.dir(cid) / "state.json").read_text())
        except FileNotFoundError:
            raise NotFound(f"container {cid!r} does not exist") from None
        except (OSError, ValueError) as e:
            raise GovernorError(f"container {cid!r}: cannot read its state: {e}") from None
        return State(**doc)

    def save(self, st: State) -> None:
        path = self.dir(st.id) / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(st.as_dict()))
        os.replace(tmp, path)

    def remove(self, cid: str) -> None:
        import shutil
        shutil.rmtree(self.dir(cid), ignore_errors=True)

    def ids(self) -> list[str]:
        try:
            return sorted(p.name for p in self.root.iterdir() if (p / "state.json").exists())
        except FileNotFoundError:
            return []
