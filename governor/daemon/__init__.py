"""One supervisor per host: `governor daemon`, and the keepers that hand it
their groups (`governor run --daemon`).

    governor run --daemon ── spawns the group (init shim: its child) ──┐
      keeps a duplicate of the listener                                │
      ── unix socket: {"op": "adopt", limits, class file, ...} ──────> governor daemon
         + the listener (SCM_RIGHTS)                                   one Supervisor: engines,
                                                                       classes, state files
    the record file of the group (native/keep.h) <── written by the engine, per call

The keeper stays the command's parent, so its exit status, signals, the
stop timeout and PDEATHSIG behave as without the daemon. If the daemon
dies, the keeper's duplicate keeps the listener (and the calls waiting in
it) alive; it connects again when a daemon is back and sends the listener
with {"resume": true}; the new daemon takes the group's usage and the calls
its predecessor had received and not answered from the record file.

Paths: the socket is $GOVERNOR_RUN_DIR/daemon.sock (default
/run/governor/daemon.sock), the record files are in $GOVERNOR_RUN_DIR/daemon/.
"""
from __future__ import annotations

import os
from pathlib import Path


def _run_dir() -> Path:
    return Path(os.environ.get("GOVERNOR_RUN_DIR", "/run/governor"))


def default_socket() -> Path:
    return _run_dir() / "daemon.sock"


def default_records() -> Path:
    return _run_dir() / "daemon"
