"""Waiting for fds to become readable, through `selectors` (epoll): select()
fails for fd numbers past FD_SETSIZE (1024), which a supervisor of many
groups, or a raised RLIMIT_NOFILE, reaches."""
from __future__ import annotations

import selectors


def readable(fds, timeout: float | None = None) -> list:
    """Which of fds (ints, or objects with fileno()) are readable, waiting up
    to timeout seconds (None: until one is). Returns the objects given."""
    with selectors.DefaultSelector() as sel:
        seen = set()
        for f in fds:
            n = f if isinstance(f, int) else f.fileno()
            if n not in seen:
                seen.add(n)
                sel.register(f, selectors.EVENT_READ)
        return [key.fileobj for key, _ in sel.select(timeout)]
