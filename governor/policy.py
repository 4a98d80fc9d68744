"""Policy files: TOML with [limits], [burst] and [on_exhausted] tables."""
from __future__ import annotations

import tomllib
from pathlib import Path

from ._errors import PolicyError
from .limits import Limits

TABLES = ("limits", "burst", "on_exhausted")


def load_policy(path: str | Path) -> Limits:
    """Reads and validates a policy file; PolicyError names the file and key."""
    source = str(path)
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PolicyError(source, None, "no such file") from None
    except OSError as e:
        raise PolicyError(source, None, e.strerror or str(e)) from None
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(source, None, f"not valid TOML: {e}") from None
    for key, value in data.items():
        if key not in TABLES:
            raise PolicyError(source, key, f"unknown table (known: {', '.join(TABLES)})")
        if not isinstance(value, dict):
            raise PolicyError(source, key, "must be a table, like [limits]")
    return Limits(burst=data.get("burst"), on_exhausted=data.get("on_exhausted"),
                  source=source, **data.get("limits", {}))
