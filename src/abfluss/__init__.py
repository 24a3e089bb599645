"""abfluss: did data leave this network — how much, from which hosts, to where, when?"""

from .analysis import AnalysisResult, analyze
from .api import open_workspace, refresh, workspace_path
from .contain import blast_radius, blocklists
from .config import Config
from .coverage import coverage, payload_coverage
from .findings import Finding
from .errors import AbflussError, ConfigError, InputError, WorkspaceError
from .ingest import IngestResult, capture_live, ingest_file, ingest_paths
from .ledger import LedgerQuery, ledger, ledger_with_totals, totals
from .store import Workspace

__version__ = "0.1.0"

__all__ = [
    "AbflussError",
    "AnalysisResult",
    "Config",
    "ConfigError",
    "Finding",
    "IngestResult",
    "InputError",
    "LedgerQuery",
    "Workspace",
    "WorkspaceError",
    "analyze",
    "blast_radius",
    "blocklists",
    "capture_live",
    "coverage",
    "ingest_file",
    "ingest_paths",
    "ledger",
    "ledger_with_totals",
    "open_workspace",
    "payload_coverage",
    "refresh",
    "totals",
    "workspace_path",
]
