"""`governor groups` and `governor classes`: groups of applications, their
class of service and allocation."""
from __future__ import annotations

from ._catalogue import add_json, assignments, emit, run


def add_parser(sub) -> None:
    p = sub.add_parser("groups", help="list, create and change groups of applications",
                       description="A group is a set of applications installed and run together "
                                   "under one allocation, taken from its class of service "
                                   "(policies/classes) and overridden key by key. Keys a group "
                                   "does not set come from its applications' proposals.")
    add_json(p)
    acts = p.add_subparsers(dest="action")
    create = acts.add_parser("create", help="a new group")
    create.add_argument("name")
    create.add_argument("--class", dest="cls", default="gold", metavar="CLASS",
                        help="class of service (default: gold; see governor classes)")
    _allocation_options(create)
    add_json(create)
    for name, text in (("show", "one group in full"), ("remove", "remove a group that is "
                                                        "not installed")):
        a = acts.add_parser(name, help=text)
        a.add_argument("name")
        add_json(a)
    for name, text in (("assign", "put an application into a group"),
                       ("unassign", "take an application out of a group")):
        a = acts.add_parser(name, help=text)
        a.add_argument("group")
        a.add_argument("app")
        add_json(a)
    st = acts.add_parser("set", help="change a group's limits and guarantees")
    st.add_argument("name")
    _allocation_options(st)
    st.add_argument("--unset", action="append", default=[], metavar="KEY",
                    help="take KEY from the applications' proposals again")
    add_json(st)
    classes = sub.add_parser("classes", help="list the classes of service",
                             description="Classes of service: templates of allocations "
                                         "($GOVERNOR_CLASSES_DIR, /etc/governor/classes or "
                                         "policies/classes).")
    add_json(classes)


def _allocation_options(p) -> None:
    p.add_argument("--limit", action="append", default=[], metavar="KEY=VALUE",
                   help="a limit, as for governor run (e.g. memory=256MiB, cpu=50%%)")
    p.add_argument("--guarantee", action="append", default=[], metavar="KEY=VALUE",
                   help="what admission reserves on a host (at most the limit)")


def group_lines(g) -> list[str]:
    from ..catalogue.show import allocation

    out = [f"group:       {g.name}", f"class:       {g.cls} (overcommit {g.overcommit:g}, "
           f"guarantee share {g.guarantee_share:g})",
           f"apps:        {', '.join(g.apps) or '-'}",
           f"set limits:  {allocation(g.limits)}",
           f"set guarantees: {allocation(g.guarantees)}"]
    if g.allocation:
        out.append(f"limits:      {allocation(g.allocation.limits)}")
        out.append(f"guarantees:  {allocation(g.allocation.guarantees)}")
    out.append(f"installed:   {'yes' if g.installed else 'no'}")
    return out


def _table(groups) -> list[str]:
    from ..catalogue.show import allocation
    from ..monitor.view import aligned

    rows = [("GROUP", "CLASS", "APPS", "INSTALLED", "GUARANTEES")]
    for g in groups:
        rows.append((g.name, g.cls, ",".join(g.apps) or "-", "yes" if g.installed else "no",
                     allocation(g.allocation.guarantees) if g.allocation else "-"))
    return aligned(rows)


def main(args) -> int:
    if args.command == "classes":
        return _classes(args)

    def body(cat):
        act = args.action
        if act == "create":
            g = cat.create_group(args.name, args.cls, assignments(args.limit, "--limit"),
                                 assignments(args.guarantee, "--guarantee"))
        elif act == "set":
            g = cat.set_allocation(args.name, assignments(args.limit, "--limit"),
                                   assignments(args.guarantee, "--guarantee"), args.unset)
        elif act == "assign":
            g = cat.assign(args.group, args.app)
        elif act == "unassign":
            g = cat.unassign(args.group, args.app)
        elif act == "show":
            g = cat.group(args.name)
        elif act == "remove":
            cat.remove_group(args.name)
            print(f"removed group {args.name}")
            return 0
        else:
            groups = cat.groups()
            emit(args, groups, lambda: _table(groups))
            return 0
        emit(args, g, lambda: group_lines(g))

    return run(args, body)


def _classes(args) -> int:
    from ..catalogue import list_classes
    from ..catalogue.show import allocation
    from ..monitor.view import aligned

    def body(_cat):
        classes = list_classes()
        emit(args, classes, lambda: aligned(
            [("CLASS", "OVERCOMMIT", "GUARANTEE", "LIMITS", "DESCRIPTION")]
            + [(c.name, f"{c.overcommit:g}", f"{c.guarantee:g}", allocation(c.limits),
                c.description) for c in classes]))

    return run(args, body)
