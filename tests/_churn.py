"""Groups removed, and engines freed, while their tenants are in governed
calls: the windows in which an engine object dies while an epoll event, or a
ptrace stop, still names it (test_engine_safety.py runs this in a child
process, so that a crash or a sanitizer report is seen as its exit status).

    python tests/_churn.py BACKEND SECONDS

Each round spawns a tenant whose threads write a file (held by a tight
disk_write rate) and wait in recv on a socket that another thread feeds (a
call held until data comes), then either removes its group or frees the
whole engine with the tenant still running, and at last kills what is left.
Prints the number of rounds; exits 0 when nothing went wrong."""
from __future__ import annotations

import os
import signal
import sys
import time

from governor import Limits, Supervisor
from governor._native import lib

TENANT = r"""
import os, socket, sys, threading
a, b = socket.socketpair()
def feed():
    while True:
        b.send(b"x" * 64)
def recv():
    while True:
        a.recv(65536)
def write(n):
    fd = os.open(sys.argv[1] + str(n), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    while True:
        os.write(fd, b"y")
for f in [feed, recv, recv] + [lambda n=n: write(n) for n in range(3)]:
    threading.Thread(target=f, daemon=True).start()
print("running", flush=True)
threading.Event().wait()
"""


def main(backend: str, seconds: float, tmp: str) -> int:
    limits = Limits(disk_write="1GiB/s", net_recv="64KiB/s")
    until = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < until and rounds < 200:
        sup = Supervisor(backend=backend, publish_state=False, engines=1)
        g = sup.group(f"churn{rounds}", limits)
        r, w = os.pipe()
        p = g.spawn([sys.executable, "-c", TENANT, os.path.join(tmp, "f")], stdout=w)
        os.close(w)
        line = b""       # "running\n": the tenant's threads run. print may write the
        while not line.endswith(b"\n") and (chunk := os.read(r, 16)):
            line += chunk  # "\n" apart, and a pipe closed before it killed the tenant
        os.close(r)
        deadline = time.monotonic() + 10
        while g.usage().notifications < 200 and time.monotonic() < deadline:
            time.sleep(0.001)
        if rounds % 2:
            sup._forget(g)            # the group goes, its tenant still calling
            time.sleep(0.01)
            p.kill()
            sup.close()
        else:
            sup._stop.set()
            sup._sampler.join()
            for e in sup._engines:    # the engine goes, its tenant still calling
                lib.gov_engine_free(e)
            sup._engines = []
            os.kill(p.init_pid, signal.SIGKILL)
            os.waitpid(p.init_pid, 0)
        rounds += 1
    print(rounds)
    return 0


if __name__ == "__main__":
    signal.alarm(120)
    sys.exit(main(sys.argv[1], float(sys.argv[2]), sys.argv[3]))
