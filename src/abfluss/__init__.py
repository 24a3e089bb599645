"""abfluss: did data leave this network — how much, from which hosts, to where, when?"""

from .api import open_workspace, refresh, workspace_path
from .config import Config
from .coverage import coverage
from .errors import AbflussError, ConfigError, InputError, WorkspaceError
from .ingest import IngestResult, capture_live, ingest_file, ingest_paths
from .ledger import LedgerQuery, ledger, ledger_with_totals, totals
from .store import Workspace

__version__ = "0.1.0"

__all__ = [
    "AbflussError",
    "Config",
    "ConfigError",
    "IngestResult",
    "InputError",
    "LedgerQuery",
    "Workspace",
    "WorkspaceError",
    "capture_live",
    "coverage",
    "ingest_file",
    "ingest_paths",
    "ledger",
    "ledger_with_totals",
    "open_workspace",
    "refresh",
    "totals",
    "workspace_path",
]
