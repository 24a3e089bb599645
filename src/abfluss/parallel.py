"""Ingest many files at once: read in worker processes, commit to the catalog in batches.

Workers detect, hash and read a file into temporary Parquet files (``ingest.stage_file``) and
hand back plain data; only this process touches the catalog, committing the staged files in
input order, many inputs per transaction (a transaction and a refresh of the views cost tens of
milliseconds: once per input they were most of the time a small log takes). So the stored
result is the one a single process gives, whatever the number of workers.

Captures are not read by a worker: the calling process meters them, splitting the packets over
``jobs`` processes itself (NFStream starts processes of its own). A worker that dies (killed,
out of memory) costs only the files it had not finished: they are read again by a new set of
workers once, then reported as failed.
"""

from __future__ import annotations

import time
from pathlib import Path

from .ingest import IngestResult, Pending, Progress, _Job, commit, sized_in, stage_file
from .store import Workspace

#: At most this many inputs per catalog transaction,
BATCH_FILES = 200
#: and a transaction at least this often (seconds), so a long run shows progress in the catalog.
BATCH_SECONDS = 2.0

# Set in each worker process (inherited through fork): the job and the input ids and sizes the
# catalog held when the workers started (the commit checks again, so an input read twice is
# stored once).
_job: _Job | None = None
_known: frozenset = frozenset()
_sizes: frozenset = frozenset()


class _Capture:
    """A worker found a capture: the calling process meters it."""

    def __init__(self, path: Path):
        self.path = path


def _stage(path: Path):
    assert _job is not None
    return stage_file(_job, path, _known.__contains__, defer=_Capture, sized=_sizes.__contains__)


def ingest_many(ws: Workspace, items: list, job: _Job, progress: Progress | None) -> list[IngestResult]:
    """``items``: paths to ingest and results already known (an unreadable folder), in order."""
    paths = [i for i in items if isinstance(i, Path)]
    jobs = job.jobs
    if jobs <= 1 or len(paths) <= 1:
        return _serial(ws, items, job, progress)
    global _job, _known, _sizes
    _job, (_known, _sizes) = job, _stored(ws)
    out: list = list(items)
    todo = [n for n, i in enumerate(items) if isinstance(i, Path)]
    for attempt in range(2):
        broken = _run_pool(ws, out, todo, job, progress, last=attempt == 1)
        if not broken:
            break
        todo = broken
    return out


def _serial(ws: Workspace, items: list, job: _Job, progress) -> list[IngestResult]:
    """The same in this process: the catalog is let go of once per batch, not once per file."""
    known, sizes = (set(x) for x in _stored(ws))
    out: list = []
    todo = iter(items)
    item = next(todo, None)
    while item is not None:
        batch: list = []
        started = time.monotonic()
        with ws.released():
            while item is not None and len(batch) < BATCH_FILES and time.monotonic() - started < BATCH_SECONDS:
                res = stage_file(job, item, known.__contains__, progress, sized=sizes.__contains__) \
                    if isinstance(item, Path) else item
                if isinstance(res, Pending):  # a later file of this length is hashed before it is read
                    sizes.add(res.staged.meta.size)
                batch.append(res)
                if progress and isinstance(res, Pending):
                    progress(res.result.path, res.result.total)
                item = next(todo, None)
        done = commit(ws, batch)
        known.update(r.input_id for r in done if r.status == "stored")
        out += done
    return out


def _stored(ws: Workspace) -> tuple[frozenset, frozenset]:
    """The input ids and the sizes (bytes) the catalog holds."""
    rows = ws.con.execute("SELECT input_id, size FROM inputs").fetchall()
    return frozenset(r[0] for r in rows), frozenset(r[1] for r in rows)


def _run_pool(ws: Workspace, out: list, todo: list[int], job: _Job, progress, last: bool) -> list[int]:
    """Read ``out[n]`` for every ``n`` in ``todo`` in ``job.jobs`` workers; commit as they come in input
    order. Returns the positions a dead worker left unread (empty when all went well)."""
    # here, not for every ingest: 0.03 CPU s that reading one file in this process does not need
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("fork")  # workers inherit the imported modules: no start-up cost
    pool = ProcessPoolExecutor(max_workers=min(job.jobs, len(todo)), mp_context=ctx)
    broken: list[int] = []
    futures: dict = {}
    try:
        i, announced = 0, -1
        while i < len(todo):
            batch: list[int] = []
            capture = None
            deadline = time.monotonic() + BATCH_SECONDS
            # the catalog is let go of while the workers are forked (they never hold it) and
            # while they read, so read-only commands answer meanwhile; taken back to commit
            with ws.released():
                if not futures:  # in the first batch's release: one less closing and opening of the catalog
                    futures = {n: pool.submit(_stage, out[n]) for n in todo}
                while i < len(todo) and len(batch) < BATCH_FILES:
                    n = todo[i]
                    if progress and announced != n:
                        progress(str(out[n]), 0)
                        announced = n
                    try:
                        res = futures[n].result(timeout=max(0.0, deadline - time.monotonic()))
                    except TimeoutError:
                        break  # commit what is read; the rest of this file comes in the next batch
                    except BrokenProcessPool:
                        if not last:
                            broken.append(n)
                            i += 1
                            continue
                        res = IngestResult(str(out[n]), "failed",
                                           error=f"{out[n]}: the process reading it died; nothing stored")
                    except Exception as e:  # noqa: BLE001 - one input's failure must not abort the others
                        res = IngestResult(str(out[n]), "failed", error=f"{out[n]}: reader failed "
                                           f"({type(e).__name__}: {str(e)[:200]}); nothing stored")
                    i += 1
                    if isinstance(res, _Capture):
                        capture = n
                        break
                    out[n] = res
                    batch.append(n)
                    if progress and isinstance(res, Pending):
                        progress(res.result.path, res.result.total)
            _flush(ws, out, batch)
            if capture is not None:
                out[capture] = stage_file(job, out[capture], ws.has_input, progress, released=ws.released,
                                          sized=sized_in(ws))
                _flush(ws, out, [capture])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return broken


def _flush(ws: Workspace, out: list, batch: list[int]) -> None:
    for n, r in zip(batch, commit(ws, [out[n] for n in batch])):
        out[n] = r
