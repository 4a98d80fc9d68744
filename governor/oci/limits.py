"""The limits of an OCI container, from its linux.resources and its
org.governor.* annotations, without cgroups:

    linux.resources.cpu.quota / period     -> cpu (CPUs)
    linux.resources.memory.limit           -> memory_resident
    linux.resources.pids.limit             -> processes (deny: fork fails, as at a
                                              pids cgroup's limit)
    linux.resources.blockIO.throttle{Read,Write}BpsDevice
                                           -> disk_read, disk_write: one rate
    annotations org.governor.limit.KEY     -> any limit (net_send, memory...)
    annotations org.governor.burst.KEY     -> a rate's burst
    annotations org.governor.on_exhausted.KEY -> hold or deny

Annotations win over linux.resources. Anything else in linux.resources
(cpu shares, cpusets, hugepages, device rules, memory swap...) is cgroup
accounting this runtime does not do; it is returned as ignored, for a log
line."""
from __future__ import annotations

from typing import Any

from .._errors import PolicyError
from ..limits import KEYS, Limits

PREFIX = "org.governor."
_KINDS = ("limit", "burst", "on_exhausted")


def _number(source: str, key: str, value: Any, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(source, key, f"expected an integer, got {type(value).__name__}")
    if value < lo:
        raise PolicyError(source, key, f"must be at least {lo}, got {value}")
    return value


def _rate(source: str, key: str, devices: Any) -> int | None:
    """The smallest rate of the list: governor charges a container's file
    I/O at the call, where an overlay rootfs shows an anonymous device, not
    the disk's; so one rate applies to all of it, the strictest given."""
    if devices is None:
        return None
    if not isinstance(devices, list):
        raise PolicyError(source, key, f"expected a list, got {type(devices).__name__}")
    rates = []
    for i, d in enumerate(devices):
        if not isinstance(d, dict):
            raise PolicyError(source, f"{key}[{i}]", "expected an object")
        for field in ("major", "minor"):
            _number(source, f"{key}[{i}].{field}", d.get(field))
        rates.append(_number(source, f"{key}[{i}].rate", d.get("rate"), lo=1))
    return min(rates) if rates else None


def from_spec(resources: dict, annotations: dict, source: str) -> tuple[Limits, list[str]]:
    """(Limits, ignored resource keys). PolicyError naming the key if a
    value is bad or an org.governor.* annotation is unknown."""
    values: dict[str, Any] = {}
    ignored: list[str] = []
    key = "linux.resources"
    for name, value in resources.items():
        if not isinstance(value, (dict, list)) and value is not None:
            raise PolicyError(source, f"{key}.{name}", "expected an object or a list")
    cpu = resources.get("cpu") or {}
    if not isinstance(cpu, dict):
        raise PolicyError(source, f"{key}.cpu", "expected an object")
    quota = cpu.get("quota")
    if quota is not None and _number(source, f"{key}.cpu.quota", quota, lo=-1) > 0:
        period = _number(source, f"{key}.cpu.period", cpu.get("period", 100000), lo=1)
        values["cpu"] = quota / period
    ignored += [f"{key}.cpu.{k}" for k in cpu if k not in ("quota", "period") and cpu[k]]
    memory = resources.get("memory") or {}
    if not isinstance(memory, dict):
        raise PolicyError(source, f"{key}.memory", "expected an object")
    limit = memory.get("limit")
    if limit is not None and _number(source, f"{key}.memory.limit", limit, lo=-1) > 0:
        values["memory_resident"] = limit
    ignored += [f"{key}.memory.{k}" for k in memory if k != "limit" and memory[k] is not None]
    pids = resources.get("pids") or {}
    if not isinstance(pids, dict):
        raise PolicyError(source, f"{key}.pids", "expected an object")
    limit = pids.get("limit")
    if limit is not None and _number(source, f"{key}.pids.limit", limit, lo=-1) > 0:
        values["processes"] = limit   # 0 and -1: no limit
    blkio = resources.get("blockIO") or {}
    if not isinstance(blkio, dict):
        raise PolicyError(source, f"{key}.blockIO", "expected an object")
    for field, limit in (("throttleReadBpsDevice", "disk_read"), ("throttleWriteBpsDevice", "disk_write")):
        rate = _rate(source, f"{key}.blockIO.{field}", blkio.get(field))
        if rate is not None:
            values[limit] = rate
    ignored += [f"{key}.blockIO.{k}" for k in blkio
                if k not in ("throttleReadBpsDevice", "throttleWriteBpsDevice") and blkio[k]]
    ignored += [f"{key}.{k}" for k in resources
                if k not in ("cpu", "memory", "pids", "blockIO") and resources[k]]
    try:
        # As at a pids cgroup's limit, fork fails (EAGAIN) rather than waits.
        modes = {"processes": "deny"} if "processes" in values else {}
        base = Limits(source=source, on_exhausted=modes, **values)
    except PolicyError as e:   # e.g. more CPUs than the host can reserve
        raise PolicyError(source, f"{key} ({e.key})", e.reason) from None
    over: dict[str, dict[str, str]] = {k: {} for k in _KINDS}
    for name, value in annotations.items():
        if not name.startswith(PREFIX):
            continue
        kind, _, limit = name[len(PREFIX):].partition(".")
        if kind not in _KINDS or limit not in KEYS:
            raise PolicyError(source, f"annotations.{name}",
                              f"unknown governor annotation (known: {PREFIX}limit.KEY, "
                              f"{PREFIX}burst.KEY, {PREFIX}on_exhausted.KEY; KEY one of "
                              f"{', '.join(KEYS)})")
        over[kind][limit] = value
    try:
        extra = Limits(burst=over["burst"], on_exhausted=over["on_exhausted"], source=source,
                       **over["limit"])
    except PolicyError as e:
        kind = ("burst" if e.source.endswith(" burst") else "on_exhausted" if e.source.endswith(" on_exhausted")
                else "limit")
        raise PolicyError(source, f"annotations.{PREFIX}{kind}.{e.key}", e.reason) from None
    limits = base.merged(extra)
    for key in limits.unset_bursts():
        raise PolicyError(source, f"annotations.{PREFIX}burst.{key}", f"no limit {key} is set")
    return limits, ignored
