"""The catalogue's objects and the operations on them: applications,
groups (class, allocation, applications), hosts and the containers
installed on this host. Every function validates as the CLI does (the CLI
is a thin layer over this) and raises CatalogueError or PolicyError naming
the field; a refused change changes nothing."""
from __future__ import annotations

import datetime
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._errors import CatalogueError, PolicyError
from ..container.registry import state_dir as default_state_dir
from .allocation import Allocation, load_class, resolve, values
from .db import Database, dumps, loads
from .host import ADMITTED
from .oci import Store
from . import show

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def check_group_name(name: str) -> None:
    if not _NAME.match(name or ""):
        raise CatalogueError(f"{name!r}: a group name is 1-63 letters, digits, '.', '_' or '-', "
                             "starting with a letter or digit", key="name")


@dataclass
class App:
    name: str
    manifest: str
    created: str
    entrypoint: list[str]
    files: int
    size: int
    needs: dict
    measured: dict | None
    proposal: dict
    packages: dict
    volumes: list[dict]
    groups: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Group:
    name: str
    cls: str
    overcommit: float
    guarantee_share: float
    limits: dict             # set by the class or the user; the rest from the apps
    guarantees: dict
    created: str
    apps: list[str] = field(default_factory=list)
    allocation: Allocation | None = None     # resolved, when it has apps
    installed: bool = False

    def as_dict(self) -> dict:
        d = asdict(self)
        d["class"] = d.pop("cls")
        return d

    def row(self) -> dict:
        """What admission and export need of it."""
        return {"name": self.name, "class": self.cls, "overcommit": self.overcommit,
                "guarantee_share": self.guarantee_share, "limits": self.limits,
                "guarantees": self.guarantees}


@dataclass
class Installed:
    container: str
    group: str
    app: str
    manifest: str
    rootfs: str
    volumes: list
    limits: dict
    guarantees: dict
    overcommit: float
    size: int
    installed_at: str
    state: str
    supervisor: dict | None
    address: str | None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Host:
    name: str
    url: str
    last_export: str | None
    last_result: dict | None

    def as_dict(self) -> dict:
        return asdict(self)


def _app(row, groups: list[str]) -> App:
    return App(row["name"], row["manifest"], row["created"], loads(row["entrypoint"]),
               row["files"], row["size"], loads(row["needs"]), loads(row["measured"]),
               loads(row["proposal"]), loads(row["packages"]), loads(row["volumes"]), groups)


def _installed(row) -> Installed:
    return Installed(row["container"], row["grp"], row["app"], row["manifest"], row["rootfs"],
                     loads(row["volumes"]), loads(row["limits"]), loads(row["guarantees"]),
                     row["overcommit"], row["size"], row["installed_at"], row["state"],
                     loads(row["supervisor"]), row["address"])


class Catalogue:
    """The catalogue of one host's state directory ($GOVERNOR_STATE_DIR or
    /var/lib/governor): `governor.db` and the OCI store beside it."""

    def __init__(self, state_dir: Path | str | None = None):
        self.state_dir = Path(state_dir) if state_dir else default_state_dir()
        self.db = Database(self.state_dir)
        self.store = Store(self.state_dir)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Catalogue":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- applications ----

    def app_exists(self, name: str) -> bool:
        return bool(self.db.query("SELECT 1 FROM apps WHERE name = ?", name))

    def apps(self) -> list[App]:
        groups: dict[str, list[str]] = {}
        for r in self.db.query("SELECT grp, app FROM group_apps ORDER BY grp"):
            groups.setdefault(r["app"], []).append(r["grp"])
        return [_app(r, groups.get(r["name"], []))
                for r in self.db.query("SELECT * FROM apps ORDER BY name")]

    def app(self, name: str) -> App:
        rows = self.db.query("SELECT * FROM apps WHERE name = ?", name)
        if not rows:
            raise CatalogueError(f"no application {name!r} in the catalogue", key="app")
        groups = [r["grp"] for r in self.db.query(
            "SELECT grp FROM group_apps WHERE app = ? ORDER BY grp", name)]
        return _app(rows[0], groups)

    def add_app(self, result, store_size: int = 0) -> None:
        """Records a capture (capture.CaptureResult) and names its manifest
        in the store's index."""
        self.store.tag(result.name, result.manifest, store_size)
        try:
            with self.db.transaction() as c:
                c.execute("INSERT INTO apps VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                          (result.name, result.manifest, now(), dumps(result.entrypoint),
                           result.files, result.size, dumps(result.needs),
                           dumps(result.measured), dumps(result.proposal),
                           dumps(result.packages), dumps(result.volumes)))
        except BaseException:
            self.store.untag(result.name)
            raise

    def import_app(self, row: dict, manifest_size: int) -> bool:
        """An application as another host's catalogue has it (export).
        False if it is here already, with the same image."""
        existing = self.db.query("SELECT manifest FROM apps WHERE name = ?", row["name"])
        if existing:
            if existing[0]["manifest"] != row["manifest"]:
                raise CatalogueError(f"application {row['name']!r} exists here with another "
                                     f"image ({existing[0]['manifest'][:19]})", key="app")
            return False
        self.store.tag(row["name"], row["manifest"], manifest_size)
        with self.db.transaction() as c:
            c.execute("INSERT INTO apps VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                      (row["name"], row["manifest"], row["created"], dumps(row["entrypoint"]),
                       row["files"], row["size"], dumps(row["needs"]), dumps(row["measured"]),
                       dumps(row["proposal"]), dumps(row["packages"]), dumps(row["volumes"])))
        return True

    def remove_app(self, name: str) -> None:
        app = self.app(name)
        if app.groups:
            raise CatalogueError(f"application {name!r} is in group(s) {', '.join(app.groups)}: "
                                 "unassign it first", key="app")
        with self.db.transaction() as c:
            c.execute("DELETE FROM apps WHERE name = ?", (name,))
        self.store.untag(name)

    # ---- groups ----

    def _group(self, row) -> Group:
        apps = [r["app"] for r in self.db.query(
            "SELECT app FROM group_apps WHERE grp = ? ORDER BY app", row["name"])]
        g = Group(row["name"], row["class"], row["overcommit"], row["guarantee_share"],
                  loads(row["limits"]), loads(row["guarantees"]), row["created"], apps)
        if apps:
            g.allocation = resolve(g.row(), [self.app(a).proposal for a in apps])
        g.installed = bool(self.db.query("SELECT 1 FROM installed WHERE grp = ?", g.name))
        return g

    def groups(self) -> list[Group]:
        return [self._group(r) for r in self.db.query("SELECT * FROM groups ORDER BY name")]

    def group(self, name: str) -> Group:
        rows = self.db.query("SELECT * FROM groups WHERE name = ?", name)
        if not rows:
            raise CatalogueError(f"no group {name!r} in the catalogue", key="group")
        return self._group(rows[0])

    @staticmethod
    def _check_allocation(limits: dict, guarantees: dict) -> tuple[dict, dict]:
        lim = values(limits, "--limit")
        for key in guarantees:
            if key not in ADMITTED:
                raise PolicyError("--guarantee", key, f"admission guarantees only "
                                  f"{', '.join(ADMITTED)}")
        gua = values(guarantees, "--guarantee")
        for key, value in gua.items():
            if key in lim and value > lim[key]:
                raise PolicyError("--guarantee", key, f"{show.value(key, value)} is above the "
                                  f"limit {show.value(key, lim[key])}")
        return lim, gua

    def create_group(self, name: str, cls: str = "gold", limits: dict | None = None,
                     guarantees: dict | None = None) -> Group:
        """A group of class cls (a template copied now), its limits and
        guarantees overridden key by key: values as for --limit
        ("4MiB/s", 2, "50%"...)."""
        check_group_name(name)
        klass = load_class(cls)
        lim, gua = self._check_allocation(limits or {}, guarantees or {})
        lim = {**klass.limits, **lim}
        gua = {**klass.guarantees, **gua}
        self._check_allocation(lim, gua)
        with self.db.transaction() as c:
            if c.execute("SELECT 1 FROM groups WHERE name = ?", (name,)).fetchone():
                raise CatalogueError(f"group {name!r} exists already", key="name")
            c.execute("INSERT INTO groups VALUES (?,?,?,?,?,?,?)",
                      (name, klass.name, klass.overcommit, klass.guarantee, dumps(lim),
                       dumps(gua), now()))
        return self.group(name)

    def set_allocation(self, name: str, limits: dict | None = None,
                       guarantees: dict | None = None, unset: list[str] = (),
                       replace: bool = False) -> Group:
        """Changes a group's limits and guarantees key by key; `unset` keys
        go back to the apps' proposals. replace: limits and guarantees are
        the whole of what the group sets (a form that shows every key).
        Refused while it is installed."""
        g = self.group(name)
        if g.installed:
            raise CatalogueError(f"group {name!r} is installed: uninstall it to change its "
                                 "allocation", key="group")
        lim, gua = self._check_allocation(limits or {}, guarantees or {})
        old_lim, old_gua = ({}, {}) if replace else (g.limits, g.guarantees)
        new_lim = {k: v for k, v in {**old_lim, **lim}.items() if k not in unset}
        new_gua = {k: v for k, v in {**old_gua, **gua}.items() if k not in unset}
        self._check_allocation(new_lim, new_gua)
        resolve({**g.row(), "limits": new_lim, "guarantees": new_gua},
                [self.app(a).proposal for a in g.apps])
        with self.db.transaction() as c:
            c.execute("UPDATE groups SET limits = ?, guarantees = ? WHERE name = ?",
                      (dumps(new_lim), dumps(new_gua), name))
        return self.group(name)

    def import_group(self, row: dict, apps: list[str]) -> None:
        """A group as another host's catalogue has it (export)."""
        check_group_name(row["name"])
        with self.db.transaction() as c:
            if c.execute("SELECT 1 FROM groups WHERE name = ?", (row["name"],)).fetchone():
                raise CatalogueError(f"group {row['name']!r} exists here already", key="group")
            c.execute("INSERT INTO groups VALUES (?,?,?,?,?,?,?)",
                      (row["name"], row["class"], row["overcommit"], row["guarantee_share"],
                       dumps(row["limits"]), dumps(row["guarantees"]), now()))
            for app in apps:
                c.execute("INSERT INTO group_apps VALUES (?, ?)", (row["name"], app))

    def remove_group(self, name: str) -> None:
        g = self.group(name)
        if g.installed:
            raise CatalogueError(f"group {name!r} is installed: uninstall it first", key="group")
        with self.db.transaction() as c:
            c.execute("DELETE FROM groups WHERE name = ?", (name,))

    def assign(self, group: str, app: str) -> Group:
        g, a = self.group(group), self.app(app)
        if g.installed:
            raise CatalogueError(f"group {group!r} is installed: uninstall it to change its "
                                 "applications", key="group")
        if a.name in g.apps:
            raise CatalogueError(f"application {app!r} is in group {group!r} already", key="app")
        resolve(g.row(), [self.app(x).proposal for x in g.apps] + [a.proposal])
        with self.db.transaction() as c:
            c.execute("INSERT INTO group_apps VALUES (?, ?)", (group, app))
        return self.group(group)

    def unassign(self, group: str, app: str) -> Group:
        g = self.group(group)
        self.app(app)
        if g.installed:
            raise CatalogueError(f"group {group!r} is installed: uninstall it to change its "
                                 "applications", key="group")
        if app not in g.apps:
            raise CatalogueError(f"application {app!r} is not in group {group!r}", key="app")
        with self.db.transaction() as c:
            c.execute("DELETE FROM group_apps WHERE grp = ? AND app = ?", (group, app))
        return self.group(group)

    def spec(self, name: str) -> dict:
        """What a host needs to decide on group name (admission), and to
        install it (export): the group, and per app its proposal, needs and
        image size."""
        g = self.group(name)
        if not g.apps:
            raise CatalogueError(f"group {name!r} has no applications "
                                 "(governor groups assign GROUP APP)", key="group")
        return {"group": g.row(), "apps": [self.app(a).as_dict() for a in g.apps]}

    # ---- installed containers ----

    def installed(self, group: str | None = None) -> list[Installed]:
        if group is None:
            rows = self.db.query("SELECT * FROM installed ORDER BY container")
        else:
            rows = self.db.query("SELECT * FROM installed WHERE grp = ? ORDER BY container", group)
        return [_installed(r) for r in rows]

    # ---- hosts ----

    def hosts(self) -> list[Host]:
        return [Host(r["name"], r["url"], r["last_export"], loads(r["last_result"]))
                for r in self.db.query("SELECT * FROM hosts ORDER BY name")]

    def record_host(self, name: str, url: str, result: dict | None) -> None:
        with self.db.transaction() as c:
            c.execute("INSERT INTO hosts VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                      "url = excluded.url, last_export = excluded.last_export, "
                      "last_result = excluded.last_result",
                      (name, url, now() if result else None, dumps(result)))
