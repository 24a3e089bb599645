"""Ingest inputs into a workspace: detect, read, store, account — once per distinct content."""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import readers
from .errors import AbflussError, InputError
from .readers.base import ReadReport
from .store import StoredInput, Workspace, iter_files


@dataclass
class IngestResult:
    """What happened to one input: ``stored``, ``duplicate`` (same content already there),
    ``ignored`` (a known kind abfluss does not use, e.g. a Zeek x509.log) or ``failed``."""

    path: str
    status: str
    format: str = ""
    input_id: str = ""
    records: dict = field(default_factory=dict)
    skipped: int = 0
    messages: list = field(default_factory=list)
    error: str = ""

    @property
    def total(self) -> int:
        return sum(self.records.values())


Progress = Callable[[str, int], None]  # (input, records so far): called with 0 when an input starts


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def ingest_paths(ws: Workspace, paths: Iterable[Path], sensor: str | None = None,
                 progress: Progress | None = None) -> list[IngestResult]:
    """Ingest every file under ``paths`` (directories are walked); one result per file."""
    results = []
    for path in iter_files(Path(p) for p in paths):
        results.append(ingest_file(ws, path, sensor, progress))
    return results


def ingest_file(ws: Workspace, path: Path, sensor: str | None = None,
                progress: Progress | None = None, label: str | None = None) -> IngestResult:
    """Ingest one file: detect its format, read it, store it; never raises for bad input.

    The result says ``stored`` (with records and skips), ``duplicate`` (this content is already
    in the workspace) or ``failed`` (with a one-line error naming the file and position).
    """
    shown = label or str(path)
    try:
        fmt, read = readers.detect(path)
        input_id = sha256_file(path)
    except InputError as e:
        return IngestResult(shown, "failed", error=str(e))
    except OSError as e:
        return IngestResult(shown, "failed", error=f"{path}: cannot read: {e.strerror}")
    if ws.has_input(input_id):
        return IngestResult(shown, "duplicate", fmt, input_id)
    if progress:
        progress(shown, 0)
    report = ReadReport(str(path), fmt)
    cfg = getattr(ws, "config", None)
    sensor_name = sensor or (cfg.default_sensor if cfg else "") or fmt
    try:
        with ws.writer(input_id) as w:
            with ws.released(), _Pipeline(lambda table, batch: w.write(table, batch, sensor_name)) as pipe:
                for table, batch in read(path, report):
                    pipe.put(table, batch)
                    if progress:
                        progress(shown, report.total)
            if report.ignored:
                return IngestResult(shown, "ignored", report.format, input_id, error=report.ignored)
            if report.total == 0 and report.skipped:
                return IngestResult(shown, "failed", report.format, input_id, {}, report.skipped,
                                    report.messages, report.messages[0])
            # An input with no records and no errors (a header-only Zeek log of a quiet hour)
            # is stored: the inputs list then shows that it was read.
            w.commit(StoredInput(input_id, shown, os.path.getsize(path), report.format, sensor_name,
                                 dict(report.records), report.skipped, report.messages, None, None))
    except InputError as e:
        return IngestResult(shown, "failed", report.format, input_id, {}, report.skipped,
                            report.messages, str(e))
    except OSError as e:
        return IngestResult(shown, "failed", report.format, input_id, error=f"{path}: read error: {e}")
    return IngestResult(shown, "stored", report.format, input_id, dict(report.records),
                        report.skipped, report.messages)


class _Pipeline:
    """Writes batches on a second thread while the reader parses the next ones: Parquet encoding
    and Arrow compute release the GIL, so reading and writing overlap on two cores. Started at
    the first batch, after a reader has forked any helper process of its own."""

    def __init__(self, write: Callable[[str, object], None]):
        self.write = write
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.write(*item)
                except BaseException as e:  # noqa: BLE001 - re-raised in the reading thread
                    self.error = e

    def put(self, table: str, batch) -> None:
        if self.error is not None:
            raise self.error
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        self.queue.put((table, batch))

    def __enter__(self) -> "_Pipeline":
        return self

    def __exit__(self, *exc) -> None:
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
        if self.error is not None and exc[0] is None:
            raise self.error


def capture_live(ws: Workspace, interface: str, duration: float, sensor: str | None = None,
                 progress: Progress | None = None) -> IngestResult:
    """Capture ``duration`` seconds on ``interface`` with tcpdump, then meter it like a file.

    The packets go to a private temporary file outside the workspace that is deleted
    afterwards, so no payload byte is kept; flows, DNS and names are what remains.
    """
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        raise AbflussError("live capture needs tcpdump (Debian package 'tcpdump'): apt-get install tcpdump")
    fd, tmp = tempfile.mkstemp(prefix="abfluss-live-", suffix=".pcap")
    os.close(fd)
    try:
        proc = subprocess.Popen([tcpdump, "-i", interface, "-s", "0", "-U", "-w", tmp, "-Z", "root"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            proc.wait(timeout=duration)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=10)
        else:
            err = (proc.stderr.read() or "").strip().splitlines()
            raise InputError(f"interface {interface}: capture failed: {err[-1] if err else 'tcpdump exited'}")
        label = f"interface:{interface}@{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
        return ingest_file(ws, Path(tmp), sensor or f"live-{interface}", progress, label)
    finally:
        os.unlink(tmp)
