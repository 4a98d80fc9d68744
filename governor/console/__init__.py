"""`governor console`: a web application over the catalogue and the state
files of running groups, and the JSON API beneath it (/api/...).

Pages: Applications (captured ones, and the host's Debian packages with
a capture of their programs), Groups (class, allocation, applications,
containers; create, assign, edit, install, start, stop), Hosts (this host's
capacity against what is guaranteed; export with the remote's admission
first), Live (every running group, as `governor ps`, plotted over the last
minutes and refreshed every second through server-sent events).

    from governor.console import Console, create_app
    app = create_app(Console(token=None, host="127.0.0.1", port=8470))   # any ASGI server

Modules: app.py (routes, lifespan), security.py (host, token, origin and
CSRF checks), web.py (what pages share), apps.py, groups.py, hosts.py,
live.py (one per page, HTML and JSON), plots.py (SVG), packages.py (dpkg),
jobs.py (captures and exports in threads), forms.py (allocation fields)."""
from .app import Console, create_app

__all__ = ["Console", "create_app"]
