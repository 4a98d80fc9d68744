"""Allocation forms: values shown in inputs so that they parse back to the
same number, the form's fields read back into --limit/--guarantee style
assignments, and an error turned into the name of the field to blame."""
from __future__ import annotations

from .._errors import CatalogueError, PolicyError
from ..catalogue.host import ADMITTED
from ..limits import KEYS, RATE_KEYS

LIMIT_KEYS = KEYS
GUARANTEE_KEYS = ADMITTED
_BINARY = (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))
# What each key's number means, for labels.
UNITS = {"cpu": "CPUs (1.5) or % of one CPU (50%)", "processes": "tasks",
         **{k: "bytes/s (e.g. 4MiB/s)" for k in RATE_KEYS},
         "memory": "bytes (e.g. 256MiB)", "memory_resident": "bytes (e.g. 256MiB)",
         "disk_space": "bytes (e.g. 1GiB)"}


def input_value(key: str, value) -> str:
    """A catalogue value as text that `--limit key=TEXT` parses back to it:
    "96MiB", "1MiB/s", "0.25", "4"."""
    if value is None:
        return ""
    if key == "cpu":
        return f"{value:g}"
    if key == "processes":
        return str(int(value))
    number = int(value) if float(value).is_integer() else value
    text = str(number)
    for unit, size in _BINARY:
        if isinstance(number, int) and number % size == 0:
            text = f"{number // size}{unit}"
            break
    return text + ("/s" if key in RATE_KEYS else "")


def allocation_fields(form) -> tuple[dict, dict]:
    """(limits, guarantees) that the form sets: fields limit.KEY and
    guarantee.KEY that are not blank."""
    limits = {k: form.get(f"limit.{k}", "").strip() for k in LIMIT_KEYS}
    guarantees = {k: form.get(f"guarantee.{k}", "").strip() for k in GUARANTEE_KEYS}
    return ({k: v for k, v in limits.items() if v},
            {k: v for k, v in guarantees.items() if v})


def field_of(error: Exception) -> str | None:
    """The form field an error names: limit.KEY or guarantee.KEY for an
    allocation value, else the catalogue's key (name, class, app, ...)."""
    if isinstance(error, PolicyError):
        if not error.key:
            return None
        if error.source == "--limit":
            return f"limit.{error.key}"
        if error.source == "--guarantee" or error.source.startswith("group "):
            return f"guarantee.{error.key}"
        return error.key
    if isinstance(error, CatalogueError):
        return error.key
    return None
