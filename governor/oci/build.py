"""An OCI spec as native/container.c's data: the container's Setup and its
process's ProcessSetup (governor/container/setup.py), the same structures
`governor run --rootfs` fills."""
from __future__ import annotations

import os

from ..container.setup import (NS_PROC_FILE, ProcessSetup, Setup)
from .config import Process, Spec


def setup(spec: Spec) -> Setup:
    """The container's namespaces and file system, as the spec says. The
    default devices (null, zero, full, random, urandom, tty) are added as
    runc adds them, whatever linux.resources.devices says: there is no
    device cgroup, and /dev holds only what is made here."""
    return Setup(
        rootfs=spec.root,
        rootfs_flags=0x1 if spec.readonly else 0,   # MS_RDONLY
        hostname=spec.hostname,
        new_ns=tuple(k for k, path in spec.namespaces.items() if path is None),
        ns_path={k: path for k, path in spec.namespaces.items() if path is not None},
        mounts=spec.mounts, default_devices=True, devices=spec.devices, sysctl=spec.sysctl,
        readonly=tuple(spec.readonly_paths), masked=tuple(spec.masked),
        uid_map=spec.uid_map, gid_map=spec.gid_map, init_joins_user_ns=True)


def join(init_pid: int, cmd_pid: int) -> Setup:
    """For `exec`: the namespaces of a running container (its init's, and
    its process's user namespace), those that differ from ours."""
    paths = {}
    for kind, name in NS_PROC_FILE.items():
        pid = cmd_pid if kind == "user" else init_pid
        theirs = f"/proc/{pid}/ns/{name}"
        try:
            if os.stat(theirs).st_ino != os.stat(f"/proc/self/ns/{name}").st_ino:
                paths[kind] = theirs
        except FileNotFoundError:
            pass
    return Setup(rootfs=None, ns_path=paths, default_devices=False, readonly=(), masked=())


def process_setup(p: Process, console_fd: int = -1) -> ProcessSetup:
    caps = p.caps
    return ProcessSetup(
        no_new_privs=p.no_new_privs,
        cap_bounding=caps["bounding"] if caps else None,
        uid=p.uid, gid=p.gid, groups=tuple(p.groups),
        caps=(caps["effective"], caps["permitted"], caps["inheritable"], caps["ambient"])
        if caps else None,
        rlimits=p.rlimits, oom_score_adj=p.oom_score_adj, console_fd=console_fd)
