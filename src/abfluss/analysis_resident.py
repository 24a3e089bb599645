"""What a long-running process (``abfluss watch``) keeps from one analysis to the next.

An ``analyze`` of its own builds everything afresh: it exports the window to Parquet, opens an
Ibis connection over the files and builds the detections' expressions, and it runs once. The
watch analyses the same workspace again and again (its cycles, and ``abfluss analyze`` handed to
it, see watch/requests.py), so :class:`Resident` keeps, on the DuckDB engine:

- the exported window, while the window, the stored files and the enrichment views are the
  same (``export_state``); anything new is exported afresh;
- one Ibis connection, its views pointed at each export's files, and each table's Ibis
  expression while its columns stay the same;
- so the detections' built expressions (``detections._memo``) and their SQL.

Every detection still runs its queries over the window's rows each time: what is kept is what
the queries are built from and how, never what they found.
"""

from __future__ import annotations

import contextlib
import hashlib
from datetime import datetime
from pathlib import Path

from . import analysis
from .detections._memo import Memo
from .fsutil import scratch_dir
from .store import Workspace


def export_state(ws: Workspace, start: datetime, end: datetime) -> str | None:
    """A digest of what ``analysis.export_window`` reads for [start, end): the window, the
    configuration, every stored file with its rows, the known addresses, and the enrichment
    views by the digest of their definitions that a writer keeps (``enrich.apply``) with the
    form of ``flows_dedup``. Another ingest, ``watch`` commit, configuration or window gives
    another digest; None when the catalog keeps no digest of its views (then nothing is reused).
    """
    from .enrich import kept_views

    kept = kept_views(ws.con, "(SELECT count(*) FROM files)", "(SELECT coalesce(sum(hash(path, rows)), 0) FROM files)",
                      "(SELECT count(*) FROM addresses)", "(SELECT max(id) FROM addresses)")
    if kept is None:
        return None
    views, deduplicating, *data = kept
    text = repr((str(ws.root), start.isoformat(), end.isoformat(), repr(ws.config), data, views, deduplicating))
    return hashlib.sha256(text.encode()).hexdigest()


class Resident:
    """Kept between the analyses of one process; one analysis at a time uses it. ``close`` lets
    go of it all (the connection, the files)."""

    def __init__(self) -> None:
        self.con = None
        self.tables: dict[str, object] = {}
        self.memo = Memo()
        self._stack = contextlib.ExitStack()
        self._dir: Path | None = None
        self._export: tuple[str | None, dict[str, Path]] | None = None  # (export_state, paths)
        self._counts: tuple[dict, dict] | None = None  # (paths, rows per table)
        self._viewing: dict | None = None  # the files the connection's views read
        self._n = 0

    # -- the window ----------------------------------------------------------------------
    def export(self, ws: Workspace, start: datetime, end: datetime) -> dict[str, Path]:
        """The window's Parquet files: the last export's when nothing it read changed."""
        state = export_state(ws, start, end)
        if state is not None and self._export is not None and self._export[0] == state:
            return self._export[1]
        if self._dir is None:  # a scratch folder held (locked) as long as this process keeps it
            self._dir = self._stack.enter_context(scratch_dir(ws.root, ".analysis-"))
        self._n += 1
        out = self._dir / str(self._n)
        out.mkdir()
        old, self._export = self._export, None
        if old is not None:  # the connection's views are pointed at the new files before any query
            _remove(next(iter(old[1].values())).parent)
        try:
            paths = analysis.export_window(ws, start, end, out)
        except BaseException:
            _remove(out)
            raise
        self._export = (state, paths)
        return paths

    def counts(self, paths: dict[str, Path]) -> dict[str, int]:
        if self._counts is None or self._counts[0] != paths:
            import pyarrow.parquet as pq

            self._counts = (dict(paths), {k: pq.read_metadata(p).num_rows for k, p in paths.items()})
        return dict(self._counts[1])

    # -- the connection ------------------------------------------------------------------
    def telemetry_tables(self, paths: dict[str, Path]) -> dict:
        if self.con is None:
            self.con = analysis.duckdb_backend(threads=2)
        if self._viewing == paths and self.tables:  # its views read these very files already
            return dict(self.tables)
        self._viewing = None
        tables = analysis.parquet_tables(self.con, paths)
        self._viewing = dict(paths)
        for name, t in tables.items():  # the same operation as before: what was built on it applies
            old = self.tables.get(name)
            if old is not None and old.op() == t.op():
                tables[name] = old
        self.tables = tables
        self.memo.pin(tables)
        return tables

    def release(self, tel) -> None:
        """Drop what this analysis left in the connection: its shared tables and the in-memory
        tables Ibis registered (it would keep them until the process ends)."""
        raw = self.con.con
        for name in tel._shared:
            raw.execute(f'DROP TABLE IF EXISTS "abfluss_shared_{name}"')
        for op in list(self.con._memtables):
            raw.unregister(op.name)
            self.con._memtables.discard(op)

    def close(self) -> None:
        if self.con is not None:
            self.con.disconnect()
            self.con = None
        self.tables = {}
        self.memo.clear()
        self._export = self._counts = self._viewing = None
        self._dir = None
        self._stack.close()


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
