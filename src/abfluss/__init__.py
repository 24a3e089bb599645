"""abfluss: did data leave this network — how much, from which hosts, to where, when?"""

import importlib
import importlib.util
import sys
import types

# Name -> submodule. Imported on first use (PEP 562) so that ``import abfluss`` (and with it every
# CLI command, ``--help`` too) does not pay for DuckDB, Arrow, Ibis or the report when it needs none.
_LAZY = {
    "AnalysisResult": "analysis", "analyze": "analysis",
    "open_workspace": "api", "refresh": "api", "workspace_path": "api",
    "blast_radius": "contain", "blocklists": "contain",
    "Config": "config",
    "coverage": "coverage", "payload_coverage": "coverage",
    "Finding": "findings",
    "AbflussError": "errors", "ConfigError": "errors", "InputError": "errors", "WorkspaceError": "errors",
    "IngestResult": "ingest", "capture_live": "ingest", "ingest_file": "ingest", "ingest_paths": "ingest",
    "LedgerQuery": "ledger", "ledger": "ledger", "ledger_with_totals": "ledger", "totals": "ledger",
    "Workspace": "store",
}


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        # ``import abfluss`` used to load most submodules; ``abfluss.store`` etc. still work
        if name.startswith("_") or importlib.util.find_spec(f"{__name__}.{name}") is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return importlib.import_module(f".{name}", __name__)
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """``abfluss.ledger`` and ``abfluss.coverage`` name the functions, as they did when this
    package imported them eagerly; importing the submodule of that name must not rebind them."""

    def __setattr__(self, name, value):
        if name in ("ledger", "coverage") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
