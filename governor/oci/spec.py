"""`governor-oci spec` (a default config.json, as `runc spec` writes one,
with governor's defaults) and `governor-oci features`."""
from __future__ import annotations

import json
import os

from .._errors import GovernorError
from ..container.setup import CAPABILITIES, DEFAULT_CAPS, DEFAULT_MASKED, DEFAULT_READONLY
from ..limits import KEYS
from .config import _FLAGS, _IGNORED_OPTIONS, _NS_TYPES
from .limits import PREFIX
from .state import OCI_VERSION


def default_spec(rootless: bool = False) -> dict:
    caps = list(DEFAULT_CAPS)
    namespaces = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]
    spec = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "governor",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": namespaces,
            "maskedPaths": list(DEFAULT_MASKED),
            "readonlyPaths": list(DEFAULT_READONLY),
        },
    }
    if rootless:
        namespaces.append({"type": "user"})
        spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": os.getuid(), "size": 1}]
        spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": os.getgid(), "size": 1}]
    return spec


def write_default(bundle: str, rootless: bool) -> None:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "x") as f:
            json.dump(default_spec(rootless), f, indent=2)
            f.write("\n")
    except FileExistsError:
        raise GovernorError(f"{path} exists already") from None
    except OSError as e:
        raise GovernorError(f"{path}: {e.strerror}") from None


def features() -> dict:
    """runtime-spec's features document."""
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart",
                  "poststop"],
        "mountOptions": sorted(set(_FLAGS) | _IGNORED_OPTIONS),
        "linux": {
            "namespaces": list(_NS_TYPES),
            "capabilities": list(CAPABILITIES),
            "cgroup": {"v1": False, "v2": False, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {
            "org.governor.limits": ", ".join(f"{PREFIX}limit.{k}" for k in KEYS),
            "org.governor.modes": f"{PREFIX}on_exhausted.KEY = hold|deny",
        },
    }
