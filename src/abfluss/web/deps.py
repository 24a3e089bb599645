"""What every route needs: the workspace for this request and the query-parameter parsing the CLI's
flags have (ISO 8601 times, UTC when no zone is given)."""

from __future__ import annotations

from datetime import datetime
from typing import Iterator, Optional

from fastapi import Request

from ..store import Workspace
from .. import api, units


def workspace(request: Request) -> Iterator[Workspace]:
    """A read-only workspace for the request, closed after it (so ``watch`` and ``ingest`` can commit)."""
    ws = api.open_workspace(request.app.state.workspace, request.app.state.config)
    try:
        yield ws
    finally:
        ws.close()


def parse_time(value: Optional[str], name: str) -> Optional[datetime]:
    """A query or form time; an empty field is none."""
    return units.parse_time(value or None, name)
