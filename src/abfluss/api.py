"""The public library API: what the CLI (and later the web layer) call, and nothing more."""

from __future__ import annotations

import os
from pathlib import Path

from . import config as _config
from . import enrich
from .store import DEFAULT_WORKSPACE, Workspace


def workspace_path(path: str | Path | None = None) -> Path:
    """``path``, else ``$ABFLUSS_WORKSPACE``, else ``./abfluss-data``."""
    return Path(path or os.environ.get("ABFLUSS_WORKSPACE") or DEFAULT_WORKSPACE)


def open_workspace(path: str | Path | None = None, config: str | Path | None = None,
                   write: bool = False) -> Workspace:
    """Open (creating if needed) a workspace with its configuration's enrichment views applied."""
    root = workspace_path(path)
    ws = Workspace.open(root, write=write)
    try:
        ws.config = _config.load(Path(config) if config else None, ws.root)
        enrich.apply(ws, ws.config)
    except Exception:
        ws.close()
        raise
    return ws


def refresh(ws: Workspace) -> None:
    """Re-apply enrichment after new inputs were stored."""
    enrich.apply(ws, ws.config)
