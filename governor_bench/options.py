"""Options of `governor bench`: light, so that the command line can show its
defaults without importing the engine."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from governor._errors import PolicyError


@dataclass
class Options:
    calls: int = 50_000
    rounds: int = 7
    pin: bool = False
    macro: bool = True
    progress: Callable[[str], None] = field(default=lambda msg: None)

    def __post_init__(self):
        for key in ("calls", "rounds"):
            if getattr(self, key) < 1:
                raise PolicyError("governor bench", f"--{key}", "must be at least 1")
