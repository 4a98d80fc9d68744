"""`governor daemon`: one supervisor for the groups of every
`governor run --daemon` on this host (governor/daemon)."""
from __future__ import annotations

import sys


def add_parser(sub) -> None:
    d = sub.add_parser(
        "daemon", help="supervise the groups of every `governor run --daemon` on this host",
        description="One supervisor for the host: `governor run --daemon` hands it its group, "
                    "so that classes of service, admission of guarantees and `governor ps` "
                    "see every such group. If the daemon is killed and started again, it "
                    "takes its groups back from their `governor run`s, with their usage and "
                    "the calls it held. Exit status: 2 for bad options, 125 if another daemon "
                    "runs or the socket cannot be made.")
    d.add_argument("--socket", metavar="PATH",
                   help="its unix socket (default: $GOVERNOR_RUN_DIR/daemon.sock, "
                        "/run/governor/daemon.sock)")
    d.add_argument("--records", metavar="DIR",
                   help="where each group's record file lives (default: $GOVERNOR_RUN_DIR/"
                        "daemon); keep it on a tmpfs, and the same across restarts")
    d.add_argument("--group", metavar="NAME",
                   help="members of this unix group may connect too (default: root only)")
    d.add_argument("--engines", type=int, metavar="N",
                   help="engine threads (default: one per CPU the daemon may run on)")
    d.add_argument("--metrics", metavar="ADDRESS:PORT",
                   help="serve Prometheus metrics of every group on http://ADDRESS:PORT/metrics")
    d.add_argument("-v", "--verbose", action="count", default=0,
                   help="log more (-v: groups coming and going, denials)")


def main(args) -> int:
    from .._errors import DaemonError, GovernorError, PolicyError
    from ..daemon.server import Daemon
    from ..monitor.metrics import parse_address, serve_metrics

    try:
        if args.metrics:
            parse_address(args.metrics)
        daemon = Daemon(args.socket, args.records, args.group, args.engines)
    except PolicyError as e:
        print(f"governor daemon: {e}", file=sys.stderr)
        return 2
    except (DaemonError, OSError) as e:
        print(f"governor daemon: {e}", file=sys.stderr)
        return 125
    except GovernorError as e:   # engines out of range
        print(f"governor daemon: {e}", file=sys.stderr)
        return 2
    metrics = None
    try:
        metrics = serve_metrics(daemon.sup, args.metrics) if args.metrics else None
        daemon.serve()
    finally:
        if metrics:
            metrics.shutdown()
            metrics.server_close()
        daemon.close()
    return 0
