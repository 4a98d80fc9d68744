"""Container: a group's own root file system, namespaces and uid range.

Python checks every path and name and prepares the files (uid shifting,
registry); C sets the namespaces up between fork and exec (native/container.c).
"""
from __future__ import annotations

import os
import re
import stat
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from .._errors import PolicyError, SpawnError
from ..limits import _parse
from . import profile
from .nat import parse_publish
from .network import Lease, NetConfig, Network
from .registry import Registry
from .uidranges import ID_RANGE, LEDGER_DIR
from .setup import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, Mount, Setup

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_MAX_LINKS = 40   # as the kernel's path walk
_RESERVED = ("/proc", "/dev")   # mounted by governor: no volume there
# Host directories that are no container's rootfs or volume without
# --allow-host-dir: these and everything beneath them...
_SYSTEM_TREES = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot",
                 "/proc", "/sys", "/dev")
# ... and these themselves (rootfs directories are often made beneath them).
_SYSTEM_DIRS = ("/", "/var", "/var/lib", "/var/cache", "/var/log", "/var/spool", "/var/tmp",
                "/home", "/root", "/run", "/tmp", "/opt", "/srv", "/mnt", "/media")


def check_name(name: str) -> None:
    """A container's name is its hostname and its registry key."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise PolicyError("--name", name, "a container name is 1-63 letters, digits, '.', '_' "
                          "or '-', starting with a letter or digit")


def _directory(path: str, source: str) -> str:
    if "\0" in path:
        raise PolicyError(source, None, f"{path!r}: a path cannot hold a NUL byte")
    real = os.path.realpath(path)
    if not os.path.exists(real):
        raise PolicyError(source, None, f"{path}: no such directory")
    if not os.path.isdir(real):
        raise PolicyError(source, None, f"{path}: not a directory")
    if real == "/":
        raise PolicyError(source, None, "the host's / cannot be given to a container")
    return real


def parse_volume(spec: str | tuple[str, str]) -> tuple[str, str]:
    """HOSTDIR:PATH (or a pair) -> (host directory, absolute path inside)."""
    host, sep, inside = spec.rpartition(":") if isinstance(spec, str) else (spec[0], ":", spec[1])
    if not sep or not host or not inside:
        raise PolicyError("--volume", None, f"{spec!r}: expected HOSTDIR:PATH")
    if "\0" in inside:
        raise PolicyError("--volume", None, f"{spec!r}: a path cannot hold a NUL byte")
    if not inside.startswith("/") or os.path.normpath(inside) != inside or inside == "/":
        raise PolicyError("--volume", None, f"{spec!r}: PATH must be an absolute, normalised "
                          "path other than /, without '.' or '..'")
    if any(inside == r or inside.startswith(r + "/") for r in _RESERVED):
        raise PolicyError("--volume", None, f"{spec!r}: {inside} is governor's (/proc, /dev)")
    return _directory(host, "--volume"), inside


def _check_mount_point(rootfs: str, host: str, inside: str) -> None:
    """A volume goes onto a directory of the rootfs, or where one is made:
    a symlink or a file on its path is refused here (and again by
    native/container.c, which walks it with O_NOFOLLOW when it mounts)."""
    at = "/"
    for part in inside.strip("/").split("/"):
        at = os.path.join(at, part)
        try:
            st = os.lstat(os.path.join(rootfs, at.lstrip("/")))
        except FileNotFoundError:
            return   # made by the set-up
        what = ("a symlink" if stat.S_ISLNK(st.st_mode) else
                None if stat.S_ISDIR(st.st_mode) else "not a directory")
        if what:
            raise PolicyError("--volume", None, f"{host}:{inside}: {at} in the rootfs is {what}; "
                                                "a volume is mounted onto a directory")


def resolve_in_root(root: str, path: str) -> str | None:
    """path inside root with every symlink resolved inside root (an
    absolute link starts again at root, '..' stops at it), or None."""
    todo = [p for p in path.split("/") if p]
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        try:
            st = os.lstat(os.path.join(root, *done, part))
        except OSError:
            return None
        if not stat.S_ISLNK(st.st_mode):
            done.append(part)
            continue
        links += 1
        if links > _MAX_LINKS:
            return None
        target = os.readlink(os.path.join(root, *done, part))
        if target.startswith("/"):
            done = []
        todo = [p for p in target.split("/") if p] + todo
    return "/" + "/".join(done)


def _within(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _check_host_dir(real: str, source: str, allow: bool, state: Sequence[str]) -> None:
    """A rootfs or volume is never a directory that holds governor's state
    (the tenant could rewrite its uid base), nor, unless allowed, a system
    directory of the host (shifting would hand the host's files over)."""
    for own in state:
        if _within(os.path.realpath(own), real):
            raise PolicyError(source, None, f"{real}: holds governor's state ({own})")
    if not allow and (real in _SYSTEM_DIRS or any(_within(real, t) for t in _SYSTEM_TREES)):
        raise PolicyError(source, None, f"{real}: a system directory of the host: its files "
                          "would become the container's (--allow-host-dir to give it anyway)")


def _tree(top: str) -> list[tuple[str, os.stat_result]]:
    """top and everything beneath it on the same file system, lstat'ed;
    symlinks never followed."""
    dev = os.lstat(top).st_dev
    out = [(top, os.lstat(top))]
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if st.st_dev != dev:
                if name in dirnames:
                    dirnames.remove(name)  # another file system: not ours to change
                continue
            out.append((path, st))
    return out


def _check_links(trees: Mapping[str, list[tuple[str, os.stat_result]]], source_of) -> None:
    """A file to be shifted whose hard links are not all among the trees
    has a name elsewhere on the host (a host file linked into a rootfs):
    shifting it would make the host's file the container's. Refused."""
    links = Counter((st.st_dev, st.st_ino) for tree in trees.values() for _, st in tree
                    if not stat.S_ISDIR(st.st_mode))
    for top, tree in trees.items():
        for path, st in tree:
            if stat.S_ISDIR(st.st_mode) or min(st.st_uid, st.st_gid) >= ID_RANGE:
                continue   # shifted already (or a directory: no hard links)
            outside = st.st_nlink - links[(st.st_dev, st.st_ino)]
            if outside > 0:
                raise PolicyError(source_of(top), None, f"{path}: a hard link of a file with "
                                  f"{outside} other link(s) outside the container's files; "
                                  "its owner is not changed for the container (copy it instead)")


def _shift_tree(tree: list[tuple[str, os.stat_result]], base: int) -> None:
    """Host ids u < 65536 -> base+u, for the files of a _tree; symlinks
    themselves."""
    for path, st in tree:
        uid = base + st.st_uid if st.st_uid < ID_RANGE else st.st_uid
        gid = base + st.st_gid if st.st_gid < ID_RANGE else st.st_gid
        if (uid, gid) != (st.st_uid, st.st_gid):
            os.lchown(path, uid, gid)
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o6000:
                os.chmod(path, stat.S_IMODE(st.st_mode))  # chown cleared set-id bits


@dataclass
class Container:
    """A group's container. rootfs: its root directory on the host;
    read_only: mount it read-only (and leave its files as they are);
    volumes: "HOSTDIR:PATH" strings or (HOSTDIR, PATH) pairs, writable;
    net: "none" (own network namespace, loopback only), "auto" (an address
    of the pool on a veth pair to the host's bridge) or "ADDRESS/PREFIX";
    pool, bridge: override $GOVERNOR_NET_POOL and $GOVERNOR_BRIDGE (see
    network.py); tmp_size: of /tmp; allow_syscalls: calls that the default
    seccomp profile (profile.py) denies and this container may make; nat:
    masquerade its traffic to the world (with an address); publish:
    "HOSTPORT:PORT[/tcp|udp]" host ports forwarded to it (nat.py);
    allow_host_dir: let rootfs or a volume be a system directory of the
    host (/usr, /etc, /var, ...), which is refused otherwise."""

    rootfs: str
    read_only: bool = False
    volumes: Sequence[str | tuple[str, str]] = ()
    net: str = "none"
    pool: str | None = None
    bridge: str | None = None
    tmp_size: int | str = "64MiB"
    state_dir: str | None = None   # the registry's directory (default: see registry.py)
    allow_syscalls: Sequence[str] = ()
    nat: bool = True
    publish: Sequence[str] = ()
    allow_host_dir: bool = False
    uid_base: int | None = field(default=None, init=False)   # known once claimed

    def __post_init__(self):
        self.allow_syscalls = profile.check_allow(self.allow_syscalls, "--allow-syscall")
        self.rootfs = _directory(self.rootfs, "--rootfs")
        self.volumes = [parse_volume(v) for v in self.volumes]
        self.registry = Registry(self.state_dir)
        state = (str(self.registry.dir), str(LEDGER_DIR))
        for path in [self.rootfs] + [v[0] for v in self.volumes]:
            _check_host_dir(path, self._source(path), self.allow_host_dir, state)
        inside = [v[1] for v in self.volumes]
        if len(set(inside)) != len(inside):
            raise PolicyError("--volume", None, "two volumes at the same PATH")
        for host, inside in self.volumes:
            _check_mount_point(self.rootfs, host, inside)
        self.tmp_size = int(_parse(self.tmp_size, rate=False, source="Container", key="tmp_size"))
        self.network = Network(NetConfig.from_env(self.pool, self.bridge, self.state_dir))
        self._net_request = self.network.parse(self.net)
        self.ports = [parse_publish(p) for p in self.publish]
        if self.ports and self._net_request.mode == "none":
            raise PolicyError("--publish", None, "needs --net auto or ADDRESS/PREFIX")
        self._name: str | None = None
        self.lease: Lease | None = None   # its address, while claimed (net other than none)

    @property
    def writable_paths(self) -> list[str]:
        """Host paths the container can write: its rootfs unless read-only,
        and its volumes (what disk_space counts)."""
        return ([] if self.read_only else [self.rootfs]) + [v[0] for v in self.volumes]

    def seccomp_rules(self) -> list:
        """The default profile, less allow_syscalls (governor/rules.py Rules)."""
        return profile.rules(self.allow_syscalls)

    def default_env(self) -> dict[str, str]:
        env = {"PATH": DEFAULT_PATH, "HOME": "/"}
        if "TERM" in os.environ:
            env["TERM"] = os.environ["TERM"]
        return env

    def find_command(self, command: str, env: Mapping[str, str] | None = None) -> str:
        """The command's path inside the container, symlinks resolved there.
        SpawnError ENOENT when the rootfs has no such command, EACCES when it
        is not an executable file."""
        if "/" in command:
            candidates = [command if command.startswith("/") else "/" + command]
        else:
            path = (env or self.default_env()).get("PATH", DEFAULT_PATH)
            candidates = [os.path.join(d or "/", command) for d in path.split(":")]
        found = None
        for c in candidates:
            inside = resolve_in_root(self.rootfs, c)
            if inside is None:
                continue
            host = os.path.join(self.rootfs, inside.lstrip("/"))
            if os.path.isfile(host) and os.stat(host).st_mode & 0o111:
                return inside
            found = found or host
        raise SpawnError(13 if found else 2, command)

    def _source(self, path: str) -> str:
        return "--rootfs" if path == self.rootfs else "--volume"

    def claim(self, name: str) -> None:
        """Takes the registry lease of name, its uid range, and shifts the
        writable files into the range on first use. Nothing is recorded or
        shifted when something is refused."""
        check_name(name)
        with self.registry.locked() as doc:
            self.registry.take_lease(doc, name)
            for path in [self.rootfs] + [v[0] for v in self.volumes]:
                owner = self.registry.owner_of(doc, path, os.lstat(path).st_uid)
                if owner not in (None, name):
                    raise PolicyError(self._source(path), None, f"{path} holds the files of "
                                      f"container {owner!r}")
            shifted = doc["containers"].get(name, {}).get("shifted", [])
            trees = {p: _tree(p) for p in self.writable_paths if p not in shifted}
            _check_links(trees, self._source)
            entry = self.registry.entry(doc, name)
            base = entry["uid_base"]
            for path, tree in trees.items():
                _shift_tree(tree, base)
                entry["shifted"].append(path)
            if not self.read_only:
                os.chmod(self.rootfs, 0o700)   # no other uid crosses into it on the host
        try:
            self.lease = self.network.reserve(name, self._net_request, self.nat, self.ports)
        except BaseException:
            self.registry.release(name)
            raise
        self.uid_base, self._name = base, name

    def release(self) -> None:
        """Gives back the address and the name's lease. Idempotent."""
        if self._name:
            self.network.release(self.lease)
            self.lease = None
            self.registry.release(self._name)
            self._name = None

    def start_network(self, init_pid: int) -> str | None:
        """Runs once the namespaces exist, before the command: with an
        address, a veth pair from the bridge into /proc/init_pid/ns/net
        (loopback is up already). Returns the host side's name, or None."""
        if self.lease is None:
            return None
        self.network.attach(init_pid, self.lease)
        return self.lease.ifname

    def setup(self, hostname: str) -> Setup:
        """What native/container.c makes: new pid, mount, uts, ipc, net and
        (the command's) user namespaces; /proc, a minimal /dev, /tmp and the
        volumes; runc's masked and read-only paths; no /sys."""
        hard = MS_NOSUID | MS_NODEV
        mounts = [Mount("/proc", "proc", "proc", hard | MS_NOEXEC),
                  Mount("/dev", "tmpfs", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536"),
                  Mount("/dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
                        "newinstance,ptmxmode=0666,mode=0620"),
                  Mount("/tmp", "tmpfs", "tmpfs", hard, f"mode=1777,size={self.tmp_size}")]
        # Device nodes shipped in a volume must not open host devices, and
        # set-uid bits mean nothing here.
        mounts += [Mount(inside, host, None, MS_BIND | MS_REC | hard) for host, inside in self.volumes]
        ids = [(0, self.uid_base, ID_RANGE)]
        return Setup(rootfs=self.rootfs, rootfs_flags=hard | (MS_RDONLY if self.read_only else 0),
                     hostname=hostname, new_ns=("pid", "mount", "uts", "ipc", "network", "user"),
                     mounts=mounts, uid_map=ids, gid_map=ids)
