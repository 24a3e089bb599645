"""The workspace's console catalog: users, API tokens, the audit log, the case log and the
registry of generated reports, in ``<workspace>/console.duckdb``.

Why a second DuckDB file beside ``catalog.duckdb``: the data catalog is opened read-only by every
reader (``ledger``, the web pages) and read-write only by the one ingesting writer, and DuckDB
lets one process hold a file either way but not both. The console tables are written on nearly
every call (each view of a tenant's data is audited), so they live in a file that is only ever
opened read-write, for the length of one operation. Within a process one lock serialises those
operations (the audit chain needs its rows in order); between processes DuckDB's file lock does,
and ``connect`` waits for it like the data catalog does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from .errors import WorkspaceError

FILE = "console.duckdb"
#: How long an operation waits while another process holds the console catalog.
WAIT_SECONDS = 30

DDL = """
CREATE TABLE IF NOT EXISTS users (
    name VARCHAR PRIMARY KEY, role VARCHAR NOT NULL, tenants VARCHAR[] NOT NULL, password_hash VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL, failures INTEGER NOT NULL DEFAULT 0, locked_until TIMESTAMPTZ);
-- API tokens: only the SHA-256 of the secret is kept; ``id`` is what lists and revocations name
CREATE TABLE IF NOT EXISTS tokens (
    id VARCHAR PRIMARY KEY, user_name VARCHAR NOT NULL, token_hash VARCHAR NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL, last_used TIMESTAMPTZ, revoked_at TIMESTAMPTZ);
-- append-only: each row's hash covers its fields and the previous row's hash (abfluss.audit)
CREATE TABLE IF NOT EXISTS audit (
    seq BIGINT PRIMARY KEY, ts TIMESTAMPTZ NOT NULL, who VARCHAR NOT NULL, action VARCHAR NOT NULL,
    tenant VARCHAR, what VARCHAR NOT NULL, prev VARCHAR NOT NULL, hash VARCHAR NOT NULL);
-- measures taken per incident (abfluss.caselog)
CREATE TABLE IF NOT EXISTS case_log (
    id BIGINT PRIMARY KEY, incident VARCHAR NOT NULL, tenant VARCHAR NOT NULL, host VARCHAR,
    incident_start TIMESTAMPTZ, incident_end TIMESTAMPTZ, ts TIMESTAMPTZ NOT NULL, who VARCHAR NOT NULL,
    what VARCHAR NOT NULL);
-- evidence reports generated through the service layer (abfluss.api.generate_report)
CREATE TABLE IF NOT EXISTS reports (
    id VARCHAR PRIMARY KEY, tenant VARCHAR, created_at TIMESTAMPTZ NOT NULL, created_by VARCHAR NOT NULL,
    window_start TIMESTAMPTZ, window_end TIMESTAMPTZ, lang VARCHAR, verdict VARCHAR, path VARCHAR NOT NULL);
"""

_LOCK = threading.RLock()


@contextmanager
def connect(root: Path | str) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection to ``root``'s console catalog (created if missing), held only for
    the ``with`` block; one at a time per process."""
    path = Path(root) / FILE
    with _LOCK:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                con = duckdb.connect(str(path))
                break
            except duckdb.IOException as e:
                if "lock" not in str(e).lower() or time.monotonic() > deadline:
                    raise WorkspaceError(f"{path}: cannot open the console catalog: {str(e).splitlines()[0]}") from None
                time.sleep(0.05)
        try:
            con.execute("SET TimeZone='UTC'")
            con.execute(DDL)
            yield con
        finally:
            con.close()


def rows(con: duckdb.DuckDBPyConnection, sql: str, args: list | tuple = ()) -> list[dict]:
    """The result of ``sql`` as a list of dicts."""
    cur = con.execute(sql, list(args))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]
