"""eve.json blocks parsed ahead on a small pool of threads, handed on strictly in file order.

Parsing a block (``_eve_fast.parse``) is nearly all of the reader's time and mostly runs without
the GIL (pyarrow's JSON reader, Arrow compute, NumPy), and it depends on nothing but the block: so
the next blocks are parsed on :data:`WORKERS` threads while the current one is merged into the
chunk. What the reader does with the blocks, and in which order, is unchanged; so are the rows,
the skipped lines with their numbers and the DNS merge.

Two things of the block source would show the look-ahead and are held back here: the lines it
skips itself (longer than ``MAX_LINE``) are reported just before the block they came with is
handed on, as when each block was read only when wanted; and an error reading the file is raised
after the blocks read before it are handed on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from .base import ReadReport

#: Threads parsing blocks: the machine's two cores. A file of one block starts none.
WORKERS = 2
#: Blocks parsed or being parsed beyond the one being merged (each ≈ 8 MB of text and its columns).
AHEAD = 2


class HeldReport:
    """The block source's report: its skips are held until :func:`parsed` hands on their block."""

    def __init__(self, report: ReadReport):
        self.report, self.content, self.held = report, report.content, []

    def skip(self, *args) -> None:
        self.held.append(args)


def parsed(source, parse: Callable) -> Iterator[tuple[bytes, int, object]]:
    """``(data, end, parse(data, end, threads))`` for each of ``source``'s blocks, in order
    (``source`` reports through a :class:`HeldReport`); ``threads`` is false when other blocks
    are parsed meanwhile (so the block's parser need not spread it over threads of its own)."""
    held: HeldReport = source.report
    ahead: deque = deque()  # (data, end, held skips, future or None: parse it here)
    pool: ThreadPoolExecutor | None = None
    failed: OSError | None = None
    try:
        blocks = iter(source)
        while True:
            try:
                data, end = next(blocks)
            except StopIteration:
                break
            except OSError as e:  # raised once the blocks read before it are handed on
                failed = e
                break
            finally:  # what the source skipped while reading this block (or after the last one)
                skips, held.held = held.held, []
            if ahead and pool is None:  # a second block: from here on, parse ahead
                pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="eve-parse")
            ahead.append((data, end, skips, pool.submit(parse, data, end, False) if pool else None))
            if len(ahead) > AHEAD:
                yield _done(ahead.popleft(), held.report, parse, pool is None)
        while ahead:
            yield _done(ahead.popleft(), held.report, parse, pool is None)
        for args in skips:
            held.report.skip(*args)
        if failed is not None:
            raise failed
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _done(item: tuple, report: ReadReport, parse: Callable, alone: bool) -> tuple[bytes, int, object]:
    data, end, skips, future = item
    for args in skips:
        report.skip(*args)
    return data, end, future.result() if future is not None else parse(data, end, alone)
