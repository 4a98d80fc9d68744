"""`governor export GROUP --to ssh://HOST` and `governor hosts`."""
from __future__ import annotations

from ._catalogue import add_json, emit, run
from .admit import add_remote_options


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export", help="export a group to another host and install it there",
        description="Runs admission on the remote host (governor admit --json over ssh) and "
                    "stops with its table if the group does not fit (exit 1); otherwise sends "
                    "the blobs of the group's images that the remote lacks, imports the group "
                    "into its catalogue and installs it there. A copy that breaks leaves "
                    "nothing installed; the next try sends only what is still missing.")
    p.add_argument("group")
    p.add_argument("--to", required=True, metavar="ssh://[USER@]HOST[:PORT]")
    add_remote_options(p)
    add_json(p)
    h = sub.add_parser("hosts", help="list the hosts groups were exported to")
    add_json(h)


def lines(r) -> list[str]:
    from ..catalogue.show import size
    from .install import table
    from ..catalogue.catalogue import Installed

    rows = [Installed(**d) for d in r.installed]
    return ([f"exported {r.group} to {r.host}: sent {r.sent} of {r.blobs} blobs "
             f"({size(r.bytes_sent)}); installed there:"] + table(rows))


def main(args) -> int:
    from ..catalogue import Remote, export
    from ..monitor.view import aligned

    def body(cat):
        if args.command == "hosts":
            hosts = cat.hosts()
            emit(args, hosts, lambda: aligned([("HOST", "URL", "LAST EXPORT", "RESULT")] + [
                (h.name, h.url, h.last_export or "-", str(h.last_result or "-")) for h in hosts]))
            return 0
        result = export(cat, args.group, Remote(args.to, args.ssh_config, args.remote_governor))
        emit(args, result, lambda: lines(result))
        return 0

    return run(args, body)
