"""No tenant slows another (issue 14): the supervisor's memory stays bounded
whatever a tenant does. benchmarks/test_noisy.py measures the latencies."""
from __future__ import annotations

import errno
import os
import sys
import time

import pytest

from governor import Limits, Supervisor
from governor._errors import GovernorError

CAP, THREADS = 40, 100

# THREADS threads each write a byte to a file of their own (a 1/s disk_write
# holds all but the first few); the threads past the cap get an error. The
# main thread waits for THREADS - CAP - 5 errors (at most 20 s), then says
# how many it saw and their errnos, on a pipe (a pipe's writes are not held).
TENANT = r"""
import os, sys, threading, time
failed = []
def write(n):
    fd = os.open(sys.argv[1] + str(n), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"x")
    except OSError as e:
        failed.append(e.errno)
for n in range(int(sys.argv[2])):
    threading.Thread(target=write, args=(n,), daemon=True).start()
deadline = time.monotonic() + 20
while len(failed) < int(sys.argv[3]) and time.monotonic() < deadline:
    time.sleep(0.01)
os.write(1, f"{len(failed)} {sorted(set(failed))}\n".encode())
os._exit(0)
"""


def test_held_calls_past_the_cap_are_denied_and_logged(tmp_path):
    r, w = os.pipe()
    with Supervisor(publish_state=False, max_held=CAP) as sup:
        group = sup.group("many", Limits(disk_write="1/s"))
        want = THREADS - CAP - 5
        proc = group.spawn([sys.executable, "-c", TENANT, str(tmp_path / "f"), str(THREADS),
                            str(want)], stdout=w)
        os.close(w)
        try:
            held = group.usage().held_now
            deadline = time.monotonic() + 30
            line = b""
            while not line.endswith(b"\n") and time.monotonic() < deadline:
                held = max(held, group.usage().held_now)
                chunk = os.read(r, 100)
                if not chunk:
                    break
                line += chunk
            assert proc.wait(10) == 0
        finally:
            proc.kill()
            os.close(r)
        denied, errnos = line.decode().split(" ", 1)
        assert int(denied) >= want, line
        assert errnos.strip() == f"[{errno.EAGAIN}]"
        assert held <= CAP
        capped = [e for e in sup.events() if e.kind == "held_cap"]
        assert len(capped) == int(denied)
        assert all(e.value == errno.EAGAIN and e.resource == "disk_write" for e in capped)


@pytest.mark.parametrize("bad", [0, -1, True, 2**31, "8"])
def test_max_held_must_be_a_count(bad):
    with pytest.raises(GovernorError, match="max_held"):
        Supervisor(publish_state=False, max_held=bad)
