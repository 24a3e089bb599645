"""A workspace directory: opened by many readers and one writer, its catalog kept in step with
its Parquet files (see the package's docstring for the layout)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import WorkspaceError
from ..fsutil import find_symlink
from .batch import commit_staged
from .catalog import CATALOG, connect, initialise
from .views import refresh_views
from .writer import InputWriter, Staged

if TYPE_CHECKING:  # the package loads where it is needed (see engine)
    import duckdb

DEFAULT_WORKSPACE = "abfluss-data"


def _private_umask() -> None:
    os.umask(0o077)


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
            new = not (root / CATALOG).exists()
            if write or new:
                con = connect(root, read_only=False)
                initialise(con, new and write)
                if not write:
                    con.close()
            if not write:
                con = connect(root, read_only=True)
        except PermissionError as e:
            raise WorkspaceError(f"{root}: permission denied ({e.filename})") from None
        ws = cls(root, con, lock_fd, write)
        if write:
            ws._remove_orphans()
            if not new:  # a new catalog's views are the empty tables' already, as refreshing makes them
                ws.refresh_views()
        return ws

    @contextmanager
    def released(self) -> Iterator[None]:
        """Let go of the catalog (not of the writer's lock) while reading and writing Parquet,
        so read-only commands can run meanwhile; take it back before committing."""
        self.con.close()
        try:
            yield
        finally:
            self.con = connect(self.root, read_only=False)

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

    def refresh_views(self, tables: Iterable[str] | None = None, added: dict | None = None) -> None:
        """(Re)create one view per table (or only per one of ``tables``: those a commit added
        files to, ``added``: by table) over exactly the files the catalog records."""
        refresh_views(self, tables, added)

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
    def writer(self, input_id: str) -> Iterator[InputWriter]:
        """Write one input's rows; nothing is visible unless ``commit`` is called inside."""
        w = InputWriter(self.root, input_id, self)
        try:
            yield w
        finally:
            w.abort()

    def commit_staged(self, batch: list[Staged]) -> list[bool]:
        """Make staged inputs visible in one catalog transaction; whether each was stored (batch.py)."""
        return commit_staged(self, batch)


def remove_workspace(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def _refuse_symlinks(root: Path) -> None:
    """A workspace must not hold symlinks: cleaning up (``_remove_orphans``) or writing through a
    planted link would delete or overwrite files outside it."""
    link = find_symlink(root)
    if link is not None:
        raise WorkspaceError(f"{root}: {link.relative_to(root)} is a symbolic link; abfluss does not "
                             "follow links inside a workspace (remove it, or use a real folder)")
