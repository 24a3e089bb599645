"""What a serving process computes ahead, once per workspace state (``abfluss.web.warm`` runs it
in the background): the answers the console's first requests need and that take seconds over
millions of flows. Each is kept per workspace state by the module that computes it
(``statecache``), so a request asking meanwhile waits for the one computation and later ones
are answered from it. Nothing here is a caller's view: a result is all tenants' or one tenant's
by its key, and the service layer still filters per caller and audits each request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from ..store import Workspace


def workspace_state(ws: "Workspace") -> tuple:
    """What the per-state results are computed from (a few small reads): another value after an
    ingest, a ``watch`` commit, an analysis or a configuration change."""
    from ..accounting import _generation
    return _generation(ws)


def warm_tasks(ws: "Workspace", account_limit: int | None) -> list[tuple[str, Callable[["Workspace"], object]]]:
    """The computations to run ahead, most wanted first, as ``(label, fn(workspace))``: the
    sensors' coverage (every overview), the payload-inspection shares (the coverage page; every
    tenant's from one scan), and the accounting of the newest day (``accounting.newest_day``;
    ``pairs`` limited as the API's default ``account_limit``) for all tenants (admins,
    analysts) and then for the tenant of each officer in the console store."""
    from .. import accounting, auth
    from ..coverage import coverage as sensor_coverage, payload_coverage  # abfluss.coverage is the function

    officers = sorted({t for u in auth.list_users(ws.root) if u["role"] == "officer" for t in u["tenants"] or ()})
    day = accounting.newest_day(ws)
    # the payload shares: one scan gives every tenant's sums (``coverage.payload_coverage``)
    out: list[tuple[str, Callable]] = [("coverage", sensor_coverage), ("payload coverage", payload_coverage)]
    if day is not None:
        for tenant in [None] + officers:
            out.append((f"account {day[0]:%Y-%m-%d} {tenant or 'all tenants'}",
                        lambda w, t=tenant: accounting.account(w, *day, tenant=t, limit=account_limit)))
    return out
