"""The input files a path names: directories expanded, nothing skipped silently."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path


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
