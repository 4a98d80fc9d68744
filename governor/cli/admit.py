"""`governor admit GROUP [--host ssh://HOST]`: can a host hold the group
with every container already installed there?"""
from __future__ import annotations

import json
import sys

from ._catalogue import add_json, emit, run


def add_remote_options(p) -> None:
    p.add_argument("--ssh-config", metavar="FILE", help="ssh configuration file (ssh -F)")
    p.add_argument("--remote-governor", default="governor", metavar="PATH",
                   help="the governor command on the remote host (default: governor)")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "admit", help="check whether a host can hold a group",
        description="Compare the group's guarantees (and limits, divided by their class's "
                    "overcommit) with the host's capacity less what its installed containers "
                    "hold, per resource, and its applications' hardware needs with the host. "
                    "Exit status 0: it fits; 1: it does not (the table says why); 2: bad input.")
    p.add_argument("group", nargs="?", help="a group of this catalogue")
    p.add_argument("--host", metavar="ssh://[USER@]HOST[:PORT]",
                   help="ask that host (its governor admit, over ssh) instead of this one")
    p.add_argument("--spec", metavar="FILE",
                   help="the group as JSON (- for stdin), as governor export sends it")
    add_remote_options(p)
    add_json(p)


def main(args) -> int:
    from .._errors import CatalogueError
    from ..catalogue import Remote, admit, remote_admission
    from ..inputfile import read_text

    def body(cat):
        if args.spec:
            if args.group:
                raise CatalogueError("admit: give GROUP or --spec, not both", key="group")
            try:
                text = sys.stdin.read() if args.spec == "-" else read_text(args.spec)
                spec = json.loads(text)
                spec["group"]["name"], spec["apps"][0]["proposal"]
            except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
                raise CatalogueError(f"--spec: not a group specification: {e}",
                                     key="spec") from None
            adm = admit(cat, spec)
        elif not args.group:
            raise CatalogueError("admit: which group? (governor admit GROUP)", key="group")
        elif args.host:
            adm = remote_admission(cat, args.group, Remote(args.host, args.ssh_config,
                                                           args.remote_governor))
        else:
            adm = admit(cat, cat.spec(args.group))
        emit(args, adm, adm.table)
        if not adm.fits:
            print(f"governor: {adm.host} cannot hold group {adm.group!r}: "
                  + ", ".join(r.resource for r in adm.refused), file=sys.stderr)
            return 1
        return 0

    return run(args, body)
