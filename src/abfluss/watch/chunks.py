"""Store one piece of a source (a chunk of lines, a batch of datagrams) as one input."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError
from ..readers.base import ReadReport
from ..store import StoredInput, Workspace

Read = Callable[[Path, ReadReport], Iterator[tuple[str, pa.Table]]]


@dataclass
class Stored:
    """What one chunk added: records per table, and the bytes seen and missed (capture loss)."""

    records: dict = field(default_factory=dict)
    skipped: int = 0
    bytes: int = 0
    missed: int = 0

    @property
    def total(self) -> int:
        return sum(self.records.values())


def _loss(batch: pa.Table) -> tuple[int, int]:
    names = batch.column_names
    seen = 0
    for c in ("orig_ip_bytes", "resp_ip_bytes"):
        if c in names:
            seen += pc.sum(batch.column(c)).as_py() or 0
    missed = pc.sum(batch.column("missed_bytes")).as_py() or 0 if "missed_bytes" in names else 0
    return seen, missed


def store_chunk(ws: Workspace, read: Read, path: Path, label: str, size: int, sensor: str,
                digest: str) -> Stored:
    """Read ``path`` with ``read`` and commit its rows as the input ``label`` (idempotent: the
    input id hashes the label and the content, so a chunk stored before a crash is skipped)."""
    input_id = hashlib.sha256(f"{label}\n{digest}".encode()).hexdigest()
    out = Stored()
    if ws.has_input(input_id):
        return out
    report = ReadReport(label)
    with ws.writer(input_id) as w:
        try:
            for table, batch in read(path, report):
                w.write(table, batch, sensor)
                if table == "flows":
                    seen, missed = _loss(batch)
                    out.bytes += seen
                    out.missed += missed
        except InputError as e:  # nothing readable in this chunk: record it, never stop watching
            report.skip("chunk", str(e))
        except Exception as e:  # noqa: BLE001 - a reader defect must not crash-loop the watcher
            report.skip("chunk", f"reader failed ({type(e).__name__}: {str(e)[:200]}); chunk not read")
        w.commit(StoredInput(input_id, label, size, report.format, sensor, dict(report.records),
                             report.skipped, report.messages, None, None))
    out.records, out.skipped = dict(report.records), report.skipped
    return out
