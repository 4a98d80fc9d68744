"""Shared by test_catalogue.py and test_export.py: the governor CLI with a
state directory of the test's own, a served directory outside /tmp (a
container gets a fresh /tmp, so a capture keeps nothing from there), and a
dump of the catalogue to show that a refused command changed nothing."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

GOVERNOR = [sys.executable, "-m", "governor"]
GOVERNOR_BIN = str(Path(sys.executable).with_name("governor"))
PAGE = "served by the captured application\n"


def gov(state, *args, input=None, env=None, timeout=120):
    """governor ARGS with GOVERNOR_STATE_DIR=state; CompletedProcess (text)."""
    e = {**os.environ, "GOVERNOR_STATE_DIR": str(state), **(env or {})}
    return subprocess.run(GOVERNOR + [str(a) for a in args], input=input, env=e, text=True,
                          capture_output=True, timeout=timeout)


def gov_json(state, *args, **kw):
    """governor ARGS --json (before a "--"): the parsed output."""
    args = list(args)
    args.insert(args.index("--") if "--" in args else len(args), "--json")
    p = gov(state, *args, **kw)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def dump(state) -> dict:
    """Every row of every table of the catalogue, and the store's index."""
    db = Path(state) / "governor.db"
    out = {}
    with sqlite3.connect(db) as c:
        for (table,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            out[table] = sorted(map(tuple, c.execute(f"SELECT * FROM {table}")), key=repr)
    index = Path(state) / "store" / "index.json"
    out["index"] = json.loads(index.read_text()) if index.exists() else None
    return out


def fetch(url: str) -> str | None:
    try:
        return urllib.request.urlopen(url, timeout=2).read().decode()
    except OSError:
        return None


@pytest.fixture(scope="module")
def www():
    """A directory with a page, outside /tmp, removed at the end."""
    path = Path("/srv") / f"governor-test-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    (path / "index.html").write_text(PAGE)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def capture_web(state, www: Path, port: int, name: str = "web"):
    """Captures `python3 -m http.server PORT` serving www, while the test
    fetches its page; returns (the page as served on the host, the capture's
    CompletedProcess)."""
    from _tenants import wait_for

    e = {**os.environ, "GOVERNOR_STATE_DIR": str(state)}
    p = subprocess.Popen(GOVERNOR + ["capture", name, "--workdir", str(www), "--duration", "30",
                                     "--json", "--", "/usr/bin/python3", "-m", "http.server",
                                     str(port)],
                         env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        page = wait_for(lambda: fetch(f"http://127.0.0.1:{port}/index.html"), 20,
                        "the traced server to answer")
        for _ in range(5):
            fetch(f"http://127.0.0.1:{port}/")
        p.send_signal(2)     # SIGINT: the run ends, the capture goes on
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    return page, json.loads(out)
