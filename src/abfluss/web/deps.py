"""What every route needs: the workspace for this request and the query-parameter parsing the CLI's
flags have (ISO 8601 times, UTC when no zone is given)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Iterator, Optional

from fastapi import Request

from ..errors import AbflussError
from ..store import Workspace
from .. import api


def workspace(request: Request) -> Iterator[Workspace]:
    """A read-only workspace for the request, closed after it (so ``watch`` and ``ingest`` can commit)."""
    ws = api.open_workspace(request.app.state.workspace, request.app.state.config)
    try:
        yield ws
    finally:
        ws.close()


def parse_time(value: Optional[str], name: str) -> Optional[datetime]:
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            t = datetime.combine(date.fromisoformat(value), datetime.min.time())
        except ValueError:
            raise AbflussError(f"{name} {value!r}: not an ISO 8601 time (e.g. 2024-02-08T15:00:00Z)") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
