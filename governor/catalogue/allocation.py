"""Classes of service and allocations: what a group may use (limits, the
caps governor enforces at run time) and what it is guaranteed (what
admission reserves for it on a host).

A class is a named template, `policies/classes/NAME.toml`:

    description = "..."
    overcommit = 1.5       # the limits of the host's groups of this class may add up
                           # to 1.5x its capacity; guarantees are never overcommitted
    guarantee = 0.5        # where no guarantee is set: this share of the limit
    [limits]               # optional; keys not set: the sum of the apps' proposals
    cpu = 2
    [guarantees]           # optional
    memory = "256MiB"

A group takes its class once, when it is created (the values are copied
into the catalogue), and overrides it key by key (`--limit`, `--guarantee`).
"""
from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .._errors import CatalogueError, PolicyError
from ..limits import KEYS, RATE_KEYS, SIZE_KEYS, Limits
from .host import ADMITTED

CLASS_KEYS = ("description", "overcommit", "guarantee", "limits", "guarantees")


def classes_dir() -> Path:
    """$GOVERNOR_CLASSES_DIR, else /etc/governor/classes, else the classes
    that come with governor (policies/classes of the source tree)."""
    env = os.environ.get("GOVERNOR_CLASSES_DIR")
    if env:
        return Path(env)
    etc = Path("/etc/governor/classes")
    if etc.is_dir():
        return etc
    return Path(__file__).resolve().parents[2] / "policies" / "classes"


@dataclass
class ServiceClass:
    name: str
    description: str = ""
    overcommit: float = 1.0
    guarantee: float = 1.0
    limits: dict = field(default_factory=dict)       # validated values (bytes, CPUs, tasks)
    guarantees: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return vars(self).copy()


def values(given: dict, source: str) -> dict:
    """Limit keys and values (strings with units or numbers) -> numbers,
    validated as `governor run --limit` validates them."""
    lim = Limits(source=source, **given)
    return {k: v for k, v in lim.items()}


def load_class(name: str) -> ServiceClass:
    path = classes_dir() / f"{name}.toml"
    source = str(path)
    if not name or "/" in name or name.startswith("."):
        raise CatalogueError(f"--class: {name!r} is not a class name", key="class")
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        known = ", ".join(c.name for c in list_classes()) or "none"
        raise CatalogueError(f"--class: no class {name!r} (known: {known})",
                             key="class") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise PolicyError(source, None, f"cannot read: {e}") from None
    for key in data:
        if key not in CLASS_KEYS:
            raise PolicyError(source, key, f"unknown key (known: {', '.join(CLASS_KEYS)})")
    over = data.get("overcommit", 1.0)
    share = data.get("guarantee", 1.0)
    if not isinstance(over, (int, float)) or isinstance(over, bool) or over < 1:
        raise PolicyError(source, "overcommit", f"must be a number >= 1, got {over!r}")
    if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 < share <= 1:
        raise PolicyError(source, "guarantee", f"must be a share in (0, 1], got {share!r}")
    return ServiceClass(name, str(data.get("description", "")), float(over), float(share),
                        values(data.get("limits", {}), f"{source} [limits]"),
                        values(data.get("guarantees", {}), f"{source} [guarantees]"))


def list_classes() -> list[ServiceClass]:
    d = classes_dir()
    names = sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []
    return [load_class(n) for n in names]


@dataclass
class Allocation:
    """Resolved values: limits (enforced) and guarantees (reserved), in
    bytes, bytes/s, CPUs and tasks."""

    limits: dict[str, float] = field(default_factory=dict)
    guarantees: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"limits": self.limits, "guarantees": self.guarantees}


def resolve(group: dict, proposals: list[dict]) -> Allocation:
    """A group's allocation: its limits, where unset the sum of its apps'
    proposals; its guarantees, where unset limit x guarantee_share (only
    for resources admission compares). PolicyError names a guarantee above
    its limit."""
    limits: dict[str, float] = {}
    for key in KEYS:
        if key in group["limits"]:
            limits[key] = group["limits"][key]
        elif proposals and all(key in p for p in proposals):
            limits[key] = _rounded(key, sum(p[key] for p in proposals))
    guarantees: dict[str, float] = {}
    for key in ADMITTED:
        if key in group["guarantees"]:
            guarantees[key] = group["guarantees"][key]
        elif key in limits:
            guarantees[key] = _rounded(key, limits[key] * group["guarantee_share"])
        if key in guarantees and key in limits and guarantees[key] > limits[key]:
            raise PolicyError(f"group {group['name']!r}", key,
                              f"guarantee {guarantees[key]:g} is above the limit {limits[key]:g}")
    return Allocation(limits, guarantees)


def _rounded(key: str, value: float) -> float:
    if key == "processes":
        return max(1, math.ceil(value))
    if key in SIZE_KEYS:
        return max(4096, math.ceil(value / 4096) * 4096)
    if key == "cpu":
        return round(value, 3)
    if key in RATE_KEYS:
        return max(1.0, float(math.ceil(value)))
    return value


def split(alloc: Allocation, proposals: list[dict]) -> list[Allocation]:
    """Each app's container's share of the group's allocation, in
    proportion to the apps' proposals (evenly where none proposes)."""
    n = len(proposals)
    out = [Allocation() for _ in proposals]
    for table in ("limits", "guarantees"):
        for key, total in getattr(alloc, table).items():
            asked = [p.get(key, 0) for p in proposals]
            whole = sum(asked)
            for i in range(n):
                share = asked[i] / whole if whole > 0 else 1 / n
                getattr(out[i], table)[key] = _rounded(key, total * share)
    return out
