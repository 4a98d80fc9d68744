"""Stress: groups come and go while their tenants hammer governed calls,
spawns fail at each step, ptrace tracees come and go. Nothing may be left
behind (fds, children), and against the engine built with sanitizers
(`make sanitize`, `make sanitize-ci`) the run must end without a report,
which fails it.

GOVERNOR_STRESS_SECONDS: how long the churn runs per backend (default 6;
make sanitize-ci: 4, make sanitize: 60). The random choices are seeded, and
the seed printed.
"""
from __future__ import annotations

import os
import random
import subprocess
import time
from collections import deque
from pathlib import Path

import psutil
import pytest

from _tenants import TENANTS, compile_c, open_fds, under_tsan
from governor import GovernorError, Limits, Supervisor
from governor._native import lib

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (pid namespaces)")

SECONDS = float(os.environ.get("GOVERNOR_STRESS_SECONDS", "6"))
RATE = 1 << 20                       # disk_write, bytes/s: writers are held
# A processes cap traces clones, under seccomp too: not under TSan.
LIMITS = Limits(disk_write=f"{RATE}B/s", processes=None if under_tsan() else 24)
LIVE = 4                             # groups alive at once, at most
# A full disk area whose tenant keeps retrying and deleting: the walker
# counts it before each refusal, and the group may close mid-walk.
DISK_LIMITS = Limits(disk_write=f"{RATE}B/s", processes=LIMITS.processes, disk_space="64KiB")
FILL = 'while :; do echo xxxxxxxxxxxxxxxx >> "$1/f"; true > "$1/g"; rm -f "$1/g"; done'


@pytest.fixture(scope="module")
def tenant(tmp_path_factory) -> str:
    return str(compile_c(TENANTS / "rates_tenant.c", tmp_path_factory.mktemp("stress"),
                         ("-static", "-pthread")))


@pytest.fixture
def no_leaks():
    """The test's fds and children, compared when it ends (after its
    supervisor closed): the same, once the kernel has reaped what it kills."""
    fds, kids = open_fds(), children()
    yield
    same(open_fds, fds, "fds")
    same(children, kids, "children")


def group_fds() -> dict[str, str]:
    """The fds a spawn makes, while a supervisor runs: without pidfds (the
    engine keeps one per task it has seen, of live groups too), and without
    the sampler's passing reads of /proc and writes of state files."""
    passing = ("anon_inode:[pidfd]", "/proc/", os.environ["GOVERNOR_RUN_DIR"])
    return {fd: what for fd, what in open_fds().items() if not what.startswith(passing)}


def children() -> set[int]:
    return {c.pid for c in psutil.Process().children()}


def same(now, before, what: str, timeout: float = 10) -> None:
    """now() == before within timeout (fds being closed, children being
    reaped), or an assertion that names what is left over."""
    deadline = time.monotonic() + timeout
    while (value := now()) != before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert value == before, f"{what} left behind: {value}, before: {before}"


def commands(tenant: str, path: Path) -> list[list[str]]:
    """What a group of the churn runs: writers held by disk_write (threads
    and forked processes, for longer than the group lives or just long
    enough to exit by themselves as the group closes), and a shell whose
    short-lived children come and go (new tracees under ptrace)."""
    return [
        [tenant, "write", str(path), "65536", "30", "3", "2"],
        [tenant, "write", str(path), "4096", "0.05", "1", "1"],
        ["/bin/sh", "-c", "i=0; while [ $i -lt 20 ]; do /bin/true; i=$((i+1)); done"],
    ]


def churn(sup: Supervisor, tenant: str, tmp: Path, seconds: float, rng: random.Random) -> int:
    """Creates groups and closes them at random moments, LIVE at most at
    once, for `seconds`; a quarter of them fill a disk area. Each group's
    disk_write stays within its rate. Returns how many groups it closed."""
    live: deque = deque()
    closed = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or live:
        if time.monotonic() < deadline:
            n = closed + len(live)
            path = tmp / f"w{n}"
            if rng.random() < 0.25:
                area = tmp / f"area{n}"
                area.mkdir()
                for i in range(300):
                    (area / f"{i}").touch()
                (area / "big").write_bytes(bytes(56 << 10))   # the first append is refused
                limits, group = DISK_LIMITS, {"disk_area": [area]}
                argv = ["/bin/sh", "-c", FILL, "fill", str(area)]
            else:
                limits, group = LIMITS, {}
                argv = rng.choice(commands(tenant, path))
            start = time.monotonic()   # its bucket fills from here (spawn is slow under TSan)
            g = sup.group(f"stress-{n}", limits, **group)
            g.spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            live.append((g, path, start))
            if len(live) < LIVE and rng.random() < 0.5:
                continue
        time.sleep(rng.uniform(0, 0.05))  # a varying moment to close at
        g, path, start = live.popleft()
        written = g.usage().resources["disk_write"].used
        allowed = RATE * (time.monotonic() - start) + LIMITS.burst_of("disk_write") + 65536
        assert written <= allowed, f"{g.name}: wrote {written} B, allowed {allowed:.0f}"
        g.close()
        path.unlink(missing_ok=True)
        closed += 1
    return closed


def test_groups_come_and_go_under_load(backend, tenant, tmp_path, no_leaks):
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")
    with Supervisor(backend=backend) as sup:
        closed = churn(sup, tenant, tmp_path, SECONDS, random.Random(seed))
        assert not sup.groups
    assert closed >= 5, f"only {closed} groups in {SECONDS}s"


def test_spawn_fails_at_each_step(backend, tenant, tmp_path, no_leaks):
    """native/fault.h makes the n-th failure point of a group's creation and
    spawn fail, for n = 1, 2... until a spawn passes them all, while
    another group hammers. Each failure reaches the caller as an error, and
    leaves no fd, child or group behind; the next spawn works."""
    with Supervisor(backend=backend) as sup:
        busy = sup.group("busy", LIMITS)
        busy.spawn([tenant, "write", str(tmp_path / "busy"), "65536", "60", "2", "1"],
                   stdout=subprocess.DEVNULL)
        fds, kids = group_fds(), children()
        failed = []
        for n in range(1, 30):
            lib.gov_fault_set(n)
            try:
                g = sup.group(f"fault-{n}", LIMITS)
                try:
                    p = g.spawn([tenant, "write", str(tmp_path / "w"), "4096", "0.01", "1", "1"],
                                stdout=subprocess.DEVNULL)
                    assert p.wait(10) == 0
                finally:
                    g.close()
            except GovernorError as e:
                failed.append(n)
                print(f"point {n}: {e!r}")
            finally:
                left = lib.gov_fault_left()
                lib.gov_fault_set(0)
            if left:
                break  # every point passed: that spawn ran through
            assert failed[-1:] == [n], f"point {n} failed, and the spawn went on as if not"
            assert [g.name for g in sup.groups] == ["busy"]
            same(group_fds, fds, f"point {n}: fds")
            same(children, kids, f"point {n}: children")
        else:
            pytest.fail("the spawn still passed failure points after 30")
        assert len(failed) >= 5, f"only {len(failed)} failure points on the way: {failed}"
        assert busy.usage().resources["disk_write"].used > 0
