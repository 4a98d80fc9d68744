"""Tenants that try to get around the interception: static binaries (no libc
to hook), the i386 and x32 system call entries, and io_uring."""
from __future__ import annotations

import errno
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tenants import compile_tenant, needs_root, read_kv  # noqa: E402

from governor import Limits, Supervisor  # noqa: E402

pytestmark = [needs_root, pytest.mark.timeout(30)]

MiB = 1 << 20
BUSYBOX = "/bin/busybox"


@pytest.fixture(scope="module")
def tenant(tmp_path_factory) -> str:
    return str(compile_tenant(tmp_path_factory.mktemp("tenant")))


def _is_static(path: str) -> bool:
    """No PT_INTERP program header: statically linked."""
    import struct
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


@pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="busybox-static is not installed")
def test_static_busybox_dd_is_rate_limited(tmp_path, backend):
    assert _is_static(BUSYBOX), "the test needs a statically linked busybox"
    target = tmp_path / "out.bin"
    with Supervisor(backend=backend) as sup:
        g = sup.group("dd", Limits(disk_write="1MiB/s"))
        start = time.monotonic()
        p = g.spawn([BUSYBOX, "dd", "if=/dev/zero", f"of={target}", "bs=64k", "count=48"])
        assert p.wait(11) == 0
        elapsed = time.monotonic() - start
        u = g.usage()
    assert target.stat().st_size == 3 * MiB
    # 3 MiB at 1 MiB/s with a 0.1 s bucket: ~2.9 s; coarse bound for a noisy box.
    assert elapsed >= 1.8, f"3 MiB written in {elapsed:.2f}s under 1MiB/s"
    assert u.resources["disk_write"].used >= 3 * MiB
    assert u.resources["disk_write"].held_calls >= 1


def test_i386_and_x32_entries_are_refused(tenant, tmp_path, backend):
    out, target = tmp_path / "out", tmp_path / "target"
    with Supervisor(backend=backend) as sup:
        g = sup.group("compat", Limits(disk_write="1MiB/s"))
        p = g.spawn([tenant, "compat", str(out), str(target)])
        assert p.wait(10) == 0
        u = g.usage()
    r = {k: int(v) for k, v in read_kv(out).items()}
    assert r["i386"] == -errno.ENOSYS, r          # int $0x80 write: -ENOSYS in eax
    assert r["size1"] == 0, r                      # and nothing was written
    assert (r["x32"], r["x32errno"]) == (-1, errno.ENOSYS), r
    assert r["size2"] == 0, r
    assert (r["native"], r["size3"]) == (5, 5), r  # the ordinary write works
    assert target.read_bytes() == b"hello"
    assert u.compat_denied >= 1
    # The native write, and the result line the tenant wrote to `out`.
    assert u.resources["disk_write"].used == 5 + len(out.read_bytes())


def test_i386_entry_not_governed_without_limit_on_that_call(tenant, tmp_path, backend):
    """Without a disk/net limit, write is not intercepted at all: the i386
    entry behaves as on the bare kernel (the control case of the above)."""
    out, target = tmp_path / "out", tmp_path / "target"
    with Supervisor(backend=backend) as sup:
        g = sup.group("compat", Limits(processes=10))
        p = g.spawn([tenant, "compat", str(out), str(target)])
        assert p.wait(10) == 0
        u = g.usage()
    r = {k: int(v) for k, v in read_kv(out).items()}
    assert (r["native"], r["size3"]) == (5, r["size2"] + 5), r
    assert u.compat_denied == 0


@pytest.mark.parametrize("limits", [
    Limits(),
    Limits(processes=10),
    Limits(memory="256MiB"),
    Limits(disk_write="1MiB/s", net_recv="1MiB/s"),
], ids=["none", "processes", "memory", "rates"])
def test_io_uring_setup_is_enosys(tenant, tmp_path, limits, backend):
    out = tmp_path / "out"
    with Supervisor(backend=backend) as sup:
        g = sup.group("uring", limits)
        p = g.spawn([tenant, "iouring", str(out)])
        assert p.wait(10) == 0
    r = {k: int(v) for k, v in read_kv(out).items()}
    assert (r["ret"], r["errno"]) == (-1, errno.ENOSYS), r
