"""`governor install GROUP`, `governor uninstall GROUP` and `governor
installed`: a group's containers on this host."""
from __future__ import annotations

from ._catalogue import add_json, emit, run


def add_parser(sub) -> None:
    p = sub.add_parser("install", help="install a group's applications as containers here",
                       description="Admission first (exit 1 with the table if the host cannot "
                                   "hold it); then each application's image is unpacked into "
                                   "$GOVERNOR_STATE_DIR/containers/GROUP-APP and recorded with "
                                   "its share of the group's allocation.")
    p.add_argument("group")
    add_json(p)
    u = sub.add_parser("uninstall", help="remove a stopped group's containers")
    u.add_argument("group")
    add_json(u)
    i = sub.add_parser("installed", help="list the containers installed on this host")
    add_json(i)


def table(rows) -> list[str]:
    from ..catalogue.show import allocation, size
    from ..monitor.view import aligned

    return aligned([("CONTAINER", "GROUP", "APP", "STATE", "ADDRESS", "SIZE", "LIMITS")]
                   + [(r.container, r.group, r.app, r.state, r.address or "-", size(r.size),
                       allocation(r.limits)) for r in rows])


def main(args) -> int:
    from ..catalogue import install, uninstall

    def body(cat):
        if args.command == "install":
            rows = install(cat, args.group)
            emit(args, rows, lambda: table(rows))
        elif args.command == "uninstall":
            gone = uninstall(cat, args.group)
            emit(args, gone, [f"removed {name}" for name in gone])
        else:
            rows = cat.installed()
            emit(args, rows, lambda: table(rows))

    return run(args, body)
