"""What a container's processes may not ask the kernel: the default
seccomp profile of containers, as strict in effect as Docker's default
profile, written from the x86_64 system call table with the reason for each
entry. It goes into the container's filter beside the governed calls
(governor/rules.py); `[security] allow` in a policy, or `--allow-syscall`,
takes an entry out.

Docker's profile is an allow-list: what it does not name gets EPERM. This
one names what is denied and allows the rest, so a call newer than the table
is allowed; the calls Docker gates on capabilities that its containers do not
have by default are denied here (container root has every capability of its
own user namespace, none over the host's objects: the denial is a second
wall, and the one that holds where the kernel's own checks have had bugs).
Plain groups (no rootfs) get none of this.

Calls Docker allows and this profile allows too, on purpose: ptrace,
process_vm_readv and process_vm_writev (since Linux 4.8 seccomp is checked
again after a tracer changes a call, so tracing cannot lift the filter; the
ptrace backends deny ptrace themselves), name_to_handle_at (it only makes a
handle; opening one is open_by_handle_at, denied), adjtimex and clock_adjtime
(reading the clock discipline; setting it needs CAP_SYS_TIME over the host),
chroot (inside the container's own root). The governor's own refusals apply
to every group: io_uring_setup, io_uring_enter, io_uring_register (ENOSYS),
and to containers TIOCSTI, TIOCLINUX, IP_FREEBIND and friends (EPERM).
"""
from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Iterable

from .._errors import PolicyError
from ..rules import Action, Arg, Rule, syscall_number

# Calls newer than libseccomp 2.5.4's table, by their x86_64 number.
NEWER_CALLS = {"lsm_get_self_attr": 459, "lsm_set_self_attr": 460, "lsm_list_modules": 461}

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NAMESPACE_FLAGS = (CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
                   CLONE_NEWPID, CLONE_NEWNET)

# personality(2) values a container may set: PER_LINUX, PER_LINUX32, each
# with UNAME26, and 0xffffffff, which only asks for the current one.
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# Address families Docker allows: AF_UNIX, AF_INET, AF_INET6, AF_NETLINK,
# AF_PACKET and the rest below, except these.
DENIED_FAMILIES = {12: "AF_DECnet", 19: "AF_ECONET", 20: "AF_ATMSVC", 23: "AF_IRDA",
                   25: "AF_WANPIPE", 34: "AF_ISDN", 37: "AF_CAIF", 38: "AF_ALG",
                   40: "AF_VSOCK"}
AF_MAX = 46  # and every family from here on: newer than this table


def _outside(values: Iterable[int], width: int = 32) -> list[tuple[int, int]]:
    """(mask, value) pairs of masked comparisons that together match every
    width-bit number that is not in values, each number once."""
    out: list[tuple[int, int]] = []

    def walk(bit: int, mask: int, value: int, left: list[int]) -> None:
        if not left:
            out.append((mask, value))
        elif bit >= 0:
            b = 1 << bit
            for v in (0, b):
                walk(bit - 1, mask | b, value | v, [x for x in left if x & b == v])

    walk(width - 1, 0, 0, sorted(set(values)))
    return out


@dataclass(frozen=True)
class Denial:
    """syscalls get errno, when any of `when` holds (each a tuple of
    comparisons that must all hold; the default: always)."""

    syscalls: tuple[str, ...]
    reason: str
    errno: int = errno.EPERM
    when: tuple[tuple[Arg, ...], ...] = ((),)


DENIED = (
    Denial(("unshare", "setns"),
           "namespaces: a user namespace of its own gives container root every capability "
           "over new mount, network and other namespaces, the door of many kernel CVEs; "
           "joining another namespace is a way out"),
    Denial(("clone",), "new namespaces through clone's flags (CLONE_NEWNS, NEWCGROUP, NEWUTS, "
                       "NEWIPC, NEWUSER, NEWPID, NEWNET), as unshare",
           when=tuple((Arg(0, "masked_eq", f, f),) for f in NAMESPACE_FLAGS)),
    Denial(("clone3",), "its flags are in memory, where a filter cannot read them; ENOSYS makes "
                        "glibc fall back to clone, whose flags are in a register",
           errno=errno.ENOSYS),
    Denial(("mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig",
            "fsmount", "fspick", "mount_setattr"),
           "mounts: the container's mounts are made by governor; a tenant's own would reach "
           "file system code (and its bugs) that no container needs"),
    Denial(("keyctl", "add_key", "request_key"),
           "the kernel keyring is not namespaced: keys are shared with the host and other "
           "containers of the same uid"),
    Denial(("bpf",), "BPF programs run in the kernel; unprivileged BPF has a long history of "
                     "verifier bugs, and reading kernel memory"),
    Denial(("perf_event_open",), "performance counters see the host's kernel and other "
                                 "processes, and have had many bugs"),
    Denial(("lookup_dcookie",), "profiling of the kernel (oprofile): host information"),
    Denial(("kexec_load", "kexec_file_load"), "loading a new kernel to boot into"),
    Denial(("init_module", "finit_module", "delete_module", "create_module", "get_kernel_syms",
            "query_module"), "kernel modules: code in the host's kernel"),
    Denial(("open_by_handle_at",), "opens any file of a file system by its handle, bypassing "
                                   "the container's root (the 'shocker' escape)"),
    Denial(("userfaultfd",), "lets a process stop the kernel in the middle of a copy from user "
                             "memory: the tool that widens the race windows of kernel exploits"),
    Denial(("personality",), "only PER_LINUX and PER_LINUX32 (with UNAME26), and the query: "
                             "other personalities switch on rarely tested kernel code, and "
                             "READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE, MMAP_PAGE_ZERO weaken the "
                             "process's own defences",
           when=tuple((Arg(0, "masked_eq", m, v),) for m, v in _outside(PERSONALITIES))),
    Denial(("kcmp", "pidfd_getfd", "process_madvise"),
           "look into or act on other processes' files and memory (Docker allows them only "
           "with CAP_SYS_PTRACE)"),
    Denial(("acct",), "process accounting is host-wide: a container could switch it off or "
                      "fill a file with it"),
    Denial(("swapon", "swapoff"), "swap is the host's: switching a device on or off changes "
                                  "memory for every tenant"),
    Denial(("reboot",), "rebooting, or changing what ctrl-alt-del does"),
    Denial(("settimeofday", "clock_settime"), "the clock is not namespaced: setting it sets the "
                                              "host's"),
    Denial(("iopl", "ioperm"), "direct access to the host's I/O ports"),
    Denial(("quotactl", "quotactl_fd"), "disk quotas of the host's file systems"),
    Denial(("syslog",), "the kernel's log is the host's, with addresses and other tenants' "
                        "messages"),
    Denial(("vhangup",), "hangs up the terminal, which a container shares with `governor run`"),
    Denial(("sethostname", "setdomainname"), "the UTS namespace is governor's (the name is the "
                                             "container's name)"),
    Denial(("mbind", "set_mempolicy", "get_mempolicy", "set_mempolicy_home_node",
            "migrate_pages", "move_pages"),
           "NUMA placement of memory, other processes' included: host-wide effects (Docker "
           "allows the first three only with CAP_SYS_NICE)"),
    Denial(("fanotify_init",), "watches whole file systems, the host's included"),
    Denial(("lsm_get_self_attr", "lsm_set_self_attr", "lsm_list_modules"),
           "the host's security modules (Docker allows them only with CAP_SYS_ADMIN)"),
    Denial(("socket",), "address families Docker's profile leaves out: old or rarely used "
                        "protocol code (" + ", ".join(DENIED_FAMILIES.values()) + ": "
                        "AF_ALG is the kernel's crypto API, AF_VSOCK the host's sockets to "
                        "virtual machines) and families newer than the table; EAFNOSUPPORT, "
                        "as from a kernel without them",
           errno=errno.EAFNOSUPPORT,
           when=tuple((Arg(0, "eq", f),) for f in DENIED_FAMILIES) + ((Arg(0, "ge", AF_MAX),),)),
    Denial(("uselib", "ustat", "sysfs", "_sysctl", "nfsservctl", "getpmsg", "putpmsg",
            "afs_syscall", "tuxcall", "security", "vserver"),
           "obsolete or never implemented: ENOSYS, as from a kernel without them",
           errno=errno.ENOSYS),
)

DENIED_CALLS = tuple(name for d in DENIED for name in d.syscalls)


def _number(name: str) -> int | None:
    return NEWER_CALLS.get(name, syscall_number(name))


def check_allow(names: Iterable[str], source: str, key: str | None = None) -> tuple[str, ...]:
    """The exceptions asked for, checked: each must be a call the profile
    denies. PolicyError naming the source otherwise."""
    out = []
    for name in names:
        if not isinstance(name, str) or _number(name) is None:
            raise PolicyError(source, key, f"unknown system call {name!r}")
        if name not in DENIED_CALLS:
            raise PolicyError(source, key, f"{name!r} is not denied to containers: nothing to "
                                           "allow")
        if name not in out:
            out.append(name)
    return tuple(out)


def rules(allow: Iterable[str] = ()) -> list[Rule]:
    """The profile as extra rules for a container's filter, without the
    calls in allow (checked names)."""
    allowed = set(allow)
    return [Rule(_number(name), Action("errno", d.errno), args)
            for d in DENIED for name in d.syscalls if name not in allowed
            for args in d.when]
