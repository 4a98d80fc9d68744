"""`governor apps`: the applications in the catalogue."""
from __future__ import annotations

from ._catalogue import add_json, emit, run


def add_parser(sub) -> None:
    p = sub.add_parser("apps", help="list the captured applications",
                       description="The applications of this host's catalogue.")
    add_json(p)
    acts = p.add_subparsers(dest="action")
    show = acts.add_parser("show", help="one application in full")
    show.add_argument("name")
    add_json(show)
    rm = acts.add_parser("remove", help="remove an application that no group has")
    rm.add_argument("name")


def _table(apps):
    from ..catalogue.show import size
    from ..monitor.view import aligned

    rows = [("APP", "FILES", "SIZE", "IMAGE", "ARCH", "GROUPS", "COMMAND")]
    for a in apps:
        rows.append((a.name, str(a.files), size(a.size), a.manifest[7:19], a.needs["arch"],
                     ",".join(a.groups) or "-", " ".join(a.entrypoint) or "-"))
    return aligned(rows)


def show_lines(a):
    from ..catalogue.show import allocation, isa, size

    out = [f"app:        {a.name}", f"image:      {a.manifest}", f"captured:   {a.created}",
           f"command:    {' '.join(a.entrypoint) or '-'}",
           f"files:      {a.files} ({size(a.size)})"]
    pk = a.packages
    if pk.get("owners"):
        out.append(f"packages:   {', '.join(pk['owners'])}")
        out.append(f"closure:    {len(pk['closure'])} packages, {size(pk['closure_size'])}")
    for v in a.volumes:
        out.append(f"volume:     {v['path']} ({size(v['size'])})")
    n = a.needs
    out.append(f"needs:      arch {n['arch']}, Linux >= {n['kernel']['min']}, ISA {isa(n['isa_level'])}"
               f", devices {', '.join(n['devices']) or 'none'}")
    if a.measured:
        m = a.measured
        out.append(f"measured:   {m['seconds']:.1f} s; peaks " + allocation(
            {"cpu": m["cpu"], "memory": m["memory"], "memory_resident": m["memory_resident"],
             "processes": m["processes"], **m["rates"]}))
    out.append(f"proposal:   {allocation(a.proposal)}")
    out.append(f"groups:     {', '.join(a.groups) or '-'}")
    return out


def main(args) -> int:
    def body(cat):
        if args.action == "show":
            a = cat.app(args.name)
            emit(args, a, lambda: show_lines(a))
        elif args.action == "remove":
            cat.remove_app(args.name)
            print(f"removed application {args.name}")
        else:
            apps = cat.apps()
            emit(args, apps, lambda: _table(apps))

    return run(args, body)
