"""Waiting for fds to become readable, through `selectors` (epoll): select()
fails for fd numbers past FD_SETSIZE (1024), which a supervisor of many
groups, or a raised RLIMIT_NOFILE, reaches."""
from __future__ import annotations

import selectors


def readable(fds, timeout: float | None = None) -> list:
    """Which of fds (ints, or objects with fileno()) are readable, waiting up
    to timeout seconds (None: until one is). Returns the objects given."""
    return ready(fds, (), timeout)[0]


def ready(readers, writers, timeout: float | None = None) -> tuple[list, list]:
    """(readable, writable): which of readers and of writers are ready,
    waiting up to timeout seconds (None: until one is)."""
    events: dict[int, list] = {}
    for f, mask in [(f, selectors.EVENT_READ) for f in readers] + \
            [(f, selectors.EVENT_WRITE) for f in writers]:
        n = f if isinstance(f, int) else f.fileno()
        entry = events.setdefault(n, [f, 0])
        entry[1] |= mask
    always = []   # regular files: epoll refuses them (EPERM), and they are always ready
    with selectors.DefaultSelector() as sel:
        for f, mask in events.values():
            try:
                sel.register(f, mask)
            except PermissionError:
                always.append((f, mask))
        got = [(key.fileobj, ev) for key, ev in sel.select(0 if always else timeout)] + always
    return ([f for f, ev in got if ev & selectors.EVENT_READ],
            [f for f, ev in got if ev & selectors.EVENT_WRITE])
