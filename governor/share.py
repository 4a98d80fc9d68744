"""Classes of service: a rate shared by groups, each with a guarantee.

    host = Class("host", net_send="100MiB/s")
    shop = Class("shop", parent=host, net_send="4MiB/s")
    sup.group("web", Limits(net_send="4MiB/s", guarantee={"net_send": "3MiB/s"}, parent=shop))
    sup.group("batch", Limits(guarantee={"net_send": "1MiB/s"}, weight=1, parent=shop))

A class has a rate per resource: what it may use, which it lends to those of
its groups (or classes) that want more than their guarantee, by weight; and
a ceiling (default: its rate) past which it borrows no more from its own
parent. A group in a class always gets its guarantee when it asks, and at
most its limit (default: the class's ceiling). See native/share.h.

A class file (`governor run --class FILE`, or `[class] file` in a policy):

    name = "shop"
    parent = "host.toml"      # optional: a class file, relative to this one
    [rates]
    net_send = "4MiB/s"
    [ceilings]                # optional
    net_send = "6MiB/s"
    [burst]                   # optional, as in policy files
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ._errors import PolicyError
from .inputfile import read_toml
from .limits import RATE_KEYS, DEFAULT_BURST_SECONDS, _check_key, _parse

CLASS_KEYS = ("name", "parent", "rates", "ceilings", "burst")


def _rates(values: Mapping[str, Any] | None, source: str, what: str) -> dict[str, float]:
    out = {}
    for key, value in (values or {}).items():
        _check_key(key, f"{source} {what}")
        if key not in RATE_KEYS:
            raise PolicyError(f"{source} {what}", key, "only rates can be shared by a class "
                              f"({', '.join(RATE_KEYS)})")
        out[key] = _parse(value, rate=what != "burst", source=f"{source} {what}", key=key)
    return out


class Class:
    """A class of service (see the module's text). Compared by identity: two
    classes with the same name are two classes."""

    def __init__(self, name: str, parent: "Class | None" = None,
                 ceiling: Mapping[str, Any] | None = None, burst: Mapping[str, Any] | None = None,
                 source: str = "Class", **rates: Any):
        if not isinstance(name, str) or not name:
            raise PolicyError(source, "name", "a class needs a name")
        if parent is not None and not isinstance(parent, Class):
            raise PolicyError(source, "parent", f"expected a Class, got {type(parent).__name__}")
        self.name, self.parent, self.source = name, parent, source
        self.file: str | None = None   # the class file it was read from (load_class)
        self.rates = _rates(rates, source, "rates")
        if not self.rates:
            raise PolicyError(source, "rates", "a class shares at least one rate, "
                                               "e.g. net_send = \"4MiB/s\"")
        self.ceilings = _rates(ceiling, source, "ceilings")
        for key, value in self.ceilings.items():
            if key not in self.rates:
                raise PolicyError(f"{source} ceilings", key, "has no rate in this class")
            if value < self.rates[key]:
                raise PolicyError(f"{source} ceilings", key, "is below the class's rate")
        self.bursts = _rates(burst, source, "burst")
        if parent is not None:
            for key, rate in self.rates.items():
                above = parent.ceiling_of(key)
                if above is not None and rate > above:
                    raise PolicyError(f"{source} rates", key, f"{rate:.0f} B/s is more than its "
                                      f"parent {parent.name!r} has ({above:.0f} B/s)")

    def ceiling_of(self, key: str) -> float | None:
        return self.ceilings.get(key, self.rates.get(key))

    def burst_of(self, key: str) -> float:
        return self.bursts.get(key, max(self.ceiling_of(key) * DEFAULT_BURST_SECONDS, 1.0))

    def path(self) -> list["Class"]:
        """This class and its ancestors, nearest first."""
        out, c = [], self
        while c is not None:
            if c in out:
                raise PolicyError(self.source, "parent", "classes form a loop")
            out.append(c)
            c = c.parent
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "parent": self.parent.name if self.parent else None,
                "rates": dict(self.rates), "ceilings": {k: self.ceiling_of(k) for k in self.rates}}

    def __repr__(self) -> str:
        return f"Class({self.name!r}, rates={self.rates})"


def load_class(path: str | Path, _seen: tuple[Path, ...] = (),
               cache: dict[str, Class] | None = None) -> Class:
    """A class file, with its parents; PolicyError names the file and key.
    cache (resolved path -> Class): files read before are not read again,
    so that groups (and classes) naming one file share one class (the
    daemon's)."""
    path = Path(path)
    source = str(path)
    if path.resolve() in _seen:
        raise PolicyError(source, "parent", "classes form a loop")
    if cache is not None and str(path.resolve()) in cache:
        return cache[str(path.resolve())]
    data = read_toml(path, source)
    for key, value in data.items():
        if key not in CLASS_KEYS:
            raise PolicyError(source, key, f"unknown key (known: {', '.join(CLASS_KEYS)})")
        if key in ("rates", "ceilings", "burst") and not isinstance(value, dict):
            raise PolicyError(source, key, f"must be a table, like [{key}]")
        if key in ("name", "parent") and not isinstance(value, str):
            raise PolicyError(source, key, "must be a string")
    parent = None
    if "parent" in data:
        parent = load_class(path.parent / data["parent"], _seen + (path.resolve(),), cache)
    cls = Class(data.get("name", path.stem), parent=parent, ceiling=data.get("ceilings"),
                burst=data.get("burst"), source=source, **data.get("rates", {}))
    cls.file = str(path.resolve())
    if cache is not None:
        cache[cls.file] = cls
    return cls
