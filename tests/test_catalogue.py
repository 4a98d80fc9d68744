"""Application sets on one host, as a user runs them: capture, the OCI
store, the catalogue, admission, install, start and stop, and every bad
input refused with exit status 2 and nothing changed."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from _catalogue import GOVERNOR, PAGE, capture_web, dump, fetch, gov, gov_json, www  # noqa: F401
from _tenants import wait_for

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, ptrace)"),
              pytest.mark.usefixtures("host_net_lock")]
POOL, BRIDGE = "10.231.44.0/24", "gvcat0"
PORT = 18431
PYTHON_APP = ("import json, sqlite3; c = sqlite3.connect(':memory:'); "
              "c.execute('create table t(x)'); c.execute('insert into t values (42)'); "
              "print(json.dumps({'sqlite': sqlite3.sqlite_version, "
              "'x': c.execute('select x from t').fetchone()[0]}))")


@pytest.fixture(scope="module", autouse=True)
def net_env():
    old = {k: os.environ.get(k) for k in ("GOVERNOR_NET_POOL", "GOVERNOR_BRIDGE")}
    os.environ.update(GOVERNOR_NET_POOL=POOL, GOVERNOR_BRIDGE=BRIDGE)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=BRIDGE):
            ipr.link("del", index=index)


@pytest.fixture(scope="module")
def shop(tmp_path_factory, www):  # noqa: F811
    """One host's state: the web app captured and put in group shop."""
    state = tmp_path_factory.mktemp("state")
    page, result = capture_web(state, www, PORT)
    assert page == PAGE
    assert gov(state, "groups", "create", "shop", "--class", "silver",
               "--limit", "memory=96MiB").returncode == 0
    assert gov(state, "groups", "assign", "shop", "web").returncode == 0
    return state, result


def unpack(state, app: str, dest: Path) -> dict:
    """The app's image from the store into dest (as install does); its config."""
    from governor.catalogue import Catalogue
    from governor.catalogue.oci import unpack_layer

    with Catalogue(state) as cat:
        a = cat.app(app)
        image = cat.store.image(a.name, a.manifest, verify_layers=True)
        dest.mkdir()
        unpack_layer(cat.store, image.layers[0], str(dest), app)
        return image.config


def test_python_capture_runs_in_an_empty_rootfs(tmp_path):
    state = tmp_path / "state"
    native = subprocess.run(["/usr/bin/python3", "-c", PYTHON_APP], capture_output=True,
                            text=True, check=True).stdout
    result = gov_json(state, "capture", "pyapp", "--", "/usr/bin/python3", "-c", PYTHON_APP)
    # What the run needs, no more: a fraction of the packages it comes from.
    pk = result["packages"]
    assert {"libpython3.11-stdlib", "libsqlite3-0", "python3.11-minimal", "libc6"} <= set(pk["owners"])
    assert 0 < result["size"] < pk["closure_size"] / 3, (result["size"], pk["closure_size"])
    assert result["needs"]["arch"] == os.uname().machine
    rootfs = unpack(state, "pyapp", tmp_path / "rootfs")
    assert rootfs["config"]["Entrypoint"] == ["/usr/bin/python3", "-c", PYTHON_APP]
    root = tmp_path / "rootfs"
    # Both the link and its target: /usr/bin/python3 -> python3.11, and the loader.
    assert os.readlink(root / "usr/bin/python3") == "python3.11"
    assert (root / "usr/bin/python3.11").is_file()
    assert (root / "usr/lib/python3.11/lib-dynload").is_dir()
    assert not (root / "usr/lib/python3.11/email").exists()      # not imported: not taken
    run = subprocess.run(GOVERNOR + ["run", "--name", "pyapp", "--rootfs", str(root),
                                     "--state-dir", str(tmp_path / "reg"), "--",
                                     "/usr/bin/python3", "-c", PYTHON_APP],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout == native


def test_capture_follows_threads_forks_dirfds_and_symlinks(tmp_path):
    """A Python program that opens a file relative to a dirfd in a thread,
    forks a child that stats a path through a symlink and runs a shell
    script; every file is in the image, the link next to its target."""
    top = Path("/srv") / f"governor-trace-{os.getpid()}"
    shutil.rmtree(top, ignore_errors=True)
    (top / "real").mkdir(parents=True)
    try:
        (top / "real" / "by-dirfd.txt").write_text("a")
        (top / "real" / "through-link.txt").write_text("b")
        (top / "real" / "never.txt").write_text("c")
        os.symlink("real", top / "link")
        (top / "script.sh").write_text("#!/bin/sh\ncat /srv/" + top.name + "/link/never.txt >/dev/null\n")
        os.chmod(top / "script.sh", 0o755)
        (top / "real" / "never.txt").unlink()   # the script fails to find it; that is fine
        prog = f"""
import os, threading, subprocess
d = os.open("{top}/real", os.O_RDONLY | os.O_DIRECTORY)
t = threading.Thread(target=lambda: os.close(os.open("by-dirfd.txt", os.O_RDONLY, dir_fd=d)))
t.start(); t.join()
pid = os.fork()
if pid == 0:
    os.chdir("{top}")
    os.stat("link/through-link.txt")
    os._exit(0)
os.waitpid(pid, 0)
subprocess.run(["{top}/script.sh"])
open("{top}/made-by-the-run.txt", "w").write("x")
"""
        state = tmp_path / "state"
        gov_json(state, "capture", "tracee", "--", "/usr/bin/python3", "-c", prog)
        unpack(state, "tracee", tmp_path / "root")
        root = tmp_path / "root" / top.relative_to("/")
        assert (root / "real" / "by-dirfd.txt").read_text() == "a"
        assert os.readlink(root / "link") == "real"
        assert (root / "real" / "through-link.txt").read_text() == "b"
        assert (root / "script.sh").is_file()
        assert (tmp_path / "root" / "bin" / "sh").exists() or (tmp_path / "root/usr/bin/sh").exists()
        assert (tmp_path / "root/usr/bin/cat").exists()
        assert not (root / "made-by-the-run.txt").exists()     # the run made it: not the app's
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_store_is_an_oci_layout_that_umoci_reads(tmp_path, shop):
    state, _ = shop
    if not shutil.which("umoci"):
        pytest.skip("umoci is not installed (make setup installs it)")
    store = state / "store"
    layout = json.loads((store / "oci-layout").read_text())
    assert layout == {"imageLayoutVersion": "1.0.0"}
    bundle = tmp_path / "bundle"
    p = subprocess.run(["umoci", "unpack", "--image", f"{store}:web", str(bundle)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    ours = tmp_path / "ours"
    config = unpack(state, "web", ours)
    theirs = bundle / "rootfs"
    files = {str(p.relative_to(ours)) for p in ours.rglob("*")}
    assert files == {str(p.relative_to(theirs)) for p in theirs.rglob("*")}
    spec = json.loads((bundle / "config.json").read_text())
    assert spec["process"]["args"] == config["config"]["Entrypoint"]
    assert spec["process"]["cwd"] == config["config"]["WorkingDir"]


def test_web_app_from_the_catalogue_serves_the_same_page(shop, www):  # noqa: F811
    state, capture = shop
    m = capture["measured"]
    assert m["rates"]["net_send"] > 0 and m["memory_resident"] > 0 and m["processes"] >= 1
    assert capture["proposal"]["memory_resident"] >= m["memory_resident"] * 1.5
    apps = gov_json(state, "apps")
    assert [a["name"] for a in apps] == ["web"] and apps[0]["groups"] == ["shop"]
    adm = gov_json(state, "admit", "shop")
    assert adm["fits"] and {r["resource"] for r in adm["rows"]} >= {
        "cpu", "memory", "disk_space", "net_send", "arch", "kernel"}
    installed = gov_json(state, "install", "shop")
    assert [i["container"] for i in installed] == ["shop-web"]
    assert installed[0]["limits"]["memory"] == 96 * 2**20
    try:
        rows = gov_json(state, "start", "shop")
        address = rows[0]["address"]
        supervisor = rows[0]["supervisor"]["pid"]
        assert rows[0]["state"] == "running" and address
        page = wait_for(lambda: fetch(f"http://{address}:{PORT}/index.html"), 20,
                        "the container to serve")
        assert page == PAGE
        # Its limits are the installed ones, as governor ps shows them (the
        # supervisor publishes its state file about once a second).
        def listed():
            ps = json.loads(subprocess.run(GOVERNOR + ["ps", "--json"], capture_output=True,
                                           text=True, check=True).stdout)
            return [s for s in ps if s["group"] == "shop-web"]
        mine = wait_for(listed, 5, "governor ps to list shop-web")
        assert mine[0]["limits"]["memory"] == 96 * 2**20
        assert gov(state, "start", "shop").returncode == 2     # runs already
    finally:
        stopped = gov(state, "stop", "shop")
    assert stopped.returncode == 0, stopped.stderr
    assert not os.path.exists(f"/proc/{supervisor}")
    assert fetch(f"http://{address}:{PORT}/index.html") is None
    assert gov_json(state, "installed")[0]["state"] == "stopped"
    leases = json.loads((state / "network" / f"{BRIDGE}.json").read_text())["leases"]
    assert leases == []
    with IPRoute() as ipr:
        names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    assert not [n for n in names if n.startswith("gv") and n.endswith("-shop-web")]
    assert gov(state, "uninstall", "shop").returncode == 0
    assert not (state / "containers" / "shop-web").exists()


def test_admission_refuses_a_group_whose_guarantees_exceed_what_is_left(tmp_path, shop):
    state, _ = shop
    (state / "host.toml").write_text('[capacity]\nmemory = "40MiB"\n[reserve]\nmemory = 0\n')
    try:
        before = dump(state)
        p = gov(state, "admit", "shop")
        assert p.returncode == 1
        assert "memory" in p.stderr
        row = [line for line in p.stdout.splitlines() if line.startswith("memory")][0]
        assert "NO" in row and "guarantees exceed capacity" in row
        adm = json.loads(gov(state, "admit", "shop", "--json").stdout)
        assert adm["fits"] is False and adm["refused"] == ["memory"]
        p = gov(state, "install", "shop")
        assert p.returncode == 1 and "memory" in p.stdout
        assert dump(state) == before
    finally:
        (state / "host.toml").unlink()


def test_bad_input_exit_2_and_nothing_changes(tmp_path, shop):
    state, _ = shop
    before = dump(state)
    cases = [
        (("groups", "assign", "shop", "nope"), "no application 'nope'"),
        (("groups", "assign", "nope", "web"), "no group 'nope'"),
        (("admit", "nope"), "no group 'nope'"),
        (("install", "nope"), "no group 'nope'"),
        (("start", "nope"), "no group 'nope'"),
        (("stop", "shop"), "not installed"),
        (("apps", "show", "nope"), "no application 'nope'"),
        (("groups", "create", "g2", "--class", "platinum"), "no class 'platinum'"),
        (("groups", "create", "g2", "--limit", "memory=lots"), "--limit: memory"),
        (("groups", "create", "g2", "--limit", "memory=64MiB", "--guarantee", "memory=1GiB"),
         "--guarantee: memory"),
        (("groups", "create", "shop"), "exists already"),
        (("groups", "create", "bad/name"), "group name"),
        (("capture", "web", "--", "/bin/true"), "exists already"),
        (("capture", "x1", "--", "/no/such/command"), "command not found"),
        (("capture", "x1", "--workdir", "/tmp", "--", "/bin/true"), "--workdir"),
        (("capture", "x1", "--data", "/no/such/dir", "--", "/bin/true"), "--data"),
        (("capture", "x1", "--package", "no-such-package-xyz"), "no-such-package-xyz"),
        (("capture", "x1"), "give a command"),
        (("export", "shop", "--to", "ftp://host"), "--to"),
        (("export", "nope", "--to", "ssh://127.0.0.1"), "no group 'nope'"),
    ]
    for args, words in cases:
        p = gov(state, *args)
        assert p.returncode == 2, (args, p.returncode, p.stdout, p.stderr)
        assert words in p.stderr, (args, p.stderr)
    assert dump(state) == before


def test_corrupt_store_is_reported_and_changes_nothing(tmp_path, www):  # noqa: F811
    state = tmp_path / "state"
    gov_json(state, "capture", "small", "--", "/bin/true")
    gov(state, "groups", "create", "g", "--class", "gold")
    gov(state, "groups", "assign", "g", "small")
    app = gov_json(state, "apps", "show", "small")
    manifest = json.loads((state / "store/blobs/sha256" / app["manifest"][7:]).read_text())
    layer = state / "store/blobs/sha256" / manifest["layers"][0]["digest"][7:]
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layer.write_bytes(bytes(data))
    before = dump(state)
    for args in (("install", "g"), ("store", "verify"), ("export", "g", "--to", "ssh://127.0.0.1:1")):
        p = gov(state, *args)
        assert p.returncode == 2, (args, p.stderr)
        assert "corrupt store" in p.stderr and manifest["layers"][0]["digest"] in p.stderr
    assert dump(state) == before
    assert not (state / "containers" / "g-small").exists()
    (state / "governor.db").write_bytes(b"this is not a database" * 100)
    p = gov(state, "apps")
    assert p.returncode == 2 and "governor.db" in p.stderr


def test_concurrent_cli_calls_keep_the_catalogue_whole(tmp_path):
    state = tmp_path / "state"
    gov(state, "groups")     # creates the catalogue
    env = {**os.environ, "GOVERNOR_STATE_DIR": str(state)}
    procs = [subprocess.Popen(GOVERNOR + ["groups", "create", f"g{i}", "--class", "bronze"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for i in range(12)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 12, errors
    assert sorted(g["name"] for g in gov_json(state, "groups")) == sorted(f"g{i}" for i in range(12))
    import sqlite3
    with sqlite3.connect(state / "governor.db") as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_package_capture_takes_the_closure_and_conffiles(tmp_path):
    state = tmp_path / "state"
    r = gov_json(state, "capture", "bb", "--package", "busybox-static",
                 "--entrypoint", "/bin/busybox true")
    assert r["packages"]["taken_whole"] == ["busybox-static"]
    assert r["entrypoint"] == ["/bin/busybox", "true"]
    assert r["measured"] is None and "disk_space" in r["proposal"]
    root = tmp_path / "root"
    unpack(state, "bb", root)
    assert (root / "bin" / "busybox").is_file() or (root / "usr/bin/busybox").is_file()


def test_library_api_for_a_console(tmp_path):
    """What a web console calls: the same validation, objects as dicts."""
    from governor import PolicyError
    from governor.catalogue import Catalogue, CatalogueError, list_classes

    with Catalogue(tmp_path / "state") as cat:
        g = cat.create_group("tenant", "web", limits={"memory": "128MiB"})
        assert g.as_dict()["class"] == "web" and g.limits["memory"] == 128 * 2**20
        with pytest.raises(PolicyError) as e:
            cat.set_allocation("tenant", limits={"cpu": "lots"})
        assert e.value.key == "cpu"
        with pytest.raises(CatalogueError) as e:
            cat.assign("tenant", "nope")
        assert e.value.key == "app"
        assert {c.name for c in list_classes()} >= {"gold", "silver", "bronze", "web", "database"}
        json.dumps([x.as_dict() for x in cat.groups()])


def test_data_is_kept_apart_as_a_volume(tmp_path):
    top = Path("/srv") / f"governor-data-{os.getpid()}"
    (top / "db").mkdir(parents=True)
    try:
        (top / "db" / "rows.txt").write_text("42\n")
        state = tmp_path / "state"
        r = gov_json(state, "capture", "reader", "--data", f"{top}/db:/var/lib/reader", "--",
                     "/bin/cat", f"{top}/db/rows.txt")
        assert r["volumes"] == [{"path": "/var/lib/reader", "size": 3}]
        gov(state, "groups", "create", "g", "--class", "bronze")
        gov(state, "groups", "assign", "g", "reader")
        rows = gov_json(state, "install", "g")
        host_dir, inside = rows[0]["volumes"][0]
        assert inside == "/var/lib/reader"
        assert Path(host_dir, "rows.txt").read_text() == "42\n"
        rootfs = Path(rows[0]["rootfs"])
        assert (rootfs / "var/lib/reader").is_dir() and not any((rootfs / "var/lib/reader").iterdir())
        assert not (rootfs / top.relative_to("/")).exists()     # not in the image's files
    finally:
        shutil.rmtree(top, ignore_errors=True)
