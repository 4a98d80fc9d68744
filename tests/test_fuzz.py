"""Property tests (Hypothesis) of every input a user types: limits and
units, TOML policies with their [security] table, --net, --volume, --name,
--publish and --allow-syscall values. For any input: a clear PolicyError or
a valid result, never another exception; a valid result round-trips; and
nothing is created on disk when the input is refused.

`make test` runs a few dozen examples of each (profile "ci"); `make fuzz`
runs thousands (HYPOTHESIS_PROFILE=long)."""
from __future__ import annotations

import os
import string
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

from governor import Limits, PolicyError  # noqa: E402
from governor.container import Container, check_name, parse_volume, profile  # noqa: E402
from governor.container.nat import parse_publish  # noqa: E402
from governor.container.network import NetConfig, parse_net  # noqa: E402
from governor.limits import KEYS, RATE_KEYS, parse_assignments  # noqa: E402
from governor.policy import read_policy  # noqa: E402

settings.register_profile("ci", max_examples=40, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.register_profile("long", max_examples=3000, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

UNITS = ["", "b", "k", "kb", "KiB", "MiB", "mb", "G", "GiB", "TiB", "parsecs", "/s", "MiB/s"]
number_text = st.one_of(st.integers(-10**20, 10**20).map(str),
                        st.floats(allow_nan=True, allow_infinity=True).map(repr))
quantity = st.one_of(
    st.builds(lambda n, u, sp: f"{n}{sp}{u}", number_text, st.sampled_from(UNITS),
              st.sampled_from(["", " "])),
    st.text(max_size=12),
    st.integers(-10**20, 10**20), st.floats(), st.booleans(), st.none(),
    st.lists(st.integers(), max_size=2))
keys = st.one_of(st.sampled_from(KEYS), st.text(string.ascii_lowercase + "_", max_size=12))


def same(a: Limits, b: Limits) -> bool:
    return a.as_dict() == b.as_dict()


@given(st.dictionaries(keys, quantity, max_size=4),
       st.dictionaries(st.sampled_from(RATE_KEYS), quantity, max_size=2),
       st.dictionaries(st.sampled_from(KEYS), st.sampled_from(["hold", "deny", "kill", ""]),
                       max_size=2))
def test_limits_refuse_clearly_or_round_trip(values, burst, modes):
    try:
        limits = Limits(burst=burst, on_exhausted=modes, **values)
    except PolicyError as e:
        assert e.reason and str(e).startswith("Limits")
        return
    again = Limits(burst=limits.burst, on_exhausted=limits.on_exhausted, **dict(limits.items()))
    assert same(limits, again)


@given(st.lists(st.text(max_size=30), max_size=4))
def test_limit_options_refuse_clearly_or_round_trip(pairs):
    try:
        limits = Limits(source="--limit", **parse_assignments(pairs, "--limit"))
    except PolicyError as e:
        assert e.source == "--limit" and e.reason
        return
    text = [f"{k}={v!r}" if isinstance(v, float) else f"{k}={v}" for k, v in limits.items()]
    assert same(limits, Limits(source="--limit", **parse_assignments(text, "--limit")))


toml_value = st.one_of(st.integers(-10**6, 10**12).map(str), st.sampled_from(
    ['"4MiB/s"', '"64MiB"', '"-1"', '"fast"', "true", "[1, 2]", '["keyctl"]', '["getpid"]',
     '"hold"', '"deny"', "1.5", "nan", "inf", '"50%"', "{}"]))
toml_key = st.sampled_from(list(KEYS) + ["allow", "deny", "bandwidth", "x"])
toml_table = st.sampled_from(["limits", "burst", "on_exhausted", "security", "limitz"])
policy_text = st.one_of(
    st.lists(st.tuples(toml_table, st.lists(st.tuples(toml_key, toml_value), max_size=3)),
             max_size=3).map(lambda tables: "".join(
                 f"[{t}]\n" + "".join(f"{k} = {v}\n" for k, v in dict(kv).items())
                 for t, kv in dict(tables).items())),
    st.text(max_size=60),
    # tomllib parses nested arrays and inline tables recursively
    st.integers(1, 5000).map(lambda n: "[limits]\nnet_send = " + "[" * n + "]" * n),
    st.integers(1, 3000).map(lambda n: "x = " + "{a = " * n + "1" + "}" * n))


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@given(policy_text)
def test_policy_files_refuse_clearly_or_round_trip(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "p.toml"
        path.write_text(text)
        before = _tree(Path(d))
        try:
            policy = read_policy(path)
        except PolicyError as e:
            assert e.source.startswith(str(path)) and e.reason
            assert _tree(Path(d)) == before        # nothing written
            return
        lines = ["[limits]"] + [f"{k} = {v!r}" for k, v in policy.limits.items()]
        lines += ["[burst]"] + [f"{k} = {v!r}" for k, v in policy.limits.burst.items()]
        lines += ["[on_exhausted]"] + [f'{k} = "{v}"' for k, v in
                                       policy.limits.on_exhausted.items()]
        lines += ["[security]", f"allow = {list(policy.allow_syscalls)!r}".replace("'", '"')]
        path.write_text("\n".join(lines) + "\n")
        again = read_policy(path)
        assert same(again.limits, policy.limits)
        assert again.allow_syscalls == policy.allow_syscalls


CONFIG = NetConfig.from_env("10.231.0.0/16", "gvfuzz0", "/nonexistent-governor-state")
net_text = st.one_of(
    st.sampled_from(["none", "auto", " auto ", "AUTO"]),
    st.builds(lambda a, b, c, d, p: f"{a}.{b}.{c}.{d}/{p}", st.integers(-1, 300),
              st.integers(0, 300), st.integers(0, 300), st.integers(-1, 300),
              st.integers(-1, 40)),
    st.text(max_size=20))


@given(net_text)
def test_net_values_refuse_clearly_or_round_trip(text):
    try:
        request = parse_net(text, CONFIG)
    except PolicyError as e:
        assert e.source == "--net" and e.reason
        return
    canonical = request.mode if request.mode != "static" else \
        f"{request.address}/{CONFIG.pool.prefixlen}"
    assert parse_net(canonical, CONFIG) == request


path_part = st.sampled_from(["", "/", ".", "..", "srv", "a b", "x:y", "/proc", "/dev/x",
                             "tmp", "data", "//", "\0", "\n"])
inside_text = st.lists(path_part, min_size=1, max_size=6).map("".join)
volume_text = st.one_of(
    st.builds(lambda host, inside: f"{host}:{inside}",
              st.sampled_from(["HOST/data", "HOST/missing", "HOST/data\0", "\0HOST", "HOST/f",
                               ""]), inside_text),
    st.text(max_size=20))


@given(volume_text)
def test_volume_values_refuse_clearly_or_round_trip(text):
    with tempfile.TemporaryDirectory() as d:
        os.mkdir(Path(d) / "data")
        (Path(d) / "f").write_text("")
        spec = text.replace("HOST", d)
        before = _tree(Path(d))
        try:
            host, inside = parse_volume(spec)
        except PolicyError as e:
            assert e.source == "--volume" and e.reason
            assert _tree(Path(d)) == before
            return
        assert "\0" not in host + inside   # C would cut the path there
        assert parse_volume(f"{host}:{inside}") == (host, inside)


name_text = st.one_of(
    st.builds(lambda a, b: a + b, st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,64}", fullmatch=True),
              st.sampled_from(["", "\n", " ", "\0", "/", "\u00e9"])),
    st.text(max_size=70))


@given(name_text)
def test_names_refuse_clearly_or_pass_again(name):
    try:
        check_name(name)
    except PolicyError as e:
        assert e.source == "--name" and e.reason
        return
    check_name(str(name))
    # A hostname and a registry key: printable ASCII, no space, 63 at most.
    assert name.isascii() and name.isprintable() and " " not in name and len(name) <= 63


@given(st.one_of(st.builds(lambda h, c, p: f"{h}:{c}{p}", st.integers(-5, 70000),
                           st.integers(-5, 70000),
                           st.sampled_from(["", "/tcp", "/udp", "/sctp", "/"])),
                 st.text(max_size=16)))
def test_publish_values_refuse_clearly_or_round_trip(text):
    try:
        port = parse_publish(text)
    except PolicyError as e:
        assert e.source == "--publish" and e.reason
        return
    assert parse_publish(str(port)) == port


@given(st.lists(st.one_of(st.sampled_from(profile.DENIED_CALLS + ("getpid", "write")),
                          st.text(max_size=12), st.integers()), max_size=4))
def test_allow_syscall_values_refuse_clearly_or_round_trip(names):
    try:
        allowed = profile.check_allow(names, "--allow-syscall")
    except PolicyError as e:
        assert e.source == "--allow-syscall" and e.reason
        return
    assert profile.check_allow(allowed, "--allow-syscall") == allowed
    assert not {r.syscall for r in profile.rules(allowed)} & \
        {profile._number(n) for n in allowed}


@given(net_text, st.lists(volume_text, max_size=2), st.lists(st.text(max_size=12), max_size=2),
       st.lists(st.sampled_from(["keyctl", "nope", "getpid"]), max_size=2))
@settings(max_examples=int(os.environ.get("GOVERNOR_FUZZ_CONTAINERS", "25")))
def test_a_refused_container_leaves_nothing_on_disk(net, volumes, publish, allow):
    """Container(...) checks everything it is given before it touches the
    disk: its state directory is made only by a claim."""
    with tempfile.TemporaryDirectory() as d:
        rootfs = Path(d) / "rootfs"
        rootfs.mkdir()
        before = _tree(Path(d))
        try:
            Container(rootfs=str(rootfs), volumes=volumes, net=net, publish=publish,
                      allow_syscalls=allow, state_dir=f"{d}/state", pool="10.231.0.0/16",
                      bridge="gvfuzz0")
        except PolicyError as e:
            assert e.reason
        assert _tree(Path(d)) == before
