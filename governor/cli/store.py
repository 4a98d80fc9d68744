"""`governor store`: the local OCI image store (check it, collect what no
application names), and the remote side of `governor export` (missing,
receive, import), which reads its input from stdin."""
from __future__ import annotations

import json
import sys

from ._catalogue import add_json, emit, run


def add_parser(sub) -> None:
    p = sub.add_parser("store", help="check the image store; the receiving side of export",
                       description="verify: check every application's image byte for byte; "
                                   "gc: remove blobs no application names (left by a copy "
                                   "that broke). missing, receive, import: what governor "
                                   "export runs on the remote host, reading stdin.")
    acts = p.add_subparsers(dest="action", required=True)
    for name, text in (("verify", "check every image's blobs against their digests"),
                       ("gc", "remove blobs that no application names"),
                       ("missing", "stdin: JSON list of digests; stdout: those not here"),
                       ("receive", "stdin: blobs as governor export sends them"),
                       ("import", "stdin: a group and its applications; install it here")):
        a = acts.add_parser(name, help=text)
        add_json(a)


def main(args) -> int:
    from .._errors import CatalogueError
    from ..catalogue.export import import_group, missing, receive
    from .install import table

    def body(cat):
        act = args.action
        if act == "verify":
            checked = []
            for app in cat.apps():
                cat.store.image(app.name, app.manifest, verify_layers=True)
                checked.append(app.name)
            emit(args, checked, [f"{name}: whole" for name in checked])
        elif act == "gc":
            gone = cat.store.gc()
            emit(args, gone, [f"removed {len(gone)} blobs"])
        elif act == "missing":
            try:
                digests = json.load(sys.stdin)
                assert isinstance(digests, list)
            except (ValueError, AssertionError):
                raise CatalogueError("store missing: stdin is not a JSON list") from None
            json.dump(missing(cat, digests), sys.stdout)
        elif act == "receive":
            got = receive(cat, sys.stdin.buffer)
            json.dump(got, sys.stdout)
        elif act == "import":
            try:
                spec = json.load(sys.stdin)
            except ValueError:
                raise CatalogueError("store import: stdin is not JSON") from None
            rows = import_group(cat, spec)
            emit(args, rows, lambda: table(rows))

    return run(args, body)
