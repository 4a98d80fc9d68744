"""Extra seccomp rules: what a group's calls get besides the governor's own
rules, in the same filter (native/filter.h says how they combine: a call
gets the action of the highest-precedence rule it matches, so a governed
call that a rule denies stays denied).

    rules = [Rule("keyctl", Action("errno", errno.EPERM)),
             Rule("clone", Action("errno", errno.EPERM),
                  (Arg(0, "masked_eq", CLONE_NEWUSER, CLONE_NEWUSER),))]
    sup.group("web", limits, rules=rules)                  # default: allow
    sup.group("oci", limits, rules=allowed, default_action=Action("errno", errno.ENOSYS))
"""
from __future__ import annotations

import errno
from collections import namedtuple
from collections.abc import Sequence

from . import _native
from ._errors import PolicyError

ffi, lib = _native.ffi, _native.lib

ACTIONS = {"allow": lib.GOV_ACT_ALLOW, "log": lib.GOV_ACT_LOG, "errno": lib.GOV_ACT_ERRNO,
           "trap": lib.GOV_ACT_TRAP, "kill_thread": lib.GOV_ACT_KILL_THREAD,
           "kill_process": lib.GOV_ACT_KILL_PROCESS}
OPS = {"ne": lib.GOV_CMP_NE, "lt": lib.GOV_CMP_LT, "le": lib.GOV_CMP_LE, "eq": lib.GOV_CMP_EQ,
       "ge": lib.GOV_CMP_GE, "gt": lib.GOV_CMP_GT, "masked_eq": lib.GOV_CMP_MASKED_EQ}
_SOURCE = "seccomp rules"
_U64 = 2**64


# Immutable values, as namedtuples: a plain group's filter needs this module,
# and dataclasses imports inspect (a tenth of a short `governor run`).


class Action(namedtuple("Action", "kind errno", defaults=(0,))):
    """kind: allow, log, errno, trap, kill_thread or kill_process; errno:
    what an `errno` action returns (0..4095)."""

    __slots__ = ()


ALLOW = Action("allow")


class Arg(namedtuple("Arg", "index op value value_two", defaults=(0,))):
    """Argument `index` (0..5) compared with `op` (ne, lt, le, eq, ge, gt,
    masked_eq) to value; for masked_eq, value is the mask and value_two
    what the masked argument must equal (as in an OCI profile)."""

    __slots__ = ()


class Rule(namedtuple("Rule", "syscall action args", defaults=((),))):
    """syscall (an x86_64 name libseccomp knows, or a number below 1024, for
    calls newer than its table) gets action when every arg holds."""

    __slots__ = ()


def syscall_number(name: str) -> int | None:
    """The x86_64 number of a syscall name, as libseccomp knows it."""
    nr = lib.gov_syscall_number(name.encode(), 0)
    return None if nr < 0 else nr


def _action(action: Action, where: str) -> tuple[int, int]:
    if not isinstance(action, Action) or action.kind not in ACTIONS:
        raise PolicyError(_SOURCE, where, f"unknown action {action!r} (known: "
                                          f"{', '.join(ACTIONS)})")
    if not isinstance(action.errno, int) or not 0 <= action.errno <= 4095:
        raise PolicyError(_SOURCE, where, f"errno must be 0..4095, got {action.errno!r}")
    if action.kind == "errno" and action.errno == 0:
        raise PolicyError(_SOURCE, where, "an errno action needs its errno "
                                          f"(e.g. {errno.EPERM} for EPERM)")
    return ACTIONS[action.kind], action.errno


def _number(syscall: str | int, where: str) -> int:
    if isinstance(syscall, str):
        nr = syscall_number(syscall)
    elif isinstance(syscall, int) and not isinstance(syscall, bool):
        nr = syscall if 0 <= syscall < lib.GOV_MAX_SYSCALL else None
    else:
        nr = None
    if nr is None:
        raise PolicyError(_SOURCE, where, f"unknown x86_64 system call {syscall!r}")
    return nr


def c_rules(rules: Sequence[Rule], default: Action = ALLOW):
    """(struct gov_rules *, its rule array) for gov_filter_build: keep both
    alive while it runs. Checked rule by rule: PolicyError names the rule
    and what is wrong."""
    array = ffi.new("struct gov_rule[]", max(len(rules), 1))
    for i, rule in enumerate(rules):
        where = f"rule {i} ({getattr(rule, 'syscall', rule)!r})"
        if not isinstance(rule, Rule):
            raise PolicyError(_SOURCE, where, "not a Rule")
        c = array[i]
        c.nr = _number(rule.syscall, where)
        c.action, c.errno_ret = _action(rule.action, where)
        if len(rule.args) > 6:
            raise PolicyError(_SOURCE, where, "at most 6 argument comparisons")
        seen = set()
        for j, arg in enumerate(rule.args):
            ok = (isinstance(arg, Arg) and isinstance(arg.index, int) and 0 <= arg.index < 6
                  and arg.op in OPS and all(isinstance(v, int) and 0 <= v < _U64
                                            for v in (arg.value, arg.value_two)))
            if not ok:
                raise PolicyError(_SOURCE, where, f"bad argument comparison {arg!r} (index 0..5, "
                                                  f"op one of {', '.join(OPS)}, values "
                                                  "0..2**64-1)")
            if arg.index in seen:
                raise PolicyError(_SOURCE, where, f"argument {arg.index} compared twice")
            seen.add(arg.index)
            c.cmp[j].arg, c.cmp[j].op = arg.index, OPS[arg.op]
            c.cmp[j].a, c.cmp[j].b = arg.value, arg.value_two
        c.ncmp = len(rule.args)
    out = ffi.new("struct gov_rules *")
    out.default_action, out.default_errno = _action(default, "default action")
    out.n, out.rule = len(rules), array
    return out, array
