"""A supervisor with RLIMIT_NOFILE 256 governs a tenant whose 300 live
threads each made a governed write (a pidfd each, cached by the engine);
then spawns again (test_engine_safety.py runs this in a child process).
Prints "fds N" (this process's open fds after the writes) and "spawned"."""
import os
import resource
import signal
import sys

signal.alarm(60)
os.closerange(3, 4096)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
from governor import Limits, Supervisor  # noqa: E402

TENANT = r"""
import os, sys, threading
ready = threading.Semaphore(0)
def write(n):
    fd = os.open(sys.argv[1] + str(n), os.O_WRONLY | os.O_CREAT)
    os.write(fd, b"x")
    os.close(fd)
    ready.release()
    threading.Event().wait()
for n in range(300):
    threading.Thread(target=write, args=(n,), daemon=True).start()
for n in range(300):
    ready.acquire()
os.write(1, b"written\n")
threading.Event().wait()
"""
with Supervisor(publish_state=False, engines=1) as sup:
    g = sup.group("threads", Limits(disk_write="1GiB/s"))
    r, w = os.pipe()
    p = g.spawn([sys.executable, "-c", TENANT, sys.argv[1]], stdout=w)
    os.close(w)
    assert os.read(r, 8) == b"written\n"
    print("fds", len(os.listdir("/proc/self/fd")), flush=True)
    g.spawn(["/bin/true"]).wait(10)
    print("spawned", flush=True)
    p.kill()
