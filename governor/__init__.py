"""governor: per-group resource limits enforced in user space by holding
system calls (seccomp user notification, C engine).

    from governor import Supervisor, Limits
    with Supervisor() as sup:
        tenant = sup.group("tenant-a", Limits(net_send="4MiB/s", processes=32))
        proc = tenant.spawn(["python3", "serve.py"])
        proc.wait()
        print(tenant.usage())
"""
from .container import Container
from ._errors import EngineError, GovernorError, PolicyError, SpawnError
from .limits import Limits
from .policy import load_policy
from .supervisor import Event, Group, Process, ResourceUsage, Supervisor, Usage

__all__ = ["Supervisor", "Group", "Process", "Limits", "Container", "Usage", "ResourceUsage", "Event",
           "load_policy", "GovernorError", "PolicyError", "SpawnError", "EngineError"]
