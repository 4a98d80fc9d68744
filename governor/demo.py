"""`make demo`: two tenants run the same I/O workload side by side, one under
limits and one without; prints what each achieved.

    python -m governor.demo [--seconds S]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading

from . import Limits, Supervisor

LIMITS = Limits(disk_write="8MiB/s", net_send="4MiB/s")

# The tenant: writes a file and sends to a loopback sink, each in its own
# thread, in 64 KiB calls, for a fixed time; prints what it moved.
WORKLOAD = r"""
import json, os, socket, sys, threading, time
seconds, port, path = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
chunk = b"x" * 65536
moved = {}
def disk():
    n, t0 = 0, time.monotonic()
    with open(path, "wb", buffering=0) as f:
        while time.monotonic() - t0 < seconds:
            n += f.write(chunk)
    moved["disk_write"] = (n, time.monotonic() - t0)
def net():
    n, t0 = 0, time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as s:
        while time.monotonic() - t0 < seconds:
            s.sendall(chunk)
            n += len(chunk)
    moved["net_send"] = (n, time.monotonic() - t0)
threads = [threading.Thread(target=disk), threading.Thread(target=net)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(moved))
"""


def _sink() -> tuple[socket.socket, threading.Thread]:
    """A loopback server outside every group that discards what it gets."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = srv.accept()
        with conn:
            while conn.recv(1 << 20):
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("governor demo: needs root (each group gets its own pid namespace)", file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="governor-demo-") as tmp, Supervisor() as sup:
        script = os.path.join(tmp, "workload.py")
        with open(script, "w") as f:
            f.write(WORKLOAD)
        runs = []
        for name, limits in (("limited", LIMITS), ("unlimited", Limits())):
            srv, _ = _sink()
            group = sup.group(name, limits)
            out = os.path.join(tmp, f"{name}.out")
            with open(out, "w") as f:
                proc = group.spawn([sys.executable, script, str(args.seconds),
                                    str(srv.getsockname()[1]), os.path.join(tmp, f"{name}.data")],
                                   stdout=f)
            runs.append((name, group, proc, srv, out))
        for name, group, proc, srv, out in runs:
            status = proc.wait()
            srv.close()
            if status != 0:
                print(f"governor demo: tenant {name} exited with {status}", file=sys.stderr)
                return 1
            with open(out) as f:
                moved = json.load(f)
            usage = group.usage()
            held = sum(r.held_calls for r in usage.resources.values())
            held_s = sum(r.held_seconds for r in usage.resources.values())
            rows.append((name, moved, held, held_s))
    print(f"Two tenants, same workload ({args.seconds:g} s: 64 KiB writes to a file and to a "
          f"loopback socket).\nLimits of 'limited': disk_write=8MiB/s, net_send=4MiB/s.\n")
    print(f"{'tenant':<10} {'disk write':>14} {'net send':>14} {'calls held':>11} {'time held':>10}")
    for name, moved, held, held_s in rows:
        rate = {k: v[0] / v[1] / 2**20 for k, v in moved.items()}
        print(f"{name:<10} {rate['disk_write']:>10.2f} MiB/s {rate['net_send']:>8.2f} MiB/s "
              f"{held:>11} {held_s:>9.2f}s")
    print("\n'time held' adds up over the tenant's threads.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
