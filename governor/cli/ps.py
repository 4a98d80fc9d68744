"""`governor ps` and `governor top`: every group on this host, from the state
files that supervisors publish."""
from __future__ import annotations

import json
import sys


def add_parser(sub) -> None:
    ps = sub.add_parser("ps", help="list the groups running on this host",
                        description="One line per group of any governor on this host: tasks, "
                                    "memory, rates over the last second against their limits, "
                                    "calls held per second.")
    ps.add_argument("--json", action="store_true", help="print the state documents as JSON")
    top = sub.add_parser("top", help="live view of every group on this host",
                         description="A live view of every group on this host, refreshed every "
                                     "second. Keys: c cpu, m memory, n network, d disk, h held, "
                                     "t tasks, g group name; q quits.")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")


def main(args) -> int:
    if args.command == "top":
        from ..monitor.top import run_top
        return run_top(args.interval)
    from ..monitor.state import read_states
    from ..monitor.view import sort_states, table

    states = sort_states(read_states(), "g")
    if args.json:
        json.dump(states, sys.stdout, indent=2)
        print()
    else:
        print("\n".join(table(states)))
    return 0
