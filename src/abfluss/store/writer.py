"""Writing one input's rows: completed to the stored schema, identifiers in sender-chosen texts
masked (dlp/metadata.py), split by table and day into Parquet files under temporary names, then
staged for a commit (batch.py). Nothing is visible until the catalog records the files.

An input's id is the SHA-256 of its bytes, computed while the reader reads them (one pass over
the file, readers/base.py ``Content``), so it is known only once the rows are written. Until then
the rows carry a random provisional id of the same length: the ``input_id`` column is written
dictionary-encoded and uncompressed, so every row group holds the id once, as plain bytes in its
dictionary page, and ``stage`` overwrites those bytes in place with the real id
(:func:`_replace_id`); the files' names change with it when they are renamed at the commit."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ._encoder import Encoder

if TYPE_CHECKING:
    import pyarrow as pa

    from .workspace import Workspace

#: Rows per Parquet file before a new one is started: keeps files a useful size for scans.
ROWS_PER_FILE = 4_000_000


@dataclass
class _File:
    """One table's file of one day while it is written: made on the encoder's thread at its first
    write (``writer``, ``file``), renamed from ``tmp`` to ``path`` (relative) at the commit."""
    path: Path
    tmp: Path
    seq: int
    rows: int = 0
    writer: object = None  # pyarrow.parquet.ParquetWriter
    file: object = None  # pyarrow.OSFile


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

    def __init__(self, root: Path, input_id: str | None, ws: Workspace | None = None):
        self.root = root
        self.ws = ws  # only needed for ``commit``; a worker process stages without a catalog
        # None: not known yet (hashed while read); a provisional one until ``stage`` is told it
        self.input_id = input_id or secrets.token_hex(32)
        self._writers: dict[tuple[str, str], _File] = {}  # (table, day) -> the file being written
        self._done: list[tuple[str, str, str, str, int]] = []  # (relative path, tmp, table, day, rows)
        self._layout: dict[str, object] = {}  # tmp path -> the closed file's Parquet metadata
        self._folders: set[Path] = set()  # created already
        self._tmp_paths: list[Path] = []
        self._committed = False
        self._encoder = Encoder()  # the Parquet writes, in order, on a thread of their own
        self.first_ts = None
        self.last_ts = None
        self.addresses: set[str] = set()
        # Every text column a sender chose (DNS names, URIs, user agents, SNI …) is scanned for
        # identifiers, which are stored only masked, and counted as dlp rows (dlp/metadata.py).
        from ..dlp.keys import workspace_key
        from ..dlp.metadata import Scrubber

        self.scrubber = Scrubber(lambda: workspace_key(root))

    def write(self, table: str, batch: pa.Table, sensor: str) -> int:
        """Add a reader batch: complete it with the store's columns, mask identifiers in its
        text columns, split it by day, append."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from .. import schema
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
        import numpy as np

        # one stable sort by day, then a slice per day (a filter per day was a pass over the
        # batch for each of its days: a file spanning months has dozens per batch); rows in
        # order of time already (the usual case) need no sort: it would change nothing
        days = pc.divide(ts.cast(pa.int64()), 86_400_000_000)
        ordered = days.to_numpy(zero_copy_only=False)
        if days.null_count or (np.diff(ordered) < 0).any():
            order = pc.sort_indices(days)
            ordered = days.take(order).to_numpy()
            full = full.take(order)
        cuts = np.flatnonzero(np.diff(ordered)) + 1
        spans = {int(ordered[a]): (int(a), int(b)) for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(ordered)])}
        for day in pc.unique(days).to_pylist():  # in order of first appearance, as before
            name = datetime.fromtimestamp(day * 86400, timezone.utc).strftime("%Y-%m-%d")
            a, b = spans[day]
            self._append(table, name, full.slice(a, b - a))
        return full.num_rows

    def _append(self, table: str, day: str, part: pa.Table) -> None:
        key = (table, day)
        entry = self._writers.get(key)
        if entry is None or entry.rows >= ROWS_PER_FILE:
            seq = 0 if entry is None else entry.seq + 1
            if entry is not None:
                self._close(key, entry)
            rel = Path("data") / table / f"day={day}" / f"{self.input_id[:16]}-{seq:04d}.parquet"
            # unique per process: two workers may stage the same content at once
            tmp = self.root / f"{rel}.{os.getpid()}.tmp"
            self._tmp_paths.append(tmp)
            entry = _File(rel, tmp, seq)
            self._writers[key] = entry
        self._encoder.submit(self._write, table, entry, part)
        entry.rows += part.num_rows

    def _write(self, table: str, entry: _File, part: pa.Table) -> None:
        """On the encoder's thread: the file made at its first write (its day's folder, the
        file, the Parquet writer), then the rows encoded into it. A file spanning months has a
        file per table and day, a few milliseconds of file system and writer set-up each: done
        here, beside the writing thread's work on the next batch."""
        if entry.writer is None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            from .. import schema
            tmp = entry.tmp
            if tmp.parent not in self._folders:
                tmp.parent.mkdir(parents=True, exist_ok=True)
                self._folders.add(tmp.parent)
            # opened here rather than by pyarrow, which resolves a file system for each path
            entry.file = pa.OSFile(str(tmp), "wb")
            entry.writer = pq.ParquetWriter(entry.file, schema.TABLES[table], **_options(table))
        entry.writer.write_table(part, 256_000)

    def _close(self, key, entry) -> None:
        """Close a file once its writes are done (on the encoder's thread, after them)."""
        self._encoder.submit(self._closed, key, entry, entry.rows)

    def _closed(self, key, entry: _File, rows: int) -> None:
        entry.writer.close()
        entry.file.close()
        table, day = key
        tmp = str(entry.tmp.relative_to(self.root))
        self._layout[tmp] = entry.writer.writer.metadata  # where each row group's input_id is, for stage
        self._done.append((str(entry.path), tmp, table, day, rows))

    def stage(self, meta: StoredInput) -> Staged:
        """Close the files (still under their temporary names) and describe them for a commit,
        under ``meta.input_id`` (the rows' provisional id replaced by it where it differs)."""
        for key, entry in list(self._writers.items()):
            self._close(key, entry)
        self._writers.clear()
        self._encoder.drain()
        if meta.input_id != self.input_id:
            old, self.input_id = self.input_id, meta.input_id
            done = []
            for rel, tmp, table, day, rows in self._done:
                _replace_id(self.root / tmp, self._layout[tmp], old, self.input_id)
                rel = Path(rel)
                done.append((str(rel.with_name(self.input_id[:16] + rel.name[16:])), tmp, table, day, rows))
            self._done = done
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
        try:
            self._encoder.drain()
        except Exception:  # noqa: BLE001 - already raised where the input failed
            pass
        for entry in self._writers.values():
            for f in (entry.writer, entry.file):
                if f is not None:
                    with contextlib.suppress(Exception):  # already failing: the temporary files go below
                        f.close()
        for tmp in self._tmp_paths:
            tmp.unlink(missing_ok=True)


def complete(table: str, batch: pa.Table, sensor: str, input_id: str) -> pa.Table:
    """Conform a reader batch to the stored schema: sensor and input id added."""
    import pyarrow as pa

    from .. import schema
    batch = schema.conform(table, batch)
    n = batch.num_rows
    batch = batch.append_column("sensor", pa.repeat(pa.scalar(sensor, pa.string()), n))
    batch = batch.append_column("input_id", pa.repeat(pa.scalar(input_id, pa.string()), n))
    return batch.select(schema.TABLES[table].names).cast(schema.TABLES[table])


def _replace_id(path: Path, md, old: str, new: str) -> None:
    """Overwrite the provisional input id ``old`` with ``new`` in a closed Parquet file of the
    writer's (``md``: its metadata as the writer closed it): in each row group's ``input_id``
    column chunk, whose dictionary page holds the one value as plain bytes (dictionary-encoded,
    uncompressed, no statistics: ``_compression``, ``_dictionary_columns``). Same length, so no
    offset moves. Anything else is an error: the input fails rather than store rows under the
    wrong id."""
    before, after = old.encode(), new.encode()
    if len(before) != len(after):
        raise ValueError(f"input id of {len(after)} bytes, provisional one of {len(before)}")
    col = md.schema.names.index("input_id")
    with open(path, "r+b") as f:
        for rg in range(md.num_row_groups):
            c = md.row_group(rg).column(col)
            start = c.dictionary_page_offset if c.has_dictionary_page else c.data_page_offset
            f.seek(start)
            chunk = f.read(c.total_compressed_size)
            at = chunk.find(before)
            if at < 0 or chunk.find(before, at + 1) >= 0 or c.statistics is not None:
                raise ValueError(f"{path.name}: row group {rg}: the provisional input id is not there once")
            f.seek(start + at)
            f.write(after)


@functools.cache
def _options(table: str) -> dict:
    """The ParquetWriter options of a table's files (computed once per table)."""
    return {"compression": _compression(table), "use_dictionary": _dictionary_columns(table),
            "write_statistics": ["ts", "ts_end"] if table == "flows" else ["ts"]}


def _compression(table: str) -> dict[str, str]:
    """zstd, but the ``input_id`` column uncompressed: one dictionary value per row group and
    all-zero indices (nothing to gain), and its value stays plain bytes for ``_replace_id``."""
    from .. import schema
    return {f.name: "none" if f.name == "input_id" else "zstd" for f in schema.TABLES[table]}


def _dictionary_columns(table: str) -> list[str]:
    """Dictionary-encode the repetitive string columns only: ids are unique, and encoding them
    costs a third of the write time for nothing."""
    import pyarrow as pa

    from .. import schema
    return [f.name for f in schema.TABLES[table]
            if pa.types.is_string(f.type) and f.name not in ("uid", "community_id", "uri")]
