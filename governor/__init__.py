"""governor: per-group resource limits enforced in user space by holding
system calls (seccomp user notification, C engine).

    from governor import Supervisor, Limits
    with Supervisor() as sup:
        tenant = sup.group("tenant-a", Limits(net_send="4MiB/s", processes=32))
        proc = tenant.spawn(["python3", "serve.py"])
        proc.wait()
        print(tenant.usage())
"""
from importlib import import_module

# Where each public name lives. Loaded at first use (PEP 562), so that a
# program that needs one corner (governor-oci's state, kill, delete...)
# does not pay for the engine, psutil and the syscall tables.
_EXPORTS = {
    "Supervisor": "supervisor", "Group": "supervisor", "Process": "supervisor",
    "Usage": "supervisor", "ResourceUsage": "supervisor", "Event": "supervisor",
    "Limits": "limits", "Container": "container", "load_policy": "policy",
    "GovernorError": "_errors", "PolicyError": "_errors", "SpawnError": "_errors",
    "EngineError": "_errors",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'governor' has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
