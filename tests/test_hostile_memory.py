"""Issue 16, memory: a hostile tenant (tests/hostile/mempin_tenant.c) pins
memory outside its private mappings (memfd, /dev/shm, SysV shm, pipes, unix
sockets) as far as it can, under `memory` (deny and hold) and under
`memory_resident`. What the host sees it hold stays within the limit, and the
tenant gets ENOMEM as under a kernel memory cgroup."""
from __future__ import annotations

import errno
import glob
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tenants import compile_c, make_rootfs, needs_root, wait_for  # noqa: E402

from governor import Limits, Supervisor  # noqa: E402
from governor.container import Container  # noqa: E402

pytestmark = [needs_root, pytest.mark.timeout(60)]

MiB = 1 << 20
LIMIT = 32 * MiB
ATTACK_MIB = 128   # four times the limit
STEP_MIB = 4
# The engine's peak may pass the cap by what grows without a call (a
# stack's pages as they are touched): at most this much here.
SLACK = 1 * MiB


SOURCE = Path(__file__).resolve().parent / "hostile" / "mempin_tenant.c"


@pytest.fixture(scope="module")
def tenant(tmp_path_factory) -> str:
    return str(compile_c(SOURCE, tmp_path_factory.mktemp("mempin")))


@pytest.fixture(scope="module")
def static_tenant(tmp_path_factory) -> Path:
    return compile_c(SOURCE, tmp_path_factory.mktemp("mempin-static"), ("-static",))


def _shmem() -> int:
    """The host's shared memory (tmpfs, memfd, SysV), /proc/meminfo Shmem."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Shmem:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no Shmem in /proc/meminfo")


def _memfd_bytes(pids, own_pid) -> int:
    """Pages of the distinct memfds the processes hold by fd."""
    seen = {}
    for pid in pids:
        for fd in glob.glob(f"/proc/{pid}/fd/*"):
            try:
                if os.readlink(fd).startswith("/memfd:"):
                    st = os.stat(fd)
                    seen[st.st_dev, st.st_ino] = st.st_blocks * 512
            except OSError:
                pass
    return sum(seen.values())


def _devshm_bytes(pids, own_pid) -> int:
    """Pages of the tenant's files in /dev/shm (named by its own pid)."""
    return sum(os.stat(f).st_blocks * 512 for f in glob.glob(f"/dev/shm/mempin-{own_pid}-*"))


def _sysv_bytes(pids, own_pid) -> int:
    """Sizes of the SysV segments the processes created (/proc/sysvipc/shm)."""
    rows = Path("/proc/sysvipc/shm").read_text().splitlines()
    head = rows[0].split()
    size, cpid = head.index("size"), head.index("cpid")
    return sum(int(r.split()[size]) for r in rows[1:] if int(r.split()[cpid]) in pids)


# What the host sees a tenant hold, per mode (None: only Shmem as a whole).
HOST_VIEW = {"memfd-write": _memfd_bytes, "memfd-mmap": _memfd_bytes, "devshm": _devshm_bytes,
             "sysv": _sysv_bytes, "memfd-inflight": None}


def _attack(tenant, tmp_path, backend, mode, limits, total=ATTACK_MIB, step=STEP_MIB,
            container=None):
    """Runs the tenant until it has pinned what it could; returns its report,
    the host's view of what it holds (bytes), the Shmem delta, the usage."""
    out = tmp_path / "out"
    before = _shmem()
    argv = [tenant, mode, str(total), str(step)]
    if container:  # its files in its own /tmp, a tmpfs
        argv = ["sh", "-c", 'MEMPIN_DIR=/tmp exec "$@"', "sh", *argv]
    with Supervisor(backend=backend) as sup:
        g = sup.group("pin", limits, container=container)
        r, w = os.pipe()
        with open(out, "w") as f:
            p = g.spawn(argv, stdin=r, stdout=f)
        os.close(r)
        try:
            wait_for(lambda: "held=" in out.read_text() or p.poll() is not None, 30,
                     f"{mode}: the tenant's report")
            assert "held=" in out.read_text(), f"{mode}: exited {p.poll()}: {out.read_text()}"
            kv = dict(kv.split("=", 1) for kv in out.read_text().split())
            view = None if container else HOST_VIEW.get(mode)
            held_host = view(set(g.pids()), int(kv["pid"])) if view else None
            shmem = _shmem() - before
            u = g.usage()
        finally:
            os.close(w)
        assert p.wait(20) == 0
    return kv, held_host, shmem, u


@pytest.mark.parametrize("mode", ["memfd-write", "memfd-mmap", "memfd-inflight", "devshm", "sysv"])
def test_shared_memory_within_memory_deny(tenant, tmp_path, backend, mode):
    """Each way of pinning shared memory stops at the limit with ENOMEM:
    what the host sees the tenant hold stays within it (memfds in flight:
    the host's Shmem growth, with 8 MiB of slack for the rest of the
    machine)."""
    kv, held_host, shmem, u = _attack(tenant, tmp_path, backend, mode,
                                      Limits(memory=LIMIT, on_exhausted={"memory": "deny"}))
    held = int(kv["held"])
    assert int(kv["errno"]) == errno.ENOMEM, kv
    assert LIMIT // 2 <= held <= LIMIT, kv
    if held_host is not None:
        assert held_host <= LIMIT, f"{mode}: the host sees {held_host / MiB:.1f} MiB held"
        assert held_host >= held - STEP_MIB * MiB, "the host's view misses what it holds"
    else:  # in flight: only the host's total shows it
        assert shmem <= LIMIT + 8 * MiB, f"{mode}: Shmem grew {shmem / MiB:.1f} MiB"
    assert u.resources["memory"].denied_calls >= 1
    assert u.peak_memory <= LIMIT + SLACK


@pytest.mark.parametrize("mode", ["memfd-write-churn", "devshm-churn", "sysv-churn"])
def test_shared_memory_given_back_is_uncharged(tenant, tmp_path, backend, mode):
    """Objects closed, unlinked or removed one at a time give their memory
    back: 16 of 16 MiB each fit under 32 MiB."""
    kv, _, _, u = _attack(tenant, tmp_path, backend, mode,
                          Limits(memory=LIMIT, on_exhausted={"memory": "deny"}), 256, 16)
    assert (int(kv["held"]), int(kv["errno"])) == (256 * MiB, 0), kv
    assert u.resources["memory"].denied_calls == 0


def test_shared_memory_hold_mode_ends_as_stalled(tenant, tmp_path, backend):
    """In hold mode the growth waits; a lone tenant that can free nothing is
    stuck and gets ENOMEM (the stall rule), having held no more than the cap."""
    kv, held_host, _, u = _attack(tenant, tmp_path, backend, "memfd-write",
                                  Limits(memory=LIMIT, on_exhausted={"memory": "hold"}))
    assert int(kv["errno"]) == errno.ENOMEM, kv
    assert held_host <= LIMIT
    assert u.resources["memory"].held_calls >= 1


def test_secret_memory_is_refused(tenant, tmp_path, backend):
    """memfd_secret's pages are found by no file handle and bounded only by
    RLIMIT_MEMLOCK, which root passes: a memory-limited group gets ENOSYS."""
    kv, _, _, _ = _attack(tenant, tmp_path, backend, "memfd-secret",
                          Limits(memory=LIMIT, on_exhausted={"memory": "deny"}))
    assert (int(kv["held"]), int(kv["errno"])) == (0, errno.ENOSYS), kv


@pytest.mark.parametrize("mode", ["pipes", "unix-dgram"])
def test_queued_bytes_within_memory(tenant, tmp_path, backend, mode):
    """Pipes and unix sockets filled to the brim: each is charged what it can
    hold when made, so what the tenant queued stays within the limit; a pipe
    larger than 64 KiB is refused (EPERM), a forced send buffer past the
    cap fails (ENOMEM)."""
    kv, _, _, u = _attack(tenant, tmp_path, backend, mode,
                          Limits(memory=LIMIT, on_exhausted={"memory": "deny"}))
    assert int(kv["errno"]) == errno.ENOMEM, kv
    assert 0 < int(kv["held"]) <= LIMIT, kv
    if mode == "pipes":
        assert int(kv["setpipe_errno"]) == errno.EPERM
    else:
        assert int(kv["sndbufforce_errno"]) == errno.ENOMEM
    assert u.peak_memory <= LIMIT + SLACK


def test_memory_resident_sees_memfds(tenant, tmp_path, backend):
    """memfd + write is not in RSS; memory_resident counts it and kills the
    tenant (SIGKILL) long before it holds 256 MiB."""
    out = tmp_path / "out"
    before = _shmem()
    with Supervisor(backend=backend) as sup:
        g = sup.group("rss", Limits(memory_resident="64MiB"))
        r, w = os.pipe()
        with open(out, "w") as f:
            p = g.spawn([tenant, "memfd-write", "256", "1"], stdin=r, stdout=f)
        os.close(r)
        try:
            wait_for(lambda: p.poll() is not None or "held=" in out.read_text(), 30,
                     "the tenant killed or done")
            status = p.wait(10)
        finally:
            os.close(w)
        u = g.usage()
    assert status == -signal.SIGKILL, f"not killed: {out.read_text()}"
    assert u.resident_kills == 1
    assert _shmem() - before < 64 * MiB  # its memfds went with it


@pytest.mark.parametrize("mode, total, step, held", [
    ("sysv", ATTACK_MIB, STEP_MIB, None), ("devshm", ATTACK_MIB, STEP_MIB, None),
    ("sysv-churn", 256, 16, 256 * MiB), ("devshm-churn", 256, 16, 256 * MiB)])
def test_container_ipc_namespace_and_tmp(static_tenant, tmp_path, backend, mode, total, step,
                                         held):
    """In a container, SysV segments live in its own IPC namespace (counted
    there) and its /tmp is a tmpfs of its own: both count against memory and
    come back when removed."""
    rootfs = make_rootfs(tmp_path / "root")
    shutil.copy(static_tenant, rootfs / "bin" / "mempin")
    box = Container(rootfs=str(rootfs), state_dir=str(tmp_path / "state"))
    kv, _, shmem, u = _attack("/bin/mempin", tmp_path, backend, mode,
                              Limits(memory=LIMIT, on_exhausted={"memory": "deny"}), total, step,
                              container=box)
    if held is None:
        assert int(kv["errno"]) == errno.ENOMEM, kv
        assert LIMIT // 2 <= int(kv["held"]) <= LIMIT, kv
        assert shmem <= LIMIT + 8 * MiB, f"{mode}: Shmem grew {shmem / MiB:.1f} MiB"
    else:
        assert (int(kv["held"]), int(kv["errno"])) == (held, 0), kv


def test_held_growth_goes_on_when_memory_comes_back(tenant, tmp_path, backend):
    """In hold mode a write that would pass the cap waits while another
    process of the group holds memfds, and goes on once that one exits."""
    first_out, second_out = tmp_path / "first", tmp_path / "second"
    with Supervisor(backend=backend) as sup:
        g = sup.group("hold", Limits(memory=LIMIT, on_exhausted={"memory": "hold"}))
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        with open(first_out, "w") as f:
            first = g.spawn([tenant, "memfd-write", "20", "4"], stdin=r1, stdout=f)
        wait_for(lambda: "held=" in first_out.read_text(), 20, "the first tenant's memfds")
        with open(second_out, "w") as f:
            second = g.spawn([tenant, "memfd-write", "20", "4"], stdin=r2, stdout=f)
        os.close(r1)
        os.close(r2)
        try:
            wait_for(lambda: g.usage().resources["memory"].held_calls >= 1, 20,
                     "the second tenant's write held")
            assert "held=" not in second_out.read_text()
            os.close(w1)  # the first gives its 20 MiB back
            w1 = None
            assert first.wait(10) == 0
            wait_for(lambda: "held=" in second_out.read_text(), 20, "the second tenant done")
        finally:
            for w in (w1, w2):
                if w is not None:
                    os.close(w)
        assert second.wait(10) == 0
    assert "held=20971520 errno=0" in second_out.read_text()


def test_memfd_handed_to_the_group_counts(tenant, tmp_path, backend):
    """A memfd the group holds open for writing counts though another
    process made it (a write that raced its classification, with another
    thread putting the memfd under the fd number, grew it uncharged): the
    recount finds it in the fd table. 24 MiB of it leave 8 of 32."""
    out = tmp_path / "out"
    memfd = os.memfd_create("handed")
    os.write(memfd, b"h" * (24 * MiB))
    os.lseek(memfd, 0, os.SEEK_SET)
    with Supervisor(backend=backend) as sup:
        g = sup.group("handed", Limits(memory=LIMIT, on_exhausted={"memory": "deny"}))
        with open(out, "w") as f:
            p = g.spawn([tenant, "memfd-write", str(ATTACK_MIB), "2"], stdin=memfd, stdout=f)
        os.close(memfd)  # the tenant reads it to its end, then exits
        assert p.wait(20) == 0
    kv = dict(kv.split("=", 1) for kv in out.read_text().split())
    assert int(kv["errno"]) == errno.ENOMEM, kv
    assert int(kv["held"]) <= LIMIT - 24 * MiB, kv
