"""Policy files, --limit options and unit parsing: every error names its
source and key, through load_policy and through `governor run` (exit 2,
nothing started); plus the CLI's exit statuses."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from governor import GovernorError, Limits, PolicyError, Supervisor, load_policy

ROOT = Path(__file__).resolve().parent.parent
POLICIES = sorted((ROOT / "policies").glob("*.toml"))
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="spawning a group needs root")
MiB = 1 << 20


def governor(*args: str, timeout: float = 10, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "governor", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)


# (policy text, offending key or None, words the reason contains)
BAD_POLICIES = {
    "unknown_key": ("[limits]\nbandwidth = '4MiB/s'\n", "bandwidth", "unknown limit"),
    "negative_rate": ("[limits]\nnet_send = '-4MiB/s'\n", "net_send", "negative"),
    "negative_number": ("[limits]\ndisk_read = -100\n", "disk_read", "negative"),
    "negative_memory": ("[limits]\nmemory = -4096\n", "memory", "negative"),
    "negative_processes": ("[limits]\nprocesses = -3\n", "processes", "at least 1"),
    "zero_processes": ("[limits]\nprocesses = 0\n", "processes", "at least 1"),
    "zero_rate": ("[limits]\ndisk_write = 0\n", "disk_write", "0"),
    "bad_unit": ("[limits]\nnet_send = '4 parsecs/s'\n", "net_send", "unit"),
    "unparseable": ("[limits]\nnet_send = 'fast'\n", "net_send", "cannot parse"),
    "list": ("[limits]\nnet_recv = ['1MiB/s']\n", "net_recv", "list"),
    "list_processes": ("[limits]\nprocesses = [1, 2]\n", "processes", "list"),
    "boolean": ("[limits]\ndisk_write = true\n", "disk_write", "boolean"),
    "boolean_processes": ("[limits]\nprocesses = false\n", "processes", "bool"),
    "float_processes": ("[limits]\nprocesses = 2.5\n", "processes", "whole number"),
    "rate_on_memory": ("[limits]\nmemory = '64MiB/s'\n", "memory", "not a rate"),
    "memory_below_page": ("[limits]\nmemory = 100\n", "memory", "page"),
    "cpu": ("[limits]\ncpu = 10000\n", "cpu", "more than this host"),
    "unknown_table": ("[limitz]\nnet_send = '1MiB/s'\n", "limitz", "unknown table"),
    "table_not_table": ("limits = 5\n", "limits", "table"),
    "bad_mode": ("[limits]\nprocesses = 4\n[on_exhausted]\nprocesses = 'kill'\n",
                 "processes", "hold"),
    "burst_on_cap": ("[limits]\nprocesses = 4\n[burst]\nprocesses = 10\n",
                     "processes", "only rates"),
    "burst_zero": ("[limits]\nnet_send = '1MiB/s'\n[burst]\nnet_send = 0\n",
                   "net_send", "more than 0"),
    "invalid_toml": ("[limits\nnet_send = \n", None, "TOML"),
    "deep_nesting": ("[limits]\nnet_send = " + "[" * 5000 + "]" * 5000 + "\n", None,
                     "nested too deeply"),
    "burst_without_limit": ("[limits]\nnet_recv = '1MiB/s'\n[burst]\nnet_send = '1MiB'\n",
                            "net_send", "no limit net_send is set"),
    "security_unknown_key": ("[security]\ndeny = ['keyctl']\n", "security.deny", "unknown key"),
    "security_allow_not_list": ("[security]\nallow = 'keyctl'\n", "security.allow", "list"),
    "security_allow_unknown": ("[security]\nallow = ['keyctll']\n", "security.allow",
                               "unknown system call 'keyctll'"),
    "security_allow_number": ("[security]\nallow = [250]\n", "security.allow",
                              "unknown system call 250"),
    "security_allow_not_denied": ("[security]\nallow = ['getpid']\n", "security.allow",
                                  "not denied to containers"),
    "security_without_rootfs": ("[security]\nallow = ['keyctl']\n", "security.allow",
                                "needs --rootfs"),
}
# Errors that only `governor run` sees: the file itself is right.
CLI_ONLY = {"security_without_rootfs"}


@pytest.mark.parametrize("name", sorted(set(BAD_POLICIES) - CLI_ONLY))
def test_load_policy_errors(tmp_path, name):
    text, key, words = BAD_POLICIES[name]
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    with pytest.raises(PolicyError) as ei:
        load_policy(path)
    e = ei.value
    assert isinstance(e, GovernorError) and isinstance(e, ValueError)
    assert e.source.startswith(str(path)), e.source
    assert e.key == key
    assert words.lower() in e.reason.lower(), e.reason
    assert str(path) in str(e) and (key is None or key in str(e))


def test_load_policy_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(PolicyError) as ei:
        load_policy(path)
    assert (ei.value.source, ei.value.key) == (str(path), None)
    assert "no such file" in str(ei.value)


def test_load_policy_directory(tmp_path):
    with pytest.raises(PolicyError) as ei:
        load_policy(tmp_path)
    assert ei.value.source == str(tmp_path)


@pytest.mark.parametrize("name", sorted(BAD_POLICIES) + ["missing_file"])
def test_cli_policy_errors_exit_2_and_start_nothing(tmp_path, name):
    path = tmp_path / f"{name}.toml"
    if name != "missing_file":
        text, key, _ = BAD_POLICIES[name]
        path.write_text(text)
    else:
        key = None
    marker = tmp_path / "started"
    r = governor("run", "--policy", str(path), "--", "/bin/sh", "-c", f"touch {marker}")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert str(path) in r.stderr
    if key:
        assert key in r.stderr
    assert BAD_POLICIES.get(name, ("", "", ""))[2] in r.stderr
    assert "Traceback" not in r.stderr
    assert not marker.exists(), "the command ran although the policy is wrong"


# Files that are not policies: each is refused at once (stat, then a bounded
# read), where a device used to be read until memory ran out and a FIFO hung.
SPECIAL_FILES = {
    "fifo": "not a regular file but a FIFO",
    "device": "not a regular file but a character device",
    "link_to_device": "not a regular file but a character device",
    "directory": "not a regular file but a directory",
    "too_large": "larger than 1048576 bytes (1 MiB)",
    "not_utf8": "not UTF-8 text (byte 0xe9 on line 2)",
}


def special_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path = Path("/dev/zero")
    elif kind == "link_to_device":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    elif kind == "too_large":   # valid TOML, a comment 1 MiB long
        path.write_text("[limits]\n#" + "x" * MiB + "\nprocesses = 4\n")
    else:
        path.write_bytes(b"[limits]\n# caf\xe9\nprocesses = 4\n")
    return path


@pytest.mark.parametrize("option", ["--policy", "--class"])
@pytest.mark.parametrize("kind", sorted(SPECIAL_FILES))
def test_cli_refuses_files_that_are_not_configuration(tmp_path, kind, option):
    path = special_file(tmp_path, kind)
    marker = tmp_path / "started"
    r = governor("run", option, str(path), "--", "/bin/sh", "-c", f"touch {marker}")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr == f"governor: {path}: {SPECIAL_FILES[kind]}" + \
        (": not a configuration file?\n" if kind == "too_large" else "\n")
    assert not marker.exists()


@pytest.mark.parametrize("argv,shown", [
    (["admit", "--spec", "{}"], "governor: --spec: not a group specification: {}: "),
    (["console", "--listen", "127.0.0.1:0", "--token-file", "{}"], "governor: --token-file: {}: "),
])
def test_other_input_files_are_bounded(tmp_path, argv, shown):
    """The other files the CLI reads: a FIFO is refused at once (it hung)."""
    fifo = special_file(tmp_path, "fifo")
    os.chmod(fifo, 0o600)   # a token file others can read is refused for that
    r = governor(*[a.format(fifo) for a in argv], timeout=20,
                 env={**os.environ, "GOVERNOR_STATE_DIR": str(tmp_path / "state")})
    assert r.returncode == 2, r.stderr
    assert r.stderr == shown.format(fifo) + SPECIAL_FILES["fifo"] + "\n"


def test_a_class_file_is_bounded_like_a_policy(tmp_path):
    """[class] file = a FIFO: refused naming the FIFO, not hanging."""
    fifo = special_file(tmp_path, "fifo")
    path = tmp_path / "p.toml"
    path.write_text(f"[class]\nfile = '{fifo.name}'\n")
    with pytest.raises(PolicyError) as ei:
        load_policy(path)
    assert (ei.value.source, ei.value.reason) == (str(fifo), SPECIAL_FILES["fifo"])


def test_cli_burst_for_a_limit_not_set(tmp_path):
    """--burst for a rate that neither --limit nor the policy sets would be
    ignored without a word; it is an error naming the key. With the
    rate set in the policy file, the same --burst is taken."""
    path = tmp_path / "p.toml"
    path.write_text("[limits]\nnet_send = '1MiB/s'\n")
    r = governor("run", "--policy", str(path), "--burst", "net_recv=1MiB", "--", "true")
    assert r.returncode == 2, r.stderr
    assert r.stderr == ("governor: --burst: net_recv: no limit net_recv is set "
                        "(--limit net_recv=RATE or the policy's [limits])\n")
    r = governor("run", "--policy", str(path), "--burst", "net_send=2MiB", "--", "true")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("args,key", [
    (["--limit", "bandwidth=1MiB/s"], "bandwidth"),
    (["--limit", "net_send=-1MiB/s"], "net_send"),
    (["--limit", "net_send=4 parsecs/s"], "net_send"),
    (["--limit", "memory=64MiB/s"], "memory"),
    (["--limit", "processes"], None),
    (["--limit", "processes=two"], "processes"),
    (["--limit", "processes=4", "--on-exhausted", "processes=kill"], "processes"),
    (["--limit", "processes=4", "--burst", "processes=3"], "processes"),
    (["--allow-syscall", "keyctl"], "needs --rootfs"),
])
def test_cli_limit_errors_exit_2(tmp_path, args, key):
    marker = tmp_path / "started"
    r = governor("run", *args, "--", "/bin/sh", "-c", f"touch {marker}")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert args[0] in r.stderr
    if key:
        assert key in r.stderr
    assert "Traceback" not in r.stderr
    assert not marker.exists()


def test_cli_limit_overrides_policy(tmp_path):
    """A bad policy is still an error when --limit sets the same key."""
    path = tmp_path / "p.toml"
    path.write_text("[limits]\nnet_send = 'lots'\n")
    r = governor("run", "--policy", str(path), "--limit", "net_send=1MiB/s", "--", "/bin/true")
    assert r.returncode == 2 and str(path) in r.stderr and "net_send" in r.stderr


# ---- values that are not numbers: NaN, infinity, out of range ----

@pytest.mark.parametrize("value", ["nan", "inf"])
def test_load_policy_memory_not_finite(tmp_path, value):
    path = tmp_path / "p.toml"
    path.write_text(f"[limits]\nmemory = {value}\n")
    with pytest.raises(PolicyError):
        load_policy(path)


def test_load_policy_rate_nan(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("[limits]\ndisk_write = nan\n")
    with pytest.raises(PolicyError):
        load_policy(path)


def test_cli_memory_nan_exit_2(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("[limits]\nmemory = nan\n")
    r = governor("run", "--policy", str(path), "--", "/bin/true")
    assert r.returncode == 2 and "memory" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("limits", [{"processes": 10**30}, {"memory": "100000000TiB"}])
def test_out_of_range_caps_are_policy_errors(limits):
    try:
        lim = Limits(**limits)
    except PolicyError:
        return
    with Supervisor() as sup:
        with pytest.raises(PolicyError):
            sup.group("big", lim)


# ---- unit parsing ----

@pytest.mark.parametrize("key,value,expected", [
    ("net_send", "4MiB/s", 4 * 2**20),
    ("net_recv", "500KB/s", 500_000),
    ("disk_write", "1.5KiB/s", 1536),
    ("disk_read", "2 GB/s", 2 * 10**9),
    ("disk_read", "2gib/s", 2 * 2**30),
    ("net_send", "4MiB", 4 * 2**20),      # "/s" is optional on a rate
    ("net_send", 1000, 1000),
    ("net_send", 2.5, 2.5),
    ("net_send", "1000", 1000),
    ("memory", "64MiB", 64 * 2**20),
    ("memory", "1G", 10**9),
    ("memory", 4096, 4096),
    ("processes", 5, 5),
    ("processes", "7", 7),
])
def test_units(key, value, expected):
    got = getattr(Limits(**{key: value}), key)
    assert got == expected and type(got) is (int if key in ("memory", "processes") else float)


def test_units_from_policy_file(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("[limits]\nnet_send = '4MiB/s'\nnet_recv = '500KB/s'\nmemory = '64MiB'\n"
                    "processes = 32\ndisk_write = 1048576\n"
                    "[burst]\nnet_send = '1MiB'\n[on_exhausted]\nprocesses = 'deny'\n")
    lim = load_policy(path)
    assert lim.net_send == 4 * 2**20 and lim.net_recv == 500_000
    assert lim.memory == 64 * 2**20 and lim.processes == 32 and lim.disk_write == 2**20
    assert lim.burst_of("net_send") == 2**20
    assert lim.burst_of("net_recv") == pytest.approx(50_000)  # 0.1 s of the rate
    assert lim.mode_of("processes") == "deny" and lim.mode_of("memory") == "hold"


def test_limit_overrides_merge():
    base = Limits(net_send="1MiB/s", processes=4, on_exhausted={"processes": "deny"})
    merged = base.merged(Limits(net_send="2MiB/s"))
    assert merged.net_send == 2 * MiB and merged.processes == 4
    assert merged.mode_of("processes") == "deny"


@pytest.mark.parametrize("path", POLICIES or [None], ids=lambda p: p.name if p else "none")
def test_shipped_policies_load(path):
    if path is None:
        pytest.skip("no policies/*.toml yet")
    lim = load_policy(path)
    assert lim.items(), f"{path} sets no limit"


# ---- the CLI's exit statuses ----

def test_cli_missing_command_is_127(tmp_path):
    r = governor("run", "--", str(tmp_path / "no-such-program"))
    assert r.returncode == 127
    assert "command not found" in r.stderr


def test_cli_no_command_is_2():
    r = governor("run")
    assert r.returncode == 2


@needs_root
@pytest.mark.parametrize("script,status", [
    ("exit 0", 0), ("exit 7", 7), ("exit 255", 255),
    ("kill -TERM $$", 128 + 15), ("kill -KILL $$", 128 + 9),
])
def test_cli_exit_status_passthrough(script, status):
    r = governor("run", "--limit", "processes=8", "--", "/bin/sh", "-c", script)
    assert r.returncode == status, r.stderr


@needs_root
def test_cli_stats_json(tmp_path):
    import json
    stats = tmp_path / "stats.json"
    target = tmp_path / "out"
    r = governor("run", "--name", "w", "--limit", "disk_write=8MiB/s", "--stats-json", str(stats),
                 "--", "/bin/sh", "-c", f"printf hello > {target}; exit 3")
    assert r.returncode == 3, r.stderr
    report = json.loads(stats.read_text())
    assert report["group"] == "w" and report["exit_status"] == 3
    assert report["limits"] == {"disk_write": 8 * MiB}
    assert report["usage"]["resources"]["disk_write"]["used"] >= 5
