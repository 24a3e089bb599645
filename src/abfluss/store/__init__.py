"""The workspace: rows in Parquet files, an embedded DuckDB catalog that knows them.

Layout of a workspace directory::

    abfluss.toml            optional configuration
    catalog.duckdb          inputs, files, views (and later findings)
    data/<table>/day=YYYY-MM-DD/<input>-<n>.parquet
    .lock                   held by the one writer

A Parquet file is written under a ``.tmp`` name and renamed when complete; it counts only
once the catalog records it, in the same transaction as its input's bookkeeping. Files the
catalog does not know (left by a killed ingest) are removed when a writer opens the
workspace, so a killed ingest leaves no partial rows and can simply be run again.

Modules, by responsibility:

- ``workspace``: ``Workspace`` (opening with the writer's lock, releasing the catalog while
  Parquet is written, removing orphaned files), ``remove_workspace``
- ``catalog``: the catalog's tables and opening it while other processes hold it
- ``views``: the ``<table>_raw`` views over the recorded files
- ``writer``: ``InputWriter`` (one input's rows to temporary Parquet, identifiers masked),
  ``StoredInput``, ``Staged``
- ``batch``: committing staged inputs in one transaction (column-wise batch inserts)
- ``files``: ``iter_files``, the input files a path names

Import from ``abfluss.store``; the names below are its public surface.
"""

from .catalog import CATALOG, CATALOG_WAIT_SECONDS
from .files import iter_files
from .workspace import DEFAULT_WORKSPACE, Workspace, now_utc, remove_workspace
from .writer import ROWS_PER_FILE, InputWriter, Staged, StoredInput, complete

__all__ = [
    "CATALOG",
    "CATALOG_WAIT_SECONDS",
    "DEFAULT_WORKSPACE",
    "ROWS_PER_FILE",
    "InputWriter",
    "Staged",
    "StoredInput",
    "Workspace",
    "complete",
    "iter_files",
    "now_utc",
    "remove_workspace",
]
