"""What the catalogue's subcommands share: one way to open the catalogue,
print JSON or lines, and turn errors into exit statuses (2: bad input,
nothing changed; 1: a host cannot hold the group, with its table)."""
from __future__ import annotations

import json
import sys


def add_json(p) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def emit(args, data, lines) -> None:
    """data (a dict or list, or an object with as_dict) as JSON with --json;
    else lines (a list of strings, or a callable giving them)."""
    if getattr(args, "json", False):
        if hasattr(data, "as_dict"):
            data = data.as_dict()
        elif isinstance(data, list):
            data = [d.as_dict() if hasattr(d, "as_dict") else d for d in data]
        json.dump(data, sys.stdout, indent=2)
        print()
    else:
        for line in (lines() if callable(lines) else lines):
            print(line)


def run(args, body) -> int:
    """Runs body(catalogue) with the state directory's catalogue open."""
    from .._errors import AdmissionRefused, CatalogueError, PolicyError
    from ..catalogue import Catalogue

    try:
        with Catalogue() as cat:
            return body(cat) or 0
    except AdmissionRefused as e:
        emit(args, e.admission, e.admission.table)
        print(f"governor: {e}", file=sys.stderr)
        return 1
    except (CatalogueError, PolicyError) as e:
        print(f"governor: {e}", file=sys.stderr)
        return 2


def assignments(pairs: list[str], flag: str) -> dict:
    from ..limits import parse_assignments
    return parse_assignments(pairs, flag)
