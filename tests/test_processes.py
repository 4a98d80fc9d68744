"""The processes cap with the programs that hung it: a shell that starts 200
background jobs, a Python parent that forks and reaps as it goes, a
version-manager shim, scripts nested in $(... | cat). Under a cap they must
finish (or fail as at a kernel pids limit, never hang), the engine's count
must be the group's live tasks, and `governor run` must end a held group
after SIGTERM."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from _tenants import (SHIM, TENANTS, children_of, compile_c, live_tasks, needs_root, python_tenant,
                      read_line, wait_for)

from governor import Limits, Supervisor

pytestmark = needs_root
GOVERNOR = Path(sys.executable).with_name("governor")

NEST = r'''#!/bin/bash
# nest.sh LEVEL: each level runs the next inside $(... | cat)
level=${1:-4}
if [ "$level" -eq 0 ]; then sleep 0.2; echo leaf; exit 0; fi
out=$(bash "$0" $((level - 1)) | cat)
echo "$level:$out"
'''

FORK_AND_REAP = r'''
import os, time
live = []
for i in range(30):
    pid = os.fork()
    if pid == 0:
        time.sleep(0.2)
        os._exit(0)
    live.append(pid)
    for p in list(live):
        if os.waitpid(p, os.WNOHANG)[0]:
            live.remove(p)
for p in live:
    os.waitpid(p, 0)
print("ok")
'''


class Sampler:
    """Samples the group's live tasks from /proc while a command runs."""

    def __init__(self, proc):
        self.proc, self.samples = proc, []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        deadline = time.monotonic() + 60
        while self.proc.returncode is None and time.monotonic() < deadline:
            self.samples.append(live_tasks(self.proc.init_pid))
            time.sleep(0.002)

    def stop(self) -> list[int]:
        self.thread.join(5)
        return self.samples


def run_under(limits: Limits, argv: list[str], backend: str = "seccomp", timeout: float = 60):
    """Runs argv in a group; returns (exit status, stdout, usage, live-task samples)."""
    with Supervisor(backend=backend, publish_state=False) as sup:
        g = sup.group("p", limits)
        r, w = os.pipe()
        try:
            proc = g.spawn(argv, stdout=w)
        finally:
            os.close(w)
        sampler = Sampler(proc)
        try:
            rc = proc.wait(timeout)
        finally:
            with os.fdopen(r) as f:
                out = f.read() if proc.returncode is not None else ""
            proc.kill()
        return rc, out, g.usage(), sampler.stop()


def test_shell_with_200_background_jobs(tmp_path, backend):
    """bash blocks SIGCHLD around fork: held in fork, it cannot reap its
    finished jobs. They no longer hold the fork back."""
    script = "for i in $(seq 200); do /bin/true & done; wait; echo ok"
    rc, out, u, samples = run_under(Limits(processes=5), ["/bin/bash", "-c", script], backend)
    assert (rc, out) == (0, "ok\n")
    assert max(samples) <= 5, samples
    assert u.peak_tasks <= 5
    assert u.resources["processes"].used == 0  # nothing left, nothing pending


def test_python_forks_and_reaps_as_it_goes(tmp_path, backend):
    prog = python_tenant(tmp_path, "reap.py", FORK_AND_REAP)
    rc, out, u, samples = run_under(Limits(processes=5), [sys.executable, prog], backend)
    assert (rc, out) == (0, "ok\n")
    assert max(samples) <= 5, samples
    assert u.resources["processes"].held_calls > 0  # the cap did bind
    assert u.resources["processes"].denied_calls == 0


def test_nested_substitutions_finish_under_a_cap_they_fit(tmp_path):
    nest = tmp_path / "nest.sh"
    nest.write_text(NEST)
    nest.chmod(0o755)
    for _ in range(5):
        rc, out, u, samples = run_under(Limits(processes=24), [str(nest)])
        assert (rc, out) == (0, "4:3:2:1:leaf\n")
        assert u.resources["processes"].denied_calls == 0
        assert max(samples) >= 10  # it did need about 14 tasks at once


def test_nested_substitutions_fail_under_a_cap_they_cannot_fit(tmp_path):
    """Every task ends up held in fork or waiting for a held one: the held
    forks fail with EAGAIN (bash retries for about 15 s, then gives up) and
    the warning names the group and the count."""
    nest = tmp_path / "nest.sh"
    nest.write_text(NEST)
    nest.chmod(0o755)
    t0 = time.monotonic()
    p = subprocess.run([str(GOVERNOR), "run", "--limit", "processes=8", "--", str(nest)],
                       capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - t0
    print(f"\nnest.sh under processes=8: exit {p.returncode} after {elapsed:.1f} s")
    assert "fork: Resource temporarily unavailable" in p.stderr
    assert "4:3:2:1:leaf" not in p.stdout
    stalls = [line for line in p.stderr.splitlines() if "calls held on a cap failed" in line]
    assert stalls and '"limit": 8' in stalls[0] and '"group": "nest.sh"' in stalls[0], p.stderr


def test_engine_count_equals_live_tasks_through_a_shim(tmp_path, backend):
    """Under a version-manager shim, the engine's count is the group's live
    tasks at every sample once the group has not changed for 0.1 s (a clone
    whose caller runs on settles within 50 ms: /proc cannot say whether a
    running task is still inside its clone); at the end nothing is counted."""
    bindir = tmp_path / "shims"
    bindir.mkdir()
    (bindir / "version").write_text("python3\n")
    shim = bindir / "python3"
    shim.write_text(SHIM)
    shim.chmod(0o755)
    code = "import time; time.sleep(1.5); print(1)"
    env = {"PATH": f"{bindir}:/usr/bin:/bin"}
    with Supervisor(backend=backend, publish_state=False) as sup:
        g = sup.group("shim", Limits(processes=10))
        r, w = os.pipe()
        try:
            proc = g.spawn([str(shim), "-c", code], stdout=w, env=env)
        finally:
            os.close(w)
        compared, last, changed = 0, None, time.monotonic()
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            before = live_tasks(proc.init_pid)
            used = g.usage().resources["processes"].used
            after = live_tasks(proc.init_pid)
            now = time.monotonic()
            if (before, after) != (last, last):
                last, changed = after, now
            elif now - changed >= 0.1 and proc.returncode is None and before > 0:
                assert used == before, f"engine counts {used}, /proc shows {before} live tasks"
                compared += 1
            time.sleep(0.01)
        assert proc.wait(5) == 0
        with os.fdopen(r) as f:
            assert f.read() == "1\n"
        assert compared >= 20
        assert g.usage().resources["processes"].used == 0


def test_zombies_are_not_counted(tmp_path, backend):
    """Exited children that nobody reaped hold no slot: a parent at the cap
    with 3 zombie children still forks; past as many zombies again as the
    cap, fork fails with EAGAIN, as at a pids limit."""
    prog = python_tenant(tmp_path, "zombies.py", r'''
import os
made = 0
for i in range(12):
    try:
        pid = os.fork()
    except BlockingIOError:
        break
    if pid == 0:
        os._exit(0)
    made += 1
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # a zombie now, not reaped
print(made)
''')
    rc, out, u, _ = run_under(Limits(processes=4), [sys.executable, prog], backend)
    assert rc == 0
    # 1 live task (the parent) + zombies <= 2 x 4: the 8th fork fails.
    assert int(out) == 7
    assert u.resources["processes"].denied_calls == 1


def test_zombies_are_not_in_the_peak_task_count(tmp_path):
    """peak_tasks counts as the cap does: a live child and two unreaped
    zombies under processes=3 peak at 3 tasks at most (the sampler used to
    count the zombies: 4, past the cap it reported)."""
    prog = python_tenant(tmp_path, "zombies2.py", r'''
import os, time
if os.fork() == 0:
    time.sleep(2)
    os._exit(0)
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # a zombie, not reaped
time.sleep(1)  # several samples of the group meanwhile
''')
    rc, _, u, _ = run_under(Limits(processes=3), [sys.executable, prog])
    assert rc == 0
    assert u.peak_tasks <= 3


def test_sigterm_kills_a_group_that_ignores_it_after_the_stop_timeout(tmp_path):
    marker = tmp_path / "started"
    script = f"trap '' TERM; : > {marker}; while :; do dd if=/dev/zero of=/dev/null count=1 2>/dev/null; sleep 0.1; done"
    p = subprocess.Popen([str(GOVERNOR), "run", "--stop-timeout", "1", "--", "bash", "-c", script],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        wait_for(marker.exists, 10, "the command to start")
        time.sleep(0.2)  # governor has its handlers by now (they come before the spawn)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=15)
        elapsed = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    print(f"\nexit {p.returncode} {elapsed:.2f} s after SIGTERM")
    assert p.returncode == 128 + signal.SIGKILL
    assert 1.0 <= elapsed < 5.0
    assert "did not exit after SIGTERM" in err


@pytest.mark.parametrize("limit", ["processes=2", "memory=64MiB"])
def test_a_lone_task_held_on_a_cap_gets_the_kernel_errno(tmp_path, limit):
    """A single process held on a cap that only it could free: waiting would
    be for ever, so the call fails (EAGAIN for fork, ENOMEM for memory)."""
    prog = python_tenant(tmp_path, "lone.py", r'''
import errno, mmap, os, sys
if sys.argv[1].startswith("processes"):
    r, w = os.pipe()
    try:
        for _ in range(3):   # the 2nd child is one too many: the 1st waits for us
            if os.fork() == 0:
                os.close(w); os.read(r, 1); os._exit(0)
    except BlockingIOError:
        print("EAGAIN"); sys.stdout.flush(); os._exit(0)
else:
    try:
        kept = mmap.mmap(-1, 40 << 20)   # fits; the second does not while we hold the first
        m = mmap.mmap(-1, 40 << 20)
    except (MemoryError, OSError) as e:
        print(errno.errorcode.get(getattr(e, "errno", errno.ENOMEM), "ENOMEM")); sys.exit(0)
print("no error")
''')
    key, _, value = limit.partition("=")
    rc, out, u, _ = run_under(Limits(**{key: value}), [sys.executable, prog, limit])
    assert rc == 0
    assert out.strip() == ("EAGAIN" if key == "processes" else "ENOMEM")
    assert u.resources[key].held_calls >= 1  # held first, then failed


FORK_ON_CUE = r'''
import os, sys, threading
while os.read(0, 1) == b"f":
    pid = os.fork()
    if pid == 0:
        os.read(0, 1)                # the test has looked at our pid
        t = threading.Thread(target=lambda: None)
        t.start()                    # a clone that the processes cap governs
        t.join()
        os._exit(0)
    os.waitpid(pid, 0)
    os.write(1, b"done\n")
'''


def _last_pid() -> int:
    return int(Path("/proc/sys/kernel/ns_last_pid").read_text())


def _set_last_pid(pid: int) -> None:
    """The host's next pid is the first free one after pid."""
    Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid))


def test_a_reused_pid_is_governed_by_its_new_group(tmp_path, backend):
    """The tracer used to make a child's entry at its parent's fork event,
    which it may take after the child's exit: the entry outlived the child,
    and the next task given that pid, in another group, was governed by the
    first group's cap (here a full one: its thread start waited for ever).
    Host pids are steered onto the churned ones through ns_last_pid."""
    churn = compile_c(TENANTS / "churn_tenant.c", tmp_path)
    cue = python_tenant(tmp_path, "cue.py", FORK_ON_CUE)
    with Supervisor(backend=backend, publish_state=False, engines=1) as sup:
        full = sup.group("full", Limits(processes=3))
        other = sup.group("other", Limits(processes=10))
        if _last_pid() + 5000 > int(Path("/proc/sys/kernel/pid_max").read_text()):
            _set_last_pid(300)   # the churn must not wrap round pid_max
        before = _last_pid()
        out_r, out_w = os.pipe()
        a = full.spawn([str(churn), "400"], stdout=out_w)
        os.close(out_w)
        in_r, in_w = os.pipe()
        b_r, b_w = os.pipe()
        b = other.spawn([sys.executable, cue], stdin=in_r, stdout=b_w)
        os.close(in_r)
        os.close(b_w)
        try:
            assert read_line(out_r, 60) == b"full\n"
            root = wait_for(lambda: children_of(b.init_pid), 10, "the cue's root")[0]
            after = _last_pid()
            assert after > before + 400, (before, after)
            candidates = range(before + 1, after, max(1, (after - before) // 40))
            reused: set[int] = set()
            # Other processes of a busy host may take a steered pid first:
            # each is tried up to three times.
            for pid in [p for p in candidates for _ in range(3)]:
                if pid in reused:
                    continue
                _set_last_pid(pid - 1)
                os.write(in_w, b"f")
                child = wait_for(lambda: children_of(root), 10, "the cue's child")[0]
                if child == pid:
                    reused.add(pid)
                os.write(in_w, b"t")
                assert read_line(b_r, 10) == b"done\n", f"the child with pid {child} hung"
            assert len(reused) >= 3, f"only {len(reused)} of {len(candidates)} pids were reused"
        finally:
            a.kill()
            b.kill()
            for fd in (out_r, in_w, b_r):
                os.close(fd)
