"""`governor top`: a live view of every group on the host, from the state
files that supervisors publish (see state.py). Keys: c cpu, m memory,
n network, d disk, h held, t tasks, g group name; q quits."""
from __future__ import annotations

import curses
import time

from .state import read_states
from .view import SORTS, sort_states, table

HELP = "sort: c cpu  m memory  n net  d disk  h held  t tasks  g group    q quit"


def _draw(scr, sort: str) -> None:
    states = sort_states(read_states(), sort)
    scr.erase()
    height, width = scr.getmaxyx()
    title = (f"governor top - {time.strftime('%H:%M:%S')} - {len(states)} groups - "
             f"sorted by {SORTS[sort][0]}")
    lines = [title, HELP, ""] + table(states)
    for y, line in enumerate(lines[:height - 1]):
        attr = curses.A_REVERSE if y == 3 else curses.A_NORMAL
        scr.addnstr(y, 0, line, width - 1, attr)
    scr.refresh()


def _loop(scr, interval: float) -> int:
    try:
        curses.curs_set(0)
    except curses.error:
        pass  # a terminal without cursor control
    scr.timeout(int(interval * 1000))
    sort = "n"
    while True:
        _draw(scr, sort)
        ch = scr.getch()
        if ch in (ord("q"), ord("Q")):
            return 0
        if 0 <= ch < 256 and chr(ch) in SORTS:
            sort = chr(ch)


def run_top(interval: float = 1.0) -> int:
    return curses.wrapper(_loop, interval)
