"""Extra seccomp rules in a group's filter (native/filter.h, governor/rules.py):
the filter that gov_filter_build makes is run call by call through a BPF
interpreter and compared with what filter.h says (two stacked filters: the
governor's, default allow, and the extra rules, with their default; the
higher-precedence action wins); then real tenants see the errnos."""
from __future__ import annotations

import errno
import random
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bpf  # noqa: E402
from _tenants import TENANTS, compile_c, needs_root  # noqa: E402

from governor import Limits, PolicyError, Supervisor  # noqa: E402
from governor.rules import ALLOW, Action, Arg, Rule  # noqa: E402
from governor.supervisor import filter_program, governed_calls, traces_clones  # noqa: E402

TIOCSTI, TIOCLINUX = 0x5412, 0x541C
CLONE_UNTRACED = 0x00800000
# (x86_64, i386) numbers of the calls the model plays with.
CALLS = {"write": (1, 4), "close": (3, 6), "clone": (56, 120), "ioctl": (16, 54),
         "setsockopt": (54, 366), "mkdir": (83, 39), "personality": (135, 136),
         "getpriority": (140, 96)}
ACTION_RET = {"allow": _bpf.RET_ALLOW, "log": _bpf.RET_LOG, "trap": _bpf.RET_TRAP,
              "kill_thread": _bpf.RET_KILL_THREAD, "kill_process": _bpf.RET_KILL_PROCESS}
VALUES = (0, 1, 2, 3, 41, TIOCSTI, TIOCLINUX, CLONE_UNTRACED, 0xFFFFFFFF, (1 << 32) | 3,
          1 << 63, 2**64 - 1)
MASKS = (1, 3, 0xFF, 0xFFFFFFFF, CLONE_UNTRACED | 1, 0xFFFF0000_00000000, 2**64 - 1)


def ret_of(action: Action) -> int:
    return _bpf.RET_ERRNO | action.errno if action.kind == "errno" else ACTION_RET[action.kind]


def holds(op: str, x: int, a: int, b: int) -> bool:
    return {"ne": x != a, "lt": x < a, "le": x <= a, "eq": x == a, "ge": x >= a, "gt": x > a,
            "masked_eq": (x & a) == (b & a)}[op]


def governor_rules(limits: Limits, backend: str, container: bool) -> list[tuple[str, int, list]]:
    """The governor's own rules, as filter.h and README describe them:
    (call, return value, [(arg, op, a, b)])."""
    action = _bpf.RET_USER_NOTIF if backend == "seccomp" else _bpf.RET_TRACE
    traced = backend == "ptrace" or traces_clones(limits, backend)
    clone_family = ("clone", "clone3", "fork", "vfork")
    rules = [(name, _bpf.RET_TRACE if traced and name in clone_family else action, [])
             for name in governed_calls(limits)]
    if traced:
        rules += [("ptrace", _bpf.RET_ERRNO | errno.EPERM, []),
                  ("clone3", _bpf.RET_ERRNO | errno.ENOSYS, []),
                  ("clone", _bpf.RET_ERRNO | errno.EPERM,
                   [(0, "masked_eq", CLONE_UNTRACED, CLONE_UNTRACED)])]
    if container:
        rules += [("ioctl", _bpf.RET_ERRNO | errno.EPERM, [(1, "masked_eq", 0xFFFFFFFF, r)])
                  for r in (TIOCSTI, TIOCLINUX)]
        rules += [("setsockopt", _bpf.RET_ERRNO | errno.EPERM, [(1, "eq", lvl, 0), (2, "eq", opt, 0)])
                  for lvl, opt in ((0, 15), (0, 19), (41, 52), (41, 75))]
    return rules


def expected(call: str, args, mine, extra, default: Action) -> int:
    """The highest-precedence result of two stacked filters; a tie goes to
    the governor's (the first listed wins within each)."""
    def first_best(rules, fallback):
        best = None
        for name, ret, cmps in rules:
            if name == call and all(holds(op, args[i], a, b) for i, op, a, b in cmps):
                if best is None or _bpf.precedence(ret) < _bpf.precedence(best):
                    best = ret
        return fallback if best is None else best
    g = first_best(mine, _bpf.RET_ALLOW)
    p = first_best([(r.syscall, ret_of(r.action),
                     [(x.index, x.op, x.value, x.value_two) for x in r.args]) for r in extra],
                   ret_of(default))
    return p if _bpf.precedence(p) < _bpf.precedence(g) else g


def random_rules(rng: random.Random) -> tuple[list[Rule], Action]:
    kinds = ["errno", "errno", "allow", "allow", "log", "trap", "kill_process"]
    rules = []
    for _ in range(rng.randint(1, 6)):
        call = rng.choice(list(CALLS))
        kind = rng.choice(kinds)
        action = Action(kind, rng.choice((1, 13, 38))) if kind == "errno" else Action(kind)
        args = []
        for index in rng.sample(range(4), rng.randint(0, 2)):
            op = rng.choice(("eq", "eq", "ne", "masked_eq", "masked_eq", "gt", "le"))
            if op == "masked_eq":
                mask = rng.choice(MASKS)
                args.append(Arg(index, op, mask, rng.choice(VALUES) & mask))
            else:
                args.append(Arg(index, op, rng.choice(VALUES)))
        rules.append(Rule(call, action, tuple(args)))
    default = rng.choice((ALLOW, ALLOW, Action("errno", errno.EPERM), Action("kill_process")))
    return rules, default


def probe_args(rng: random.Random, rules: list[Rule]) -> tuple[int, ...]:
    near = [v + d for r in rules for x in r.args for v in (x.value, x.value_two) for d in (-1, 0, 1)]
    pool = [v % 2**64 for v in near] + list(VALUES)
    return tuple(rng.choice(pool) for _ in range(6))


def may_be_refused(rules: list[Rule]) -> bool:
    """Ranges that overlap other comparisons cannot be said in libseccomp's
    terms, and an NE before another comparison in one rule is spelt out as
    up to 64 masked ones, which with the governor's own conditions may pass
    the filter's size limit."""
    return any(a.op in ("gt", "le") or (a.op == "ne" and len(r.args) > 1)
               for r in rules for a in r.args)


@pytest.mark.parametrize("seed", range(60))
def test_filter_matches_the_stacked_semantics(seed):
    rng = random.Random(seed)
    backend = rng.choice(("seccomp", "ptrace"))
    container = rng.random() < 0.5
    limits = rng.choice((Limits(), Limits(disk_write="1MiB/s"), Limits(processes=8)))
    rules, default = random_rules(rng)
    try:
        program = filter_program(limits, container, backend, rules, default)
    except PolicyError:
        assert may_be_refused(rules), rules
        pytest.skip("refused: cannot be combined")
    mine = governor_rules(limits, backend, container)
    for _ in range(300):
        call = rng.choice(list(CALLS))
        args = probe_args(rng, rules)
        got = _bpf.run(program, _bpf.seccomp_data(CALLS[call][0], _bpf.AUDIT_ARCH_X86_64, args))
        want = expected(call, args, mine, rules, default)
        assert got == want, (f"{call}{args}: filter gives {got:#x}, expected {want:#x}; "
                             f"rules {rules}, default {default}")
        # With extra rules the i386 table is refused whole.
        got = _bpf.run(program, _bpf.seccomp_data(CALLS[call][1], _bpf.AUDIT_ARCH_I386, args))
        assert got == _bpf.RET_ERRNO | errno.ENOSYS


def test_without_extra_rules_only_the_governors_rules_apply_on_every_table():
    program = filter_program(Limits(disk_write="1MiB/s"), True, "ptrace", None, ALLOW)
    mine = governor_rules(Limits(disk_write="1MiB/s"), "ptrace", True)
    rng = random.Random(1)
    for _ in range(2000):
        call = rng.choice(list(CALLS))
        args = tuple(rng.choice(VALUES) for _ in range(6))
        want = expected(call, args, mine, [], ALLOW)
        for arch, nr in ((_bpf.AUDIT_ARCH_X86_64, CALLS[call][0]),
                         (_bpf.AUDIT_ARCH_I386, CALLS[call][1])):
            if arch == _bpf.AUDIT_ARCH_I386:   # the kernel reads 32 bits there
                args = tuple(a & 0xFFFFFFFF for a in args)
            got = _bpf.run(program, _bpf.seccomp_data(nr, arch, args))
            assert got == want, f"{call}{args} on {arch:#x}: {got:#x}, expected {want:#x}"


def test_a_governed_call_denied_by_a_rule_stays_denied_and_allowed_stays_governed():
    limits = Limits(disk_write="1MiB/s")
    deny_fd_7 = Rule("write", Action("errno", errno.EACCES), (Arg(0, "eq", 7),))
    program = filter_program(limits, True, "seccomp", [deny_fd_7, Rule("ioctl", ALLOW)],
                            Action("errno", errno.ENOSYS))
    run = lambda nr, *args: _bpf.run(program, _bpf.seccomp_data(nr, _bpf.AUDIT_ARCH_X86_64, args))
    assert run(1, 7, 0, 1) == _bpf.RET_ERRNO | errno.EACCES
    # Not allowed by any rule: the default outranks the notification.
    assert run(1, 8, 0, 1) == _bpf.RET_ERRNO | errno.ENOSYS
    assert run(16, 0, 0x5401) == _bpf.RET_ALLOW                    # TCGETS
    assert run(16, 0, TIOCSTI) == _bpf.RET_ERRNO | errno.EPERM     # the governor's denial stays
    allowed = filter_program(limits, False, "seccomp", [Rule("write", ALLOW)], Action("errno", 1))
    assert _bpf.run(allowed, _bpf.seccomp_data(1, _bpf.AUDIT_ARCH_X86_64, (8,))) == \
        _bpf.RET_USER_NOTIF


@pytest.mark.parametrize("rule, reason", [
    (Rule("no_such_call", ALLOW), "unknown x86_64 system call"),
    (Rule(1024, ALLOW), "unknown x86_64 system call"),
    (Rule(-1, ALLOW), "unknown x86_64 system call"),
    (Rule("mkdir", Action("notify")), "unknown action"),
    (Rule("mkdir", Action("errno")), "needs its errno"),
    (Rule("mkdir", Action("errno", 5000)), "errno must be 0..4095"),
    (Rule("mkdir", ALLOW, (Arg(6, "eq", 1),)), "bad argument comparison"),
    (Rule("mkdir", ALLOW, (Arg(0, "in", 1),)), "bad argument comparison"),
    (Rule("mkdir", ALLOW, (Arg(0, "eq", -1),)), "bad argument comparison"),
    (Rule("mkdir", ALLOW, (Arg(0, "eq", 1), Arg(0, "ne", 2))), "compared twice"),
])
def test_bad_rules_are_refused_with_the_reason(rule, reason):
    with pytest.raises(PolicyError, match=reason):
        filter_program(Limits(), False, "seccomp", [rule], ALLOW)


def test_ranges_that_cannot_be_combined_are_refused():
    rules = [Rule("mkdir", Action("errno", 1), (Arg(1, "gt", 5),)),
             Rule("mkdir", Action("errno", 2), (Arg(1, "lt", 100),))]
    with pytest.raises(PolicyError, match="cannot be combined"):
        filter_program(Limits(), False, "seccomp", rules, ALLOW)


@pytest.fixture(scope="module")
def syscall_tenant(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("syscall")
    return str(compile_c(TENANTS / "syscall_tenant.c", d))


def _run(sup, name: str, limits: Limits, rules, argv, tmp_path):
    """Runs argv in a new group; (its stderr, its stdout, the group)."""
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with open(out, "w") as o, open(err, "w") as e:
        g = sup.group(name, limits, rules=rules)
        assert g.spawn(argv, stdout=o, stderr=e).wait(20) == 0
    return err.read_text().strip(), out.read_text(), g


@needs_root
def test_a_rule_gives_its_errno_inside_the_group(syscall_tenant, tmp_path, backend):
    target = tmp_path / "made"
    rules = [Rule("mkdir", Action("errno", errno.EROFS))]
    with Supervisor(backend=backend, publish_state=False) as sup:
        err, _, _ = _run(sup, "deny", Limits(), rules, [syscall_tenant, "83", f"s:{target}", "0755"],
                         tmp_path)
        assert err == f"ret=-1 errno={errno.EROFS}"
        assert not target.exists()
        err, _, _ = _run(sup, "plain", Limits(), None, [syscall_tenant, "83", f"s:{target}", "0755"],
                         tmp_path)
        assert err == "ret=0 errno=0" and target.is_dir()


@needs_root
def test_a_governed_call_that_a_rule_denies_stays_denied(syscall_tenant, tmp_path, backend):
    """write is governed (disk_write): notified, or traced. A rule that denies
    writes to fd 1 wins over that, and the engine never sees nor charges it;
    the report on fd 2 goes through and is charged."""
    rules = [Rule("write", Action("errno", errno.EACCES), (Arg(0, "eq", 1),))]
    with Supervisor(backend=backend, publish_state=False) as sup:
        err, out, g = _run(sup, "w", Limits(disk_write="1MiB/s"), rules,
                           [syscall_tenant, "1", "1", "0", "4"], tmp_path)
        usage = g.usage().resources["disk_write"]
    assert err == f"ret=-1 errno={errno.EACCES}"
    assert out == ""
    assert usage.used == len(err) + 1   # the report alone
