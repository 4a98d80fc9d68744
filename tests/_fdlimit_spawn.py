"""Spawns /bin/true under every RLIMIT_NOFILE from just above the fds this
process has open: each step of gov_spawn runs out of fds in turn. Every spawn
must succeed or fail with an error, never hang, and leave no fd and no
process behind (test_engine_safety.py runs this in a child process).
Prints "ok N" with how many spawns failed."""
import os
import resource
import signal
import time

from governor import Limits, Supervisor
from governor._errors import GovernorError


def fds():
    return sorted(int(f) for f in os.listdir("/proc/self/fd"))


def children():
    me = os.getpid()
    return [t for t in os.listdir(f"/proc/{me}/task")
            if open(f"/proc/{me}/task/{t}/children").read().split()]


signal.alarm(60)
os.closerange(3, 4096)   # none inherited: the fd numbers are this process's own
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
with Supervisor(publish_state=False, engines=1) as sup:
    g = sup.group("fdlimit", Limits(disk_write="1MiB/s"))
    g.spawn(["/bin/true"]).wait(10)
    before = fds()
    failed = 0
    for extra in range(1, 24):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(before) + extra, hard))
        try:
            p = g.spawn(["/bin/true"])
        except (GovernorError, OSError):
            failed += 1
        else:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            assert p.wait(10) == 0
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        # The sampler thread may have a /proc file open for a moment: the
        # fds must come back to what they were within a second.
        deadline = time.monotonic() + 1
        while (now := fds()) != before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert now == before, (extra, before, now)
        assert not children(), children()
print("ok", failed)
