"""Stand-in for the service layer's console functions (``abfluss.api``) until they are on main.

The signatures, return values and errors are those of ``abfluss.api`` (users, tenant scope,
audit: issue 14's library side), so the web layer switches by changing one import. Nothing here
is used once ``abfluss.api.findings`` exists.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from .. import analysis, api
from ..errors import AbflussError
from ..findings import host_risk, incidents as group_incidents
from ..ledger import LedgerQuery, ledger_with_totals
from ..store import Workspace


class AuthenticationError(AbflussError):
    """HTTP 401."""


class PermissionDenied(AbflussError):
    """HTTP 403."""


class NotFound(AbflussError):
    """HTTP 404."""


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    tenants: frozenset = field(default_factory=frozenset)

    @property
    def scope(self):
        return None if self.role in ("admin", "analyst") else self.tenants


def _sees(who: Principal, tenant: Optional[str]) -> bool:
    return who.scope is None or (tenant or "default") in who.scope


def open_workspace(root, config=None) -> Workspace:
    return api.open_workspace(root, config)


def _own(who: Principal, tenant: Optional[str]) -> Optional[str]:
    if tenant is not None:
        if not _sees(who, tenant):
            raise PermissionDenied(f"tenant {tenant!r} is not yours")
        return tenant
    if who.scope is None:
        return None
    if len(who.scope) != 1:
        raise PermissionDenied(f"{who.name} sees several tenants: name one")
    return next(iter(who.scope))


def findings(ws, who, severity=None, host=None, detection=None, tenant=None):
    fs = analysis.load(ws, severity, host, detection)
    return [f for f in fs if _sees(who, f.tenant) and (tenant is None or (f.tenant or "default") == tenant)]


def explain(ws, who, finding_id):
    from .. import detections
    try:
        f = analysis.get(ws, finding_id)
    except AbflussError as e:
        raise NotFound(str(e)) from None
    if not _sees(who, f.tenant):
        raise PermissionDenied(f"finding {f.id} belongs to another tenant")
    meta = detections.module(f.detection).META if f.detection in detections.MODULES else None
    return {"finding": f.to_dict(), "evidence_flows": analysis.evidence_flows(ws, f),
            "runbook": meta.runbook if meta else None}


def incidents(ws, who):
    fs = findings(ws, who)
    return {"hosts": host_risk(fs), "incidents": [i.__dict__ for i in group_incidents(fs)]}


def ledger(ws, who, q: LedgerQuery):
    q = LedgerQuery(q.start, q.end, q.host, _own(who, q.tenant), q.destination, q.sort, q.limit)
    rows, tot = ledger_with_totals(ws, q)
    return rows.to_pylist(), tot


def account(ws, who, start=None, end=None, tenant=None):
    from ..accounting import account as _account
    return _account(ws, start, end, _own(who, tenant))


def coverage(ws, who):
    from ..coverage import coverage as _coverage, payload_coverage
    return {"sensors": _coverage(ws), "payload": payload_coverage(ws)}


def contain(ws, who, hosts=(), indicators=(), start=None, end=None):
    from ..contain import blast_radius
    if who.scope is not None:
        raise PermissionDenied("containment spans every tenant: analysts and admins only")
    return blast_radius(ws, tuple(hosts), tuple(indicators), start, end)


def generate_report(ws, who, out_dir=None, start=None, end=None, tenant=None, aware_at=None, lang="en"):
    from ..report.case import write_case
    tenant = _own(who, tenant)
    now = datetime.now(timezone.utc)
    rid = f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    out = ws.root / "reports" / rid
    rep = write_case(ws, out, start, end, tenant, aware_at, lang)
    meta = {"id": rid, "tenant": tenant, "created_at": now.isoformat(), "created_by": who.name,
            "window_start": rep["window"]["start"], "window_end": rep["window"]["end"], "lang": lang,
            "verdict": rep["verdict"], "path": str(out)}
    (out / "meta.json").write_text(json.dumps(meta))
    return {**rep, "report_id": rid, "path": str(out)}


def reports(ws, who):
    root = ws.root / "reports"
    metas = [json.loads(p.read_text()) for p in sorted(root.glob("*/meta.json"), reverse=True)] if root.is_dir() else []
    return [m for m in metas if (who.scope is None or m["tenant"] in who.scope)]


def report(ws, who, report_id):
    found = [m for m in reports(ws, Principal("-", "admin")) if m["id"] == report_id]
    if not found:
        raise NotFound(f"no report {report_id!r}")
    if who.scope is not None and found[0]["tenant"] not in who.scope:
        raise PermissionDenied(f"report {report_id} belongs to another tenant")
    return found[0]


def report_file(ws, who, report_id, name) -> Path:
    r = report(ws, who, report_id)
    parts = Path(name).parts
    if not parts or any(p in ("..", ".", "") or p.startswith(".") for p in parts):
        raise NotFound(f"no file {name!r} in report {report_id}")
    p = Path(r["path"]).joinpath(*parts)
    if not p.is_file():
        raise NotFound(f"no file {name!r} in report {report_id}")
    return p


def case_entries(ws, who, incident_id=None):
    return []


def login(ws, name, password):
    raise AuthenticationError("no users yet")


def token_principal(ws, token):
    raise AuthenticationError("unknown API token")


def findings_since(ws, who, since):
    """Findings stored or raised after ``since`` (the live view's cursor) and the new cursor."""
    try:
        rows = ws.con.execute("SELECT id, updated FROM findings WHERE updated > ?",
                              [since or datetime.fromtimestamp(0, timezone.utc)]).fetchall()
        latest = ws.con.execute("SELECT max(updated) FROM findings").fetchall()[0][0]
    except Exception:
        return [], since
    if since is None:
        return [], latest or datetime.fromtimestamp(0, timezone.utc)
    fresh = {r[0] for r in rows}
    return [f for f in findings(ws, who) if f.id in fresh], latest or since


def host_outflow(ws, who, host, start=None, end=None):
    """A host's bytes out per hour in [start, end) (default: all data) and its baseline from the
    ``analysis.LOOKBACK`` before the window (``accounting.baseline``)."""
    from datetime import timedelta
    from ..accounting import baseline
    rows = ws.con.execute("SELECT tenant FROM address_class WHERE addr = ?", [host]).fetchall()
    if not rows:
        raise NotFound(f"no host {host!r} in this workspace")
    tenant = rows[0][0]
    if not _sees(who, tenant):
        raise PermissionDenied(f"host {host} belongs to another tenant")
    lo, hi = analysis.data_span(ws)
    start, end = start or lo, end or (hi + timedelta(microseconds=1) if hi else None)
    per_hour, per_dest, history = {}, {}, {}
    if start is not None:
        for r in ledger_with_totals(ws, LedgerQuery(start, end, host, sort="hour"))[0].to_pylist():
            per_hour[r["hour"]] = per_hour.get(r["hour"], 0) + r["bytes_out"]
            k = r["external_name"] or r["external_host"]
            per_dest[k] = per_dest.get(k, 0) + r["bytes_out"]
        for r in ledger_with_totals(ws, LedgerQuery(start - analysis.LOOKBACK, start, host))[0].to_pylist():
            history[r["hour"]] = history.get(r["hour"], 0) + r["bytes_out"]
    return {"host": host, "tenant": tenant, "start": start, "end": end,
            "hours": [{"hour": h, "bytes_out": b} for h, b in sorted(per_hour.items())],
            "baseline": baseline([v for v in history.values() if v > 0]),
            "destinations": [{"destination": d, "bytes_out": b}
                             for d, b in sorted(per_dest.items(), key=lambda kv: (-kv[1], kv[0]))]}
