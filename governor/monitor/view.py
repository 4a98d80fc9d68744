"""The table of groups that `governor ps` prints and `governor top` draws."""
from __future__ import annotations

import time

COLUMNS = ("GROUP", "PID", "CPU%", "TASKS", "COMMITTED", "RESIDENT", "NET_SEND", "NET_RECV",
           "DISK_WRITE", "DISK_READ", "DISK_SPACE", "HELD/S", "HELD_S/S", "UPTIME")

# Sort keys of `top`: key -> (name, value of a state document; larger first).
SORTS = {
    "c": ("cpu", lambda st: st.get("cpu_percent", 0)),
    "m": ("memory", lambda st: st["usage"]["resident"]),
    "n": ("net", lambda st: st["rates"]["net_send"] + st["rates"]["net_recv"]),
    "d": ("disk", lambda st: st["rates"]["disk_write"] + st["rates"]["disk_read"]),
    "h": ("held", lambda st: st["held_calls_per_second"]),
    "t": ("tasks", lambda st: st["usage"]["tasks"]),
    "g": ("group", None),
}


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}TiB"


def row(st: dict, now: float | None = None) -> tuple[str, ...]:
    """One group as strings, each limited value shown against its limit."""
    u, limits = st["usage"], st["limits"]

    def rate(key):
        text = size(st["rates"][key]) + "/s"
        return f"{text} of {size(limits[key])}/s" if key in limits else text

    def level(value, key, fmt):
        return fmt(value) + (f" of {fmt(limits[key])}" if key in limits else "")

    # What the writable area stores: known only where disk_space or
    # disk_inodes is set.
    stored = "-"
    if "disk_space" in limits or "disk_inodes" in limits:
        stored = level(u["resources"]["disk_space"]["used"], "disk_space", size)
    if "disk_inodes" in limits:
        stored += f", {level(u['resources']['disk_inodes']['used'], 'disk_inodes', str)} inodes"
    cpu = f"{st.get('cpu_percent', 0):.0f}" + (
        f" of {limits['cpu'] * 100:.0f}" if "cpu" in limits else "")
    return (st["group"], str(st["supervisor_pid"]), cpu,
            level(u["tasks"], "processes", str), level(u["memory"], "memory", size),
            level(u["resident"], "memory_resident", size), rate("net_send"), rate("net_recv"),
            rate("disk_write"), rate("disk_read"), stored, f"{st['held_calls_per_second']:.0f}",
            f"{st['held_seconds_per_second']:.2f}",
            f"{(now or time.time()) - st['started']:.0f}s")


def sort_states(states: list[dict], key: str) -> list[dict]:
    _name, value = SORTS[key]
    if value is None:
        return sorted(states, key=lambda st: st["group"])
    return sorted(states, key=value, reverse=True)


def aligned(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows of strings as lines of left-aligned columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def table(states: list[dict]) -> list[str]:
    return aligned([COLUMNS] + [row(st) for st in states])
