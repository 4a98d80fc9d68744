"""What a host is and what it can hold: its facts (architecture, kernel and
its features, x86-64 ISA level, devices) and its capacity per resource
(CPUs, memory, disk free in the store, network and disk bandwidth).

Both come from the kernel (/proc, /sys, statvfs, uname), and may be set in
`$GOVERNOR_STATE_DIR/host.toml`: a bandwidth the kernel does not know, a
reserve kept for the host itself, or facts to present (a test host that
plays another architecture or kernel):

    [capacity]            # instead of what governor measures
    net_send = "125MB/s"
    disk_write = "200MiB/s"
    [reserve]             # kept for the host: absolute, or a share of the capacity
    memory = "10%"
    [facts]
    arch = "aarch64"
    kernel = "5.4.0"
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._errors import PolicyError
from ..limits import DEADLINE_SHARE, _parse

# Resources admission compares, in table order, with their unit kind.
ADMITTED = ("cpu", "memory", "disk_space", "net_send", "net_recv", "disk_read", "disk_write",
            "processes")
RATES = ("net_send", "net_recv", "disk_read", "disk_write")
DEFAULT_RESERVE = {"memory": "10%", "disk_space": "5%"}   # kept for the host itself
# Kernel governor needs: seccomp user notification and pidfd_getfd (5.9);
# SYNC_WAKE_UP (6.6) for its speed (about 6.5 us a governed call, not 50).
KERNEL_MIN = "5.9"
KERNEL_SPEED = "6.6"
# x86-64 micro-architecture levels by the CPU flags they need (psABI).
ISA_FLAGS = {2: {"cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"},
             3: {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"},
             4: {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}}


def version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("-")[0].split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def isa_level(flags: set[str]) -> int:
    level = 1
    for lvl in (2, 3, 4):
        if ISA_FLAGS[lvl] <= flags:
            level = lvl
        else:
            break
    return level


def _cpu_flags() -> set[str]:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@dataclass
class Facts:
    arch: str
    kernel: str
    features: list[str]            # seccomp actions the kernel offers (user_notif, trace, ...)
    isa_level: int | None
    devices: list[str] = field(default_factory=list)   # filled per check, not listed whole

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class HostConfig:
    capacity: dict[str, float] = field(default_factory=dict)
    reserve: dict[str, float | str] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)


def load_config(state_dir: Path) -> HostConfig:
    path = Path(state_dir) / "host.toml"
    source = str(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return HostConfig()
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise PolicyError(source, None, f"cannot read: {e}") from None
    cfg = HostConfig()
    for table, value in data.items():
        if table not in ("capacity", "reserve", "facts") or not isinstance(value, dict):
            raise PolicyError(source, table, "unknown table (known: capacity, reserve, facts)")
    for key, value in data.get("capacity", {}).items():
        cfg.capacity[key] = _quantity(value, source, f"capacity.{key}", key)
    for key, value in data.get("reserve", {}).items():
        if isinstance(value, str) and value.strip().endswith("%"):
            cfg.reserve[key] = value.strip()
        else:
            cfg.reserve[key] = _quantity(value, source, f"reserve.{key}", key)
    for key, value in data.get("facts", {}).items():
        if key not in ("arch", "kernel", "isa_level", "features"):
            raise PolicyError(source, f"facts.{key}", "unknown fact (known: arch, kernel, "
                              "isa_level, features)")
        cfg.facts[key] = value
    return cfg


def _quantity(value, source: str, where: str, key: str) -> float:
    if key not in ADMITTED:
        raise PolicyError(source, where, f"unknown resource (known: {', '.join(ADMITTED)})")
    if key == "cpu":
        try:
            return float(str(value).rstrip("%")) / (100 if str(value).endswith("%") else 1)
        except ValueError:
            raise PolicyError(source, where, f"cannot parse {value!r}") from None
    if key == "processes":
        if not isinstance(value, int) or value < 1:
            raise PolicyError(source, where, f"expected a whole number, got {value!r}")
        return value
    return _parse(value, rate=key in RATES, source=source, key=where)


def facts(state_dir: Path, cfg: HostConfig | None = None) -> Facts:
    cfg = cfg or load_config(state_dir)
    try:
        features = open("/proc/sys/kernel/seccomp/actions_avail").read().split()
    except OSError:
        features = []
    machine = os.uname().machine
    f = Facts(arch=machine, kernel=os.uname().release, features=features,
              isa_level=isa_level(_cpu_flags()) if machine == "x86_64" else None)
    for key, value in cfg.facts.items():
        setattr(f, key, value)
    return f


def _link_speeds() -> float | None:
    """Bytes/s of the host's physical interfaces (those with a device),
    from /sys/class/net/*/speed (Mbit/s); None when none reports one."""
    total = 0.0
    for name in os.listdir("/sys/class/net"):
        base = f"/sys/class/net/{name}"
        if not os.path.exists(f"{base}/device"):
            continue
        try:
            mbit = int(open(f"{base}/speed").read())
        except (OSError, ValueError):
            continue
        if mbit > 0:
            total += mbit * 1_000_000 / 8
    return total or None


def capacity(state_dir: Path, cfg: HostConfig | None = None) -> dict[str, float | None]:
    """What the host offers per admitted resource, before what it keeps for
    itself; None when it cannot be known (a bandwidth no one configured).
    disk_space is the free space of the store's file system: the caller adds
    what installed containers already hold."""
    cfg = cfg or load_config(state_dir)
    cap: dict[str, float | None] = {k: None for k in ADMITTED}
    cap["cpu"] = len(os.sched_getaffinity(0)) * DEADLINE_SHARE
    mem = {}
    for line in open("/proc/meminfo"):
        key, _, value = line.partition(":")
        mem[key] = int(value.split()[0]) * 1024
    cap["memory"] = mem.get("MemTotal")
    where = Path(state_dir)
    while not where.exists():
        where = where.parent
    st = os.statvfs(where)
    cap["disk_space"] = st.f_bavail * st.f_frsize
    link = _link_speeds()
    cap["net_send"] = cap["net_recv"] = link
    try:
        cap["processes"] = int(open("/proc/sys/kernel/threads-max").read())
    except (OSError, ValueError):
        pass
    cap.update(cfg.capacity)
    return cap


def reserve(cfg: HostConfig, key: str, total: float | None) -> float:
    """What the host keeps of resource key for itself (not for groups)."""
    if total is None:
        return 0.0
    value = cfg.reserve.get(key, DEFAULT_RESERVE.get(key, 0.0))
    if isinstance(value, str):
        return total * float(value.rstrip("%").strip()) / 100
    return float(value)
