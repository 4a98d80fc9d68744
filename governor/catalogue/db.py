"""The catalogue: SQLite at `$GOVERNOR_STATE_DIR/governor.db`, in WAL mode,
every change one transaction (BEGIN IMMEDIATE), so concurrent CLI calls
serialise instead of corrupting it. The schema's version is SQLite's
user_version; MIGRATIONS[i] takes version i to i+1."""
from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .._errors import CatalogueError

MIGRATIONS = [
    """
    CREATE TABLE apps (
        name TEXT PRIMARY KEY,
        manifest TEXT NOT NULL,        -- sha256 digest of its OCI manifest in the store
        created TEXT NOT NULL,
        entrypoint TEXT NOT NULL,      -- JSON argv ([] when it has none)
        files INTEGER NOT NULL,        -- regular files in the image
        size INTEGER NOT NULL,         -- bytes of their contents
        needs TEXT NOT NULL,           -- JSON hardware needs
        measured TEXT,                 -- JSON peaks of the capture run (NULL: not run)
        proposal TEXT NOT NULL,        -- JSON proposed allocation (limit keys)
        packages TEXT NOT NULL,        -- JSON: owners of its files, their closure and size
        volumes TEXT NOT NULL          -- JSON [{"path", "size"}]
    );
    CREATE TABLE groups (
        name TEXT PRIMARY KEY,
        class TEXT NOT NULL,
        overcommit REAL NOT NULL,      -- limits may total capacity x this (guarantees never)
        guarantee_share REAL NOT NULL, -- guarantee = limit x this where none is set
        limits TEXT NOT NULL,          -- JSON: set keys; the rest from the apps' proposals
        guarantees TEXT NOT NULL,      -- JSON: set keys
        created TEXT NOT NULL
    );
    CREATE TABLE group_apps (
        grp TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE,
        app TEXT NOT NULL REFERENCES apps(name),
        PRIMARY KEY (grp, app)
    );
    CREATE TABLE hosts (
        name TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        last_export TEXT,
        last_result TEXT               -- JSON
    );
    CREATE TABLE installed (
        container TEXT PRIMARY KEY,
        grp TEXT NOT NULL,
        app TEXT NOT NULL,
        manifest TEXT NOT NULL,
        rootfs TEXT NOT NULL,
        volumes TEXT NOT NULL,         -- JSON [[host dir, path inside]]
        limits TEXT NOT NULL,          -- JSON, this container's share of the group's
        guarantees TEXT NOT NULL,      -- JSON
        overcommit REAL NOT NULL,
        size INTEGER NOT NULL,         -- bytes unpacked
        installed_at TEXT NOT NULL,
        state TEXT NOT NULL,           -- installed, running, exited N, stopped
        supervisor TEXT,               -- JSON {"pid", "start"} while started
        address TEXT
    );
    """,
]
VERSION = len(MIGRATIONS)


class Database:
    def __init__(self, state_dir: Path | str):
        self.path = Path(state_dir) / "governor.db"
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise CatalogueError(f"catalogue {self.path}: {e}") from None
        except OSError as e:
            raise CatalogueError(f"catalogue {self.path}: {e.strerror}") from None

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > VERSION:
            raise CatalogueError(f"catalogue {self.path}: schema version {version} is newer "
                                 f"than this governor's ({VERSION})")
        while version < VERSION:
            # One transaction per step: the schema and its version change together.
            try:
                self.conn.executescript(f"BEGIN IMMEDIATE; {MIGRATIONS[version]}; "
                                        f"PRAGMA user_version = {version + 1}; COMMIT;")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            version += 1

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; rolled back on any exception."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as e:
            raise CatalogueError(f"catalogue {self.path}: {e}") from None
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def query(self, sql: str, *args) -> list[sqlite3.Row]:
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as e:
            raise CatalogueError(f"catalogue {self.path}: {e}") from None


def dumps(value) -> str:
    return json.dumps(value, sort_keys=True)


def loads(text: str | None):
    return None if text is None else json.loads(text)
