"""The default seccomp profile of containers (governor/container/profile.py):
its table, the filter it makes (run through tests/_bpf.py), and a hostile
tenant (tests/tenants/probe_tenant.c) that tries each call from inside a container,
with the profile, without it, and with exceptions."""
from __future__ import annotations

import errno
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bpf  # noqa: E402
from _tenants import TENANTS, compile_c, make_rootfs, needs_root  # noqa: E402

from governor import Limits, PolicyError, Supervisor  # noqa: E402
from governor.container import Container, profile  # noqa: E402
from governor.rules import ALLOW, syscall_number  # noqa: E402
from governor.supervisor import filter_program  # noqa: E402

GOVERNOR = [sys.executable, "-m", "governor"]
X86_64 = _bpf.AUDIT_ARCH_X86_64
EPERM = _bpf.RET_ERRNO | errno.EPERM


def test_every_entry_names_a_known_call_once_with_a_reason():
    assert len(set(profile.DENIED_CALLS)) == len(profile.DENIED_CALLS)
    for d in profile.DENIED:
        assert len(d.reason) > 20, d   # a reason, not a word
        for name in d.syscalls:
            assert syscall_number(name) is not None or name in profile.NEWER_CALLS, name
    # The calls of issue 14's table, and the governor's own, are in it.
    for name in ("unshare", "setns", "clone", "clone3", "mount", "keyctl", "add_key", "bpf",
                 "perf_event_open", "userfaultfd", "open_by_handle_at", "kexec_load",
                 "init_module", "personality"):
        assert name in profile.DENIED_CALLS


def test_outside_covers_every_other_value_once():
    values = (0, 8, 0x20000, 0x20008, 0xFFFFFFFF)
    patterns = profile._outside(values)
    for x in list(values) + [1, 7, 9, 0x10, 0x400000, 0x20009, 0xFFFFFFFE, 0x80000000]:
        hits = sum((x & m) == v for m, v in patterns)
        assert hits == (0 if x in values else 1), hex(x)


@pytest.fixture(scope="module")
def container_filter():
    """A container's filter with the profile, under a processes limit (so
    clone is governed: traced, README "Tasks and stuck groups") and a write
    limit, seccomp backend."""
    limits = Limits(processes=16, disk_write="1MiB/s")
    program = filter_program(limits, True, "seccomp", profile.rules(), ALLOW)
    return lambda name, *args: _bpf.run(
        program, _bpf.seccomp_data(syscall_number(name) or profile.NEWER_CALLS[name], X86_64, args))


def test_the_filter_denies_each_entry_and_keeps_the_rest(container_filter):
    call = container_filter
    for d in profile.DENIED:
        if d.when == ((),):
            for name in d.syscalls:
                assert call(name) == _bpf.RET_ERRNO | d.errno, name
    assert call("getpid") == _bpf.RET_ALLOW
    assert call("write", 1, 0, 1) == _bpf.RET_USER_NOTIF              # still governed
    # As Docker (kernel >= 4.8) ptrace is allowed, but not under a processes
    # cap: the engine traces the group's forks, and a tenant may not detach it.
    assert call("ptrace", 0) == EPERM
    assert call("name_to_handle_at") == _bpf.RET_ALLOW
    assert call("io_uring_setup") == _bpf.RET_ERRNO | errno.ENOSYS    # the governor's own


def test_clone_with_a_namespace_flag_is_denied_and_without_is_governed(container_filter):
    call = container_filter
    fork_flags = 0x01200011   # CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD
    assert call("clone", fork_flags) == _bpf.RET_TRACE
    assert call("clone", 0x003D0F00) == _bpf.RET_TRACE              # pthread_create's flags
    for flag in profile.NAMESPACE_FLAGS:
        assert call("clone", fork_flags | flag) == EPERM, hex(flag)
    assert call("clone3", 0, 88) == _bpf.RET_ERRNO | errno.ENOSYS


@pytest.mark.parametrize("value, allowed", [
    (0, True), (8, True), (0x20000, True), (0x20008, True), (0xFFFFFFFF, True),
    (0x0040000, False), (0x0400000, False), (0x0100000, False), (0x0001, False),
    (0x10, False), (0xFFFFFFFE, False), ((1 << 32) | 8, True),   # the kernel reads 32 bits
])
def test_personality_values(container_filter, value, allowed):
    assert container_filter("personality", value) == (_bpf.RET_ALLOW if allowed else EPERM)


def test_socket_families(container_filter):
    eafnosupport = _bpf.RET_ERRNO | errno.EAFNOSUPPORT
    for family in (1, 2, 10, 16, 17):       # unix, inet, inet6, netlink, packet
        assert container_filter("socket", family, 1, 0) == _bpf.RET_ALLOW
    for family in list(profile.DENIED_FAMILIES) + [46, 1000, 2**64 - 1]:
        assert container_filter("socket", family, 1, 0) == eafnosupport


def test_an_exception_takes_exactly_that_call_out():
    rules = profile.rules(profile.check_allow(["keyctl", "clone"], "--allow-syscall"))
    program = filter_program(Limits(processes=16), True, "seccomp", rules, ALLOW)
    call = lambda name, *a: _bpf.run(program, _bpf.seccomp_data(syscall_number(name), X86_64, a))
    assert call("keyctl", 1) == _bpf.RET_ALLOW
    assert call("clone", 0x10000000 | 17) == _bpf.RET_TRACE
    assert call("add_key") == EPERM


@pytest.mark.parametrize("names, reason", [
    (["keyctll"], "unknown system call 'keyctll'"),
    (["getpid"], "'getpid' is not denied to containers"),
    ([42], "unknown system call 42"),
])
def test_bad_exceptions_are_refused(tmp_path, names, reason):
    with pytest.raises(PolicyError, match=reason):
        Container(rootfs=str(tmp_path), allow_syscalls=names, state_dir=str(tmp_path / "s"))


# ---- the probe, from inside a container ----

# What the probe must see with the default profile.
DENIED_BY_PROFILE = {name: "EPERM" for name in (
    "unshare_user_mount", "clone_newuser", "setns", "mount_tmpfs", "umount2", "pivot_root",
    "open_tree", "fsopen", "fspick", "fsconfig", "fsmount", "move_mount", "mount_setattr",
    "keyctl_join_session", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "personality_no_aslr", "kexec_load", "init_module", "finit_module", "delete_module",
    "open_by_handle_at", "acct", "swapoff", "reboot_cad_off", "settimeofday_noop",
    "clock_settime_bad_clock", "iopl", "ioperm", "quotactl_sync", "syslog_size",
    "get_mempolicy", "move_pages", "fanotify_init", "kcmp", "pidfd_getfd", "lsm_list_modules")}
DENIED_BY_PROFILE.update(clone3="ENOSYS", ustat="ENOSYS", io_uring_setup="ENOSYS",
                         socket_vsock="EAFNOSUPPORT", socket_alg="EAFNOSUPPORT")
ALLOWED = ("personality_query", "name_to_handle_at", "socket_inet", "getpid")


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("probe")
    return compile_c(TENANTS / "probe_tenant.c", d, ("-static",))


def _rootfs(tmp_path: Path, probe: Path) -> Path:
    rootfs = make_rootfs(tmp_path / "rootfs")
    shutil.copy(probe, rootfs / "bin" / "probe")
    return rootfs


def _results(text: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in text.splitlines())


@needs_root
@pytest.mark.timeout(60)
def test_the_probe_is_denied_each_call_in_a_container(tmp_path, probe):
    rootfs = _rootfs(tmp_path, probe)
    r = subprocess.run(GOVERNOR + ["run", "--state-dir", str(tmp_path / "state"), "--name", "probe",
                                   "--rootfs", str(rootfs), "--", "/bin/probe"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    got = _results(r.stdout)
    assert {k: got.get(k) for k in DENIED_BY_PROFILE} == DENIED_BY_PROFILE
    assert {k: got.get(k) for k in ALLOWED} == {k: "ok" for k in ALLOWED}


@needs_root
@pytest.mark.timeout(60)
def test_without_the_profile_the_keyring_was_open_and_exceptions_reopen_it(tmp_path, probe):
    """The profile is what denies: a container without it (rules=[]) joins
    and fills keyrings, and `--allow-syscall` opens exactly those calls."""
    rootfs = _rootfs(tmp_path, probe)
    out = tmp_path / "before.out"
    with Supervisor(publish_state=False) as sup, open(out, "w") as f:
        box = Container(rootfs=str(rootfs), state_dir=str(tmp_path / "state"))
        g = sup.group("probe", Limits(processes=64), container=box, rules=[])
        assert g.spawn(["/bin/probe"], stdout=f).wait(30) == 0
    before = _results(out.read_text())
    assert before["keyctl_join_session"] == before["add_key"] == "ok"
    r = subprocess.run(GOVERNOR + ["run", "--state-dir", str(tmp_path / "state"), "--name", "probe",
                                   "--rootfs", str(rootfs), "--allow-syscall", "keyctl",
                                   "--allow-syscall", "add_key", "--", "/bin/probe"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    after = _results(r.stdout)
    assert after["keyctl_join_session"] == after["add_key"] == "ok"
    assert after["request_key"] == "EPERM" and after["bpf"] == "EPERM"
