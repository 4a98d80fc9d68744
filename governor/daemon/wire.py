"""The daemon's protocol: one JSON object per SOCK_SEQPACKET message, fds as
SCM_RIGHTS; a group's limits as plain JSON.

A keeper keeps one connection per group for the group's life: the daemon
knows the keeper is gone when it closes, and the keeper knows the daemon is
gone when it reads EOF.

    {"op": "adopt", "name", "limits", "init", "cmd", "argv", "disk_area",
     "interface", "resume"} + the listener   -> {"ok", "daemon", "resumed"}
    {"op": "usage"}                          -> {"usage"}
    {"op": "close"}                          -> {"ok"}
    any error                                -> {"error", "status"}
"""
from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path

from .._errors import DaemonError
from ..limits import Limits
from ..share import load_class

MESSAGE_MAX = 1 << 16
ARGV_SHOWN = 64        # argv entries sent for `governor ps`, each cut to ARG_SHOWN characters
ARG_SHOWN = 256


def send(sock: socket.socket, msg: dict, fds=()) -> None:
    data = json.dumps(msg).encode()
    if len(data) > MESSAGE_MAX:
        raise DaemonError(f"request too large for the daemon ({len(data)} bytes)")
    socket.send_fds(sock, [data], list(fds))


def recv(sock: socket.socket, max_fds: int = 0) -> tuple[dict | None, list[int]]:
    """One message and its fds; (None, []) at EOF. DaemonError if it is not
    one of ours."""
    data, fds, flags, _ = socket.recv_fds(sock, MESSAGE_MAX, max_fds)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in fds:
            os.close(fd)
        raise DaemonError("a message was cut short (too large, or too many fds)")
    if not data:
        return None, fds
    try:
        msg = json.loads(data)
    except ValueError:
        msg = None
    if not isinstance(msg, dict):
        for fd in fds:
            os.close(fd)
        raise DaemonError("not a message of the daemon's protocol")
    return msg, fds


def peer(sock: socket.socket) -> tuple[int, int, int]:
    """The connected process's pid, uid and gid (SO_PEERCRED)."""
    return struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))


def shown_argv(argv) -> list[str]:
    return [a[:ARG_SHOWN] for a in list(argv)[:ARGV_SHOWN]]


def limits_to_wire(limits: Limits) -> dict:
    """What a group's Limits say, with its class as the file it came from:
    the daemon reads that file, and groups naming one file share its class."""
    cls = limits.parent
    if cls is not None and cls.file is None:
        raise DaemonError(f"class {cls.name!r} was not read from a file: the daemon shares "
                          "classes by their files", status=2)
    return {"values": dict(limits.items()), "burst": dict(limits.burst),
            "on_exhausted": dict(limits.on_exhausted), "guarantee": dict(limits.guarantee),
            "weight": limits.weight, "class": cls.file if cls is not None else None}


def limits_from_wire(spec, source: str, classes: dict) -> Limits:
    """The Limits of limits_to_wire(); PolicyError if they are not valid
    here (the class file changed, or a guarantee no longer fits)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("values"), dict):
        raise DaemonError("adopt: no limits", status=2)
    cls = load_class(Path(spec["class"]), cache=classes) if spec.get("class") else None
    return Limits(burst=spec.get("burst"), on_exhausted=spec.get("on_exhausted"),
                  guarantee=spec.get("guarantee"), weight=spec.get("weight"), parent=cls,
                  source=source, **spec["values"])
