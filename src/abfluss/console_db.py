"""The workspace's console store: users, API tokens, the audit log, the case log and the registry
of generated reports, in ``<workspace>/console.sqlite``.

Why not the DuckDB catalog: the data catalog is opened read-only by every reader and read-write
by the one ingesting writer, and DuckDB lets a process hold a file either way but not both, while
the console writes on nearly every call (each view of a tenant's data is audited), from the web
server and the CLI at once. These are small transactional rows, which SQLite (in the standard
library) serves in well under a millisecond per operation, with several processes reading and
writing the same file safely (write-ahead log, waiting up to ``WAIT_SECONDS`` for a lock). The
bulk data stays in Parquet and DuckDB.

Times are stored as ISO 8601 text in UTC with microseconds (so text order is time order) and read
back as aware datetimes; lists (a user's tenants) as JSON text.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import WorkspaceError
from .fsutil import no_space

if TYPE_CHECKING:  # sqlite3 loads where the store is opened: most commands never open it
    import sqlite3

FILE = "console.sqlite"
#: How long an operation waits while another process holds the console store's write lock.
WAIT_SECONDS = 30

DDL = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, tenants TEXT NOT NULL, password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL, failures INTEGER NOT NULL DEFAULT 0, locked_until TEXT);
-- API tokens: only the SHA-256 of the secret is kept; ``id`` is what lists and revocations name
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, user_name TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL, last_used TEXT, revoked_at TEXT);
-- append-only: each row's hash covers its fields and the previous row's hash (abfluss.audit)
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, time TEXT NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL,
    tenant TEXT, what TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_time ON audit (time);
-- ... and refused by the store itself: no row of it is ever changed or deleted
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
-- measures taken per incident (abfluss.caselog)
CREATE TABLE IF NOT EXISTS case_log (
    id INTEGER PRIMARY KEY, incident TEXT NOT NULL, tenant TEXT NOT NULL, host TEXT,
    incident_start TEXT, incident_end TEXT, time TEXT NOT NULL, who TEXT NOT NULL, what TEXT NOT NULL);
-- evidence reports generated through the service layer (abfluss.api.generate_report)
CREATE TABLE IF NOT EXISTS reports (
    id TEXT PRIMARY KEY, tenant TEXT, created_at TEXT NOT NULL, created_by TEXT NOT NULL,
    window_start TEXT, window_end TEXT, lang TEXT, verdict TEXT, path TEXT NOT NULL);
"""

#: Columns read back as datetimes, and as lists.
TIME_COLUMNS = {"created_at", "locked_until", "last_used", "revoked_at", "time", "incident_start", "incident_end",
                "window_start", "window_end"}
LIST_COLUMNS = {"tenants"}

def stamp(t: datetime | None) -> str | None:
    """A time as stored: ISO 8601, UTC, always with microseconds (a naive time is UTC)."""
    if t is None:
        return None
    t = t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds")


def now() -> str:
    """The current time as stored."""
    return stamp(datetime.now(timezone.utc))


#: One open connection per store file per process (opening is cheap, but closing the last
#: connection checkpoints and removes the write-ahead log, which costs a sync each time).
_OPEN: dict[tuple[int, str], tuple[sqlite3.Connection, int, threading.RLock]] = {}
_OPEN_LOCK = threading.Lock()


def _connection(path: Path) -> tuple[sqlite3.Connection, threading.RLock]:
    import sqlite3

    key = (os.getpid(), str(path))  # a forked worker must not share its parent's connection
    with _OPEN_LOCK:
        cached = _OPEN.get(key)
        try:
            ino = path.stat().st_ino
        except FileNotFoundError:
            ino = None
        if cached is not None and cached[1] == ino:
            return cached[0], cached[2]
        if cached is not None:  # the file was removed or replaced: start afresh
            cached[0].close()
        try:
            con = sqlite3.connect(path, timeout=WAIT_SECONDS, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable at checkpoints, never corrupt
            con.executescript(DDL)
        except sqlite3.Error as e:
            _raise_if_no_space(path.parent)
            raise WorkspaceError(f"{path}: cannot open the console store: {e}") from None
        lock = threading.RLock()
        _OPEN[key] = (con, path.stat().st_ino, lock)
        return con, lock


def _raise_if_no_space(folder: Path) -> None:
    """SQLite reports a full disk or a file-size limit as a bare "disk I/O error"; a probe write
    names the condition, so the command line can say "disk full" like every other write does."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder) as f:
            f.write(b"\0" * 65536)
            f.flush()
    except OSError as probe:
        if no_space(probe):
            raise probe from None


@contextmanager
def connect(root: Path | str) -> Iterator[sqlite3.Connection]:
    """A connection to ``root``'s console store (created if missing) for one transaction: committed
    when the block ends, rolled back if it raises. The transaction takes the write lock up front
    (``BEGIN IMMEDIATE``), so a read-then-append (the audit chain) never interleaves with another,
    in this process or any other."""
    import sqlite3

    path = Path(root) / FILE
    con, lock = _connection(path)
    with lock:
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise WorkspaceError(f"{path}: {e}") from None
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")


def close_all() -> None:
    """Close this process's cached connections (tests, before removing a workspace)."""
    with _OPEN_LOCK:
        for con, _ino, _lock in _OPEN.values():
            con.close()
        _OPEN.clear()


def rows(con: sqlite3.Connection, sql: str, args: Sequence = ()) -> list[dict]:
    """The result of ``sql`` as dicts, times as datetimes and lists as lists."""
    cur = con.execute(sql, list(args))
    cols = [d[0] for d in cur.description]
    out = []
    for r in cur.fetchall():
        d = dict(zip(cols, r))
        for c in cols:
            if d[c] is not None and c in TIME_COLUMNS:
                d[c] = datetime.fromisoformat(d[c])
            elif d[c] is not None and c in LIST_COLUMNS:
                d[c] = json.loads(d[c])
        out.append(d)
    return out


def in_list(column: str, values) -> tuple[str, list]:
    """``column IN (?, ?, ...)`` for ``values`` (false for none), with its arguments."""
    values = sorted(values)
    if not values:
        return "0", []
    return f"{column} IN ({', '.join('?' * len(values))})", values
