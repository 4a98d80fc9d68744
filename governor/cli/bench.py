"""`governor bench`: the per-call cost of each interception mechanism."""
from __future__ import annotations

import json
import sys

from governor_bench.options import Options

from .._errors import PolicyError
from .run import check_writable


def add_parser(sub) -> None:
    bench = sub.add_parser(
        "bench", help="measure the per-call cost of each interception mechanism",
        description="Per-call cost of a governed call (1-byte pwrite64, a disk_write limit "
                    "that never binds) and of an ungoverned one (getpid) under each "
                    "interception mechanism, median and p99 over rounds with ratios to "
                    "native; then real workloads (dd, loopback TCP, tar) natively, under "
                    "each backend and under strace and proot. Needs root and a C compiler.")
    bench.add_argument("--json", metavar="FILE", help="also write every result and sample "
                       "as JSON to FILE (-: to stdout, the table then goes to stderr)")
    bench.add_argument("--pin", action="store_true",
                       help="run the supervisors and the tenants on one CPU")
    bench.add_argument("--calls", type=int, default=Options.calls, metavar="N",
                       help=f"calls per round; the macro workloads are sized from it "
                            f"(default {Options.calls})")
    bench.add_argument("--rounds", type=int, default=Options.rounds, metavar="R",
                       help=f"rounds per row (default {Options.rounds})")
    bench.add_argument("--no-macro", dest="macro", action="store_false",
                       help="skip the macro workloads")


def main(args) -> int:
    import governor_bench as bench

    try:
        opts = Options(calls=args.calls, rounds=args.rounds, pin=args.pin, macro=args.macro,
                       progress=bench.progress_to_stderr)
        if args.json and args.json != "-":
            check_writable(args.json, "governor bench", "--json")
    except PolicyError as e:
        print(f"governor: {e}", file=sys.stderr)
        return 2
    doc = bench.run(opts)
    text = bench.report(doc)
    if args.json == "-":
        print(text, file=sys.stderr)
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        print(text)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(doc, f, indent=2)
                f.write("\n")
    return 0
