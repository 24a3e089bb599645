"""The service layer: what the CLI and the web console call, and nothing more.

Every function that returns a tenant's data takes ``who``: a :class:`~abfluss.auth.Principal`
(a console user or API token), or ``None`` for the local operator (the CLI on the sensor host,
who can read the workspace files anyway) who sees everything. Tenant isolation happens here, in
the queries (``WHERE tenant IN (...)``), never in templates or output code: an officer's call
returns only its tenant's rows, and naming another tenant's resource (a finding id, an incident,
a report, ``tenant=``) raises :class:`~abfluss.errors.PermissionDenied` (HTTP 403).

Every call made for a principal that returns a tenant's data is written to the audit log
(``view``); every report generation and export is audited whoever asks (the CLI as
``local:<os user>``). Heavy modules (DuckDB, the detections, the report) load inside the
functions, so importing this module for ``--help`` stays cheap.
"""

from __future__ import annotations

import functools
import inspect
import os
import secrets
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from .. import audit as _audit
from .. import caselog
from ..auth import Principal, allowed, require, scope_of, who_name
from ..errors import AbflussError, NotFound, PermissionDenied
from ._cases import add_case_entry, case_entries
from ._console import (add_user, audit_log, create_token, login, remove_user, revoke_token, token_principal,
                       tokens, user_principal, users, verify_audit)
from ._scope import _incident, _own_tenant, _viewed
from ._warm import warm_tasks, workspace_state

if TYPE_CHECKING:
    from ..findings import Finding
    from ..ledger import LedgerQuery
    from ..store import Workspace

__all__ = [
    "Principal", "account", "add_case_entry", "add_user", "allowed", "analyze", "audit_log", "case_entries",
    "contain", "coverage", "create_token", "explain", "finding", "findings", "findings_since", "generate_report",
    "host_outflow", "incident", "incidents", "inputs", "ledger", "login", "open_workspace", "record_export",
    "refresh", "remove_user", "report", "report_file", "reports", "require", "revoke_token", "token_principal",
    "tokens", "user_principal", "users", "verify_audit", "warm_tasks",
    "workspace_path", "workspace_state",
]

#: Folder (inside the workspace) where ``generate_report`` writes a report when no folder is given.
REPORTS_DIR = "reports"


# -- workspace ---------------------------------------------------------------------------------
def workspace_path(path: str | Path | None = None) -> Path:
    """``path``, else ``$ABFLUSS_WORKSPACE``, else ``./abfluss-data``."""
    from ..store import DEFAULT_WORKSPACE
    return Path(path or os.environ.get("ABFLUSS_WORKSPACE") or DEFAULT_WORKSPACE)


def open_workspace(path: str | Path | None = None, config: str | Path | None = None,
                   write: bool = False, enrich: bool = True) -> "Workspace":
    """Open (creating if needed) a workspace with its configuration's enrichment views applied.
    ``enrich=False`` skips the views (binding them reads every Parquet file's footer): for
    callers that read only the catalog's own tables, such as the stored findings."""
    from .. import config as _config
    from ..store import Workspace

    root = workspace_path(path)
    ws = Workspace.open(root, write=write)
    try:
        ws.config = _config.load(Path(config) if config else None, ws.root)
        if enrich:
            from .. import enrich as _enrich
            _enrich.apply(ws, ws.config)
    except Exception:
        ws.close()
        raise
    return ws


def refresh(ws: "Workspace") -> None:
    """Re-apply enrichment after new inputs were stored; a writer also brings the stored hourly
    ledger up to date (``ledger_store``)."""
    from .. import enrich, ledger_store
    enrich.apply(ws, ws.config)
    ledger_store.update(ws)



# -- analysis, findings and incidents ----------------------------------------------------------
def inputs(ws: "Workspace", who: Principal | None = None) -> list[dict]:
    """Provenance of every ingested input (``inputs --format json``): hashes, paths, formats,
    sensors, spans and skips; sensor bookkeeping, no tenant's rows, so every role may read it."""
    require(who, "read")
    rows = ws.inputs()
    _viewed(ws, who, f"inputs: {len(rows)}")
    return rows


def analyze(ws: "Workspace", who: Principal | None = None, start: datetime | None = None,
            end: datetime | None = None, only: tuple[str, ...] = (), engine: str = "duckdb",
            sinks: tuple[str, ...] = ()):
    """Run the detections over [start, end) and store their findings (``abfluss analyze``;
    admins and analysts; needs a workspace opened for writing)."""
    from .. import analysis, ledger_store
    require(who, "analyze")
    ledger_store.update(ws)  # written at ingest; here too for inputs stored by other means
    return analysis.analyze(ws, start, end, tuple(only), engine, sinks=tuple(sinks))


def findings(ws: "Workspace", who: Principal | None = None, severity: str | None = None,
             host: str | None = None, detection: str | None = None, tenant: str | None = None) -> list["Finding"]:
    """Stored findings the caller may see, strongest first (the filters of ``abfluss findings``;
    ``[f.to_dict() for f in ...]`` is the JSON of ``findings --format json``)."""
    from .. import stored_findings as analysis  # what analysis re-exports, without the analysis itself
    require(who, "read", tenant)
    scope = scope_of(who)
    if tenant is not None:
        scope = frozenset({tenant})
    fs = analysis.load(ws, severity, host, detection, tenants=scope)
    _viewed(ws, who, f"findings severity={severity} host={host} detection={detection}: {len(fs)}", tenant)
    return fs


def _finding(ws: "Workspace", who: Principal | None, finding_id: str) -> "Finding":
    from .. import stored_findings as analysis
    require(who, "read")
    scope = scope_of(who)
    try:
        return analysis.get(ws, finding_id, tenants=scope)
    except AbflussError as e:
        if "no finding" not in str(e):
            raise  # a prefix matching several of the caller's findings
        if scope is None:
            raise NotFound(str(e)) from None
    try:  # not among the caller's: another tenant's (403) or none at all (404)?
        other = analysis.get(ws, finding_id)
    except AbflussError:
        raise NotFound(f"no finding with id {finding_id!r}") from None
    raise PermissionDenied(f"finding {other.id} belongs to another tenant")


def finding(ws: "Workspace", who: Principal | None, finding_id: str) -> "Finding":
    """One finding by id (or unique prefix); 403 for another tenant's, 404 for none."""
    f = _finding(ws, who, finding_id)
    _viewed(ws, who, f"finding {f.id}", f.tenant or "default")
    return f


def explain(ws: "Workspace", who: Principal | None, finding_id: str) -> dict:
    """What ``explain --format json`` prints: ``finding`` (its JSON), ``evidence_flows`` (the top
    flows it names), ``runbook``."""
    from .. import analysis, detections
    f = _finding(ws, who, finding_id)
    flows = analysis.evidence_flows(ws, f)
    meta = detections.module(f.detection).META if f.detection in detections.MODULES else None
    _viewed(ws, who, f"explain {f.id}", f.tenant or "default")
    return {"finding": f.to_dict(), "evidence_flows": flows, "runbook": meta.runbook if meta else None}


def incidents(ws: "Workspace", who: Principal | None = None) -> dict:
    """What ``incidents --format json`` prints: ``hosts`` (risk per host) and ``incidents``, from
    the caller's findings only."""
    from .. import stored_findings as analysis
    from ..findings import host_risk, incidents as group
    require(who, "read")
    fs = analysis.load(ws, tenants=scope_of(who))
    inc = group(fs)
    _viewed(ws, who, f"incidents: {len(inc)}")
    return {"hosts": host_risk(fs), "incidents": [i.__dict__ for i in inc]}



def incident(ws: "Workspace", who: Principal | None, incident_id: str) -> dict:
    """One incident (by id or unique prefix) with its tenant and case log."""
    inc, tenant = _incident(ws, who, incident_id)
    _viewed(ws, who, f"incident {inc.id}", tenant)
    return {**inc.__dict__, "tenant": tenant, "case_log": caselog.of_incident(ws.root, inc, tenant)}


def findings_since(ws: "Workspace", who: Principal | None, since: datetime | None) -> tuple[list["Finding"], datetime]:
    """The caller's findings stored or raised after ``since`` and the cursor for the next call
    (the live view polls this; ``since`` None only sets the cursor). Audited when it finds some."""
    from .. import analysis
    require(who, "read")
    latest = analysis.last_update(ws) or datetime.fromtimestamp(0, timezone.utc)
    if since is None:
        return [], latest
    fs = analysis.load(ws, tenants=scope_of(who), updated_after=since)
    if fs:
        _viewed(ws, who, f"live findings: {', '.join(f.id for f in fs)}")
    return fs, max(latest, since)


# -- ledger, accounting, coverage, containment -------------------------------------------------
def ledger(ws: "Workspace", who: Principal | None = None, q: "LedgerQuery | None" = None) -> tuple[list[dict], dict]:
    """The ledger rows of ``q`` the caller may see (``ledger --format json``) and their totals."""
    from ..ledger import LedgerQuery, ledger_rows
    q = q or LedgerQuery()
    require(who, "read", q.tenant)
    if scope_of(who) is not None:
        q = replace(q, tenants=scope_of(who))
    rows, tot = ledger_rows(ws, q)
    _viewed(ws, who, f"ledger from={q.start} to={q.end} host={q.host} destination={q.destination}: {len(rows)} rows",
            q.tenant)
    return rows, tot


def host_outflow(ws: "Workspace", who: Principal | None, host: str, start: datetime | None = None,
                 end: datetime | None = None) -> dict:
    """One internal host's bytes out per hour in [start, end) (default: all data), per destination,
    and its baseline over the ``analysis.LOOKBACK`` before the window (``accounting.baseline``);
    403 for another tenant's host, 404 for an address never seen."""
    from datetime import timedelta

    from .. import analysis
    from ..accounting import baseline
    from ..ledger import LedgerQuery, ledger_rows
    require(who, "read")
    found = ws.con.execute("SELECT tenant FROM address_class WHERE addr = ?", [host]).fetchall()
    if not found:
        raise NotFound(f"no host {host!r} in this workspace")
    tenant = found[0][0]
    require(who, "read", tenant)
    lo, hi = analysis.data_span(ws)
    start, end = start or lo, end or (hi + timedelta(microseconds=1) if hi else None)
    hours: dict = {}
    dests: dict = {}
    history: dict = {}
    if start is not None:
        for r in ledger_rows(ws, LedgerQuery(start, end, host, sort="hour"))[0]:
            hours[r["hour"]] = hours.get(r["hour"], 0) + r["bytes_out"]
            d = r["external_name"] or r["external_host"]
            dests[d] = dests.get(d, 0) + r["bytes_out"]
        for r in ledger_rows(ws, LedgerQuery(start - analysis.LOOKBACK, start, host))[0]:
            history[r["hour"]] = history.get(r["hour"], 0) + r["bytes_out"]
    _viewed(ws, who, f"host {host} from={start} to={end}", tenant)
    return {"host": host, "tenant": tenant, "start": start, "end": end,
            "hours": [{"hour": h, "bytes_out": b} for h, b in sorted(hours.items())],
            "baseline": baseline([v for v in history.values() if v > 0]),
            "destinations": [{"destination": d, "bytes_out": b}
                             for d, b in sorted(dests.items(), key=lambda kv: (-kv[1], kv[0]))]}


def account(ws: "Workspace", who: Principal | None = None, start: datetime | None = None,
            end: datetime | None = None, tenant: str | None = None, limit: int | None = None) -> dict:
    """The outflow accounting (``account --format json``); an officer's is its tenant's; ``pairs``
    holds the ``limit`` largest host x destination x class (None: all)."""
    from ..accounting import account as _account
    tenant = _own_tenant(who, tenant)
    acc = _account(ws, start, end, tenant, limit=limit)
    _viewed(ws, who, f"account from={start} to={end}", tenant)
    return acc


def coverage(ws: "Workspace", who: Principal | None = None, payload: bool = True) -> dict:
    """``sensors``: per sensor span, gaps, loss (``coverage --format json``; sensor health, no
    tenant data, so every role sees it); ``payload``: content-inspection shares over the caller's
    tenants' outflow (``payload=False``: left out, for a caller that shows only the sensors: it
    scans every outbound flow)."""
    from ..coverage import coverage as sensor_coverage, payload_coverage
    require(who, "read")
    res = {"sensors": sensor_coverage(ws)}
    if payload:
        res["payload"] = payload_coverage(ws, tenants=scope_of(who))
    _viewed(ws, who, "coverage")
    return res


def contain(ws: "Workspace", who: Principal | None, hosts=(), indicators=(), start: datetime | None = None,
            end: datetime | None = None) -> dict:
    """The blast radius of compromised hosts and indicators (``contain --format json``);
    admins and analysts only (it crosses tenants)."""
    from ..contain import blast_radius
    require(who, "contain")
    res = blast_radius(ws, tuple(hosts), tuple(indicators), start, end)
    _audit.record(ws.root, who_name(who), "contain", None,
                  f"hosts={','.join(hosts)} indicators={','.join(indicators)}: {len(res['radius'])} hosts")
    return res


def record_export(ws: "Workspace", who: Principal | None, what: str, tenant: str | None = None) -> None:
    """Audit an export (a download, a CSV/JSON file written for someone)."""
    _audit.record(ws.root, who_name(who), "export", tenant, what)


# -- reports -----------------------------------------------------------------------------------
def generate_report(ws: "Workspace", who: Principal | None = None, out_dir: str | Path | None = None,
                    start: datetime | None = None, end: datetime | None = None, tenant: str | None = None,
                    aware_at: datetime | None = None, lang: str = "en", pdf: bool = True) -> dict:
    """Write the evidence report and drafts (``abfluss report``) and register it; returns the
    report dict plus ``report_id`` and ``path``. An officer's report is its tenant's; without
    ``out_dir`` it goes to ``<workspace>/reports/<id>/``."""
    from .. import console_db
    from ..report.case import write_case
    if who is not None and who.scope is not None:
        tenant = _own_tenant(who, tenant, "report")
    else:
        require(who, "report", tenant)
    now = datetime.now(timezone.utc)
    rid = f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    out = Path(out_dir) if out_dir else ws.root / REPORTS_DIR / rid
    rep = write_case(ws, out, start, end, tenant, aware_at, lang, pdf=pdf)
    w = rep["window"]
    with console_db.connect(ws.root) as con:
        con.execute("INSERT INTO reports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [rid, tenant, console_db.stamp(now), who_name(who), _stamp(w["start"]), _stamp(w["end"]), lang,
                     rep["verdict"], str(out.resolve())])
        _audit.record(ws.root, who_name(who), "report", tenant, f"report {rid} ({rep['verdict']}) in {out}", con)
    return {**rep, "report_id": rid, "path": str(out)}


def _stamp(t) -> str | None:
    """A report window bound (a datetime or ISO text) as the console store keeps times."""
    from .. import console_db
    if isinstance(t, str):
        t = datetime.fromisoformat(t.replace("Z", "+00:00"))
    return console_db.stamp(t)


def reports(ws: "Workspace", who: Principal | None = None) -> list[dict]:
    """Registered reports the caller may see, newest first (an all-tenant report only for
    all-tenant roles)."""
    from .. import console_db
    require(who, "read")
    scope = scope_of(who)
    cond, args = ("1", []) if scope is None else console_db.in_list("tenant", scope)
    with console_db.connect(ws.root) as con:
        rows = console_db.rows(con, f"SELECT * FROM reports WHERE {cond} ORDER BY created_at DESC, id", args)
    _viewed(ws, who, f"reports: {len(rows)}")
    return rows


def report(ws: "Workspace", who: Principal | None, report_id: str) -> dict:
    """One registered report; 403 for another tenant's, 404 for none."""
    return _report(ws, who, report_id)


def _report(ws: "Workspace", who: Principal | None, report_id: str) -> dict:
    from .. import console_db
    require(who, "read")
    with console_db.connect(ws.root) as con:
        found = console_db.rows(con, "SELECT * FROM reports WHERE id = ?", [report_id])
    if not found:
        raise NotFound(f"no report {report_id!r}")
    r = found[0]
    scope = scope_of(who)
    if scope is not None and r["tenant"] not in scope:
        raise PermissionDenied(f"report {report_id} belongs to another tenant")
    return r


def report_file(ws: "Workspace", who: Principal | None, report_id: str, name: str) -> Path:
    """A file of a registered report (``report.html``, ``report.pdf``, ``report.json``,
    ``notifications/<tenant>/<draft>``) for download; audited as an export. Paths that leave the
    report's folder or pass through a symbolic link are refused."""
    r = _report(ws, who, report_id)
    root = Path(r["path"])
    parts = Path(name).parts
    if not parts or any(p in ("..", ".", "") or p.startswith(".") for p in parts) or Path(name).is_absolute():
        raise NotFound(f"no file {name!r} in report {report_id}")
    p = root
    for part in parts:
        p = p / part
        if p.is_symlink():
            raise NotFound(f"no file {name!r} in report {report_id}")
    if not p.is_file():
        raise NotFound(f"no file {name!r} in report {report_id}")
    record_export(ws, who, f"report {report_id} {name}", r["tenant"])
    return p


# -- refusals are audited too -------------------------------------------------------------------
def _audit_denials(fn):
    """Wrap a service function ``fn(ws, who, ...)`` so that a refusal (PermissionDenied) of a
    console user is written to the audit log (``denied``) before it is raised: an officer probing
    another tenant's findings leaves a trace."""
    @functools.wraps(fn)
    def wrapper(ws, who=None, *args, **kw):
        try:
            return fn(ws, who, *args, **kw)
        except PermissionDenied as e:
            if who is not None:
                _audit.record(ws.root, who.name, "denied", None, f"{fn.__name__}: {e}")
            raise
    return wrapper


# every public function that takes (ws, who, ...), including those added later
for _name in __all__:
    _fn = globals()[_name]
    if inspect.isfunction(_fn) and list(inspect.signature(_fn).parameters)[:2] == ["ws", "who"]:
        globals()[_name] = _audit_denials(_fn)
del _name, _fn
