"""governor console in a real browser: Debian's chromium, driven through
Playwright (its driver comes with the Python package; no browser is
downloaded). One console serves the module, with a state directory and a
container pool of the test's own; the tests click and type as an operator
would and check the catalogue and the live figures behind the pages.

Screenshots go to $GOVERNOR_TEST_ARTIFACTS (default tests/artifacts/);
`make screenshots` puts the README's into docs/."""
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from _catalogue import GOVERNOR, PAGE, dump, fetch, gov, www  # noqa: F401
from _tenants import wait_for

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, ptrace)"),
              pytest.mark.usefixtures("host_net_lock")]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
POOL, BRIDGE = "10.231.49.0/24", "gvcon0"
PORT = 18433                                   # the captured web server's
ARTIFACTS = Path(os.environ.get("GOVERNOR_TEST_ARTIFACTS",
                                Path(__file__).parent / "artifacts"))
PAGES = {"/apps": "Applications", "/groups": "Groups", "/hosts": "Hosts", "/live": "Live"}
MiB = 1 << 20


class Console:
    """`governor console` as a subprocess: its URL, state directory, process."""

    def __init__(self, state: Path, *args, env=None):
        e = {**os.environ, "GOVERNOR_STATE_DIR": str(state), **(env or {})}
        self.state = state
        self.proc = subprocess.Popen(GOVERNOR + ["console", "--listen", "127.0.0.1:0", *args],
                                     env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"governor console: (http://\S+)", line)
        assert m, (line, self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.url = m.group(1).rstrip("/")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    state = tmp_path_factory.mktemp("console-state")
    c = Console(state, env={"GOVERNOR_NET_POOL": POOL, "GOVERNOR_BRIDGE": BRIDGE})
    try:
        yield c
    finally:
        gov(state, "stop", "shop")            # if a test left it running
        c.stop()
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=BRIDGE):
                ipr.link("del", index=index)


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing (make setup installs Debian's chromium)")
    from playwright.sync_api import Error, sync_playwright

    profile = tempfile.mkdtemp(prefix="governor-chromium-")
    with sync_playwright() as p:
        try:
            context = p.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 900})
        except Error as e:
            shutil.rmtree(profile, ignore_errors=True)
            pytest.skip(f"chromium cannot start here: {str(e).splitlines()[0]}")
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser):
    p = browser.new_page()
    errors = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    # A refused form comes back as a page with status 400: expected, not an error.
    p.on("console", lambda m: errors.append(m.text) if m.type == "error"
         and "status of 400" not in m.text else None)
    yield p
    p.close()
    assert not errors, errors


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def field(page, name: str):
    return page.locator(f'[id="f-{name}"]')


@pytest.fixture(scope="module")
def captured(console, browser, www):  # noqa: F811
    """busybox httpd, captured from the Applications page while the test
    asks it for its page; returns the job page's text."""
    p = browser.new_page()
    try:
        p.goto(console.url + "/apps")
        p.get_by_label("Search applications and Debian packages").fill("busybox")
        p.keyboard.press("Enter")
        p.get_by_role("link", name="Capture busybox-static").click()
        field(p, "name").fill("web")
        field(p, "program").select_option("/bin/busybox")
        field(p, "args").fill(f"httpd -f -p {PORT} -h {www}")
        field(p, "duration").fill("4")
        p.get_by_role("button", name="Capture").click()
        p.wait_for_url(re.compile(r"/jobs/[0-9a-f]+$"))
        assert p.locator("progress").count() == 1          # the run's progress
        served = wait_for(lambda: fetch(f"http://127.0.0.1:{PORT}/index.html"), 20,
                          "the traced httpd to answer")
        assert served == PAGE
        p.locator("#job-done").wait_for(timeout=60_000)     # the stream swapped the result in
        return p.locator("main").inner_text()
    finally:
        p.close()


def test_every_page_loads_with_labels_and_units(console, page):
    for path, title in PAGES.items():
        response = page.goto(console.url + path)
        assert response.status == 200
        assert page.locator("h1").inner_text().startswith(title)
        assert page.locator("nav a[aria-current=page]").inner_text() == title
        # Every form field has a label that names it.
        unlabelled = page.evaluate("""() => [...document.querySelectorAll(
            'input:not([type=hidden]), select')].filter(e => !e.labels.length
            || !e.labels[0].textContent.trim()).map(e => e.name)""")
        assert unlabelled == [], (path, unlabelled)
    # Keyboard: the first Tab reaches the skip link, Enter moves to the content.
    page.goto(console.url + "/groups")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # The host's packages, with size and programs, and a search that narrows them.
    page.goto(console.url + "/apps?q=busybox")
    row = page.locator('tr[data-package="busybox-static"]')
    assert "/bin/busybox" in row.inner_text()
    assert re.search(r"\d(\.\d)?MiB", row.inner_text())
    assert page.locator("tr[data-package]").count() < 10
    # The host's capacity, every number with its unit.
    page.goto(console.url + "/hosts")
    cpu = page.locator('tr[data-resource="cpu"]').inner_text()
    assert re.search(r"\d+\.\d\d CPUs", cpu), cpu
    assert "tasks" in page.locator('tr[data-resource="processes"]').inner_text()


def test_capture_shows_progress_then_the_proposed_allocation(console, captured):
    assert "Proposed allocation (peaks + 50%)" in captured
    assert re.search(r"processes\s+4 tasks", captured), captured
    assert re.search(r"disk_space\s+\d+\.\dMiB", captured), captured
    from governor.catalogue import Catalogue
    with Catalogue(console.state) as cat:
        app = cat.app("web")
    assert app.entrypoint[:2] == ["/bin/busybox", "httpd"]
    assert "busybox-static" in app.packages["owners"]


def test_create_group_assign_and_start_from_the_browser(console, captured, page):
    from governor.catalogue import Catalogue

    before = dump(console.state)
    page.goto(console.url + "/groups")
    field(page, "name").fill("shop")
    field(page, "class").select_option("silver")
    field(page, "limit.memory").fill("lots")
    page.get_by_role("button", name="Create group").click()
    # Refused, with the field named and marked, and nothing changed.
    assert field(page, "limit.memory").get_attribute("aria-invalid") == "true"
    assert "cannot parse 'lots'" in page.locator('[id="e-limit.memory"]').inner_text()
    assert dump(console.state) == before
    field(page, "limit.memory").fill("96MiB")
    # The capture proposes 16 MiB resident (its floor); the supervisor samples
    # a container's processes from before their exec, when they still share
    # its own pages, and may kill one there: room above that.
    field(page, "limit.memory_resident").fill("64MiB")
    page.get_by_role("button", name="Create group").click()
    page.wait_for_url(console.url + "/groups/shop")
    page.get_by_label("Application to assign").select_option("web")
    page.get_by_role("button", name="Assign").click()
    assert page.locator('#allocation tr[data-resource="memory"]').inner_text().split()[1:3] == \
        ["96.0MiB", "48.0MiB"]          # silver: half of the limit guaranteed
    with Catalogue(console.state) as cat:
        g = cat.group("shop")
    assert (g.cls, g.apps, g.limits) == ("silver", ["web"], {"memory": 96 * MiB,
                                                             "memory_resident": 64 * MiB})

    # An allocation the CLI refuses is refused here, naming the field.
    before = dump(console.state)
    field(page, "guarantee.memory").fill("200MiB")
    page.get_by_role("button", name="Save the allocation").click()
    assert "above the limit" in page.locator('[id="e-guarantee.memory"]').inner_text()
    assert dump(console.state) == before

    # Install and start it; the container serves the captured page.
    page.goto(console.url + "/groups/shop")
    page.get_by_role("button", name="Install").click()
    page.get_by_role("button", name="Start").click()
    assert "Running (supervisor pid" in page.locator("main").inner_text()
    row = page.locator('tr[data-container="shop-web"]')
    address = row.locator("td").nth(2).inner_text()
    assert address.startswith("10.231.49."), address
    assert wait_for(lambda: fetch(f"http://{address}:{PORT}/index.html"), 30,
                    "the started container to serve") == PAGE
    screenshot(page, "console-groups.png")
    # Its figures on the Live page, and its own page from the container's link
    # (once its supervisor has published them: about a second after the start).
    wait_for(lambda: "shop-web" in request(console.url + "/api/live")[2], 10,
             "the container's state file")
    row.get_by_role("link", name="shop-web").click()
    page.locator("#group-table").wait_for()
    assert "of 96.0MiB" in page.locator("#group-table").inner_text()
    page.goto(console.url + "/groups/shop")
    page.get_by_role("button", name="Stop").click()
    assert "Installed, not running." in page.locator("main").inner_text()
    with Catalogue(console.state) as cat:
        assert [i.state for i in cat.installed("shop")] == ["stopped"]


def test_live_plot_follows_a_binding_disk_write_limit(console, page, tmp_path):
    limit = 1 * MiB
    writer = subprocess.Popen(
        GOVERNOR + ["run", "--name", "console-writer", "--limit", f"disk_write={limit}",
                    "--", sys.executable, "-c",
                    "import os, sys\nfd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)\n"
                    "while True:\n    os.pwrite(fd, bytes(65536), 0)", str(tmp_path / "out")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        page.goto(console.url + "/live")
        card = page.locator('section[data-group="console-writer"]')
        card.wait_for(timeout=15_000)       # appeared without a reload: the stream added it
        page.evaluate("window.notReloaded = true")
        plot = card.locator('svg[data-series="disk_write"]')

        def values():
            text = plot.get_attribute("data-values") or ""
            return [float(v) for v in text.split(",") if v]

        wait_for(lambda: len(values()) >= 8, 30, "eight samples plotted", interval=0.5)
        assert float(plot.get_attribute("data-limit")) == limit
        recent = values()[-5:]
        assert abs(statistics.median(recent) - limit) < 0.15 * limit, recent
        assert page.evaluate("window.notReloaded") is True
        cells = page.locator('#groups-table tr[data-group="console-writer"]').inner_text()
        assert "of 1.0MiB/s" in cells and "calls/s" in cells and " task" in cells, cells
        screenshot(page, "console-live.png")

        # The group's own page: a plot per resource, and its recent events.
        card.get_by_role("link", name="console-writer").click()
        page.locator('svg[data-series="cpu"]').wait_for()
        for series in ("processes", "memory", "memory_resident", "disk_read", "net_send",
                       "held"):
            assert page.locator(f'svg[data-series="{series}"]').count() == 1
        held = page.locator('tr[data-kind="held"]').first
        held.wait_for(timeout=10_000)
        assert "disk_write" in held.inner_text() and "calls held" in held.inner_text()
        screenshot(page, "console-live-group.png")
    finally:
        writer.send_signal(signal.SIGTERM)
        writer.communicate(timeout=30)
    # Gone from the page once it ends.
    page.locator("text=This group has ended.").wait_for(timeout=15_000)


# ---- security, through the API as any client would ----

def request(url: str, method: str = "GET", body=None, headers=None):
    """(status, headers, text) of one request, following no redirect."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    h = {"Content-Type": "application/json"} if isinstance(body, dict) else {}
    conn.request(method, u.path + (f"?{u.query}" if u.query else ""), body=data,
                 headers={**h, **(headers or {})})
    r = conn.getresponse()
    out = r.status, dict(r.getheaders()), r.read().decode()
    conn.close()
    return out


def test_without_a_token_only_this_hosts_names_and_same_origin_writes(console):
    url = console.url
    before = dump(console.state)
    assert request(url + "/api/groups")[0] == 200
    # A page of another site that a DNS name points at 127.0.0.1 (rebinding).
    assert request(url + "/api/groups", headers={"Host": "evil.example"})[0] == 421
    # Cross-origin writes, by Origin and by the browser's Sec-Fetch-Site.
    status, _, text = request(url + "/api/groups", "POST", {"name": "x"},
                              {"Origin": "http://evil.example"})
    assert status == 403 and "cross-origin" in text
    assert request(url + "/api/groups", "POST", {"name": "x"},
                   {"Sec-Fetch-Site": "cross-site"})[0] == 403
    # A form without its CSRF token; JSON sent as a simple (preflight-free) type.
    assert request(url + "/groups", "POST", b"name=x&class=gold",
                   {"Content-Type": "application/x-www-form-urlencoded"})[0] == 403
    assert request(url + "/api/groups", "POST", b'{"name": "x"}',
                   {"Content-Type": "text/plain"})[0] == 415
    assert dump(console.state) == before
    # The same write from the console's own origin goes through.
    status, _, text = request(url + "/api/groups", "POST", {"name": "sameorigin"},
                              {"Origin": url})
    assert status == 200, text
    assert request(url + "/api/groups/sameorigin", "DELETE", headers={"Origin": url})[0] == 200


def test_with_a_token_every_request_carries_it(tmp_path):
    token = "t0ken-" + os.urandom(12).hex()
    path = tmp_path / "token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    c = Console(tmp_path / "state", "--token-file", str(path))
    try:
        url = c.url
        assert request(url + "/api/groups")[0] == 401
        assert request(url + "/api/groups", headers={"Authorization": "Bearer wrong-token-xx"}
                       )[0] == 401
        assert request(url + "/api/groups", "POST", {"name": "x"})[0] == 401
        status, headers, _ = request(url + "/groups")
        assert status == 303 and headers["location"] == "/login?next=%2Fgroups"
        assert request(url + "/api/groups", headers={"Authorization": f"Bearer {token}"}
                       )[0] == 200
        # ?token= logs in: a session cookie (not the token itself), HttpOnly, SameSite=Strict.
        status, headers, _ = request(url + f"/groups?token={token}")
        assert status == 303 and headers["location"] == "/groups"
        cookie = headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        assert token not in cookie
        session = cookie.split(";")[0]
        assert request(url + "/groups", headers={"Cookie": session})[0] == 200
        # Authenticated, a cross-origin write is still refused.
        assert request(url + "/api/groups", "POST", {"name": "x"},
                       {"Authorization": f"Bearer {token}", "Origin": "http://evil.example"}
                       )[0] == 403
        assert not (tmp_path / "state" / "governor.db").exists() or \
            dump(tmp_path / "state")["groups"] == []
    finally:
        c.stop()


@pytest.mark.parametrize("args, message", [
    (["--listen", "0.0.0.0:0"], "not a loopback address: give --token-file"),
    (["--listen", "127.0.0.1"], "is not ADDRESS:PORT"),
    (["--token", "short"], "at least 16 characters"),
])
def test_bad_options_exit_2(tmp_path, args, message):
    p = gov(tmp_path, "console", *args, timeout=30)
    assert p.returncode == 2 and message in p.stderr, p.stderr


def test_a_token_file_others_can_read_is_refused(tmp_path):
    path = tmp_path / "token"
    path.write_text("x" * 32)
    path.chmod(0o644)
    p = gov(tmp_path, "console", "--token-file", str(path), timeout=30)
    assert p.returncode == 2 and "can be read by others" in p.stderr, p.stderr


def test_state_files_carry_recent_events():
    """The supervisor's publisher turns counter changes into events, once
    a second: holds, denials, stalls (a cap in hold mode whose held calls
    failed) and resident kills."""
    from governor.monitor.state import counter_events

    def usage(held=0, seconds=0.0, denied=0, kills=0):
        r = {"held_calls": held, "held_seconds": seconds, "denied_calls": denied, "used": 0}
        return {"resources": {"disk_write": dict(r), "processes": dict(r)},
                "resident_kills": kills, "compat_denied": 0}

    events = counter_events(usage(), usage(held=3, seconds=0.5, denied=2, kills=1),
                            {"disk_write": "deny", "processes": "hold"}, 100.0)
    kinds = {(e["kind"], e["resource"], e["count"]) for e in events}
    assert kinds == {("held", "disk_write", 3), ("held", "processes", 3),
                     ("denied", "disk_write", 2), ("stalled", "processes", 2),
                     ("resident_killed", "memory_resident", 1)}
    assert counter_events(usage(held=3), usage(held=3), {}, 101.0) == []


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """Another host (test_export.py's kind): a network namespace with its own
    sshd and state directory, reached from this namespace over a bridge of
    the test's own; an ssh configuration that names it hostb."""
    from test_export import LINK, NET, Host, sh

    top = tmp_path_factory.mktemp("remote")
    keys = top / "keys"
    keys.mkdir()
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", keys / "client_key")
    b = Host("b", f"{NET}.3", "10.231.47.0/24", top)
    made_run_sshd = not Path("/run/sshd").exists()
    sh("ip", "link", "add", LINK, "type", "bridge")
    try:
        sh("ip", "addr", "add", f"{NET}.1/24", "dev", LINK)
        sh("ip", "link", "set", LINK, "up")
        b.start(keys)
        (keys / "known_hosts").write_text(b.known_host())
        config = keys / "ssh_config"
        config.write_text(f"Host hostb\n  HostName {b.address}\n  User root\n"
                          f"  IdentityFile {keys}/client_key\n  IdentitiesOnly yes\n"
                          f"  UserKnownHostsFile {keys}/known_hosts\n"
                          "  StrictHostKeyChecking yes\n")
        wait_for(lambda: sh("ssh", "-F", config, "hostb", "true", check=False).returncode == 0,
                 20, "sshd of host b", interval=0.2)
        yield b, config
    finally:
        b.stop()
        sh("ip", "link", "del", LINK, check=False)
        if made_run_sshd:
            shutil.rmtree("/run/sshd", ignore_errors=True)


def test_export_shows_the_remote_table_before_copying(console, remote, page):
    from _catalogue import GOVERNOR_BIN

    b, config = remote
    # A console of the same catalogue, told how to reach other hosts.
    c = Console(console.state, "--ssh-config", str(config), "--remote-governor", GOVERNOR_BIN)
    try:
        # A remote of another architecture: its own table says no.
        b.state.mkdir(parents=True, exist_ok=True)
        (b.state / "host.toml").write_text('[facts]\narch = "aarch64"\n')
        page.goto(c.url + "/hosts")
        field(page, "group").select_option("shop")
        field(page, "to").fill("ssh://hostb")
        page.get_by_role("button", name="Check the remote's admission").click()
        arch = page.locator('tr[data-resource="arch"]')
        assert "aarch64" in arch.inner_text() and "NO" in arch.inner_text()
        assert page.get_by_role("button", name=re.compile("^Export")).count() == 0
        assert "cannot hold shop: arch" in page.locator("main").inner_text()
        (b.state / "host.toml").unlink()
        # It fits: the table first, and nothing on the remote yet.
        page.get_by_role("button", name="Check the remote's admission").click()
        assert "ssh://hostb" in page.locator("caption").last.inner_text()
        assert "fits" in page.locator("caption").last.inner_text()
        assert not (b.state / "store" / "blobs").exists()
        page.get_by_role("button", name="Export shop to ssh://hostb now").click()
        page.locator("#job-done").wait_for(timeout=120_000)
        assert "sent 3 of 3 blobs" in page.locator("main").inner_text()
        installed = json.loads(gov(b.state, "installed", "--json").stdout)
        assert [i["container"] for i in installed] == ["shop-web"]
        page.goto(c.url + "/hosts")
        assert "ssh://hostb" in page.locator("main").inner_text()      # a known host now
    finally:
        c.stop()
