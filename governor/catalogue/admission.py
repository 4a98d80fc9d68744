"""Admission: can this host hold a group together with every container
already installed on it?

Per resource (cpu, memory, disk_space, the four rates, processes) the
host's capacity, less what it keeps for itself (host.toml [reserve]), must
hold:
- guarantees, never overcommitted: the guarantees of every installed
  container plus the group's;
- limits, overcommitted per class: every installed container's limit
  divided by its class's overcommit, plus the group's likewise. A gold
  group (overcommit 1) backs its limits in full; a bronze one (3) a third.
disk_space capacity is the free space of the store's file system plus what
installed containers already hold. A capacity nobody knows (a bandwidth
the kernel does not report and host.toml does not set) is not checked.

Hardware: the apps' architecture, kernel (version and seccomp user
notification; below SYNC_WAKE_UP's 6.6 it fits, slower), x86-64 ISA level
and devices must be the host's."""
from __future__ import annotations

import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .allocation import resolve
from .catalogue import Catalogue
from .host import ADMITTED, capacity, facts, load_config, reserve, version_tuple
from .show import value

UNITS = {"cpu": "CPUs", "processes": "tasks", "memory": "bytes", "disk_space": "bytes"}


@dataclass
class Row:
    resource: str
    capacity: float | str | None        # what groups may have (after the host's reserve)
    guaranteed: float | str | None      # guaranteed to the containers installed now
    asked: float | str | None           # the group's guarantee (or its hardware need)
    limits: float | None = None         # limits backed, the group's included
    fits: bool | None = None            # None: not checked (capacity unknown)
    note: str = ""

    def cells(self) -> tuple[str, ...]:
        fits = {True: "yes", False: "NO", None: "unchecked"}[self.fits]
        free = (self.capacity - self.guaranteed
                if isinstance(self.capacity, (int, float))
                and isinstance(self.guaranteed, (int, float)) else None)
        return (self.resource, value(self.resource, self.capacity),
                value(self.resource, self.guaranteed), value(self.resource, free),
                value(self.resource, self.asked),
                value(self.resource, self.limits) if self.limits is not None else "-",
                fits + (f" ({self.note})" if self.note else ""))


HEADER = ("RESOURCE", "CAPACITY", "GUARANTEED", "FREE", "ASKED", "LIMITS BACKED", "FITS")


@dataclass
class Admission:
    host: str
    group: str
    rows: list[Row] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return all(r.fits is not False for r in self.rows)

    @property
    def refused(self) -> list[Row]:
        return [r for r in self.rows if r.fits is False]

    def table(self) -> list[str]:
        from ..monitor.view import aligned
        return aligned([HEADER] + [r.cells() for r in self.rows])

    def as_dict(self) -> dict:
        return {"host": self.host, "group": self.group, "fits": self.fits,
                "refused": [r.resource for r in self.refused],
                "rows": [asdict(r) for r in self.rows]}

    @classmethod
    def from_dict(cls, d: dict) -> "Admission":
        return cls(d["host"], d["group"], [Row(**r) for r in d["rows"]])


def admit(catalogue: Catalogue, spec: dict, host: str | None = None) -> Admission:
    """Admission of spec (Catalogue.spec(): the group and its apps) on the
    host whose catalogue this is. Containers of the same group installed
    here already are left out: they would be replaced. A spec without apps
    gives the host's resources as they stand (no hardware to check)."""
    group, apps = spec["group"], spec["apps"]
    alloc = resolve(group, [a["proposal"] for a in apps])
    state = Path(catalogue.state_dir)
    cfg = load_config(state)
    cap = capacity(state, cfg)
    others = [i for i in catalogue.installed() if i.group != group["name"]]
    result = Admission(host or os.uname().nodename, group["name"])
    for key in ADMITTED:
        total = cap[key]
        if key == "disk_space" and total is not None:
            total += sum(i.size for i in others)
        asked = alloc.guarantees.get(key, 0)
        used = sum(i.guarantees.get(key, 0) for i in others)
        backed = (sum(i.limits.get(key, 0) / i.overcommit for i in others)
                  + alloc.limits.get(key, 0) / group["overcommit"])
        if total is None:
            result.rows.append(Row(key, None, used, asked, backed, None,
                                   f"capacity unknown: set [capacity] {key} in host.toml"))
            continue
        avail = total - reserve(cfg, key, total)
        fits = used + asked <= avail and backed <= avail
        note = ("" if fits else "guarantees exceed capacity" if used + asked > avail
                else "limits exceed capacity x overcommit")
        result.rows.append(Row(key, avail, used, asked, backed, fits, note))
    if apps:
        result.rows += hardware_rows(apps, facts(state, cfg))
    return result


def hardware_rows(apps: list[dict], f) -> list[Row]:
    needs = [a["needs"] for a in apps]
    rows = []
    arches = sorted({n["arch"] for n in needs})
    rows.append(Row("arch", f.arch, None, ",".join(arches), None, arches == [f.arch],
                    "" if arches == [f.arch] else f"the applications are built for {arches[0]}"))
    kmin = max((n["kernel"]["min"] for n in needs), key=version_tuple)
    have = version_tuple(str(f.kernel))
    features = sorted({x for n in needs for x in n["kernel"].get("features", [])})
    lacking = [x for x in features if x not in f.features]
    ok = have >= version_tuple(kmin) and not lacking
    note = ("" if ok else f"needs Linux >= {kmin}" if have < version_tuple(kmin)
            else f"no seccomp {', '.join(lacking)}")
    speed = max((n["kernel"].get("speed", "0") for n in needs), key=version_tuple)
    if ok and have < version_tuple(speed):
        note = f"below {speed}: no SYNC_WAKE_UP, slower governed calls"
    rows.append(Row("kernel", str(f.kernel), None, f">= {kmin}", None, ok, note))
    isa = max((n.get("isa_level") or 1 for n in needs), default=1)
    if isa > 1:
        ok = f.isa_level is not None and f.isa_level >= isa
        rows.append(Row("isa_level", f"x86-64-v{f.isa_level}" if f.isa_level else "unknown",
                        None, f"x86-64-v{isa}", None, ok, "" if ok else "CPU lacks the level"))
    devices = sorted({d for n in needs for d in n.get("devices", [])})
    if devices:
        absent = [d for d in devices if not _is_device(d)]
        rows.append(Row("devices", "", None, ", ".join(devices), None, not absent,
                        f"missing {', '.join(absent)}" if absent else ""))
    return rows


def _is_device(path: str) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
