"""Monitoring: state files and `governor ps`, the Prometheus endpoint."""
import json
import os
import pty
import select
import struct
import fcntl
import termios
import time
import subprocess
import sys
import urllib.request

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from _tenants import wait_for
from governor import Limits, Supervisor
from governor.monitor.metrics import serve_metrics
from governor.monitor.state import read_states

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (pid namespaces)")
GOVERNOR = [sys.executable, "-m", "governor"]


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    d = tmp_path / "run"
    monkeypatch.setenv("GOVERNOR_RUN_DIR", str(d))
    return d


def test_ps_shows_a_running_group_then_forgets_it(run_dir, tmp_path):
    r, w = os.pipe()
    gov = subprocess.Popen(GOVERNOR + ["run", "--name", "tenant-a", "--limit", "processes=7",
                                       "--limit", "disk_write=2MiB/s", "--", "/bin/sh", "-c",
                                       "read x"], stdin=r)
    os.close(r)
    try:
        wait_for(lambda: list(run_dir.glob("*.json")), 10, "the state file")
        out = subprocess.run(GOVERNOR + ["ps"], capture_output=True, text=True, check=True).stdout
        header, line = out.splitlines()
        assert header.split()[:4] == ["GROUP", "PID", "CPU%", "TASKS"]
        assert line.split()[:2] == ["tenant-a", str(gov.pid)]
        assert "of 7" in line and "of 2.0MiB/s" in line
        docs = json.loads(subprocess.run(GOVERNOR + ["ps", "--json"], capture_output=True,
                                         text=True, check=True).stdout)
        assert [d["group"] for d in docs] == ["tenant-a"]
        assert docs[0]["limits"]["processes"] == 7
        assert docs[0]["usage"]["tasks"] >= 1
        assert 0 < docs[0]["usage"]["pss"] <= docs[0]["usage"]["resident"]
    finally:
        os.write(w, b"done\n")
        os.close(w)
        assert gov.wait(10) == 0
    assert not list(run_dir.glob("*")), "state file left behind"
    assert subprocess.run(GOVERNOR + ["ps"], capture_output=True, text=True,
                          check=True).stdout.splitlines()[1:] == []


def test_every_group_of_a_supervisor_has_its_state_file(run_dir):
    """Groups on different engine threads have ids of their own engine:
    their state files must not overwrite each other."""
    with Supervisor(engines=2) as sup:
        procs = [sup.group(f"g{i}", Limits(processes=5)).spawn(["/bin/sleep", "30"])
                 for i in range(4)]
        try:
            wait_for(lambda: len(read_states()) == 4, 10, "four state files")
            assert sorted(d["group"] for d in read_states()) == ["g0", "g1", "g2", "g3"]
        finally:
            for p in procs:
                p.kill()


def test_stale_state_file_of_a_dead_supervisor_is_removed(run_dir):
    run_dir.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = run_dir / f"{dead.pid}-0.json"
    stale.write_text(json.dumps({"version": 1, "group": "ghost", "supervisor_pid": dead.pid,
                                 "supervisor_start": 0.0}))
    assert read_states(run_dir) == []
    assert not stale.exists()


def test_metrics_endpoint_reports_counters_and_limits(run_dir, tmp_path, backend):
    out = tmp_path / "data"
    with Supervisor(backend=backend) as sup:
        g = sup.group("metered", Limits(disk_write="64MiB/s", processes=16))
        p = g.spawn(["dd", "if=/dev/zero", f"of={out}", "bs=64k", "count=32"],
                    stderr=subprocess.DEVNULL)
        assert p.wait(20) == 0
        server = serve_metrics(sup, "127.0.0.1:0")
        try:
            url = f"http://127.0.0.1:{server.server_port}/metrics"
            text = urllib.request.urlopen(url, timeout=10).read().decode()
        finally:
            server.shutdown()
            server.server_close()
    samples = {(s.name, s.labels.get("resource")): s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.labels.get("group") == "metered"}
    assert samples[("governor_bytes_total", "disk_write")] == out.stat().st_size == 32 * 65536
    assert samples[("governor_limit", "disk_write")] == 64 * 2**20
    assert samples[("governor_limit", "processes")] == 16
    assert samples[("governor_notifications_total", None)] >= 32
    assert ("governor_cpu_seconds_total", None) in samples
    assert ("governor_memory_pss_bytes", None) in samples


def test_bad_metrics_address_fails_before_anything_starts(run_dir, tmp_path):
    marker = tmp_path / "ran"
    res = subprocess.run(GOVERNOR + ["run", "--metrics", "localhost", "--", "touch",
                                     str(marker)], capture_output=True, text=True)
    assert res.returncode == 2
    assert "--metrics" in res.stderr and "ADDRESS:PORT" in res.stderr
    assert not marker.exists()


def _read_until(fd, needle: bytes, timeout: float) -> bytes:
    """Reads a pty until needle appears (bounded in time)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not seen; screen so far: {seen[-2000:]!r}")
        if select.select([fd], [], [], left)[0]:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # EIO: the other side closed
                break
    return seen


def test_top_shows_groups_sorts_and_quits_on_q(run_dir):
    r, w = os.pipe()
    gov = subprocess.Popen(GOVERNOR + ["run", "--name", "top-tenant", "--limit",
                                       "net_send=1MiB/s", "--", "/bin/sh", "-c", "read x"],
                           stdin=r)
    os.close(r)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 160, 0, 0))
    top = None
    try:
        wait_for(lambda: list(run_dir.glob("*.json")), 10, "the state file")
        top = subprocess.Popen(GOVERNOR + ["top", "--interval", "0.2"], stdin=slave,
                               stdout=slave, stderr=slave, env={**os.environ, "TERM": "xterm"},
                               start_new_session=True)
        os.close(slave)
        slave = None
        _read_until(master, b"top-tenant", 10)
        os.write(master, b"c")
        # curses redraws only what changed: the title's "net" becomes "cpu".
        _read_until(master, b"cpu", 10)
        os.write(master, b"q")
        assert top.wait(10) == 0
    finally:
        if slave is not None:
            os.close(slave)
        if top and top.poll() is None:
            top.kill()
            top.wait(10)
        os.close(master)
        os.write(w, b"done\n")
        os.close(w)
        assert gov.wait(10) == 0


def test_metrics_port_in_use_fails_before_the_command_runs(run_dir, tmp_path):
    import socket
    marker = tmp_path / "ran"
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        res = subprocess.run(GOVERNOR + ["run", "--metrics", f"127.0.0.1:{port}", "--", "touch",
                                         str(marker)], capture_output=True, text=True)
    assert res.returncode == 125 and f"127.0.0.1:{port}" in res.stderr, res.stderr
    assert not marker.exists()


def test_stats_json_into_a_missing_directory_fails_before_anything_starts(tmp_path):
    marker = tmp_path / "ran"
    res = subprocess.run(GOVERNOR + ["run", "--stats-json", str(tmp_path / "no" / "s.json"),
                                     "--", "touch", str(marker)], capture_output=True, text=True)
    assert res.returncode == 2 and "--stats-json" in res.stderr, res.stderr
    assert not marker.exists()


def test_many_groups_are_sampled_within_the_samplers_budget(run_dir):
    """200 groups of one process each: every group gets its state file (and
    two engines' groups with equal ids get two), while the sampler thread
    uses a small share of a CPU (every group every 0.2 s did not fit in one)."""
    with Supervisor() as sup:
        procs = [sup.group(f"g{i}", Limits(disk_write="1MiB/s")).spawn(["sleep", "60"])
                 for i in range(200)]
        wait_for(lambda: len(list(run_dir.glob("*.json"))) == 200, 60, "200 state files", 0.1)
        sampler = next(t for t in psutil.Process().threads()
                       if t.id == sup._sampler.native_id)
        t0, cpu0 = time.monotonic(), sampler.user_time + sampler.system_time
        time.sleep(3)
        sampler = next(t for t in psutil.Process().threads() if t.id == sampler.id)
        share = (sampler.user_time + sampler.system_time - cpu0) / (time.monotonic() - t0)
        print(f"\nsampler thread: {100 * share:.1f}% of one CPU for 200 groups")
        assert share < 0.25
        assert all(p.poll() is None for p in procs)
        sampled = sum(d["usage"]["tasks"] == 1 for d in read_states(run_dir))
        assert sampled == 200
