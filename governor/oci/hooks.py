"""OCI hooks: each runs with the container's state (JSON) on its stdin,
its own args (args[0] is its argv[0]), env and timeout. createRuntime,
prestart and poststart, poststop run in the runtime's namespaces;
createContainer and startContainer in the container's (util-linux's
nsenter into every namespace of its init)."""
from __future__ import annotations

import json

from .._errors import GovernorError
from .state import State


class Hook:
    def __init__(self, path: str, args: list[str], env: list[str], timeout: int | None):
        self.path, self.args, self.env, self.timeout = path, args, env, timeout


def _run(h: Hook, kind: str, state: dict, prefix: list[str]) -> None:
    import subprocess
    argv = prefix + [h.path] + h.args[1:] if prefix else (h.args or [h.path])
    env = dict(item.partition("=")[::2] for item in h.env)
    try:
        done = subprocess.run(argv, executable=None if prefix else h.path,
                              input=json.dumps(state).encode(), env=env, timeout=h.timeout,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except subprocess.TimeoutExpired:
        raise GovernorError(f"{kind} hook {h.path}: timed out after {h.timeout}s") from None
    except OSError as e:
        raise GovernorError(f"{kind} hook {h.path}: {e.strerror}") from None
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()
        raise GovernorError(f"{kind} hook {h.path} failed with status {done.returncode}"
                            + (f": {err}" if err else ""))


def run(hooks: list[Hook], kind: str, st: State) -> None:
    """In the runtime's namespaces; GovernorError at the first that fails."""
    for h in hooks:
        _run(h, kind, st.oci(), [])


def run_in_container(hooks: list[Hook], kind: str, st: State, init_pid: int) -> None:
    for h in hooks:
        _run(h, kind, st.oci(), ["nsenter", "--target", str(init_pid), "--all", "--"])


def as_json(hooks: list[Hook]) -> list[dict]:
    return [vars(h) for h in hooks]


def from_json(items: list[dict]) -> list[Hook]:
    return [Hook(**h) for h in items]
