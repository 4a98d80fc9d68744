"""Rate limits, measured: disk_write, disk_read, net_send, net_recv.

The tenant is a small C program (tests/tenants/rates_tenant.c, built
statically so that no dynamic loader reads count against disk_read). It
measures its own bytes and elapsed time and prints "BYTES SECONDS" on stdout
(a pipe: pipes are never charged).

A token bucket that starts full (burst B) lets through at most
rate * t + max(B, largest call) bytes in t seconds; checks allow that plus
3 % of rate * t. Below the limit only a loose bound, half of it: a tenant
falls short of its limit when it does not get the CPU to make its calls, which
the engine does not control (4 threads under ptrace on a loaded 2-core machine
moved 5.2 MiB/s of 8).
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from _tenants import TENANTS, compile_c, read_line, wait_for

from governor import Limits, Supervisor

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

KiB, MiB = 1024, 1024 * 1024
GOVERNOR = Path(sys.executable).with_name("governor")
TOL = 0.03
LOW = 0.5   # the least share of its limit a tenant that wanted more must get


@pytest.fixture(scope="module")
def tenant(tmp_path_factory) -> str:
    return str(compile_c(TENANTS / "rates_tenant.c", tmp_path_factory.mktemp("tenant"),
                         ("-static", "-pthread")))


@pytest.fixture
def sup(backend):
    with Supervisor(backend=backend) as s:
        yield s


def _read_until_eof(fd: int, deadline: float) -> bytes:
    chunks = []
    for _ in range(100000):
        left = deadline - time.monotonic()
        r, _, _ = select.select([fd], [], [], max(left, 0))
        if not r:
            raise TimeoutError("tenant output not finished in time")
        data = os.read(fd, 65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)
    raise AssertionError("too much output")


class Run:
    """A tenant spawned in a group with stdout on a pipe."""

    def __init__(self, group, argv, timeout=15.0):
        self.deadline = time.monotonic() + timeout
        r, w = os.pipe()
        try:
            self.proc = group.spawn(argv, stdout=w)
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)
        self.fd = r

    def line(self) -> bytes:
        return read_line(self.fd, self.deadline - time.monotonic())

    def finish(self) -> tuple[int, str]:
        try:
            out = _read_until_eof(self.fd, self.deadline)
        finally:
            os.close(self.fd)
        rc = self.proc.wait(timeout=max(self.deadline - time.monotonic(), 0.1))
        return rc, out.decode()


def run_tenant(group, argv, timeout=15.0) -> tuple[int, float]:
    """Runs the tenant to the end; returns (bytes, seconds) it printed."""
    rc, out = Run(group, argv, timeout).finish()
    assert rc == 0, f"tenant exited {rc}: {out!r}"
    nbytes, secs = out.split()[-2:]
    return int(nbytes), float(secs)


def check_rate(what: str, nbytes: float, secs: float, rate: float, allowance: float) -> None:
    expect = rate * secs
    lo, hi = expect * LOW, expect * (1 + TOL) + allowance
    print(f"\n{what}: {nbytes} B in {secs:.3f} s = {nbytes / secs / MiB:.3f} MiB/s "
          f"(limit {rate / MiB:.3f} MiB/s; allowed {lo:.0f}..{hi:.0f} B)")
    assert lo <= nbytes <= hi, (
        f"{what}: {nbytes} B in {secs:.3f} s = {nbytes / secs / MiB:.3f} MiB/s, "
        f"limit {rate / MiB:.3f} MiB/s: outside {lo:.0f}..{hi:.0f}")


def used(group, key: str) -> int:
    return group.usage().resources[key].used


# ---- servers outside the group -------------------------------------------

class Sink:
    """Accepts one TCP connection on 127.0.0.1 and counts what it receives."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.received = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(10)
                for _ in range(10**7):
                    data = conn.recv(1 << 20)
                    if not data:
                        return
                    self.received += len(data)
        except BaseException as e:  # reported by close()
            self.error = e

    def close(self) -> int:
        self.thread.join(15)
        self.listener.close()
        assert not self.thread.is_alive(), "sink did not finish"
        assert self.error is None, f"sink failed: {self.error!r}"
        return self.received


class Source:
    """Accepts one TCP connection on 127.0.0.1 and sends 1 KiB messages into
    it as fast as it takes them, until the peer goes away."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        msg = b"m" * KiB
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(2)
            for _ in range(10**8):
                if self.stop.is_set():
                    return
                try:
                    conn.sendall(msg)
                except OSError:  # the tenant closed, or timed out: done
                    return
                self.sent += len(msg)

    def close(self):
        self.stop.set()
        self.thread.join(15)
        self.listener.close()
        assert not self.thread.is_alive()


# ---- 1, 2: disk_write --------------------------------------------------------

DISK_RATE = 8 * MiB


@pytest.mark.parametrize("chunk", [4 * KiB, 1 * MiB], ids=["4KiB", "1MiB"])
def test_disk_write_rate(sup, tenant, tmp_path, chunk):
    g = sup.group("w", Limits(disk_write=DISK_RATE))
    path = tmp_path / "out"
    _, secs = run_tenant(g, [tenant, "write", str(path), str(chunk), "3", "1", "1"])
    size = path.stat().st_size
    check_rate(f"disk_write {chunk} B calls", size, secs, DISK_RATE,
               max(g.limits.burst_of("disk_write"), chunk))
    assert used(g, "disk_write") == size


@pytest.mark.parametrize("threads,procs", [(4, 1), (1, 3), (2, 3)],
                         ids=["4threads", "3procs", "3procs-2threads"])
def test_disk_write_rate_shared_by_threads_and_processes(sup, tenant, tmp_path, threads, procs):
    chunk = 64 * KiB
    g = sup.group("w", Limits(disk_write=DISK_RATE))
    path = tmp_path / "out"
    _, secs = run_tenant(g, [tenant, "write", str(path), str(chunk), "3", str(threads),
                             str(procs)])
    size = path.stat().st_size
    check_rate(f"disk_write {threads} threads x {procs} procs", size, secs, DISK_RATE,
               g.limits.burst_of("disk_write") + chunk)
    assert used(g, "disk_write") == size


# ---- 3: net_send ---------------------------------------------------------------

def test_net_send_rate_tcp_loopback(sup, tenant):
    rate, chunk = 4 * MiB, 64 * KiB
    g = sup.group("s", Limits(net_send=rate))
    sink = Sink()
    try:
        sent, secs = run_tenant(g, [tenant, "send", str(sink.port), str(chunk), "3"])
    finally:
        received = sink.close()
    check_rate("net_send tcp", sent, secs, rate, max(g.limits.burst_of("net_send"), chunk))
    assert received == sent
    assert used(g, "net_send") == sent


# ---- 4: net_recv ---------------------------------------------------------------

def test_net_recv_charged_what_recv_returned_tcp(sup, tenant):
    """recv(fd, buf, 1 MiB) of a stream fed 1 KiB at a time: charged the bytes
    returned, so the tenant reaches the limit, not limit/1024."""
    rate, rcvbuf = 2 * MiB, 128 * KiB
    g = sup.group("r", Limits(net_recv=rate))
    src = Source()
    try:
        got, secs = run_tenant(g, [tenant, "recv", str(src.port), str(MiB), "3", str(rcvbuf)])
    finally:
        src.close()
    charged = used(g, "net_recv")
    print(f"\nnet_recv tcp: tenant received {got} B, charged {charged} B")
    # The kernel doubles SO_RCVBUF: one receive returns at most ~2*rcvbuf.
    check_rate("net_recv tcp", got, secs, rate, g.limits.burst_of("net_recv") + 2 * rcvbuf)
    assert abs(charged - got) <= 0.03 * got, f"charged {charged} B for {got} B received"


def test_net_recv_charged_what_recv_returned_udp(sup, tenant):
    rate, dgram = 2 * MiB, KiB
    g = sup.group("r", Limits(net_recv=rate))
    run = Run(g, [tenant, "recvudp", str(64 * KiB), "3", str(64 * KiB)])
    port = int(run.line())
    stop = threading.Event()

    def flood():  # ~8 MiB/s offered, 4x the limit; excess datagrams are dropped
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            msg = b"d" * dgram
            for _ in range(100000):
                if stop.wait(0.002):
                    return
                for _ in range(16):
                    s.sendto(msg, ("127.0.0.1", port))

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    try:
        rc, out = run.finish()
    finally:
        stop.set()
        t.join(10)
    assert rc == 0, out
    got, secs = (float(x) for x in out.split()[-2:])
    charged = used(g, "net_recv")
    print(f"\nnet_recv udp: tenant received {got:.0f} B, charged {charged} B")
    check_rate("net_recv udp", got, secs, rate, g.limits.burst_of("net_recv") + dgram)
    assert abs(charged - got) <= 0.03 * got, f"charged {charged} B for {got:.0f} B received"


# ---- 5: disk_read ----------------------------------------------------------------

def _make_file(path: Path, size: int) -> Path:
    block = b"r" * MiB
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            f.write(block)
        f.write(block[: size % MiB])
    return path


def test_disk_read_rate(sup, tenant, tmp_path):
    rate = 8 * MiB
    src = _make_file(tmp_path / "big", 40 * MiB)
    g = sup.group("rd", Limits(disk_read=rate))
    got, secs = run_tenant(g, [tenant, "read", str(src), str(MiB), "3"])
    check_rate("disk_read 1 MiB calls", got, secs, rate, max(g.limits.burst_of("disk_read"), MiB))
    assert used(g, "disk_read") == got


def test_disk_read_past_eof_charged_what_it_returns(sup, tenant, tmp_path):
    src = _make_file(tmp_path / "small", KiB)
    g = sup.group("rd", Limits(disk_read=8 * MiB))
    got, _ = run_tenant(g, [tenant, "readonce", str(src), str(MiB)])
    assert got == KiB
    assert used(g, "disk_read") == KiB


# ---- 6: holds ----------------------------------------------------------------------

def test_holds_are_counted(sup, tenant, tmp_path):
    # 1 MiB at 1 MiB/s, bucket 64 KiB: ~0.75 s of holds over 3 calls.
    g = sup.group("h", Limits(disk_write="1MiB/s", burst={"disk_write": "64KiB"}))
    _, _ = run_tenant(g, [tenant, "sigwrite", str(tmp_path / "out"), str(256 * KiB), "4",
                          "-", "0"])
    r = g.usage().resources["disk_write"]
    print(f"\nholds: {r.held_calls} calls, {r.held_seconds:.3f} s")
    assert r.held_calls >= 3
    assert 0.3 < r.held_seconds < 5
    assert r.used == MiB
    assert g.usage().held_now == 0


# ---- 7, 8: signals during a hold ------------------------------------------------
# A signal meets a held call as it would meet the call natively: a write to a
# file is not interrupted (the handler runs once it is done), a send on a
# socket that would block is (EINTR, or a restart with SA_RESTART).

TINY = Limits(disk_write="64KiB/s", burst={"disk_write": "64KiB"})
# "At once" against a hold of ~16 s (1 MiB of debt at 64 KiB/s): a few
# seconds, which a loaded machine may take to run the handler or reap.
AT_ONCE = 5.0
SLOW = {"burst": {"net_send": "64KiB"}}


def _held(g) -> bool:
    return g.usage().held_now > 0


def test_handled_signal_waits_for_a_held_file_write(sup, tenant, tmp_path):
    """Without SA_RESTART: the write is not interrupted, as a write to a
    regular file never is; the handler runs once it is done."""
    g = sup.group("sig", Limits(disk_write="1MiB/s", burst={"disk_write": "64KiB"}))
    marker, out = tmp_path / "handled", tmp_path / "out"
    # The first 1 MiB write goes (bucket full, leaves debt); the second waits ~1 s.
    run = Run(g, [tenant, "sigwrite", str(out), str(MiB), "2", str(marker), "0"])
    wait_for(lambda: _held(g), 5, "the second write to be held")
    run.proc.send_signal(signal.SIGUSR1)
    # Were the write interrupted, the handler would run within milliseconds:
    # watched for 0.3 s, or until the hold ends (~1 s; sooner if this process
    # was kept off the CPU meanwhile).
    watch = time.monotonic() + 0.3
    for _ in range(1000):
        handled = marker.exists()
        if time.monotonic() > watch or not _held(g):
            break
        assert not handled, "the handler ran during the held write"
        time.sleep(0.01)
    rc, text = run.finish()
    assert rc == 0, "a held write to a file failed (EINTR?)"
    assert text.split()[0] == "1"  # the signal was handled, after the write
    assert marker.exists()
    assert out.stat().st_size == 2 * MiB
    assert used(g, "disk_write") == 2 * MiB


def test_handled_signal_interrupts_a_held_send(sup, tenant, tmp_path):
    """Without SA_RESTART: a held send on a socket fails with EINTR once the
    handler has run, at once; the interrupted call is not charged."""
    g = sup.group("sig", Limits(net_send="64KiB/s", **SLOW))
    marker, sink = tmp_path / "handled", Sink()
    try:
        # The first 1 MiB send goes (bucket full, leaves debt); the second waits ~16 s.
        run = Run(g, [tenant, "sigwrite", f"tcp:{sink.port}", str(MiB), "2", str(marker), "0"])
        wait_for(lambda: _held(g), 5, "the second send to be held")
        t0 = time.monotonic()
        run.proc.send_signal(signal.SIGUSR1)
        wait_for(marker.exists, AT_ONCE, "the SIGUSR1 handler to run")
        handled = time.monotonic() - t0
        rc, _ = run.finish()
    finally:
        received = sink.close()
    elapsed = time.monotonic() - t0
    print(f"\nSIGUSR1 handled after {handled * 1000:.1f} ms, exit after {elapsed * 1000:.1f} ms")
    assert rc == 4  # send returned EINTR
    assert handled < AT_ONCE and elapsed < AT_ONCE
    assert received == MiB
    assert used(g, "net_send") == MiB  # the interrupted call was not charged


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_fatal_signal_during_a_hold_kills_at_once(sup, tenant, tmp_path, sig):
    """SIGKILL, and SIGTERM without a handler, end a task held in a file
    write at once, as they end a task blocked natively; the held call was
    never charged."""
    g = sup.group("kill", TINY)
    run = Run(g, [tenant, "sigwrite", str(tmp_path / "out"), str(MiB), "2", "-", "0"])
    wait_for(lambda: _held(g), 5, "the second write to be held")
    t0 = time.monotonic()
    run.proc.send_signal(sig)
    rc, _ = run.finish()
    elapsed = time.monotonic() - t0
    print(f"\n{sig.name}: dead after {elapsed * 1000:.1f} ms")
    assert rc == -sig
    assert elapsed < AT_ONCE
    assert used(g, "disk_write") == MiB


def test_restarted_call_is_not_charged_twice(sup, tenant, tmp_path):
    """SA_RESTART: a held send interrupted by a handled signal comes back as a
    new call; only the call that runs is charged."""
    g = sup.group("restart", Limits(net_send="1MiB/s", **SLOW))
    sink = Sink()
    try:
        run = Run(g, [tenant, "sigwrite", f"tcp:{sink.port}", str(512 * KiB), "4", "-", "1"])
        sent = 0
        deadline = time.monotonic() + 10
        for _ in range(400):
            if run.proc.poll() is not None or time.monotonic() > deadline:
                break
            if _held(g) and sent < 20:
                run.proc.send_signal(signal.SIGUSR1)
                sent += 1
            try:
                run.proc.wait(timeout=0.05)
            except TimeoutError:
                pass
        rc, text = run.finish()
    finally:
        received = sink.close()
    handled = int(text.split()[0])
    charged = used(g, "net_send")
    print(f"\nrestart: {sent} signals sent, {handled} handled, received {received} B, "
          f"charged {charged} B")
    assert rc == 0
    assert handled >= 3
    assert received == 4 * 512 * KiB
    assert charged == received


# ---- 9: sendfile, splice, copy_file_range ---------------------------------------

XFER_RATE, XFER_CHUNK = 4 * MiB, 64 * KiB


def test_sendfile_charged(sup, tenant, tmp_path):
    src = _make_file(tmp_path / "src", 8 * MiB)
    g = sup.group("sf", Limits(net_send=XFER_RATE, disk_read=64 * MiB))
    sink = Sink()
    try:
        moved, secs = run_tenant(g, [tenant, "xfer", "sendfile", str(src), str(sink.port),
                                     "2.5", str(XFER_CHUNK)])
    finally:
        received = sink.close()
    check_rate("sendfile", moved, secs, XFER_RATE, g.limits.burst_of("net_send") + XFER_CHUNK)
    assert received == moved
    assert used(g, "net_send") == moved
    assert used(g, "disk_read") == moved


@pytest.mark.parametrize("kind", ["splice", "copy_file_range"])
def test_file_transfer_charged(sup, tenant, tmp_path, kind):
    src = _make_file(tmp_path / "src", 8 * MiB)
    dst = tmp_path / "dst"
    g = sup.group("x", Limits(disk_write=XFER_RATE))
    moved, secs = run_tenant(g, [tenant, "xfer", kind, str(src), str(dst), "2.5",
                                 str(XFER_CHUNK)])
    check_rate(kind, moved, secs, XFER_RATE, g.limits.burst_of("disk_write") + XFER_CHUNK)
    assert dst.stat().st_size == moved
    assert used(g, "disk_write") == moved


# ---- 10: the command line -------------------------------------------------------

def _governor(args, timeout=20, **kw):
    return subprocess.run([str(GOVERNOR), "run", *args], timeout=timeout,
                          capture_output=True, text=True, **kw)


def test_cli_stats_json(tenant, tmp_path, backend):
    stats, out = tmp_path / "stats.json", tmp_path / "out"
    p = _governor(["--backend", backend, "--limit", "disk_write=4MiB/s", "--stats-json", str(stats), "--name", "cli",
                   "--", tenant, "write", str(out), str(64 * KiB), "0.5", "1", "1"])
    assert p.returncode == 0, p.stderr
    report = json.loads(stats.read_text())
    assert report["group"] == "cli"
    assert report["exit_status"] == 0
    assert report["usage"]["resources"]["disk_write"]["used"] == out.stat().st_size > 0


@pytest.mark.parametrize("script,status", [("exit 3", 3), ("kill -TERM $$", 143)])
def test_cli_exit_status(script, status, backend):
    p = _governor(["--backend", backend, "--limit", "net_send=1MiB/s", "--", "sh", "-c", script])
    assert p.returncode == status, p.stderr


def _catches(pid: int, sig: int) -> bool:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except OSError:
        pass
    return False


def test_cli_forwards_sigterm(tmp_path, backend):
    marker = tmp_path / "started"
    p = subprocess.Popen([str(GOVERNOR), "run", "--backend", backend, "--limit", "disk_write=1MiB/s", "--", "sh", "-c",
                          f": > {marker}; exec sleep 30"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: marker.exists() and _catches(p.pid, signal.SIGTERM), 10,
                 "the command to start and governor to catch SIGTERM")
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=10)
        assert p.returncode == 143, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


# ---- receives and sends whose cost the engine gets wrong ------------------------
# Found while writing this file; see the xfail reasons.

def test_recvmmsg_udp_charged_every_datagram(sup, tenant):
    g = sup.group("mm", Limits(net_recv="100MiB/s"))
    got, _ = run_tenant(g, [tenant, "recvmmsg", "64"])
    assert got == 64 * KiB
    charged = used(g, "net_recv")
    assert charged >= 0.97 * got, f"recvmmsg returned {got} B, charged {charged} B"


def test_recv_waitall_charged_what_it_returns(sup, tenant):
    size = 256 * KiB
    g = sup.group("wa", Limits(net_recv="100MiB/s"))
    lst = socket.create_server(("127.0.0.1", 0))
    lst.settimeout(10)
    try:
        run = Run(g, [tenant, "waitall", str(lst.getsockname()[1]), str(size)])
        conn, _ = lst.accept()
        with conn:
            # The data comes in two parts; the call returns only with all of it.
            conn.sendall(b"a" * KiB)
            conn.sendall(b"a" * (size - KiB))
            rc, out = run.finish()
    finally:
        lst.close()
    assert rc == 0 and int(out.split()[0]) == size
    charged = used(g, "net_recv")
    assert charged >= 0.97 * size, f"recv(MSG_WAITALL) returned {size} B, charged {charged} B"


def test_nonblocking_send_eagain_not_charged(sup, tenant):
    chunk = 64 * KiB
    g = sup.group("nb", Limits(net_send="64MiB/s"))
    # A listener that never accepts: the connection completes in its backlog and
    # takes data until its receive buffer is full, then the sender gets EAGAIN.
    lst = socket.create_server(("127.0.0.1", 0))
    try:
        rc, out = Run(g, [tenant, "nbsend", str(lst.getsockname()[1]), str(chunk), "200"]).finish()
    finally:
        lst.close()
    assert rc == 0, out
    eagain, sent = (int(x) for x in out.split()[:2])
    charged = used(g, "net_send")
    print(f"\nnon-blocking send: {sent} B sent, {eagain} EAGAIN, charged {charged} B")
    assert eagain > 0
    assert charged <= sent + chunk, f"{sent} B sent, {eagain} EAGAINs, charged {charged} B"


def test_recv_so_rcvtimeo_still_times_out(sup, tenant):
    g = sup.group("to", Limits(net_recv="1MiB/s"))
    run = Run(g, [tenant, "rcvtimeo", "300"], timeout=3)
    try:
        rc, out = run.finish()
    except TimeoutError:
        pytest.fail("recv with SO_RCVTIMEO=300ms still blocked after 3 s")
    err, secs = out.split()
    assert rc == 0 and int(err) == 11  # EAGAIN
    assert float(secs) < 2
