"""A mapping larger than the memory cap, made while the supervisor has no fd
left (test_engine_safety.py runs this in a child process): prints what the
tenant saw ("errno 12" or "mapped") and its exit status."""
import os, resource, signal, sys
signal.alarm(30)
os.closerange(3, 4096)
from governor import Limits, Supervisor
TENANT = r"""
import mmap, os, sys
os.write(1, b"ready\n")
os.read(0, 1)
try:
    m = mmap.mmap(-1, 200 << 20)
    os.write(1, b"mapped\n")
except OSError as e:
    os.write(1, b"errno %d\n" % e.errno)
"""
with Supervisor(publish_state=False, engines=1) as sup:
    g = sup.group("mem", Limits(memory="64MiB"))
    r0, w0 = os.pipe()
    r1, w1 = os.pipe()
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    p = g.spawn([sys.executable, "-c", TENANT], env=env, stdin=r0, stdout=w1)
    os.close(r0); os.close(w1)
    assert os.read(r1, 6) == b"ready\n"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    fill = []
    try:
        while True:
            fill.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    os.write(w0, b"g")
    out = os.read(r1, 100)
    for fd in fill:
        os.close(fd)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    print(out.decode().strip(), p.wait(10))
