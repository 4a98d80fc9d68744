"""An OCI bundle's config.json, read and checked once: every key governor-oci
uses is checked for its type and value, and a bad one fails with
PolicyError(config path, key, what is wrong) before anything is made.
Keys this runtime does not use are ignored, as the spec allows."""
from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from typing import Any

from .._errors import PolicyError
from ..inputfile import read_text
from . import seccomp
from .hooks import Hook
from ..container.setup import (CAP_NUMBER, CLONE_NEW, MS_BIND, MS_DIRSYNC, MS_LAZYTIME,
                               MS_MANDLOCK, MS_NOATIME, MS_NODEV, MS_NODIRATIME, MS_NOEXEC,
                               MS_NOSUID, MS_NOSYMFOLLOW, MS_RDONLY, MS_REC, MS_RELATIME,
                               MS_STRICTATIME, MS_SYNCHRONOUS, RLIMITS, Device, Mount)

# mount options that are flags: name -> (set, clear)
_FLAGS = {
    "ro": (MS_RDONLY, 0), "rw": (0, MS_RDONLY), "nosuid": (MS_NOSUID, 0), "suid": (0, MS_NOSUID),
    "nodev": (MS_NODEV, 0), "dev": (0, MS_NODEV), "noexec": (MS_NOEXEC, 0), "exec": (0, MS_NOEXEC),
    "sync": (MS_SYNCHRONOUS, 0), "async": (0, MS_SYNCHRONOUS), "dirsync": (MS_DIRSYNC, 0),
    "mand": (MS_MANDLOCK, 0), "nomand": (0, MS_MANDLOCK), "atime": (0, MS_NOATIME),
    "noatime": (MS_NOATIME, 0), "diratime": (0, MS_NODIRATIME), "nodiratime": (MS_NODIRATIME, 0),
    "relatime": (MS_RELATIME, 0), "norelatime": (0, MS_RELATIME),
    "strictatime": (MS_STRICTATIME, 0), "nostrictatime": (0, MS_STRICTATIME),
    "lazytime": (MS_LAZYTIME, 0), "nolazytime": (0, MS_LAZYTIME),
    "nosymfollow": (MS_NOSYMFOLLOW, 0), "symfollow": (0, MS_NOSYMFOLLOW),
    "bind": (MS_BIND, 0), "rbind": (MS_BIND | MS_REC, 0),
}
# Propagation of a mount inside a mount namespace that is private anyway,
# and runc/crun extensions with no meaning here: accepted, not applied.
_IGNORED_OPTIONS = {"private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable",
                    "runbindable", "tmpcopyup", "remount", "defaults", "idmap", "ridmap",
                    "copy-symlink", "notmpcopyup"}
_NS_TYPES = tuple(CLONE_NEW)
_DEVICE_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
_HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
               "poststop")
_MAX_ID = 2**32 - 1
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Process:
    args: list[str]
    env: list[str]
    cwd: str
    uid: int = 0
    gid: int = 0
    groups: list[int] = field(default_factory=list)
    terminal: bool = False
    caps: dict[str, tuple[str, ...]] | None = None   # bounding, effective, ...
    rlimits: list[tuple[int, int, int]] = field(default_factory=list)
    no_new_privs: bool = False
    oom_score_adj: int | None = None

    def search_path(self) -> str:
        """Where args[0] is looked up (inside the container, as runc does)."""
        return self.env_dict().get("PATH", DEFAULT_PATH)

    def env_dict(self) -> dict[str, str]:
        out = {}
        for item in self.env:
            key, _, value = item.partition("=")
            out[key] = value
        return out


@dataclass
class Spec:
    path: str                          # the config.json read
    bundle: str
    root: str                          # the rootfs, absolute on the host
    readonly: bool
    process: Process | None
    hostname: str | None
    mounts: list[Mount]
    namespaces: dict[str, str | None]  # OCI type -> path to join, or None: a new one
    uid_map: list[tuple[int, int, int]]
    gid_map: list[tuple[int, int, int]]
    masked: list[str]
    readonly_paths: list[str]
    devices: list[Device]
    sysctl: dict[str, str]
    resources: dict[str, Any]
    seccomp: tuple[list, Any] | None     # (governor.rules.Rule list, default Action)
    hooks: dict[str, list[Hook]]
    annotations: dict[str, str]
    ignored: list[str] = field(default_factory=list)   # keys read but not applied: logged


class _Reader:
    """Type checks that name the key."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, reason: str):
        raise PolicyError(self.source, key, reason)

    def obj(self, value, key, required=False) -> dict:
        if value is None:
            if required:
                self.fail(key, "is required")
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"expected an object, got {type(value).__name__}")
        return value

    def list(self, value, key) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(key, f"expected a list, got {type(value).__name__}")
        return value

    def str(self, value, key, required=False, absolute=False) -> str | None:
        if value is None:
            if required:
                self.fail(key, "is required")
            return None
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {type(value).__name__}")
        if "\0" in value:
            self.fail(key, "must not contain a NUL byte")
        if absolute and not value.startswith("/"):
            self.fail(key, f"must be an absolute path, got {value!r}")
        return value

    def strs(self, value, key) -> list[str]:
        return [self.str(v, f"{key}[{i}]", required=True) for i, v in enumerate(self.list(value, key))]

    def int(self, value, key, lo: int, hi: int, required=False) -> int | None:
        if value is None:
            if required:
                self.fail(key, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected an integer, got {type(value).__name__}")
        if not lo <= value <= hi:
            self.fail(key, f"must be between {lo} and {hi}, got {value}")
        return value

    def bool(self, value, key) -> bool:
        if value is None:
            return False
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {type(value).__name__}")
        return value


def load(bundle: str, config: str = "config.json") -> Spec:
    """Reads BUNDLE/config.json. PolicyError(path, key, reason) if it is bad."""
    bundle = os.path.abspath(bundle)
    path = os.path.join(bundle, config)
    text = read_text(path, missing="no such file: is --bundle the bundle's directory?")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise PolicyError(path, None, f"not valid JSON: {e}") from None
    return parse(doc, bundle, path)


def parse(doc: Any, bundle: str, path: str) -> Spec:
    r = _Reader(path)
    doc = r.obj(doc, "(document)", required=True)
    r.str(doc.get("ociVersion"), "ociVersion", required=True)
    root = r.obj(doc.get("root"), "root", required=True)
    rootfs = r.str(root.get("path"), "root.path", required=True)
    if not rootfs:
        r.fail("root.path", "must not be empty")
    rootfs = os.path.realpath(os.path.join(bundle, rootfs))
    if not os.path.isdir(rootfs):
        r.fail("root.path", f"{rootfs}: no such directory")
    if rootfs == "/":
        r.fail("root.path", "the host's / cannot be a container's root")
    linux = r.obj(doc.get("linux"), "linux")
    ignored = []
    spec = Spec(
        path=path, bundle=bundle, root=rootfs,
        readonly=r.bool(root.get("readonly"), "root.readonly"),
        process=_process(r, doc.get("process"), "process") if "process" in doc else None,
        hostname=r.str(doc.get("hostname"), "hostname"),
        mounts=[_mount(r, m, f"mounts[{i}]", bundle) for i, m in enumerate(r.list(doc.get("mounts"), "mounts"))],
        namespaces=_namespaces(r, linux.get("namespaces")),
        uid_map=_idmap(r, linux.get("uidMappings"), "linux.uidMappings"),
        gid_map=_idmap(r, linux.get("gidMappings"), "linux.gidMappings"),
        masked=[r.str(p, f"linux.maskedPaths[{i}]", absolute=True)
                for i, p in enumerate(r.list(linux.get("maskedPaths"), "linux.maskedPaths"))],
        readonly_paths=[r.str(p, f"linux.readonlyPaths[{i}]", absolute=True)
                        for i, p in enumerate(r.list(linux.get("readonlyPaths"), "linux.readonlyPaths"))],
        devices=[_device(r, d, f"linux.devices[{i}]")
                 for i, d in enumerate(r.list(linux.get("devices"), "linux.devices"))],
        sysctl=_sysctl(r, linux.get("sysctl")),
        resources=r.obj(linux.get("resources"), "linux.resources"),
        seccomp=seccomp.parse(r.obj(linux.get("seccomp"), "linux.seccomp"), path)
        if linux.get("seccomp") else None,
        hooks=_hooks(r, doc.get("hooks")),
        annotations=_annotations(r, doc.get("annotations")),
        ignored=ignored,
    )
    if spec.hostname is not None and "uts" not in spec.namespaces:
        r.fail("hostname", "needs a uts namespace (linux.namespaces)")
    if (spec.uid_map or spec.gid_map) and "user" not in spec.namespaces:
        r.fail("linux.uidMappings", "needs a user namespace (linux.namespaces)")
    if spec.namespaces.get("user", "") is None and not (spec.uid_map and spec.gid_map):
        r.fail("linux.uidMappings", "a new user namespace needs uidMappings and gidMappings")
    if "mount" not in spec.namespaces:
        # Only a chroot then: mounting would change the caller's namespace.
        ignored += [k for k, v in (("mounts", spec.mounts), ("linux.maskedPaths", spec.masked),
                                   ("linux.readonlyPaths", spec.readonly_paths),
                                   ("linux.devices", spec.devices)) if v]
    for key in ("rootfsPropagation", "mountLabel", "intelRdt", "personality", "cgroupsPath"):
        if linux.get(key) or doc.get(key):
            ignored.append(f"linux.{key}")
    return spec


def _process(r: _Reader, value, key: str) -> Process:
    p = r.obj(value, key, required=True)
    args = r.strs(p.get("args"), f"{key}.args")
    if not args or not args[0]:
        r.fail(f"{key}.args", "needs at least the program to run")
    env = r.strs(p.get("env"), f"{key}.env")
    for i, item in enumerate(env):
        if "=" not in item:
            r.fail(f"{key}.env[{i}]", f"expected NAME=VALUE, got {item!r}")
    cwd = r.str(p.get("cwd"), f"{key}.cwd", required=True, absolute=True)
    user = r.obj(p.get("user"), f"{key}.user")
    uid = r.int(user.get("uid", 0), f"{key}.user.uid", 0, _MAX_ID - 1)
    gid = r.int(user.get("gid", 0), f"{key}.user.gid", 0, _MAX_ID - 1)
    groups = [r.int(g, f"{key}.user.additionalGids[{i}]", 0, _MAX_ID - 1)
              for i, g in enumerate(r.list(user.get("additionalGids"), f"{key}.user.additionalGids"))]
    if len(groups) > 65536:
        r.fail(f"{key}.user.additionalGids", "at most 65536 groups")
    caps = None
    if p.get("capabilities") is not None:
        c = r.obj(p.get("capabilities"), f"{key}.capabilities")
        caps = {}
        for kind in ("bounding", "effective", "permitted", "inheritable", "ambient"):
            names = r.strs(c.get(kind), f"{key}.capabilities.{kind}")
            for name in names:
                if name not in CAP_NUMBER:
                    r.fail(f"{key}.capabilities.{kind}", f"unknown capability {name!r}")
            caps[kind] = tuple(names)
    rlimits = []
    for i, item in enumerate(r.list(p.get("rlimits"), f"{key}.rlimits")):
        k = f"{key}.rlimits[{i}]"
        item = r.obj(item, k, required=True)
        name = r.str(item.get("type"), f"{k}.type", required=True)
        if name not in RLIMITS:
            r.fail(f"{k}.type", f"unknown rlimit {name!r}")
        soft = r.int(item.get("soft"), f"{k}.soft", 0, 2**64 - 1, required=True)
        hard = r.int(item.get("hard"), f"{k}.hard", 0, 2**64 - 1, required=True)
        if soft > hard:
            r.fail(f"{k}.soft", f"{soft} is above the hard limit {hard}")
        rlimits.append((RLIMITS[name], soft, hard))
    return Process(
        args=args, env=env, cwd=cwd, uid=uid, gid=gid, groups=groups,
        terminal=r.bool(p.get("terminal"), f"{key}.terminal"),
        caps=caps, rlimits=rlimits,
        no_new_privs=r.bool(p.get("noNewPrivileges"), f"{key}.noNewPrivileges"),
        oom_score_adj=r.int(p.get("oomScoreAdj"), f"{key}.oomScoreAdj", -1000, 1000),
    )


def parse_process(doc: Any, source: str) -> Process:
    """An OCI process object (exec --process FILE); PolicyError naming the key."""
    return _process(_Reader(source), doc, "process")


def _mount(r: _Reader, value, key: str, bundle: str) -> Mount:
    m = r.obj(value, key, required=True)
    dst = r.str(m.get("destination"), f"{key}.destination", required=True, absolute=True)
    if dst == "/" or any(part == ".." for part in dst.split("/")):
        r.fail(f"{key}.destination", f"must be a path below / without '..', got {dst!r}")
    kind = r.str(m.get("type"), f"{key}.type") or ""
    src = r.str(m.get("source"), f"{key}.source") or kind or "none"
    flags, data = 0, []
    for i, opt in enumerate(r.strs(m.get("options"), f"{key}.options")):
        if opt in _FLAGS:
            on, off = _FLAGS[opt]
            flags = (flags | on) & ~off
        elif opt not in _IGNORED_OPTIONS:
            if "," in opt:
                r.fail(f"{key}.options[{i}]", f"one option per item, got {opt!r}")
            data.append(opt)
    if kind == "bind" or flags & MS_BIND:
        flags |= MS_BIND
        src = os.path.join(bundle, src) if not src.startswith("/") else src
        if not os.path.exists(src):
            r.fail(f"{key}.source", f"{src}: no such file or directory")
        return Mount(dst, src, None, flags, None)
    if not kind:
        r.fail(f"{key}.type", "is required for a mount that is not a bind")
    if kind in ("cgroup", "cgroup2"):
        # No cgroups here by design (limits are enforced at the calls): an
        # empty read-only directory, so nothing of the host's shows.
        return Mount(dst, "cgroup", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                     "size=0,mode=555")
    return Mount(dst, src, kind, flags, ",".join(data) or None)


def _namespaces(r: _Reader, value) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for i, ns in enumerate(r.list(value, "linux.namespaces")):
        key = f"linux.namespaces[{i}]"
        ns = r.obj(ns, key, required=True)
        kind = r.str(ns.get("type"), f"{key}.type", required=True)
        if kind not in _NS_TYPES:
            r.fail(f"{key}.type", f"unknown namespace {kind!r} (known: {', '.join(_NS_TYPES)})")
        if kind in out:
            r.fail(f"{key}.type", f"namespace {kind!r} is listed twice")
        path = r.str(ns.get("path"), f"{key}.path", absolute=True)
        if path is not None and not os.path.exists(path):
            r.fail(f"{key}.path", f"{path}: no such namespace file")
        out[kind] = path or None
    return out


def _idmap(r: _Reader, value, key: str) -> list[tuple[int, int, int]]:
    out = []
    for i, m in enumerate(r.list(value, key)):
        k = f"{key}[{i}]"
        m = r.obj(m, k, required=True)
        line = (r.int(m.get("containerID"), f"{k}.containerID", 0, _MAX_ID - 1, required=True),
                r.int(m.get("hostID"), f"{k}.hostID", 0, _MAX_ID - 1, required=True),
                r.int(m.get("size"), f"{k}.size", 1, _MAX_ID, required=True))
        out.append(line)
    if len(out) > 340:
        r.fail(key, "at most 340 lines (the kernel's limit)")
    return out


def _device(r: _Reader, value, key: str) -> Device:
    d = r.obj(value, key, required=True)
    path = r.str(d.get("path"), f"{key}.path", required=True, absolute=True)
    if any(part == ".." for part in path.split("/")):
        r.fail(f"{key}.path", f"must not contain '..', got {path!r}")
    kind = r.str(d.get("type"), f"{key}.type", required=True)
    if kind not in _DEVICE_TYPES:
        r.fail(f"{key}.type", f"must be c, b, u or p, got {kind!r}")
    major = r.int(d.get("major", 0), f"{key}.major", 0, 4095, required=kind != "p")
    minor = r.int(d.get("minor", 0), f"{key}.minor", 0, 2**20 - 1, required=kind != "p")
    mode = r.int(d.get("fileMode", 0o666), f"{key}.fileMode", 0, 0o7777)
    uid = r.int(d.get("uid", 0), f"{key}.uid", 0, _MAX_ID - 1)
    gid = r.int(d.get("gid", 0), f"{key}.gid", 0, _MAX_ID - 1)
    return Device(path, _DEVICE_TYPES[kind] | mode, major or 0, minor or 0, uid, gid)


def _sysctl(r: _Reader, value) -> dict[str, str]:
    out = {}
    for name, v in r.obj(value, "linux.sysctl").items():
        key = f"linux.sysctl.{name}"
        r.str(v, key)
        if not name or "/" in name or ".." in name or name.startswith(".") or "\0" in name:
            r.fail(key, "not a sysctl name")
        out[name] = v
    return out


def _hooks(r: _Reader, value) -> dict[str, list[Hook]]:
    hooks = r.obj(value, "hooks")
    out = {}
    for kind in _HOOK_KINDS:
        items = []
        for i, h in enumerate(r.list(hooks.get(kind), f"hooks.{kind}")):
            k = f"hooks.{kind}[{i}]"
            h = r.obj(h, k, required=True)
            items.append(Hook(r.str(h.get("path"), f"{k}.path", required=True, absolute=True),
                              r.strs(h.get("args"), f"{k}.args"), r.strs(h.get("env"), f"{k}.env"),
                              r.int(h.get("timeout"), f"{k}.timeout", 1, 2**31 - 1)))
        out[kind] = items
    return out


def _annotations(r: _Reader, value) -> dict[str, str]:
    out = {}
    for name, v in r.obj(value, "annotations").items():
        out[name] = r.str(v, f"annotations.{name}")
    return out
