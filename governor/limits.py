"""Limits: what a group may use, parsed and validated once.

Keys and units are the same on the command line (``--limit key=value``) and
in policy files (``[limits]``, ``[burst]``, ``[on_exhausted]`` tables).
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping

from ._errors import PolicyError

RATE_KEYS = ("net_send", "net_recv", "disk_write", "disk_read")
COUNT_KEYS = ("processes", "disk_inodes")
SIZE_KEYS = ("memory", "memory_resident", "disk_space")
CPU_KEYS = ("cpu",)
KEYS = RATE_KEYS + COUNT_KEYS + SIZE_KEYS + CPU_KEYS
MODES = ("hold", "deny")
# Only 'deny' applies, and why. Resident memory grows without system calls:
# past the limit the group's largest process is killed, like an OOM kill. A
# full disk quota does not free itself while a call waits: EDQUOT.
ONLY_DENY = {
    "memory_resident": "resident memory cannot be held: only 'deny' (the largest process is "
                       "killed) is possible",
    "disk_space": "a full disk quota does not free itself by waiting: only 'deny' (EDQUOT) is "
                  "possible",
    "disk_inodes": "a full inode quota does not free itself by waiting: only 'deny' (EDQUOT) is "
                   "possible",
}
# disk_space and disk_inodes count what a group stores in its writable area.
NEEDS_AREA = "needs a writable area: --disk-area DIR, or a container's --rootfs or volumes"
# A CPU cap throttles: nothing to deny.
ONLY_HOLD = ("cpu",)
# Deadline bandwidth the kernel lets all reservations of a host use
# (kernel.sched_rt_runtime_us / sched_rt_period_us, 95% by default).
DEADLINE_SHARE = 0.95
# Values travel to C as int64 (caps) and doubles (rates).
MAX_VALUE = 2**62
# Bucket size when the policy sets none: a tenth of a second of the rate.
DEFAULT_BURST_SECONDS = 0.1

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3,
    "ti": 1024**4, "tib": 1024**4,
}
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*(/\s*s)?\s*$")


def _parse(value: object, *, rate: bool, source: str, key: str) -> float:
    if isinstance(value, bool):
        raise PolicyError(source, key, f"expected a {'rate' if rate else 'size'}, got a boolean")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        m = _QUANTITY.match(value)
        if not m:
            example = "4MiB/s" if rate else "64MiB"
            if value.strip().startswith("-"):
                raise PolicyError(source, key, f"must not be negative: {value!r}")
            raise PolicyError(source, key, f"cannot parse {value!r} (example: {example!r})")
        unit = m.group(2).lower()
        if unit not in _UNITS:
            raise PolicyError(source, key, f"unknown unit {m.group(2)!r} in {value!r}")
        if m.group(3) and not rate:
            raise PolicyError(source, key, f"is a size, not a rate: {value!r}")
        number = float(m.group(1)) * _UNITS[unit]
    else:
        raise PolicyError(source, key, f"expected a number or a string, got {type(value).__name__}")
    if math.isnan(number) or math.isinf(number):
        raise PolicyError(source, key, f"must be a finite number, got {value!r}")
    if number < 0:
        raise PolicyError(source, key, f"must not be negative: {value!r}")
    if number > MAX_VALUE:
        raise PolicyError(source, key, f"is too large: {value!r} (at most {MAX_VALUE})")
    if rate and number == 0:
        raise PolicyError(source, key, "a rate of 0 would hold every call forever")
    return number


def _parse_count(value: object, source: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise PolicyError(source, key, f"expected a whole number, got {type(value).__name__}")
    try:
        n = int(value)
    except ValueError:
        raise PolicyError(source, key, f"expected a whole number, got {value!r}") from None
    if n < 1:
        raise PolicyError(source, key, f"must be at least 1, got {n}")
    if n > MAX_VALUE:
        raise PolicyError(source, key, f"is too large: {n} (at most {MAX_VALUE})")
    return n


def _parse_cpu(value: object, source: str, key: str) -> float:
    """"50%" (of one CPU) or 1.5 (CPUs) -> CPUs."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PolicyError(source, key, f"expected 50% or 1.5, got {type(value).__name__}")
    text = str(value).strip()
    try:
        cpus = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise PolicyError(source, key, f"cannot parse {value!r} (examples: '50%', 1.5)") from None
    if math.isnan(cpus) or math.isinf(cpus) or cpus <= 0:
        raise PolicyError(source, key, f"must be more than 0, got {value!r}")
    most = (os.cpu_count() or 1) * DEADLINE_SHARE
    if cpus > most:
        raise PolicyError(source, key, f"{value!r} is more than this host can reserve "
                                       f"({most * 100:.0f}% of one CPU)")
    return cpus


def _check_key(key: str, source: str) -> None:
    if key not in KEYS:
        raise PolicyError(source, key, f"unknown limit (known: {', '.join(KEYS)})")


class Limits:
    """A group's allocation. Rates in bytes per second, sizes in bytes.

    Values may be given as numbers or as strings with units:
    ``Limits(net_send="4MiB/s", processes=32, memory="256MiB")``.

    Immutable, compared by value. (A plain class, not a dataclass:
    dataclasses imports inspect, a tenth of what a short `governor run`
    costs.)
    """

    # Each key of KEYS: None (not limited) or its value (bytes/s for rates,
    # tasks, bytes, CPUs for cpu). disk_space: bytes stored in the group's
    # writable area. Then burst and on_exhausted per key; and a class of
    # service (governor/share.py) that shares some of the rates: the group
    # always gets its guarantee, and borrows what the class has spare by its
    # weight (default 1).
    FIELDS = KEYS + ("burst", "on_exhausted", "guarantee", "weight", "parent")

    def __init__(self, *, burst: Mapping[str, object] | None = None,
                 on_exhausted: Mapping[str, str] | None = None, source: str = "Limits",
                 guarantee: Mapping[str, object] | None = None, weight: object = None,
                 parent: object = None, **values: object):
        parsed: dict[str, object] = {}
        for key, value in values.items():
            _check_key(key, source)
            if value is None:
                continue
            if key in RATE_KEYS:
                parsed[key] = _parse(value, rate=True, source=source, key=key)
            elif key in COUNT_KEYS:
                parsed[key] = _parse_count(value, source, key)
            elif key in CPU_KEYS:
                parsed[key] = _parse_cpu(value, source, key)
            else:
                size = _parse(value, rate=False, source=source, key=key)
                if size < 4096:
                    raise PolicyError(source, key, f"must be at least one page (4096 bytes), got {value!r}")
                parsed[key] = int(size)
        bursts: dict[str, float] = {}
        for key, value in (burst or {}).items():
            _check_key(key, f"{source} burst")
            if key not in RATE_KEYS:
                raise PolicyError(f"{source} burst", key, "only rates have a burst")
            bursts[key] = _parse(value, rate=False, source=f"{source} burst", key=key)
            if bursts[key] <= 0:
                raise PolicyError(f"{source} burst", key, "must be more than 0")
        modes: dict[str, str] = {}
        for key, mode in (on_exhausted or {}).items():
            _check_key(key, f"{source} on_exhausted")
            if mode not in MODES:
                raise PolicyError(f"{source} on_exhausted", key,
                                  f"must be 'hold' or 'deny', got {mode!r}")
            if key in ONLY_HOLD and mode != "hold":
                raise PolicyError(f"{source} on_exhausted", key,
                                  "a CPU cap throttles the group: only 'hold' is possible")
            if key in ONLY_DENY and mode != "deny":
                raise PolicyError(f"{source} on_exhausted", key, ONLY_DENY[key])
            modes[key] = mode
        for key in KEYS:
            object.__setattr__(self, key, parsed.get(key))
        object.__setattr__(self, "burst", bursts)
        object.__setattr__(self, "on_exhausted", modes)
        self._set_share(guarantee, weight, parent, source)

    def _set_share(self, guarantee, weight, parent, source: str) -> None:
        if parent is not None:
            from .share import Class  # share.py builds on this module

            if not isinstance(parent, Class):
                raise PolicyError(source, "parent",
                                  f"expected a Class, got {type(parent).__name__}")
        shared = {k for c in parent.path() for k in c.rates} if parent else set()
        guaranteed: dict[str, float] = {}
        for key, value in (guarantee or {}).items():
            _check_key(key, f"{source} guarantee")
            if key not in RATE_KEYS:
                raise PolicyError(f"{source} guarantee", key, "only rates can be guaranteed")
            if key not in shared:
                raise PolicyError(f"{source} guarantee", key, "a guarantee is a share of a "
                                  "class's rate: no class of this group shares it")
            guaranteed[key] = _parse(value, rate=True, source=f"{source} guarantee", key=key)
            limit = getattr(self, key)
            if limit is not None and guaranteed[key] > limit:
                raise PolicyError(f"{source} guarantee", key, "is more than the limit")
        if weight is not None:
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or \
                    not 0 < weight < MAX_VALUE:
                raise PolicyError(source, "weight", f"must be a number above 0, got {weight!r}")
            if parent is None:
                raise PolicyError(source, "weight", "a weight shares a class's rate: the group "
                                  "has no class")
        object.__setattr__(self, "guarantee", guaranteed)
        object.__setattr__(self, "weight", float(weight) if weight is not None else None)
        object.__setattr__(self, "parent", parent)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Limits are immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Limits are immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self.FIELDS)

    __hash__ = None   # the dicts in it are not hashable either

    def __repr__(self) -> str:
        return f"Limits({', '.join(f'{f}={getattr(self, f)!r}' for f in self.FIELDS)})"

    def items(self) -> list[tuple[str, float | int]]:
        """The limits that are set, in key order."""
        return [(k, getattr(self, k)) for k in KEYS if getattr(self, k) is not None]

    def unset_bursts(self) -> list[str]:
        """Keys given a burst but no rate: neither limited here nor shared by
        a class of the group (such a burst would be silently ignored)."""
        shared = {k for c in self.parent.path() for k in c.rates} if self.parent else set()
        return [k for k in self.burst if getattr(self, k) is None and k not in shared]

    def burst_of(self, key: str) -> float:
        rate = getattr(self, key)
        return self.burst.get(key, max(rate * DEFAULT_BURST_SECONDS, 1.0))

    def mode_of(self, key: str) -> str:
        return self.on_exhausted.get(key, "deny" if key in ONLY_DENY else "hold")

    def merged(self, other: "Limits") -> "Limits":
        """self, with every key that `other` sets taken from other."""
        values = {k: getattr(self, k) for k in KEYS}
        values.update({k: v for k, v in other.items()})
        return Limits(burst={**self.burst, **other.burst},
                      on_exhausted={**self.on_exhausted, **other.on_exhausted},
                      guarantee={**self.guarantee, **other.guarantee},
                      weight=other.weight if other.weight is not None else self.weight,
                      parent=other.parent or self.parent, **values)

    def as_dict(self) -> dict[str, object]:
        out = {
            "limits": dict(self.items()),
            "burst": {k: self.burst_of(k) for k in RATE_KEYS if getattr(self, k) is not None},
            "on_exhausted": {k: self.mode_of(k) for k, _ in self.items()},
        }
        if self.parent is not None:
            out["class"] = {"name": self.parent.name, "guarantee": dict(self.guarantee),
                            "weight": self.weight_of()}
        return out

    def weight_of(self) -> float:
        """Its share of what its class lends to its borrowers (default 1)."""
        return self.weight or 1.0


def parse_assignments(pairs: list[str], source: str) -> dict[str, str]:
    """["net_send=4MiB/s", ...] -> {"net_send": "4MiB/s"}, with clear errors."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise PolicyError(source, key or None, f"expected KEY=VALUE, got {pair!r}")
        out[key] = value.strip()
    return out
