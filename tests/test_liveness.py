"""One "is this supervisor alive" check (governor/_proc.py): a process's
identity is its pid and its start time in clock ticks, so a reused pid is a
different process; a zombie is dead; records written with the old float
start time (psutil's create_time) still tell a live supervisor from a dead
one."""
from __future__ import annotations

import json
import subprocess

import psutil
import pytest

from _tenants import wait_for

from governor import _proc
from governor._errors import PolicyError
from governor.container.registry import Registry
from governor.monitor.state import read_states


@pytest.fixture
def sleeper():
    p = subprocess.Popen(["sleep", "60"])
    yield p
    p.kill()
    p.wait()


def test_a_live_process_is_alive(sleeper):
    who = _proc.identity(sleeper.pid)
    assert who.pid == sleeper.pid
    assert _proc.alive(*who)
    assert _proc.alive(*_proc.identity())      # this process


def test_the_same_pid_with_another_start_is_another_process(sleeper):
    """What a reused pid looks like: the pid is live, its start differs."""
    pid, start = _proc.identity(sleeper.pid)
    assert not _proc.alive(pid, start + 1)
    assert not _proc.alive(pid, start - 1)


def test_a_zombie_is_dead_and_a_reaped_process_too():
    # cat exits when its stdin closes: its identity is read while it lives
    # (a child that exits at once may be a zombie before the read).
    p = subprocess.Popen(["cat"], stdin=subprocess.PIPE)
    who = _proc.identity(p.pid)
    assert who is not None
    p.stdin.close()
    # Exited, not yet reaped: /proc still lists it, in state Z.
    wait_for(lambda: _stat_state(p.pid) == "Z", 10, "the child to become a zombie")
    assert not _proc.alive(*who)
    assert _proc.identity(p.pid) is None
    p.wait()
    assert not _proc.alive(*who)


def test_nonsense_is_dead():
    me = _proc.identity()
    for pid, start in [(0, me.start), (-1, me.start), (None, me.start), (True, me.start),
                       ("1", me.start), (me.pid, None), (me.pid, "x"), (me.pid, True)]:
        assert not _proc.alive(pid, start), (pid, start)


def test_an_old_float_start_time_is_still_read(sleeper):
    """Records written before the identity held ticks held psutil's
    create_time: live stays live, another start is dead."""
    created = psutil.Process(sleeper.pid).create_time()
    assert _proc.alive(sleeper.pid, created)
    assert not _proc.alive(sleeper.pid, created - 5.0)
    sleeper.kill()
    sleeper.wait()
    assert not _proc.alive(sleeper.pid, created)


def test_old_state_files_of_live_and_dead_supervisors(tmp_path, sleeper):
    """`governor ps` keeps an old-format state file whose supervisor runs and
    removes one whose supervisor is gone."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    docs = {"live": (sleeper.pid, psutil.Process(sleeper.pid).create_time()),
            "dead": (dead.pid, psutil.Process().create_time())}
    for name, (pid, start) in docs.items():
        (tmp_path / f"{pid}-{name}.json").write_text(json.dumps(
            {"version": 1, "group": name, "supervisor_pid": pid, "supervisor_start": start}))
    assert [d["group"] for d in read_states(tmp_path)] == ["live"]
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [f"{sleeper.pid}-live.json"]


def test_a_registry_lease_in_the_old_format(tmp_path, sleeper):
    """A running container's lease written with a float start still refuses a
    second start; a dead one's is taken over, in ticks."""
    r = Registry(tmp_path)
    with r.locked() as doc:
        doc["leases"]["web"] = {"pid": sleeper.pid,
                                "start": psutil.Process(sleeper.pid).create_time()}
    with pytest.raises(PolicyError, match="running already"), r.locked() as doc:
        r.take_lease(doc, "web")
    sleeper.kill()
    sleeper.wait()
    with r.locked() as doc:
        r.take_lease(doc, "web")
    assert json.loads(r.path.read_text())["leases"]["web"] == _proc.identity()._asdict()


def _stat_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
