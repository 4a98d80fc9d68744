"""`governor start GROUP` and `governor stop GROUP`: a group's installed
containers, run by a detached supervisor that outlives this command."""
from __future__ import annotations

from ._catalogue import add_json, emit, run
from .install import table


def add_parser(sub) -> None:
    p = sub.add_parser("start", help="start an installed group's containers",
                       description="Starts every container of the group with its limits, "
                                   "each with an address of the pool (--net auto), under one "
                                   "supervisor process that runs on after this command. Its "
                                   "log: $GOVERNOR_STATE_DIR/logs/GROUP.log (and CONTAINER.log).")
    p.add_argument("group")
    add_json(p)
    s = sub.add_parser("stop", help="stop a group's containers",
                       description="Stops the group's supervisor (SIGTERM, SIGKILL after 20 s) "
                                   "and with it every container of the group.")
    s.add_argument("group")
    add_json(s)


def main(args) -> int:
    from ..catalogue import start, stop

    def body(cat):
        rows = (start if args.command == "start" else stop)(cat, args.group)
        emit(args, rows, lambda: table(rows))

    return run(args, body)
