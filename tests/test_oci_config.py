"""The OCI config reader and the limits mapping, in process: valid specs
read as they should, and mutated ones give a PolicyError naming a key,
never another exception."""
import copy
import os
import json
import random

import pytest

from governor._errors import PolicyError
from governor.oci import config, limits, seccomp
from governor.oci.spec import default_spec
from governor.rules import Action, Arg


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    return tmp_path


def test_default_spec_reads(bundle):
    spec = config.parse(default_spec(), str(bundle), "config.json")
    assert spec.root == str(bundle / "rootfs") and spec.readonly
    assert spec.namespaces == {"pid": None, "network": None, "ipc": None, "uts": None,
                               "mount": None}
    assert [m.dst for m in spec.mounts][:2] == ["/proc", "/dev"]
    assert spec.process.caps["bounding"][0] == "CAP_CHOWN"


def test_podman_like_resources_map_to_limits():
    lim, ignored = limits.from_spec(
        {"cpu": {"quota": 50000, "period": 100000, "shares": 512},
         "memory": {"limit": 268435456, "swap": 536870912}, "pids": {"limit": 32},
         "blockIO": {"throttleWriteBpsDevice": [{"major": 254, "minor": 0, "rate": 2097152},
                                                {"major": 8, "minor": 0, "rate": 1048576}]},
         "devices": [{"allow": False, "access": "rwm"}]},
        {"org.governor.limit.net_send": "4MiB/s", "org.governor.on_exhausted.net_send": "deny",
         "io.podman.annotations.autoremove": "TRUE"}, "config.json")
    assert lim.cpu == 0.5 and lim.memory_resident == 268435456 and lim.processes == 32
    assert lim.mode_of("processes") == "deny"
    assert lim.disk_write == 1048576            # the smallest rate listed
    assert lim.net_send == 4 * 1024 * 1024 and lim.mode_of("net_send") == "deny"
    assert lim.memory is None
    assert set(ignored) == {"linux.resources.cpu.shares", "linux.resources.memory.swap",
                            "linux.resources.devices"}


def test_seccomp_profile_reads():
    profile = seccomp.parse({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                     {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                     {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"},
                     {"names": ["no_such_call_2099"], "action": "SCMP_ACT_ALLOW"},
                     {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                               {"index": 0, "value": 0x20000, "op": "SCMP_CMP_EQ"}]}]},
        "config.json")
    rules, default = profile
    assert default == Action("errno", 38)
    assert [r.syscall for r in rules] == ["read", "write", "personality", "ptrace", "personality",
                                          "personality"]
    assert rules[2].args == (Arg(0, "eq", 8),)
    assert rules[3].action == Action("errno", 1)   # EPERM, as runc
    # one argument compared twice: two rules, ORed (runc's reading)
    assert [r.args for r in rules[4:]] == [(Arg(0, "eq", 0),), (Arg(0, "eq", 0x20000),)]


@pytest.mark.parametrize("doc, key", [
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, "linux.seccomp.defaultAction"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x"}, "linux.seccomp.listenerPath"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "X"}]},
     "linux.seccomp.syscalls[0].action"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
      "action": "SCMP_ACT_ALLOW", "args": [{"index": 9, "op": "SCMP_CMP_EQ"}]}]},
     "linux.seccomp.syscalls[0].args[0].index"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1}, "linux.seccomp.defaultErrnoRet"),
])
def test_bad_seccomp_profiles(doc, key):
    with pytest.raises(PolicyError) as e:
        seccomp.parse(doc, "config.json")
    assert e.value.key == key


def _mutations(value, rng: random.Random):
    """Replacements a fuzzer would try for a value of the spec."""
    return [None, "", "x", -1, 2**70, 1.5, True, [], {}, ["x"], {"x": 1}, "/", "\0",
            rng.randint(-5, 5)]


def _paths(doc, prefix=()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


def test_mutated_specs_fail_with_a_policy_error_or_read(bundle):
    """Every key of a full spec replaced by values of the wrong type or
    range, one at a time: the reader and the limits mapping answer with a
    PolicyError or a valid result, never another exception."""
    rng = random.Random(7)
    base = default_spec()
    base["linux"]["resources"] = {"cpu": {"quota": 1000, "period": 100000},
                                  "memory": {"limit": 1 << 30}, "pids": {"limit": 9},
                                  "blockIO": {"throttleReadBpsDevice": [
                                      {"major": 8, "minor": 0, "rate": 100}]}}
    base["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]}
    base["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
    base["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 10}]
    base["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    base["hooks"] = {"poststop": [{"path": "/bin/true", "args": ["true"], "timeout": 3}]}
    base["annotations"] = {"org.governor.limit.net_send": "1MiB/s"}
    read = failed = 0
    for path in list(_paths(base)):
        for value in _mutations(None, rng):
            doc = copy.deepcopy(base)
            target = doc
            for p in path[:-1]:
                target = target[p]
            target[path[-1]] = value
            try:
                spec = config.parse(json.loads(json.dumps(doc)), str(bundle), "config.json")
                limits.from_spec(spec.resources, spec.annotations, "config.json")
                read += 1
            except PolicyError as e:
                assert e.source == "config.json" and str(e)
                failed += 1
    assert read and failed > read / 10


def test_config_json_that_is_not_a_file_is_refused(bundle):
    """A FIFO as config.json would block the runtime; a device would be read
    until memory runs out. Each is a PolicyError naming the file."""
    os.mkfifo(bundle / "config.json")
    with pytest.raises(PolicyError) as ei:
        config.load(str(bundle))
    assert (ei.value.source, ei.value.reason) == (str(bundle / "config.json"),
                                                  "not a regular file but a FIFO")
    with pytest.raises(PolicyError, match="no such file: is --bundle the bundle's directory?"):
        config.load(str(bundle / "rootfs"))
