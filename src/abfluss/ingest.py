"""Ingest inputs into a workspace: detect, read, store, account — once per distinct content."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect as inspect_mod
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
from .fsutil import DiskFullError, no_space, unchanged
from .readers._split import capture_parts
from .readers.base import Content, ReadReport
from .store import InputWriter, StoredInput, Workspace, iter_files


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
    #: Rows derived from the input rather than read from it: payload inspection's ``dlp`` and
    #: ``inspected`` tables (not part of ``records``).
    derived: dict = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.records.values())


Progress = Callable[[str, int], None]  # (input, records so far): called with 0 when an input starts

#: Tables computed from an input's payload, not records of the input (see ``IngestResult.derived``).
DERIVED_TABLES = ("dlp", "inspected")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def default_jobs() -> int:
    """Worker processes ``ingest`` uses unless told: one per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def ingest_paths(ws: Workspace, paths: Iterable[Path], sensor: str | None = None,
                 progress: Progress | None = None, inspect: bool = True,
                 jobs: int | None = None) -> list[IngestResult]:
    """Ingest every file under ``paths`` (directories are walked); one result per file, in order.

    Files are read in ``jobs`` worker processes (default: one per core) and committed to the
    catalog in batches, one transaction each; what is stored is the same whatever ``jobs`` is.
    Captures are metered by the calling process, which splits one into ``jobs // 2`` parts
    (``readers._split.capture_parts``: a part keeps a meter and an inspection worker busy).
    """
    from . import parallel

    items: list = []

    def unreadable(directory: Path, e: OSError) -> None:
        items.append(IngestResult(str(directory), "failed",
                                  error=f"{directory}: cannot list directory ({e.strerror or e}): not read"))

    for path in iter_files((Path(p) for p in paths), unreadable):
        items.append(path)
    jobs = default_jobs() if jobs is None else max(1, jobs)
    return _derived(ws, parallel.ingest_many(ws, items, _Job.of(ws, sensor, inspect, jobs), progress))


def ingest_file(ws: Workspace, path: Path, sensor: str | None = None,
                progress: Progress | None = None, label: str | None = None,
                inspect: bool = True) -> IngestResult:
    """Ingest one file: detect its format, read it, store it; never raises for bad input.

    The result says ``stored`` (with records and skips), ``duplicate`` (this content is already
    in the workspace) or ``failed`` (with a one-line error naming the file and position).
    Captures are also inspected for sensitive values in cleartext payload unless ``inspect``
    is false (only hashes and masked forms are stored; see ``abfluss.dlp``). The input's content
    hash decides what is a duplicate: a capture ingested without inspection stays so.
    """
    job = _Job.of(ws, sensor, inspect)
    res = stage_file(job, path, ws.has_input, progress, label, ws.released, sized=sized_in(ws))
    return _derived(ws, commit(ws, [res]))[0]


def _derived(ws: Workspace, results: list[IngestResult]) -> list[IngestResult]:
    """Bring what the store derives from the inputs (the stored hourly ledger) up to date once
    the inputs of a call are in: once per call, not per commit batch."""
    if any(r.status == "stored" for r in results):
        from . import ledger_store
        ledger_store.update(ws)
    return results


@dataclass
class _Job:
    """What reading a file needs besides the file, without the catalog: a worker process gets it."""
    root: Path
    sensor: str | None
    default_sensor: str
    inspect: bool
    internal: tuple
    #: processes to use: files in parallel, and a capture's packets split over them
    jobs: int = 1

    @classmethod
    def of(cls, ws: Workspace, sensor: str | None, inspect: bool, jobs: int = 1) -> "_Job":
        cfg = getattr(ws, "config", None)
        return cls(ws.root, sensor, (cfg.default_sensor if cfg else "") or "", inspect,
                   tuple(cfg.internal) if cfg else (), jobs)


@dataclass
class Pending:
    """A file read and written to temporary Parquet files, waiting for its catalog commit."""
    result: IngestResult
    staged: object  # store.Staged


#: What reading needs the catalog for, and how to let go of it meanwhile.
Known = Callable[[str], bool]
#: Whether the catalog holds an input of this many bytes (only then can a file be one of them).
Sized = Callable[[int], bool]


def sized_in(ws: Workspace) -> Sized:
    """``Sized`` asking ``ws``'s catalog."""
    return lambda size: bool(ws.con.execute("SELECT count(*) FROM inputs WHERE size = ?", [size]).fetchall()[0][0])


def stage_file(job: _Job, path: Path, known: Known, progress: Progress | None = None,
               label: str | None = None, released=contextlib.nullcontext, defer=None,
               sized: Sized | None = None):
    """Detect, hash and read one file into temporary Parquet files: a final result (duplicate,
    ignored, failed) or a ``Pending`` one for ``commit``. ``known(input_id)`` says whether the
    catalog holds that content already; ``released`` lets go of the catalog while reading.
    With ``defer``, a capture is not read: ``defer(path)`` is returned instead.

    The file is hashed once, while it is read (``readers.base.Content``). Only when
    ``sized(size)`` says the catalog holds an input of the file's length (``sized`` None: assume
    so) could it be a duplicate; it is then hashed before reading too, so a file already stored
    is not read again (and read with the hash it must give)."""
    shown = label or str(path)
    try:
        fmt, read = readers.detect(path)
        before = os.stat(path)  # taken before hashing: unchanged after reading means nothing changed
        input_id = sha256_file(path) if sized is None or sized(before.st_size) else None
    except readers.NotTelemetry as e:
        return IngestResult(shown, "ignored", error=str(e))
    except InputError as e:
        return IngestResult(shown, "failed", error=str(e))
    except OSError as e:
        return IngestResult(shown, "failed", error=f"{path}: cannot read: {e.strerror}")
    except Exception as e:  # noqa: BLE001 - a sniffer defect must not abort the other inputs
        return IngestResult(shown, "failed", error=f"{path}: format detection failed ({type(e).__name__})")
    if input_id is not None and known(input_id):
        return IngestResult(shown, "duplicate", fmt, input_id)
    if fmt == "pcap" and defer is not None:
        return defer(path)
    if fmt == "pcap" and "jobs" in inspect_mod.signature(read).parameters:
        # the capture's packets split over processes: each part keeps two of them busy
        read = functools.partial(read, jobs=capture_parts(job.jobs))
    if fmt == "pcap" and job.inspect:
        from .dlp.inspect import Settings as InspectSettings
        from .dlp.keys import workspace_key

        # Only what internal hosts send is read (an outflow); the networks are the configuration's.
        read = functools.partial(read, inspect_key=workspace_key(job.root),
                                 inspect_settings=InspectSettings(internal_networks=job.internal))
    if progress:
        progress(shown, 0)
    sensor_name = job.sensor or job.default_sensor or fmt
    limit = None
    for _attempt in range(2):
        res = _read_and_stage(job, path, shown, fmt, read, input_id, sensor_name, progress, limit, before,
                              released, known)
        if not isinstance(res, _Changed):
            return res
        # The file changed between hashing and reading (it grows: a log still being written).
        # Read it again up to where the hash of what was read ends, and store it under that.
        if limit is not None:
            break
        input_id, limit = res.digest, res.size
        if known(input_id):
            return IngestResult(shown, "duplicate", fmt, input_id)
    return IngestResult(shown, "failed", fmt, input_id or "",
                        error=f"{path}: changed in place while being read; nothing stored")


def commit(ws: Workspace, items: list) -> list[IngestResult]:
    """Commit the ``Pending`` among ``items`` in one catalog transaction; every item's result.
    If the transaction fails, each pending input fails with the reason and nothing of it stays."""
    pending = [i for i in items if isinstance(i, Pending)]
    if pending:
        try:
            stored = ws.commit_staged([p.staged for p in pending])
        except Exception as e:  # noqa: BLE001 - reported per input, as a read error would be
            for p in pending:
                r = p.result
                p.result = IngestResult(r.path, "failed", r.format, r.input_id,
                                        error=_failure_text(e, r.path))
        else:
            for p, ok in zip(pending, stored):
                if not ok:
                    p.result = IngestResult(p.result.path, "duplicate", p.result.format, p.result.input_id)
    return [i.result if isinstance(i, Pending) else i for i in items]


@dataclass
class _Changed:
    """What was read is not the content hashed before: its own hash and length."""
    digest: str
    size: int


def _read_and_stage(job: _Job, path: Path, shown: str, fmt: str, read, input_id: str | None, sensor_name: str,
                    progress: Progress | None, limit: int | None, before: os.stat_result,
                    released, known: Known) -> IngestResult | Pending | _Changed:
    """Read ``path`` (its first ``limit`` bytes) into temporary files, pending under the hash of
    what was read: if ``input_id`` is given, only if what was read hashes to it; else nothing is
    kept and the hash of what was read is returned (``_Changed``), as it is when the file grew
    after the reader saw its end."""
    # hashed aside while read by another program only if not hashed before (see Content)
    report = ReadReport(str(path), fmt, content=Content(path, limit, aside=input_id is None))
    derived: dict[str, int] = {}
    w = InputWriter(job.root, input_id)
    try:
        with released(), _Pipeline(lambda table, batch: w.write(table, batch, sensor_name)) as pipe:
            for table, batch in read(path, report):
                if table in DERIVED_TABLES:
                    derived[table] = derived.get(table, 0) + batch.num_rows
                pipe.put(table, batch)
                if progress:
                    progress(shown, report.total)
        unread = not report.content.used and limit is None
        if unread and input_id is not None and unchanged(before, os.stat(path)):
            # read by another program (NFStream): not hashed while read, but the file did not
            # change since it was hashed (size, mtime, inode), so no second hash is needed
            digest, size, grew = input_id, before.st_size, False
        else:
            digest, size, grew = report.content.finish()
            if unread and not unchanged(before, os.stat(path)):
                grew = True  # changed while another program read it: what it read is not known
        if grew or digest != (input_id or digest):
            return _Changed(digest, size)
        if input_id is None and known(digest):  # stored meanwhile (by another process)
            return IngestResult(shown, "duplicate", report.format, digest)
        input_id = digest
        if report.ignored:
            return IngestResult(shown, "ignored", report.format, input_id, error=report.ignored)
        if report.total == 0 and report.skipped:
            return IngestResult(shown, "failed", report.format, input_id, {}, report.skipped,
                                report.messages, report.messages[0])
        # An input with no records and no errors (a header-only Zeek log of a quiet hour)
        # is stored: the inputs list then shows that it was read.
        staged = w.stage(StoredInput(input_id, shown, size, report.format, sensor_name,
                                     dict(report.records), report.skipped, report.messages, None, None))
    except InputError as e:
        return IngestResult(shown, "failed", report.format, input_id or "", {}, report.skipped,
                            report.messages, str(e))
    except Exception as e:  # noqa: BLE001 - one input's failure must not abort the other inputs
        if isinstance(e, DiskFullError) or no_space(e) or isinstance(e, OSError):
            return IngestResult(shown, "failed", report.format, input_id or "", error=_failure_text(e, path))
        return IngestResult(shown, "failed", report.format, input_id or "", {}, report.skipped, report.messages,
                            f"{path}: reader failed ({type(e).__name__}: {str(e)[:200]}); nothing stored")
    finally:
        w.abort()  # no-op once staged
    return Pending(IngestResult(shown, "stored", report.format, input_id, dict(report.records),
                                report.skipped, report.messages, derived=derived), staged)


def _failure_text(e: BaseException, path) -> str:
    if isinstance(e, DiskFullError):
        return str(e)
    if no_space(e):
        return f"{path}: disk full ({_reason(e)}); nothing stored from this file"
    if isinstance(e, OSError):
        return f"{path}: read error: {e}"
    return f"{path}: could not be stored ({type(e).__name__}: {_reason(e)})"


def _reason(e: BaseException) -> str:
    return (e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0])[:200]


class _Pipeline:
    """Writes batches on a second thread while the reader parses the next ones: Parquet encoding
    and Arrow compute release the GIL, so reading and writing overlap on two cores. Started at
    the second batch (after a reader has forked any helper process of its own): an input of one
    batch, most small logs, is written in this thread without starting one."""

    def __init__(self, write: Callable[[str, object], None]):
        self.write = write
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.first: tuple | None = None  # the first batch, held until a second one comes

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
            if self.first is None:
                self.first = (table, batch)
                return
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
            self.queue.put(self.first)
            self.first = None
        self.queue.put((table, batch))

    def __enter__(self) -> "_Pipeline":
        return self

    def __exit__(self, *exc) -> None:
        if self.first is not None and exc[0] is None:
            self.write(*self.first)  # one batch only: written here
            self.first = None
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
        if self.error is not None and exc[0] is None:
            raise self.error


def capture_live(ws: Workspace, interface: str, duration: float, sensor: str | None = None,
                 progress: Progress | None = None, inspect: bool = True) -> IngestResult:
    """Capture ``duration`` seconds on ``interface`` with tcpdump, then meter it like a file.

    The packets go to a private temporary file outside the workspace that is deleted
    afterwards, so no payload byte is kept; flows, DNS, names and (unless ``inspect`` is
    false) the hashed findings of payload inspection are what remains.
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
        return ingest_file(ws, Path(tmp), sensor or f"live-{interface}", progress, label, inspect)
    finally:
        os.unlink(tmp)
