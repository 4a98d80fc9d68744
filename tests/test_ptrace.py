"""What only the ptrace backends need: a tenant can neither escape tracing
(CLONE_UNTRACED, clone3, ptrace itself) nor notice it (group-stops seen by its
real parent, exit statuses, signal handlers, static binaries), and the
supervisor's death kills it. The behavioural tests of the other files run
under `ptrace` too (conftest.py); a few run here under `ptrace-syscall`."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import test_rates
from _tenants import TENANTS, compile_c, host_pid, login_terminal, read_line, start_time, wait_for
from test_rates import tenant  # noqa: F401  (the rates tenant, a fixture)

from governor import Limits, Supervisor

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

GOVERNOR = Path(sys.executable).with_name("governor")
KiB, MiB = 1024, 1024 * 1024
TRACED = ("ptrace", "ptrace-syscall")


@pytest.fixture(scope="module")
def ptenant(tmp_path_factory) -> str:
    return str(compile_c(TENANTS / "ptrace_tenant.c", tmp_path_factory.mktemp("ptenant"),
                         ("-static", "-pthread")))


@pytest.fixture(params=TRACED)
def sup(request):
    with Supervisor(backend=request.param, publish_state=False) as s:
        yield s


def _run(group, argv, stdin=None) -> tuple[int, str]:
    r, w = os.pipe()
    try:
        proc = group.spawn(argv, stdout=w, stdin=stdin)
    finally:
        os.close(w)
    try:
        rc = proc.wait(20)
        with os.fdopen(r) as f:
            return rc, f.read()
    except BaseException:
        os.close(r)
        raise


def _kv(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in (p.split("=") for p in text.split())}


def _tracer(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("TracerPid:"):
            return int(line.split()[1])
    raise AssertionError("no TracerPid")


def test_clone_untraced_is_refused(sup, ptenant):
    g = sup.group("u", Limits(processes=10))
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        proc = g.spawn([ptenant, "untraced"], stdin=stdin_r, stdout=out_w)
        os.close(stdin_r)
        os.close(out_w)
        line = read_line(out_r, 10).decode().rstrip()
        assert _kv(line) == {"untraced": 1, "forked": 1}  # EPERM
        tids = [int(t) for p in g.pids() for t in os.listdir(f"/proc/{p}/task")]
        assert len(tids) == 2  # the tenant and its fork, nothing else
        assert all(_tracer(t) == _tracer(proc.pid) != 0 for t in tids)
    finally:
        os.close(stdin_w)
        os.close(out_r)
    assert proc.wait(10) == 0


def test_clone3_enosys_threads_and_fork_work(sup, ptenant):
    g = sup.group("c", Limits(processes=10))
    rc, text = _run(g, [ptenant, "clone3"])
    assert rc == 0
    assert _kv(text) == {"clone3": 38, "thread": 0, "fork": 7}  # ENOSYS


def test_tenant_cannot_trace_and_limits_still_apply(sup, ptenant, tmp_path):
    g = sup.group("p", Limits(disk_write="1MiB/s", burst={"disk_write": "64KiB"}))
    out = tmp_path / "out"
    t0 = time.monotonic()
    rc, text = _run(g, [ptenant, "ptrace", str(out), str(512 * KiB)])
    elapsed = time.monotonic() - t0
    assert rc == 0
    assert _kv(text) == {"traceme": 1, "attach": 1, "written": 512 * KiB}  # EPERM
    u = g.usage().resources["disk_write"]
    assert u.used == 512 * KiB and u.held_calls > 0
    assert elapsed > 0.35  # 448 KiB past the burst at 1 MiB/s


def test_group_stop_seen_by_the_real_parent(sup, ptenant, tmp_path):
    g = sup.group("s", Limits(disk_write="64MiB/s"))
    r, w = os.pipe()
    try:
        proc = g.spawn([ptenant, "stopwatch", str(tmp_path / "ticks")], stdout=w)
        os.close(w)
        in_group = int(read_line(r, 10).decode().rstrip().split()[1])
        child = host_pid(g.pids(), in_group)
        os.kill(child, signal.SIGSTOP)
        assert read_line(r, 5).decode().rstrip() == "stopped 19"
        # It really is stopped: no tick (one per 10 ms when running) for 0.3 s.
        ticks = tmp_path / "ticks"
        size = ticks.stat().st_size
        time.sleep(0.3)
        assert ticks.stat().st_size == size, "a stopped child kept running"
        os.kill(child, signal.SIGCONT)
        assert read_line(r, 5).decode().rstrip() == "continued"
        size = (tmp_path / "ticks").stat().st_size
        wait_for(lambda: (tmp_path / "ticks").stat().st_size > size, 5, "the child to run again")
        os.kill(child, signal.SIGTERM)
        assert read_line(r, 5).decode().rstrip() == "signaled 15"
        assert proc.wait(10) == 0
    finally:
        os.close(r)


def test_static_busybox_exec(sup, tmp_path):
    g = sup.group("bb", Limits(disk_write="1MiB/s", burst={"disk_write": "64KiB"}))
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = g.spawn(["/bin/busybox", "dd", "if=/dev/zero", f"of={out}", "bs=64k", "count=16"],
                   stderr=subprocess.DEVNULL)
    assert proc.wait(20) == 0
    elapsed = time.monotonic() - t0
    assert out.stat().st_size == MiB
    assert g.usage().resources["disk_write"].used == MiB
    assert elapsed > 0.85  # (1 MiB - 64 KiB burst) at 1 MiB/s


@pytest.mark.parametrize("kind", ["file", "proc"])
def test_reads_charged_what_they_returned(sup, ptenant, tmp_path, kind):
    """Seen at the read's exit: exact even where the file's size says
    nothing (a /proc file's is 0, the seccomp backend charges 0 for it)."""
    src = tmp_path / "src"
    src.write_bytes(os.urandom(100_001))
    g = sup.group("r", Limits(disk_read="64MiB/s"))
    rc, text = _run(g, [ptenant, "read", str(src) if kind == "file" else "/proc/self/maps"])
    assert rc == 0 and int(text) > 0
    if kind == "file":
        assert int(text) == 100_001
    assert g.usage().resources["disk_read"].used == int(text)


@pytest.mark.parametrize("test", [test_rates.test_disk_write_rate,
                                  test_rates.test_handled_signal_waits_for_a_held_file_write,
                                  test_rates.test_handled_signal_interrupts_a_held_send,
                                  test_rates.test_fatal_signal_during_a_hold_kills_at_once,
                                  test_rates.test_restarted_call_is_not_charged_twice],
                         ids=lambda t: t.__name__)
def test_core_under_ptrace_syscall(test, tenant, tmp_path):  # noqa: F811
    with Supervisor(backend="ptrace-syscall", publish_state=False) as s:
        if test is test_rates.test_disk_write_rate:
            test(s, tenant, tmp_path, 64 * KiB)
        elif test is test_rates.test_fatal_signal_during_a_hold_kills_at_once:
            test(s, tenant, tmp_path, signal.SIGKILL)
        else:
            test(s, tenant, tmp_path)


# ---- governor run --backend ptrace -------------------------------------------------

@pytest.mark.parametrize("script,status", [("exit 0", 0), ("exit 9", 9),
                                           ("kill -USR1 $$", 128 + signal.SIGUSR1)])
def test_cli_exit_statuses(script, status):
    p = subprocess.run([str(GOVERNOR), "run", "--backend", "ptrace", "--limit",
                        "disk_write=1MiB/s", "--", "sh", "-c", script],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == status, p.stderr


def test_cli_sigterm_handler_runs(tmp_path):
    marker = tmp_path / "ready"
    p = subprocess.Popen([str(GOVERNOR), "run", "--backend", "ptrace", "--limit",
                          "disk_write=1MiB/s", "--", "sh", "-c",
                          f"trap 'echo handled; exit 5' TERM; : > {marker}; "
                          "for i in $(seq 300); do sleep 0.1; done"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: marker.exists() and test_rates._catches(p.pid, signal.SIGTERM), 10,
                 "the command to start and governor to catch SIGTERM")
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=10)
        assert p.returncode == 5, err
        assert out == "handled\n"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def test_cli_sigkill_of_the_supervisor_kills_the_tenant(ptenant, tmp_path):
    p = subprocess.Popen([str(GOVERNOR), "run", "--backend", "ptrace", "--limit",
                          "disk_write=1MiB/s", "--", ptenant, "busy", str(tmp_path / "ticks")],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        in_group = int(read_line(p.stdout.fileno(), 10).decode().rstrip())
        pid = host_pid([c.pid for c in psutil.Process(p.pid).children(recursive=True)], in_group)
        started = start_time(pid)
        assert started is not None
        p.kill()
        p.wait(10)
        wait_for(lambda: start_time(pid) != started, 5, "the tenant to die")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
        p.stdout.close()


def test_exec_from_a_thread(sup, tmp_path):
    """A thread that is not the leader execs: it takes the leader's pid and
    stays traced and governed."""
    out = tmp_path / "out"
    g = sup.group("x", Limits(disk_write="1MiB/s", burst={"disk_write": "64KiB"}))
    code = ("import os, threading, time\n"
            f"argv = ['/bin/busybox', 'dd', 'if=/dev/zero', 'of={out}', 'bs=64k', 'count=8']\n"
            "threading.Thread(target=os.execv, args=(argv[0], argv)).start()\n"
            "time.sleep(30)\n")
    t0 = time.monotonic()
    proc = g.spawn([sys.executable, "-c", code], stderr=subprocess.DEVNULL)
    assert proc.wait(20) == 0
    assert time.monotonic() - t0 > 0.4  # (512 KiB - 64 KiB burst) at 1 MiB/s
    assert out.stat().st_size == g.usage().resources["disk_write"].used == 512 * KiB


def _read_until(fd: int, want: bytes, timeout: float) -> bytes:
    seen, deadline = b"", time.monotonic() + timeout
    while want not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"timed out waiting for {want!r}, got {seen[-300:]!r}")
        try:
            seen += os.read(fd, 4096)
        except OSError:  # EIO: the terminal's other side closed
            raise AssertionError(f"terminal closed before {want!r}: {seen[-300:]!r}")
    return seen


def _tree(pid: int) -> str:
    """pid and its descendants: state, wchan, current call, threads."""
    lines = []
    for p in [psutil.Process(pid)] + psutil.Process(pid).children(recursive=True):
        try:
            wchan = Path(f"/proc/{p.pid}/wchan").read_text()
            call = Path(f"/proc/{p.pid}/syscall").read_text().split()[:2]
            lines.append(f"{p.pid} {p.name()} {p.status()} wchan={wchan} call={call} "
                         f"threads={p.num_threads()} pgrp={os.getpgid(p.pid)}")
        except (psutil.Error, OSError):
            pass
    return "\n".join(lines)


@pytest.mark.parametrize("backend", ["seccomp", "ptrace"])
def test_job_control_in_an_interactive_shell(backend, tmp_path):
    """^Z stops the foreground job and the shell says so; fg brings it back."""
    import pty
    master, slave = pty.openpty()
    env = {"PATH": os.environ["PATH"], "TERM": "dumb", "PS1": "$ ", "HOME": str(tmp_path)}
    gov = subprocess.Popen([str(GOVERNOR), "run", "--backend", backend, "--limit",
                            "disk_write=64MiB/s", "--", "bash", "--norc", "--noprofile", "-i"],
                           stdin=slave, stdout=slave, stderr=slave, env=env,
                           start_new_session=True,
                           preexec_fn=login_terminal)
    os.close(slave)
    try:
        _read_until(master, b"$ ", 10)
        os.write(master, b"sleep 30; echo slept\n")
        sleep = wait_for(lambda: next((p for p in psutil.Process(gov.pid).children(
            recursive=True) if p.name() == "sleep"), None), 10, "sleep to start")
        os.write(master, b"\x1a")  # ^Z
        _read_until(master, b"Stopped", 10)
        assert sleep.status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
        os.write(master, b"fg\n")
        wait_for(lambda: os.tcgetpgrp(master) == os.getpgid(sleep.pid)
                 and sleep.status() == psutil.STATUS_SLEEPING, 10, "sleep in the foreground")
        os.write(master, b"\x03")  # ^C ends sleep (and flushes what was typed ahead)
        _read_until(master, b"$ ", 10)
        os.write(master, b"exit 7\n")
        assert gov.wait(10) == 7
    except BaseException:
        print(_tree(gov.pid))   # what each task was doing when it timed out
        raise
    finally:
        if gov.poll() is None:
            gov.kill()
            gov.wait(10)
        os.close(master)
