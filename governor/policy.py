"""Policy files: TOML with [limits], [burst], [on_exhausted], [guarantees] and
[class] tables."""
from __future__ import annotations

import tomllib
from pathlib import Path

from ._errors import PolicyError
from .limits import Limits
from .share import load_class

TABLES = ("limits", "burst", "on_exhausted", "guarantees", "class")
CLASS_KEYS = ("file", "weight")


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
    cls = data.get("class", {})
    for key in cls:
        if key not in CLASS_KEYS:
            raise PolicyError(source, f"class.{key}", f"unknown key (known: "
                                                      f"{', '.join(CLASS_KEYS)})")
    if "weight" in cls and "file" not in cls:
        raise PolicyError(source, "class.weight", "needs class.file")
    if "file" in cls and not isinstance(cls["file"], str):
        raise PolicyError(source, "class.file", "must be a path, relative to this file")
    parent = load_class(Path(path).parent / cls["file"]) if "file" in cls else None
    return Limits(burst=data.get("burst"), on_exhausted=data.get("on_exhausted"),
                  guarantee=data.get("guarantees"), weight=cls.get("weight"), parent=parent,
                  source=source, **data.get("limits", {}))
