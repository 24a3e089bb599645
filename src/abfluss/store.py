"""The workspace: rows in Parquet files, an embedded DuckDB catalog that knows them.

Layout of a workspace directory::

    abfluss.toml            optional configuration
    catalog.duckdb          inputs, files, views (and later findings)
    data/<table>/day=YYYY-MM-DD/<input>-<n>.parquet
    .lock                   held by the one writer

A Parquet file is written under a ``.tmp`` name and renamed when complete; it counts only
once the catalog records it, in the same transaction as its input's bookkeeping. Files the
catalog does not know (left by a killed ingest) are removed when a writer opens the
workspace, so a killed ingest leaves no partial rows and can simply be run again.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from .config import pack
from .errors import WorkspaceError
from .fsutil import find_symlink

DEFAULT_WORKSPACE = "abfluss-data"
CATALOG = "catalog.duckdb"
#: Rows per Parquet file before a new one is started: keeps files a useful size for scans.
ROWS_PER_FILE = 4_000_000

_CATALOG_DDL = """
CREATE TABLE IF NOT EXISTS inputs (
    input_id VARCHAR PRIMARY KEY, path VARCHAR, size BIGINT, format VARCHAR, sensor VARCHAR,
    ingested_at TIMESTAMPTZ, first_ts TIMESTAMPTZ, last_ts TIMESTAMPTZ,
    records BIGINT, skipped BIGINT, tables JSON, messages JSON);
CREATE TABLE IF NOT EXISTS files (
    path VARCHAR PRIMARY KEY, table_name VARCHAR, input_id VARCHAR, day DATE, rows BIGINT);
-- every address seen, packed to 16 bytes so CIDR membership is a blob range test (enrich.py),
-- with a small integer id so aggregations group on numbers rather than strings
CREATE TABLE IF NOT EXISTS addresses (addr VARCHAR PRIMARY KEY, a BLOB, id BIGINT);
-- findings of the detections, keyed by their stable id (re-analysis updates, never duplicates);
-- ``doc`` is the finding's JSON form, ``notified`` the severity last sent to a sink
CREATE TABLE IF NOT EXISTS findings (
    id VARCHAR PRIMARY KEY, detection VARCHAR, severity VARCHAR, score DOUBLE,
    start_ts TIMESTAMPTZ, end_ts TIMESTAMPTZ, bytes_out BIGINT, internal_hosts VARCHAR[],
    doc JSON, first_seen TIMESTAMPTZ, updated TIMESTAMPTZ, notified VARCHAR);
-- every analysis run that stored findings: its window, engine and what it did to the findings
CREATE TABLE IF NOT EXISTS analyses (
    id BIGINT PRIMARY KEY, started_at TIMESTAMPTZ, window_start TIMESTAMPTZ, window_end TIMESTAMPTZ,
    engine VARCHAR, version VARCHAR, detections VARCHAR[], findings BIGINT, new BIGINT, raised BIGINT,
    grown BIGINT, unchanged BIGINT);
"""


#: How long to wait for the catalog while another process holds it (a commit, a query).
CATALOG_WAIT_SECONDS = 60


def _connect(root: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open the catalog, waiting while another process holds it; one-line error otherwise."""
    deadline = time.monotonic() + CATALOG_WAIT_SECONDS
    while True:
        try:
            con = duckdb.connect(str(root / CATALOG), read_only=read_only)
            con.execute("SET TimeZone='UTC'")
            return con
        except duckdb.IOException as e:
            if "lock" not in str(e).lower() or time.monotonic() > deadline:
                raise WorkspaceError(f"{root}: cannot open catalog: {str(e).splitlines()[0]}") from None
            time.sleep(0.1)


def _private_umask() -> None:
    os.umask(0o077)


@dataclass
class StoredInput:
    input_id: str
    path: str
    size: int
    format: str
    sensor: str
    records: dict
    skipped: int
    messages: list
    first_ts: datetime | None
    last_ts: datetime | None


class Workspace:
    """One workspace directory. Open with ``Workspace.open(path, write=True)`` to ingest.

    Readers open the catalog read-only, so ``ledger`` works while an ingest runs: the writer
    holds the catalog only to look up and to commit an input, not while it reads and writes
    Parquet (see ``released``).
    """

    def __init__(self, root: Path, con: duckdb.DuckDBPyConnection, lock_fd: int | None, write: bool):
        self.root = root
        self.con = con
        self._lock_fd = lock_fd
        self.write = write

    # -- opening -----------------------------------------------------------------------
    @classmethod
    def open(cls, root: Path | str, write: bool = False) -> "Workspace":
        _private_umask()
        root = Path(root).resolve()
        lock_fd = None
        try:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            _refuse_symlinks(root)
            if write:
                lock_fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(lock_fd)
                    raise WorkspaceError(f"{root}: another abfluss process is writing to this workspace") from None
            if write or not (root / CATALOG).exists():
                con = _connect(root, read_only=False)
                cls._initialise(con)
                if not write:
                    con.close()
            if not write:
                con = _connect(root, read_only=True)
        except PermissionError as e:
            raise WorkspaceError(f"{root}: permission denied ({e.filename})") from None
        ws = cls(root, con, lock_fd, write)
        if write:
            ws._remove_orphans()
            ws.refresh_views()
        return ws

    @staticmethod
    def _initialise(con: duckdb.DuckDBPyConnection) -> None:
        from . import schema
        from .ledger_store import DDL as LEDGER_DDL
        con.execute(_CATALOG_DDL)
        con.execute(LEDGER_DDL)
        for table, sch in schema.TABLES.items():
            # a catalog from before a column was added gets the table of the current schema
            cols = [r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE "
                                              "table_name = ? ORDER BY ordinal_position", [f"_empty_{table}"]).fetchall()]
            columns = ", ".join(f'"{f.name}" {_sql_type(f.type)}' for f in sch)
            if cols and cols != sch.names:
                con.execute(f"CREATE OR REPLACE TABLE _empty_{table} ({columns})")
            con.execute(f"CREATE TABLE IF NOT EXISTS _empty_{table} ({columns})")
            con.execute(f"CREATE VIEW IF NOT EXISTS {table}_raw AS SELECT * FROM _empty_{table}")

    @contextmanager
    def released(self) -> Iterator[None]:
        """Let go of the catalog (not of the writer's lock) while reading and writing Parquet,
        so read-only commands can run meanwhile; take it back before committing."""
        self.con.close()
        try:
            yield
        finally:
            self.con = _connect(self.root, read_only=False)

    def close(self) -> None:
        self.con.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- bookkeeping -------------------------------------------------------------------
    def _remove_orphans(self) -> None:
        data = self.root / "data"
        if data.is_symlink() or not data.is_dir():
            return
        known = {r[0] for r in self.con.execute("SELECT path FROM files").fetchall()}
        # os.walk never enters a linked folder; a link itself is only ever unlinked, not followed
        for dirpath, _dirs, files in os.walk(data, topdown=False):
            for name in files:
                p = Path(dirpath) / name
                if str(p.relative_to(self.root)) not in known:
                    p.unlink()
            if dirpath != str(data) and not os.listdir(dirpath):
                os.rmdir(dirpath)

    def refresh_views(self, tables: Iterable[str] | None = None) -> None:
        """(Re)create one view per table (or only per one of ``tables``: those a commit added
        files to) over exactly the files the catalog records."""
        from . import schema
        wanted = set(schema.TABLES if tables is None else tables)
        listed: dict[str, list[str]] = {}
        for name, path in self.con.execute(
                "SELECT table_name, path FROM files WHERE table_name IN (SELECT unnest(?)) ORDER BY path",
                [sorted(wanted)]).fetchall():
            listed.setdefault(name, []).append(path)
        for table in (t for t in schema.TABLES if t in wanted):
            files = listed.get(table)
            if files:
                listing = ", ".join("'" + str(self.root / f).replace("'", "''") + "'" for f in files)
                # by name: files written before a column was added read it as null
                sql = f"SELECT * FROM read_parquet([{listing}], union_by_name = true)"
            else:
                sql = f"SELECT * FROM _empty_{table}"
            self.con.execute(f"CREATE OR REPLACE VIEW {table}_raw AS {sql}")
        hook = getattr(self, "after_refresh", None)
        if hook is not None:  # views over these that depend on what the files hold (enrich.py)
            hook()

    def has_input(self, input_id: str) -> bool:
        return bool(self.con.execute("SELECT count(*) FROM inputs WHERE input_id = ?", [input_id]).fetchall()[0][0])

    def inputs(self) -> list[dict]:
        cur = self.con.execute("SELECT * FROM inputs ORDER BY ingested_at, path")
        cols = [d[0] for d in cur.description]
        rows = []
        for r in cur.fetchall():
            row = dict(zip(cols, r))
            row["tables"] = json.loads(row["tables"] or "{}")
            row["messages"] = json.loads(row["messages"] or "[]")
            rows.append(row)
        return rows

    # -- writing -----------------------------------------------------------------------
    @contextmanager
    def writer(self, input_id: str) -> Iterator["InputWriter"]:
        """Write one input's rows; nothing is visible unless ``commit`` is called inside."""
        w = InputWriter(self.root, input_id, self)
        try:
            yield w
        finally:
            w.abort()

    def commit_staged(self, batch: list["Staged"]) -> list[bool]:
        """Make staged inputs visible, all in one catalog transaction: their Parquet files move
        into place and the catalog records them with their inputs. Whether each was stored: an
        input whose content the catalog (or an earlier one of the batch) already holds is not,
        and its files are removed. On error nothing of the batch is stored and it raises."""
        stored, seen, placed = [], set(), []
        known_ids = {r[0] for r in self.con.execute(
            "SELECT input_id FROM inputs WHERE input_id IN (SELECT unnest(?))",
            [[s.meta.input_id for s in batch]]).fetchall()} if batch else set()
        # the batch's rows gathered column-wise and inserted with one statement per table: a
        # statement per row cost milliseconds each, most of a small log's time
        files: list[list] = [[], [], [], [], []]
        inputs: list[list] = [[] for _ in range(11)]
        addrs: list[list] = [[], [], []]
        self.con.execute("BEGIN TRANSACTION")
        try:
            # only the batch's addresses are looked up, not every address the catalog knows
            candidates = sorted(set().union(*(s.addresses for s in batch)))
            known = {r[0] for r in self.con.execute(
                "SELECT addr FROM addresses WHERE addr IN (SELECT unnest(?::VARCHAR[]))", [candidates]).fetchall()}
            next_id = self.con.execute("SELECT coalesce(max(id), 0) FROM addresses").fetchall()[0][0]
            for s in batch:
                meta = s.meta
                if meta.input_id in known_ids or meta.input_id in seen:
                    stored.append(False)
                    continue
                seen.add(meta.input_id)
                stored.append(True)
                for rel, tmp, table, day, rows in s.files:
                    os.replace(self.root / tmp, self.root / rel)
                    placed.append(rel)
                    for col, v in zip(files, (rel, table, meta.input_id, day, rows)):
                        col.append(v)
                for col, v in zip(inputs, (meta.input_id, meta.path, meta.size, meta.format, meta.sensor,
                                           meta.first_ts, meta.last_ts, sum(meta.records.values()),
                                           meta.skipped, json.dumps(meta.records, sort_keys=True),
                                           json.dumps(meta.messages))):
                    col.append(v)
                # ids in the order one input after the other would give them: the same
                # whichever way the inputs are batched
                new = sorted(s.addresses - known)
                known.update(new)
                addrs[0] += new
                addrs[1] += [_pack_or_none(a) for a in new]
                addrs[2] += range(next_id + 1, next_id + 1 + len(new))
                next_id += len(new)
            # lists as parameters: registering an Arrow table would make DuckDB import pandas
            if files[0]:
                self.con.execute("INSERT INTO files SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), "
                                 "unnest(?::VARCHAR[]), unnest(?::DATE[]), unnest(?::BIGINT[])", files)
            if inputs[0]:
                self.con.execute(
                    "INSERT INTO inputs SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::BIGINT[]), "
                    "unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), now(), unnest(?::TIMESTAMPTZ[]), "
                    "unnest(?::TIMESTAMPTZ[]), unnest(?::BIGINT[]), unnest(?::BIGINT[]), "
                    "unnest(?::VARCHAR[])::JSON, unnest(?::VARCHAR[])::JSON", inputs)
            if addrs[0]:
                self.con.execute("INSERT INTO addresses SELECT unnest(?::VARCHAR[]), unnest(?::BLOB[]), "
                                 "unnest(?::BIGINT[])", addrs)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            for rel in placed:
                (self.root / rel).unlink(missing_ok=True)
            for s in batch:
                s.discard(self.root)
            raise
        for s, ok in zip(batch, stored):
            if not ok:
                s.discard(self.root)
        if any(stored):
            self.refresh_views(set(files[1]))
        return stored


@dataclass
class Staged:
    """One input's rows written to temporary Parquet files (paths relative to the workspace),
    waiting for ``Workspace.commit_staged``: plain data, so a worker process can hand it over."""

    meta: StoredInput
    files: list  # (final path, temporary path, table, day, rows)
    addresses: set

    def discard(self, root: Path) -> None:
        for _rel, tmp, *_ in self.files:
            (root / tmp).unlink(missing_ok=True)


class InputWriter:
    """Accumulates one input's batches into per-table, per-day Parquet files (``.tmp`` until done)."""

    def __init__(self, root: Path, input_id: str, ws: Workspace | None = None):
        self.root = root
        self.ws = ws  # only needed for ``commit``; a worker process stages without a catalog
        self.input_id = input_id
        self._writers: dict[tuple[str, str], list] = {}  # (table, day) -> [ParquetWriter, tmp path, rows, seq]
        self._done: list[tuple[str, str, str, str, int]] = []  # (relative path, tmp, table, day, rows)
        self._tmp_paths: list[Path] = []
        self._committed = False
        self.first_ts = None
        self.last_ts = None
        self.addresses: set[str] = set()
        # Every text column a sender chose (DNS names, URIs, user agents, SNI …) is scanned for
        # identifiers, which are stored only masked, and counted as dlp rows (dlp/metadata.py).
        from .dlp.keys import workspace_key
        from .dlp.metadata import Scrubber

        self.scrubber = Scrubber(lambda: workspace_key(root))

    def write(self, table: str, batch: pa.Table, sensor: str) -> int:
        """Add a reader batch: complete it with the store's columns, mask identifiers in its
        text columns, split it by day, append."""
        import pyarrow as pa
        import pyarrow.compute as pc
        
        from . import schema
        if batch.num_rows == 0:
            return 0
        full = complete(table, batch, sensor, self.input_id)
        full, found = self.scrubber.scrub(table, full)
        if found:
            self.write("dlp", schema.conform("dlp", pa.Table.from_pylist(found)), sensor)
        ts = full.column("ts")
        lo, hi = pc.min(ts).as_py(), pc.max(ts).as_py()
        self.first_ts = lo if self.first_ts is None or lo < self.first_ts else self.first_ts
        self.last_ts = hi if self.last_ts is None or hi > self.last_ts else self.last_ts
        for col in schema.ADDRESS_COLUMNS.intersection(full.column_names):
            self.addresses.update(a for a in pc.unique(full.column(col)).to_pylist() if a is not None)
        if lo.date() == hi.date():  # the usual case: no per-row work to split by day
            self._append(table, lo.strftime("%Y-%m-%d"), full)
            return full.num_rows
        days = pc.divide(ts.cast(pa.int64()), 86_400_000_000)
        for day in pc.unique(days).to_pylist():
            name = datetime.fromtimestamp(day * 86400, timezone.utc).strftime("%Y-%m-%d")
            self._append(table, name, full.filter(pc.equal(days, day)))
        return full.num_rows

    def _append(self, table: str, day: str, part: pa.Table) -> None:
        import pyarrow.parquet as pq
        
        from . import schema
        key = (table, day)
        entry = self._writers.get(key)
        if entry is None or entry[2] >= ROWS_PER_FILE:
            seq = 0 if entry is None else entry[3] + 1
            if entry is not None:
                self._close(key, entry)
            rel = Path("data") / table / f"day={day}" / f"{self.input_id[:16]}-{seq:04d}.parquet"
            # unique per process: two workers may stage the same content at once
            tmp = self.root / f"{rel}.{os.getpid()}.tmp"
            tmp.parent.mkdir(parents=True, exist_ok=True)
            self._tmp_paths.append(tmp)
            writer = pq.ParquetWriter(tmp, schema.TABLES[table], compression="zstd",
                                      use_dictionary=_dictionary_columns(table),
                                      write_statistics=["ts", "ts_end"] if table == "flows" else ["ts"])
            entry = [writer, rel, 0, seq, tmp]
            self._writers[key] = entry
        entry[0].write_table(part, row_group_size=256_000)
        entry[2] += part.num_rows

    def _close(self, key, entry) -> None:
        entry[0].close()
        table, day = key
        self._done.append((str(entry[1]), str(entry[4].relative_to(self.root)), table, day, entry[2]))

    def stage(self, meta: StoredInput) -> Staged:
        """Close the files (still under their temporary names) and describe them for a commit."""
        for key, entry in list(self._writers.items()):
            self._close(key, entry)
        self._writers.clear()
        meta.first_ts, meta.last_ts = self.first_ts, self.last_ts
        meta.path = self.scrubber.text(meta.path)  # the catalog holds no raw identifier either
        meta.messages = [self.scrubber.text(m) for m in meta.messages]
        self._committed = True  # the files are the staged input's now
        return Staged(meta, list(self._done), self.addresses)

    def commit(self, meta: StoredInput) -> None:
        staged = self.stage(meta)
        try:
            self.ws.commit_staged([staged])
        except BaseException:
            staged.discard(self.root)
            raise

    def abort(self) -> None:
        if self._committed:
            return
        for entry in self._writers.values():
            try:
                entry[0].close()
            except Exception:
                pass
        for tmp in self._tmp_paths:
            tmp.unlink(missing_ok=True)


def complete(table: str, batch: pa.Table, sensor: str, input_id: str) -> pa.Table:
    """Conform a reader batch to the stored schema: sensor and input id added."""
    import pyarrow as pa
    
    from . import schema
    batch = schema.conform(table, batch)
    n = batch.num_rows
    batch = batch.append_column("sensor", pa.repeat(pa.scalar(sensor, pa.string()), n))
    batch = batch.append_column("input_id", pa.repeat(pa.scalar(input_id, pa.string()), n))
    return batch.select(schema.TABLES[table].names).cast(schema.TABLES[table])


def remove_workspace(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def _dictionary_columns(table: str) -> list[str]:
    """Dictionary-encode the repetitive string columns only: ids are unique, and encoding them
    costs a third of the write time for nothing."""
    import pyarrow as pa
    
    from . import schema
    return [f.name for f in schema.TABLES[table]
            if pa.types.is_string(f.type) and f.name not in ("uid", "community_id", "uri")]


def _sql_type(t: pa.DataType) -> str:
    """The DuckDB type of an Arrow type of the schema (as DuckDB itself maps it when scanning
    Arrow; spelled out because handing DuckDB an Arrow table makes it import pandas)."""
    import pyarrow as pa
    
    if pa.types.is_list(t):
        return _sql_type(t.value_type) + "[]"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    names = {pa.bool_(): "BOOLEAN", pa.int8(): "TINYINT", pa.int16(): "SMALLINT", pa.int32(): "INTEGER",
             pa.int64(): "BIGINT", pa.float32(): "FLOAT", pa.float64(): "DOUBLE", pa.string(): "VARCHAR",
             pa.large_string(): "VARCHAR", pa.binary(): "BLOB", pa.date32(): "DATE"}
    if t not in names:
        raise TypeError(f"no DuckDB type for {t}")
    return names[t]


def _pack_or_none(addr: str) -> bytes | None:
    try:
        return pack(addr)
    except ValueError:
        return None


def _refuse_symlinks(root: Path) -> None:
    """A workspace must not hold symlinks: cleaning up (``_remove_orphans``) or writing through a
    planted link would delete or overwrite files outside it."""
    link = find_symlink(root)
    if link is not None:
        raise WorkspaceError(f"{root}: {link.relative_to(root)} is a symbolic link; abfluss does not "
                             "follow links inside a workspace (remove it, or use a real folder)")


def iter_files(paths: Iterable[Path], on_error=None) -> Iterator[Path]:
    """Expand directories recursively (sorted, hidden files skipped); files pass through.
    A directory that cannot be listed is passed to ``on_error(path, OSError)``, never skipped
    silently."""
    for p in paths:
        if not p.is_dir():
            yield p
            continue
        found = []

        def failed(e: OSError) -> None:
            if on_error is not None:
                on_error(Path(e.filename or p), e)

        for dirpath, dirnames, filenames in os.walk(p, onerror=failed):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            found += [q for f in filenames if not f.startswith(".") and (q := Path(dirpath) / f).is_file()]
        yield from sorted(found)
