"""Policy files: TOML with [limits], [burst], [on_exhausted] and [security]
tables."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from ._errors import PolicyError
from .container.profile import check_allow
from .limits import Limits

TABLES = ("limits", "burst", "on_exhausted", "security")
SECURITY_KEYS = ("allow",)


@dataclass(frozen=True)
class Policy:
    """A policy file: the limits, and the system calls a container may make
    although its default seccomp profile denies them ([security] allow)."""

    limits: Limits
    allow_syscalls: tuple[str, ...] = ()


def read_policy(path: str | Path) -> Policy:
    """Reads and validates a policy file; PolicyError names the file and key."""
    source = str(path)
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PolicyError(source, None, "no such file") from None
    except OSError as e:
        raise PolicyError(source, None, e.strerror or str(e)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise PolicyError(source, None, f"not valid TOML: {e}") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise PolicyError(source, None, "not valid TOML: nested too deeply") from None
    for key, value in data.items():
        if key not in TABLES:
            raise PolicyError(source, key, f"unknown table (known: {', '.join(TABLES)})")
        if not isinstance(value, dict):
            raise PolicyError(source, key, f"must be a table, like [{key}]")
    security = data.get("security", {})
    for key in security:
        if key not in SECURITY_KEYS:
            raise PolicyError(source, f"security.{key}",
                              f"unknown key (known: {', '.join(SECURITY_KEYS)})")
    allow = security.get("allow", [])
    if not isinstance(allow, list):
        raise PolicyError(source, "security.allow", "must be a list of system call names, "
                                                    'like ["keyctl"]')
    limits = Limits(burst=data.get("burst"), on_exhausted=data.get("on_exhausted"),
                    source=source, **data.get("limits", {}))
    return Policy(limits, check_allow(allow, source, "security.allow"))


def load_policy(path: str | Path) -> Limits:
    """The limits of a policy file (read_policy has the rest)."""
    return read_policy(path).limits
