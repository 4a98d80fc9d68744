"""What native/container.c does to make a container, as data: namespaces,
mounts, devices, sysctls, masked and read-only paths, uid maps
(`Setup`), and who the command runs as (`ProcessSetup`). `governor run
--rootfs` (governor/container/) and OCI bundles (governor/oci/) both fill
these, so both go through one code path in C.

The defaults here are runc's and Docker's: what a container gets unless its
configuration says otherwise."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from .. import _native
from .._cstrings import cstr, cstr_array

ffi, lib = _native.ffi, _native.lib

# mount(2) flags (linux/mount.h)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_SYNCHRONOUS, MS_REMOUNT, MS_MANDLOCK, MS_DIRSYNC = 0x10, 0x20, 0x40, 0x80
MS_NOSYMFOLLOW, MS_NOATIME, MS_NODIRATIME, MS_BIND = 0x100, 0x400, 0x800, 0x1000
MS_REC, MS_SILENT, MS_UNBINDABLE, MS_PRIVATE = 0x4000, 0x8000, 0x20000, 0x40000
MS_SLAVE, MS_SHARED, MS_RELATIME, MS_STRICTATIME = 0x80000, 0x100000, 0x200000, 0x1000000
MS_LAZYTIME = 0x2000000

# clone(2) flags of the namespaces, by the names OCI and /proc/PID/ns use.
CLONE_NEW = {"mount": 0x00020000, "uts": 0x04000000, "ipc": 0x08000000, "user": 0x10000000,
             "pid": 0x20000000, "network": 0x40000000, "cgroup": 0x02000000}
# native/container.h's GOV_NS_* index of each; /proc/PID/ns/<file>.
NS_INDEX = {"pid": lib.GOV_NS_PID, "network": lib.GOV_NS_NET, "ipc": lib.GOV_NS_IPC,
            "uts": lib.GOV_NS_UTS, "mount": lib.GOV_NS_MNT, "user": lib.GOV_NS_USER,
            "cgroup": lib.GOV_NS_CGROUP}
NS_PROC_FILE = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt",
                "user": "user", "cgroup": "cgroup"}

# capabilities(7), in kernel order: CAP_CHOWN is 0.
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
CAP_NUMBER = {name: i for i, name in enumerate(CAPABILITIES)}

# Docker's (and podman's) default capability set: what container root keeps.
DEFAULT_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")
# runc's (`runc spec`) and podman's masked paths: host information that a
# container has no business reading (keys, kernel memory, timers of every
# process, hardware) and read-only paths: kernel knobs under /proc.
DEFAULT_MASKED = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                  "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                  "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                  "/sys/devices/virtual/powercap")
DEFAULT_READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# RLIMIT_* by OCI name
RLIMITS = {"RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
           "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
           "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
           "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15}


def cap_mask(names) -> int:
    mask = 0
    for name in names:
        mask |= 1 << CAP_NUMBER[name]
    return mask


@dataclass
class Mount:
    dst: str
    src: str
    type: str | None          # None: a bind mount
    flags: int = 0
    data: str | None = None


@dataclass
class Device:
    path: str
    mode: int                 # S_IFCHR/S_IFBLK/S_IFIFO | permissions
    major: int = 0
    minor: int = 0
    uid: int = 0
    gid: int = 0


@dataclass
class Setup:
    """A container's namespaces and file system (struct gov_container).
    rootfs None: join the running container whose namespaces ns_path names."""

    rootfs: str | None
    rootfs_flags: int = 0
    hostname: str | None = None
    new_ns: tuple[str, ...] = ()               # OCI names: "pid", "network", ...
    ns_path: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    default_devices: bool = True
    devices: list[Device] = field(default_factory=list)
    sysctl: dict[str, str] = field(default_factory=dict)
    readonly: tuple[str, ...] = DEFAULT_READONLY
    masked: tuple[str, ...] = DEFAULT_MASKED
    uid_map: list[tuple[int, int, int]] = field(default_factory=list)
    gid_map: list[tuple[int, int, int]] = field(default_factory=list)
    init_joins_user_ns: bool = False

    def step(self, name: str, index: int) -> str:
        """A failed step's description: "mount /data", "mask a path /proc/kcore"."""
        items = {"mount": [m.dst for m in self.mounts], "make a device": [d.path for d in self.devices],
                 "write a sysctl": list(self.sysctl), "make a path read-only": list(self.readonly),
                 "mask a path": list(self.masked)}.get(name, [])
        return f"{name} {items[index]}" if 0 <= index < len(items) else name

    def c_struct(self, keep: list):
        """struct gov_container; keep holds its buffers."""
        cs = partial(cstr, keep)
        c = ffi.new("struct gov_container *")
        keep.append(c)
        c.rootfs = cs(self.rootfs) if self.rootfs else ffi.NULL
        c.rootfs_flags = self.rootfs_flags
        c.hostname = cs(self.hostname) if self.hostname is not None else ffi.NULL
        for name in self.new_ns:
            c.new_ns |= CLONE_NEW[name]
        for name, path in self.ns_path.items():
            c.ns_path[NS_INDEX[name]] = cs(path)
        mounts = ffi.new("struct gov_mount[]", max(len(self.mounts), 1))
        for m, cm in zip(self.mounts, mounts):
            cm.dst, cm.src = cs(m.dst), cs(m.src)
            cm.type = cs(m.type) if m.type else ffi.NULL
            cm.flags = m.flags
            cm.data = cs(m.data) if m.data else ffi.NULL
        devices = ffi.new("struct gov_device[]", max(len(self.devices), 1))
        for d, cd in zip(self.devices, devices):
            cd.path, cd.mode, cd.major, cd.minor, cd.uid, cd.gid = (
                cs(d.path), d.mode, d.major, d.minor, d.uid, d.gid)
        keep += [mounts, devices]
        c.nmounts, c.mounts = len(self.mounts), mounts
        c.default_devices = self.default_devices
        c.ndevices, c.devices = len(self.devices), devices
        c.nsysctl = len(self.sysctl)
        c.sysctl_key = cstr_array(keep, [k.replace(".", "/") for k in self.sysctl])
        c.sysctl_value = cstr_array(keep, list(self.sysctl.values()))
        c.init_joins_user_ns = self.init_joins_user_ns
        c.nreadonly, c.readonly = len(self.readonly), cstr_array(keep, self.readonly)
        c.nmasked, c.masked = len(self.masked), cstr_array(keep, self.masked)
        for which in ("uid_map", "gid_map"):
            lines = getattr(self, which)
            arr = ffi.new("struct gov_idmap[]", max(len(lines), 1))
            for (inside, outside, count), cl in zip(lines, arr):
                cl.inside, cl.outside, cl.count = inside, outside, count
            keep.append(arr)
            setattr(c, which, arr)
            setattr(c, "n" + which, len(lines))
        return c


@dataclass
class ProcessSetup:
    """Who the command runs as (struct gov_process). None: left as it is."""

    no_new_privs: bool = True
    cap_bounding: tuple[str, ...] | None = DEFAULT_CAPS
    uid: int | None = None
    gid: int = 0
    groups: tuple[int, ...] = ()
    # effective, permitted, inheritable, ambient
    caps: tuple[tuple[str, ...], ...] | None = None
    rlimits: list[tuple[int, int, int]] = field(default_factory=list)
    oom_score_adj: int | None = None
    console_fd: int = -1
    console_stdio: int = 0b111   # the std fds (bit 1 << fd) that get the console's pty

    def c_struct(self, keep: list):
        p = ffi.new("struct gov_process *")
        keep.append(p)
        p.no_new_privs = self.no_new_privs
        p.console_fd, p.console_stdio = self.console_fd, self.console_stdio
        if self.oom_score_adj is not None:
            p.set_oom, p.oom_score_adj = 1, self.oom_score_adj
        rl = ffi.new("struct gov_rlimit[]", max(len(self.rlimits), 1))
        for (res, soft, hard), c in zip(self.rlimits, rl):
            c.resource, c.soft, c.hard = res, soft, hard
        keep.append(rl)
        p.nrlimits, p.rlimits = len(self.rlimits), rl
        if self.cap_bounding is not None:
            p.drop_bounding, p.cap_bounding = 1, cap_mask(self.cap_bounding)
        if self.uid is not None:
            groups = ffi.new("unsigned int[]", list(self.groups) or [0])
            keep.append(groups)
            p.set_ids, p.uid, p.gid = 1, self.uid, self.gid
            p.ngroups, p.groups = len(self.groups), groups
        if self.caps is not None:
            p.set_caps = 1
            (p.cap_effective, p.cap_permitted, p.cap_inheritable,
             p.cap_ambient) = (cap_mask(s) for s in self.caps)
        return p

