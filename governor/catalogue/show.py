"""Values of the catalogue as a person reads them: each with its unit."""
from __future__ import annotations

from ..limits import RATE_KEYS
from ..monitor.view import size


def value(key: str, v) -> str:
    """A limit, guarantee, capacity or peak of resource key, with its unit."""
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if key == "cpu":
        return f"{v:.2f} CPUs"
    if key == "processes":
        return f"{v:.0f} tasks" if float(v).is_integer() else f"{v:.1f} tasks"
    if key in RATE_KEYS:
        return size(v) + "/s"
    return size(v)


def allocation(values: dict) -> str:
    return ", ".join(f"{k}={value(k, v)}" for k, v in values.items()) or "-"


def isa(level) -> str:
    return f"x86-64-v{level}" if level and level > 1 else "x86-64 baseline"


def status(code) -> str:
    if code is None:
        return "still running"
    return f"ended by signal {-code}" if code < 0 else f"exit status {code}"
