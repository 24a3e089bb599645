"""Scope helpers of the service layer: which tenant a call is about, the audit of a view, and
an incident looked up within the caller's scope (403 for another tenant's, 404 for none)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import audit as _audit
from ..auth import Principal, require, scope_of
from ..errors import AbflussError, NotFound, PermissionDenied

if TYPE_CHECKING:
    from ..findings import Incident
    from ..store import Workspace


def _own_tenant(who: Principal | None, tenant: str | None, action: str = "read") -> str | None:
    """The tenant a call is about: the one asked for (checked against ``who``'s scope), else an
    officer's only tenant, else None (all)."""
    require(who, action, tenant)
    if tenant is None and who is not None and who.scope is not None and len(who.scope) == 1:
        return next(iter(who.scope))
    if tenant is None and who is not None and who.scope is not None:
        raise PermissionDenied(f"{who.name} sees several tenants: name one")
    return tenant


def _viewed(ws: "Workspace", who: Principal | None, what: str, tenant: str | None = None) -> None:
    """Audit a view of tenant data by a console user (the local CLI's reads are not views)."""
    if who is None:
        return
    if tenant is None and who.scope is not None and len(who.scope) == 1:
        tenant = next(iter(who.scope))
    _audit.record(ws.root, who.name, "view", tenant, what)


def _incident(ws: "Workspace", who: Principal | None, incident_id: str) -> tuple["Incident", str]:
    from .. import analysis
    from ..findings import incidents as group
    require(who, "read")
    for scope in (scope_of(who), None):
        fs = analysis.load(ws, tenants=scope)
        found = [i for i in group(fs) if i.id == incident_id or i.id.startswith(incident_id)]
        if len(found) > 1:
            raise AbflussError(f"{incident_id!r} matches {len(found)} incidents: give more of the id")
        if found:
            if scope is None and scope_of(who) is not None:
                raise PermissionDenied(f"incident {found[0].id} belongs to another tenant")
            tenant = next((f.tenant or "default" for f in fs if f.id in found[0].finding_ids), "default")
            return found[0], tenant
        if scope_of(who) is None:
            break
    raise NotFound(f"no incident with id {incident_id!r} (list them with: abfluss incidents)")

