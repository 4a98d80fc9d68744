"""Policy files: TOML with [limits], [burst], [on_exhausted], [guarantees],
[class] and [security] tables."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ._errors import PolicyError
from .container.profile import check_allow
from .inputfile import read_toml
from .limits import Limits
from .share import load_class

TABLES = ("limits", "burst", "on_exhausted", "guarantees", "class", "security")
CLASS_KEYS = ("file", "weight")
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
    data = read_toml(path, source)
    for key, value in data.items():
        if key not in TABLES:
            raise PolicyError(source, key, f"unknown table (known: {', '.join(TABLES)})")
        if not isinstance(value, dict):
            raise PolicyError(source, key, f"must be a table, like [{key}]")
    cls = data.get("class", {})
    for key in cls:
        if key not in CLASS_KEYS:
            raise PolicyError(source, f"class.{key}", f"unknown key (known: "
                                                      f"{', '.join(CLASS_KEYS)})")
    if "weight" in cls and "file" not in cls:
        raise PolicyError(source, "class.weight", "needs class.file")
    if "file" in cls and not isinstance(cls["file"], str):
        raise PolicyError(source, "class.file", "must be a path, relative to this file")
    security = data.get("security", {})
    for key in security:
        if key not in SECURITY_KEYS:
            raise PolicyError(source, f"security.{key}",
                              f"unknown key (known: {', '.join(SECURITY_KEYS)})")
    allow = security.get("allow", [])
    if not isinstance(allow, list):
        raise PolicyError(source, "security.allow", "must be a list of system call names, "
                                                    'like ["keyctl"]')
    parent = load_class(Path(path).parent / cls["file"]) if "file" in cls else None
    limits = Limits(burst=data.get("burst"), on_exhausted=data.get("on_exhausted"),
                    guarantee=data.get("guarantees"), weight=cls.get("weight"), parent=parent,
                    source=source, **data.get("limits", {}))
    if unset := limits.unset_bursts():
        key = unset[0]
        raise PolicyError(f"{source} burst", key, f"no limit {key} is set in [limits] (a burst "
                                                  "is the bucket size of a rate limit)")
    return Policy(limits, check_allow(allow, source, "security.allow"))


def load_policy(path: str | Path) -> Limits:
    """The limits of a policy file (read_policy has the rest)."""
    return read_policy(path).limits
