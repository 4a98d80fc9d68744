"""The exception tree, and the one place where C's -errno becomes one."""
from __future__ import annotations

import errno
import os


class GovernorError(Exception):
    """Base of every error governor raises."""


class PolicyError(GovernorError, ValueError):
    """A limit, a policy file or a command-line option is wrong.

    `source` is the file (or "--limit"), `key` the offending key."""

    def __init__(self, source: str, key: str | None, reason: str):
        self.source, self.key, self.reason = source, key, reason
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {reason}")


class SpawnError(GovernorError, OSError):
    """A command could not be started. `errno` says why (ENOENT: not found);
    `step` names the container set-up step that failed, if one did."""

    def __init__(self, err: int, command: str, step: str | None = None):
        self.command, self.step = command, step
        super().__init__(err, f"{command}: {os.strerror(err)}")


class CatalogueError(GovernorError):
    """Bad input to the application catalogue: an unknown application, group
    or class, a corrupt store, an unreachable host, a copy that failed.
    Nothing was changed. `key` names the argument or field, when one is to
    blame (for forms that show the error next to it)."""

    def __init__(self, message: str, key: str | None = None):
        self.key = key
        super().__init__(message)


class AdmissionRefused(GovernorError):
    """A host cannot hold a group: `admission` is the table that says which
    resource or hardware need does not fit."""

    def __init__(self, admission):
        self.admission = admission
        super().__init__(f"{admission.host}: cannot hold group {admission.group!r}: "
                         + ", ".join(r.resource for r in admission.refused))


class DaemonError(GovernorError):
    """The host's daemon (`governor daemon`) is not there, refused this
    process, or refused a request. `status` is the exit status a command
    should give for it: 2 when the request itself was wrong (a policy, a
    name in use), 125 otherwise."""

    def __init__(self, message: str, status: int = 125):
        self.status = status
        super().__init__(message)


class EngineError(GovernorError, OSError):
    """The engine refused an operation."""


def check(rc: int, what: str) -> int:
    """Returns rc if it is not negative; raises EngineError(-rc) otherwise."""
    if rc < 0:
        raise EngineError(-rc, f"{what}: {os.strerror(-rc)} ({errno.errorcode.get(-rc, '?')})")
    return rc
