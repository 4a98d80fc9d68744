"""`governor capture NAME [options] [-- CMD ARGS...]`: an installed
application into the catalogue, as an OCI image with a proposed allocation
and its hardware needs."""
from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading

from ._catalogue import assignments, emit, run


def add_parser(sub) -> None:
    p = sub.add_parser(
        "capture", help="capture an application into the catalogue",
        usage="governor capture NAME [options] [-- CMD ARGS...]",
        description="Run CMD under the file tracer and record every file it executes, maps, "
                    "opens or stats (symlinks and their targets, the ELF loader's files), "
                    "and/or take Debian packages whole; store the result as an OCI image "
                    "with its measured peaks, a proposed allocation and its hardware needs. "
                    "A server runs until --duration passes or governor capture gets "
                    "SIGINT/SIGTERM (then SIGTERM to the command); the capture goes on.")
    _options(p)
    p.add_argument("name", help="the application's name in the catalogue")
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="[options] [-- CMD ARGS...]")


def _options(p, defaults: bool = True) -> None:
    """The options; again, without defaults, for those given after NAME."""
    d = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
    p.add_argument("--package", action="append", default=d([]), metavar="PKG",
                   help="take Debian package PKG whole, with its dependency closure and "
                        "its configuration files (repeatable)")
    p.add_argument("--data", action="append", default=d([]), metavar="HOSTDIR[:PATH]",
                   help="keep HOSTDIR apart, as a volume at PATH (default: the same path)")
    p.add_argument("--env", action="append", default=d([]), metavar="KEY=VALUE",
                   help="environment of the run and of the image (besides PATH, HOME=/)")
    p.add_argument("--workdir", default=d("/"), metavar="DIR",
                   help="working directory of the run and of the image (default: /)")
    p.add_argument("--entrypoint", default=d(None), metavar="'CMD ARGS'",
                   help="the image's command, when it is not the traced one")
    p.add_argument("--headroom", default=d("50%"), metavar="PERCENT",
                   help="proposed allocation = measured peak x (1 + headroom) (default 50%%)")
    p.add_argument("--duration", type=float, default=d(None), metavar="SECONDS",
                   help="stop the command (SIGTERM) after this long")
    p.add_argument("--json", action="store_true", default=d(False),
                   help="print JSON instead of a table")


def _split(args) -> list[str]:
    """Options given after NAME, parsed into args; returns CMD ARGS."""
    rest = args.rest
    # argparse drops a "--" that comes right after NAME: then all is CMD.
    cut = (rest.index("--") if "--" in rest
           else 0 if rest and not rest[0].startswith("-") else len(rest))
    if "--" not in rest and cut == 0:
        return rest
    if rest[:cut]:
        again = argparse.ArgumentParser(prog="governor capture NAME")
        _options(again, defaults=False)
        again.parse_args(rest[:cut], namespace=args)
    return rest[cut + 1:]


def _headroom(text: str) -> float:
    from .._errors import CatalogueError
    try:
        return float(text.rstrip("%")) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise CatalogueError(f"--headroom: cannot parse {text!r} (example: 50%)",
                             key="headroom") from None


def lines(r):
    from ..catalogue.show import allocation, isa, size, status
    from ..limits import RATE_KEYS

    out = [f"captured {r.name}: {r.files} files, {size(r.size)} "
           f"({size(r.layer_size)} compressed), image {r.manifest[:19]}"]
    pk = r.packages
    if pk["owners"]:
        out.append(f"  from {len(pk['owners'])} Debian packages, whose closure is "
                   f"{len(pk['closure'])} packages, {size(pk['closure_size'])}: the capture is "
                   f"{100 * r.size / max(pk['closure_size'], 1):.0f}% of it")
    for v in r.volumes:
        out.append(f"  volume {v['path']}: {size(v['size'])}")
    if r.missing_libraries:
        out.append(f"  libraries not found: {', '.join(r.missing_libraries)}")
    m = r.measured
    if m:
        out.append(f"  run: {m['seconds']:.1f} s, {status(m['exit_status'])}")
        peaks = {"cpu": m["cpu"], "memory": m["memory"], "memory_resident": m["memory_resident"],
                 "processes": m["processes"], **{k: m["rates"][k] for k in RATE_KEYS}}
        out.append("  peaks: " + allocation(peaks))
    out.append(f"  proposed allocation (peaks + {r.headroom * 100:.0f}%): "
               + allocation(r.proposal))
    n = r.needs
    out.append(f"  needs: arch {n['arch']}, Linux >= {n['kernel']['min']} "
               f"(>= {n['kernel']['speed']} for speed), ISA {isa(n['isa_level'])}"
               + (f", devices {', '.join(n['devices'])}" if n["devices"] else ""))
    return out


def main(args) -> int:
    cmd = _split(args)
    from ..catalogue import capture

    stop = threading.Event()

    def on_signal(_sig, _frame):
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    def body(cat):
        result = capture(cat, args.name, cmd or None, packages=args.package, data=args.data,
                         env=assignments(args.env, "--env"), workdir=args.workdir,
                         entrypoint=shlex.split(args.entrypoint) if args.entrypoint else None,
                         headroom=_headroom(args.headroom), duration=args.duration, stop=stop,
                         stdout=sys.stderr.fileno() if args.json else None)
        emit(args, result, lambda: lines(result))

    return run(args, body)
