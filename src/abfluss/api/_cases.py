"""The case log of the service layer: measures taken per incident (time, who, what), which the
notification drafts list as *measures taken*."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import caselog
from ..auth import Principal, require, scope_of, who_name
from ._scope import _incident, _viewed

if TYPE_CHECKING:
    from ..store import Workspace


def add_case_entry(ws: "Workspace", who: Principal | None, incident_id: str, text: str) -> dict:
    """Record a measure taken for an incident (time and author are set here)."""
    inc, tenant = _incident(ws, who, incident_id)
    require(who, "case", tenant)
    return caselog.add(ws.root, inc.id, tenant, inc.internal_host, (inc.start, inc.end), who_name(who), text)


def case_entries(ws: "Workspace", who: Principal | None = None, incident_id: str | None = None) -> list[dict]:
    """Case log entries the caller may see (of one incident, or all), oldest first."""
    require(who, "read")
    if incident_id is not None:
        inc, tenant = _incident(ws, who, incident_id)
        rows = caselog.of_incident(ws.root, inc, tenant)
    else:
        rows = caselog.entries(ws.root, scope_of(who))
        tenant = None
    _viewed(ws, who, f"case log {incident_id or '(all)'}: {len(rows)}", tenant)
    return rows

