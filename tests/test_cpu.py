"""CPU caps: SCHED_DEADLINE reservations split across a group's tasks."""
import errno
import os
import subprocess
import sys

import pytest

from _tenants import TENANTS, compile_c
from governor import Limits, PolicyError, Supervisor

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (pid namespaces)")
SECONDS = 5


@pytest.fixture(scope="module")
def tenant(tmp_path_factory):
    return str(compile_c(TENANTS / "cpu_tenant.c", tmp_path_factory.mktemp("cpu")))


def run(tenant, tmp_path, cap, mode, n):
    out = tmp_path / "out"
    with Supervisor() as sup:
        g = sup.group("cpu", Limits(cpu=cap))
        with open(out, "w") as f:
            assert g.spawn([tenant, mode, str(SECONDS), str(n)], stdout=f).wait(60) == 0
    fields = dict(kv.split("=") for kv in out.read_text().split())
    return 100 * float(fields["cpu"]) / float(fields["wall"])


# Coarse margins over 5 s on a shared machine; the 10 s comparison with
# cpulimit is in benchmarks/test_cpu_accuracy.py.
@pytest.mark.parametrize("cap, mode, n, want, margin", [
    ("25%", "threads", 1, 25, 4),
    ("25%", "threads", 4, 25, 4),
    ("150%", "threads", 4, 150, 8),
    # 32 tasks each overrun their runtime a little per period: 23.3-24.7% here,
    # 33.9% when the shares' floors added up past the cap.
    ("20%", "threads", 32, 20, 7),
    ("50%", "procs", 3, 50, 7),  # forked tasks run uncapped until the next 50 ms pass
])
def test_group_cpu_is_capped(tenant, tmp_path, cap, mode, n, want, margin):
    got = run(tenant, tmp_path, cap, mode, n)
    print(f"\ncpu={cap} {mode}={n}: {got:.1f}%")
    # Above the cap is the controller's fault. Below it, deadline tasks that
    # fill most of both CPUs also give way to the kernel's fair-class
    # servers and to everything else runnable (150% with 4 threads: 141% in
    # every run at 17:05 on an idle machine, where CI had passed it at 16:50).
    assert want - max(margin, 0.15 * want) <= got <= want + margin, \
        f"cpu={cap} with {n} {mode}: {got:.1f}%"


@pytest.mark.xfail(strict=True, reason="open: a new task runs unreserved until the next pass")
def test_threads_too_short_for_a_pass_are_capped(tenant, tmp_path):
    """A known hole, kept visible: each task starts as a normal one
    (SCHED_FLAG_RESET_ON_FORK) until the controller's next pass (50 ms), so
    a relay of 30 ms threads runs unreserved (0.74-0.76 of a CPU under
    30%, 2026-11-27). strict: it fails the run once the hole is closed."""
    native = subprocess.run([tenant, "relay", "2", "30"], capture_output=True, text=True,
                            timeout=30).stdout
    fields = dict(kv.split("=") for kv in native.split())
    if float(fields["cpu"]) / float(fields["wall"]) < 0.6:
        pytest.skip("the machine is too busy to tell a cap from a shortage")
    got = run(tenant, tmp_path, "30%", "relay", 30)
    print(f"\ncpu=30% relay of 30 ms threads: {got:.1f}%")
    assert got <= 34


def test_the_parent_sees_no_stop_and_no_continue(tenant, tmp_path, backend):
    out = tmp_path / "out"
    with Supervisor(backend=backend) as sup:
        g = sup.group("watch", Limits(cpu="20%"))
        with open(out, "w") as f:
            assert g.spawn([tenant, "watch", "3", "1"], stdout=f).wait(30) == 0
    assert out.read_text().strip() == "reports=0"


def test_cpu_values_are_checked():
    assert Limits(cpu="50%").cpu == 0.5 and Limits(cpu=1.5).cpu == 1.5
    for bad in ("0%", "-1", "fast", "10000%"):
        with pytest.raises(PolicyError) as e:
            Limits(cpu=bad)
        assert e.value.key == "cpu"
    with pytest.raises(PolicyError):
        Limits(cpu="50%", on_exhausted={"cpu": "deny"})


def _cpu_ns(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def test_the_tenants_own_sigstop_and_sigcont_still_work(tenant, tmp_path, backend):
    import signal
    import time
    with Supervisor(backend=backend) as sup:
        g = sup.group("stopcont", Limits(cpu="30%"))
        p = g.spawn([tenant, "threads", "30", "1"], stdout=subprocess.DEVNULL)
        try:
            time.sleep(0.5)  # let it run under its reservation
            os.kill(p.pid, signal.SIGSTOP)
            with open(f"/proc/{p.pid}/stat") as f:
                deadline = time.monotonic() + 5
                while f.read().split(") ")[1][0] != "T" and time.monotonic() < deadline:
                    f.seek(0)
                    time.sleep(0.01)
            before = _cpu_ns(p.pid)
            time.sleep(0.5)
            assert _cpu_ns(p.pid) - before < 5_000_000, "a stopped tenant kept running"
            os.kill(p.pid, signal.SIGCONT)
            before = _cpu_ns(p.pid)
            time.sleep(1.0)
            ran = (_cpu_ns(p.pid) - before) / 1e9
            assert 0.15 < ran < 0.45, f"after SIGCONT it ran {ran:.2f} s of 1 s (cap 30%)"
        finally:
            p.kill()


def test_a_task_that_slept_gets_its_share_back(tmp_path):
    exe = compile_c(TENANTS / "sleepspin_tenant.c", tmp_path)
    out = tmp_path / "out"
    with Supervisor() as sup:
        g = sup.group("sleepy", Limits(cpu="30%"))
        with open(out, "w") as f:
            assert g.spawn([str(exe)], stdout=f).wait(30) == 0
    share = float(out.read_text())
    assert 0.25 <= share <= 0.35, f"after sleeping the task got {share:.2f} of a 0.30 cap"


def test_a_capped_tenant_cannot_leave_its_reservation(tmp_path):
    code = ("import os, sys\n"
            "try:\n    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))\n"
            "except PermissionError:\n    sys.exit(7)\n")
    with Supervisor() as sup:
        g = sup.group("escape", Limits(cpu="40%"))
        assert g.spawn([sys.executable, "-c", code]).wait(30) == 7


PIN_CHILD = """
import os, sys, time
pid = os.fork()
if pid == 0:
    # Forked children start as normal tasks until the controller's next pass;
    # one pinned to a CPU could never be reserved.
    try:
        os.sched_setaffinity(0, {0})
        err = 0
    except OSError as e:
        err = e.errno
    t0, c0 = time.monotonic(), time.process_time()
    while time.monotonic() - t0 < 2:
        pass
    print(err, (time.process_time() - c0) / (time.monotonic() - t0), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""


def test_a_forked_child_cannot_pin_itself_out_of_the_cap(tmp_path, backend):
    """A child pinned to one CPU before its reservation ran uncapped (1.00
    of a CPU under cpu=30%): sched_setaffinity gets EPERM in a capped group."""
    out = tmp_path / "out"
    with Supervisor(backend=backend) as sup:
        g = sup.group("pin", Limits(cpu="30%"))
        with open(out, "w") as f:
            assert g.spawn([sys.executable, "-c", PIN_CHILD], stdout=f).wait(30) == 0
    err, share = out.read_text().split()
    assert int(err) == errno.EPERM
    assert float(share) <= 0.36, f"the pinned child got {float(share):.2f} of a 0.30 cap"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to narrow to one")
def test_a_cap_the_kernel_would_not_hold_is_refused():
    """Under taskset the kernel refuses every reservation (EPERM): the group
    ran uncapped with a warning; now `governor run` says why and starts
    nothing."""
    cpu = min(os.sched_getaffinity(0))
    p = subprocess.run([sys.executable, "-m", "governor", "run", "--limit", "cpu=30%", "--",
                        "true"], capture_output=True, text=True, timeout=30,
                       preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    assert p.returncode == 2, p.stderr
    assert "cpu: the kernel refuses SCHED_DEADLINE reservations" in p.stderr, p.stderr
    assert f"may run on CPUs {cpu} only" in p.stderr, p.stderr
