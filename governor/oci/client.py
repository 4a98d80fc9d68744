"""Talking to a container's supervisor (governor/oci/supervisor.py) over
ROOT/ID/sock: one JSON request, fds as SCM_RIGHTS, one JSON answer. Light:
`start` and `exec` import only this."""
from __future__ import annotations

import json
import os
import socket

from .._errors import GovernorError
from .state import Store

REQUEST_MAX = 65536


class ShortPath:
    """A socket path under ROOT/ID, which may be longer than AF_UNIX takes
    (108 bytes): reached through /proc/self/fd/N of the directory."""

    def __init__(self, directory):
        self.fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def __enter__(self) -> str:
        return f"/proc/self/fd/{self.fd}/sock"

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


def request(store: Store, cid: str, message: dict, fds: list[int] = (), timeout: float = 30) -> dict:
    """Sends one request to container cid's supervisor; its answer.
    GovernorError if it is gone or says no."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    s.settimeout(timeout)
    try:
        with ShortPath(store.dir(cid)) as path:
            s.connect(path)
        socket.send_fds(s, [json.dumps(message).encode()], list(fds))
        reply = s.recv(REQUEST_MAX)
    except OSError as e:
        raise GovernorError(f"container {cid!r}: its supervisor does not answer ({e.strerror or e})") from None
    finally:
        s.close()
    try:
        answer = json.loads(reply)
    except ValueError:
        raise GovernorError(f"container {cid!r}: its supervisor ended") from None
    if "error" in answer:
        raise GovernorError(answer["error"])
    return answer
