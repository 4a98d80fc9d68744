"""A bundle's linux.seccomp, read and checked (PolicyError naming the key).

    {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
     "architectures": [...], "syscalls": [{"names": [...], "action": ...,
     "errnoRet": N, "args": [{"index": 0, "value": N, "valueTwo": N,
     "op": "SCMP_CMP_MASKED_EQ"}]}]}

The profile becomes extra rules of the container's own filter
(governor/rules.py): native/filter.c gives a call the action of the
highest-precedence rule it matches, as two stacked filters would, so a
governed call that the profile denies stays denied (ERRNO outranks the
governor's USER_NOTIF, as in the kernel's order), and a call the profile
allows is still governed. Actions map onto the governor's extra-rule actions: ALLOW, LOG, ERRNO
(errnoRet, EPERM when absent, as runc), TRAP, KILL and KILL_THREAD,
KILL_PROCESS. TRACE has no tracer here: the kernel would answer ENOSYS, so
ERRNO(ENOSYS) says it at once. NOTIFY (listenerPath) is refused: the
container's listener is the governor's own. Architectures are the
governor's to decide (x86_64; the i386 and x32 entries of a filtered
process get ENOSYS), so they are checked, not applied. Syscall names this
libseccomp does not know are skipped, as runc skips them: profiles list
calls of newer kernels. A rule that compares one argument more than once
becomes one rule per comparison (ORed), as in runc."""
from __future__ import annotations

import errno
from typing import Any

from .._errors import PolicyError
from ..rules import Action, Arg, Rule, syscall_number

ACTIONS = {"SCMP_ACT_ALLOW": "allow", "SCMP_ACT_LOG": "log", "SCMP_ACT_ERRNO": "errno",
           "SCMP_ACT_TRAP": "trap", "SCMP_ACT_KILL": "kill_thread",
           "SCMP_ACT_KILL_THREAD": "kill_thread", "SCMP_ACT_KILL_PROCESS": "kill_process",
           "SCMP_ACT_TRACE": "errno"}
OPS = {"SCMP_CMP_NE": "ne", "SCMP_CMP_LT": "lt", "SCMP_CMP_LE": "le", "SCMP_CMP_EQ": "eq",
       "SCMP_CMP_GE": "ge", "SCMP_CMP_GT": "gt", "SCMP_CMP_MASKED_EQ": "masked_eq"}
ARCHES = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64",
          "SCMP_ARCH_ARM", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
          "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
          "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
          "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64"}
FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
         "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"}
_U64 = 2**64


def _action(source: str, key: str, name: Any, errno_ret: Any, errno_key: str) -> Action:
    if not isinstance(name, str) or name not in ACTIONS:
        raise PolicyError(source, key, f"unknown action {name!r} (known: {', '.join(ACTIONS)}; "
                          "SCMP_ACT_NOTIFY: the listener is the governor's own)")
    kind = ACTIONS[name]
    if name == "SCMP_ACT_TRACE":
        return Action("errno", errno.ENOSYS)
    if kind != "errno":
        return Action(kind)
    if errno_ret is None:
        return Action("errno", errno.EPERM)
    if isinstance(errno_ret, bool) or not isinstance(errno_ret, int) or not 1 <= errno_ret <= 4095:
        raise PolicyError(source, errno_key,
                          f"must be an errno between 1 and 4095, got {errno_ret!r}")
    return Action("errno", errno_ret)


def _number(source: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _U64:
        raise PolicyError(source, key, f"expected an unsigned 64-bit integer, got {value!r}")
    return value


def _list(source: str, key: str, value: Any) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PolicyError(source, key, f"expected a list, got {type(value).__name__}")
    return value


def parse(doc: dict, source: str) -> tuple[list[Rule], Action]:
    """linux.seccomp (a dict already) -> (the governor's extra rules, one
    per known syscall name; the action of a call they do not match)."""
    key = "linux.seccomp"
    if doc.get("listenerPath") is not None:
        raise PolicyError(source, f"{key}.listenerPath", "the container's seccomp listener is "
                          "governor-oci's own; another agent cannot have it")
    for i, arch in enumerate(_list(source, f"{key}.architectures", doc.get("architectures"))):
        if not isinstance(arch, str) or arch not in ARCHES:
            raise PolicyError(source, f"{key}.architectures[{i}]", f"unknown architecture {arch!r}")
    for i, flag in enumerate(_list(source, f"{key}.flags", doc.get("flags"))):
        if not isinstance(flag, str) or flag not in FLAGS:
            raise PolicyError(source, f"{key}.flags[{i}]", f"unknown flag {flag!r}")
    default = _action(source, f"{key}.defaultAction", doc.get("defaultAction"),
                      doc.get("defaultErrnoRet"), f"{key}.defaultErrnoRet")
    syscalls = _list(source, f"{key}.syscalls", doc.get("syscalls"))
    rules = []
    for i, entry in enumerate(syscalls):
        k = f"{key}.syscalls[{i}]"
        if not isinstance(entry, dict):
            raise PolicyError(source, k, "expected an object")
        names = entry.get("names")
        if not isinstance(names, list) or not names or \
                not all(isinstance(n, str) and n and "\0" not in n for n in names):
            raise PolicyError(source, f"{k}.names", "expected a list of syscall names")
        action = _action(source, f"{k}.action", entry.get("action"), entry.get("errnoRet"),
                         f"{k}.errnoRet")
        args = []
        for j, a in enumerate(_list(source, f"{k}.args", entry.get("args"))):
            ak = f"{k}.args[{j}]"
            if not isinstance(a, dict):
                raise PolicyError(source, ak, "expected an object")
            index = a.get("index")
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 5:
                raise PolicyError(source, f"{ak}.index", f"must be 0 to 5, got {index!r}")
            op = a.get("op")
            if not isinstance(op, str) or op not in OPS:
                raise PolicyError(source, f"{ak}.op", f"unknown comparison {op!r} "
                                  f"(known: {', '.join(OPS)})")
            args.append(Arg(index, OPS[op], _number(source, f"{ak}.value", a.get("value", 0)),
                            _number(source, f"{ak}.valueTwo", a.get("valueTwo", 0))))
        # An argument compared more than once: each comparison is a rule of
        # its own (so they are ORed), as runc does (libseccomp takes one
        # comparison per argument in a rule).
        indexes = [a.index for a in args]
        groups = [(a,) for a in args] if len(set(indexes)) < len(indexes) else [tuple(args)]
        # names unknown to this libseccomp are skipped, as runc skips them
        rules += [Rule(name, action, g) for name in names if syscall_number(name) is not None
                  for g in groups]
    return rules, default
