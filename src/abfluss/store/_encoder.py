"""Parquet writes run on a thread of their own, in the order given.

Encoding and compressing a batch into its Parquet file is about half of what writing an input's
rows costs; pyarrow lets go of the GIL meanwhile. The rest (completing a batch to the stored
schema, masking identifiers, its statistics) is Python and Arrow compute in the writing thread.
With the Parquet writes on a thread, the writer completes the next batch while the last one is
encoded: after NFStream's meter, when the capture's last tables are written one after the other,
that uses the core the meter leaves. The writes keep their order (one thread, first in first
out), so every file is byte for byte what writing them in turn gives.
Each file is also made there, at its first write (its day's folder, the file, the Parquet
writer): an input spanning months has a file per table and day (``writer._write``).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

#: Writes waiting at most: the writer waits rather than hold more batches in memory.
PENDING = 2


class Encoder:
    """``submit(fn, *args)`` runs ``fn(*args)`` on the thread (started at the first); ``drain``
    waits for every write submitted and ends the thread. The first error is raised by the next
    ``submit`` or by ``drain``; the writes after it are skipped."""

    def __init__(self):
        self._queue: queue.Queue = queue.Queue(maxsize=PENDING)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, fn: Callable, *args) -> None:
        if self._error is not None:
            raise self._error
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="abfluss-parquet", daemon=True)
            self._thread.start()
        self._queue.put((fn, args))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    item[0](*item[1])
                except BaseException as e:  # noqa: BLE001 - raised in the writing thread
                    self._error = e

    def drain(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error
