"""The console's pages: server-rendered Jinja templates (autoescaped: every name from the traffic is
text, never markup), forms that carry a CSRF token, and the live view's event stream."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import Response, FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, StreamingResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from .. import units
from ..findings import SEVERITIES, incidents as group_incidents
from ..ledger import SORT_KEYS, LedgerQuery
from ..store import Workspace
from ..report.case import tenant_dir
from .. import api
from . import charts
from .v1 import download
from .deps import parse_time, workspace
from .security import (COOKIE, LOGIN_COOKIE, check_csrf, current_user, login_csrf_ok, login_token, page_principal,
                       secure_request, session_of, set_login_cookie, set_session_cookie)
from ..auth import Principal, allowed
from ..errors import AuthenticationError

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.autoescape = True
templates.env.filters["bytes"] = units.human_bytes


def _when(t) -> str:
    if t is None:
        return "-"
    if isinstance(t, str):
        t = datetime.fromisoformat(t.replace("Z", "+00:00"))
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


templates.env.filters["when"] = _when
templates.env.globals["plotly_style_ids"] = charts.plotly_style_ids
router = APIRouter(include_in_schema=False)
User = Depends(page_principal)
WS = Depends(workspace)
STATIC = {"app.js": "text/javascript", "charts.js": "text/javascript", "live.js": "text/javascript",
          "style.css": "text/css"}


def render(request: Request, template: str, p: Optional[Principal], status: int = 200, **ctx) -> HTMLResponse:
    csrf = getattr(request.state, "csrf", None)
    return templates.TemplateResponse(request, template, {"p": p, "csrf": csrf, **ctx}, status_code=status)


def error_page(request: Request, code: int, message: str) -> HTMLResponse:
    s = session_of(request)
    return render(request, "error.html", s.principal if s else None, code, code=code, message=message)


# -- static files (local only) -------------------------------------------------------------
@router.get("/static/plotly.min.js")
def plotly_js():
    return FileResponse(charts.plotly_js(), media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})


@router.get("/static/plotly.css")
def plotly_css():
    return PlainTextResponse(charts.plotly_css(), media_type="text/css", headers={"Cache-Control": "public, max-age=86400"})


@router.get("/favicon.ico")
def favicon():
    return Response(status_code=204)


@router.get("/static/{name}")
def static(name: str):
    if name not in STATIC:
        return PlainTextResponse("not found", 404)
    return FileResponse(HERE / "static" / name, media_type=STATIC[name], headers={"Cache-Control": "no-cache"})


# -- login ---------------------------------------------------------------------------------
@router.get("/login")
def login_form(request: Request):
    return login_page(request)


def login_page(request: Request, status: int = 200, **ctx) -> HTMLResponse:
    """The login form with its CSRF token (a double-submit cookie: there is no session yet)."""
    token = login_token(request)
    resp = render(request, "login.html", None, status, csrf=token, **ctx)
    set_login_cookie(resp, request, token)
    return resp


@router.post("/login")
def login(request: Request, name: str = Form(...), password: str = Form(...), csrf: str = Form(""),
          ws: Workspace = WS):
    if not login_csrf_ok(request, csrf):  # checked before the password: no guessing from elsewhere
        return login_page(request, 403, error="the form has expired or did not come from this console: "
                                             "try again", name=name)
    try:
        p = api.login(ws, name, password)
    except AuthenticationError as e:
        return login_page(request, 401, error=str(e), name=name)
    resp = RedirectResponse("/", 303)
    set_session_cookie(resp, request, request.app.state.sessions.start(p))
    resp.delete_cookie(LOGIN_COOKIE, path="/login", secure=secure_request(request), httponly=True, samesite="strict")
    return resp


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")):
    check_csrf(request, csrf)
    request.app.state.sessions.end(request.cookies.get(COOKIE))
    resp = RedirectResponse("/login", 303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


# -- pages -----------------------------------------------------------------------------------
def tenants(ws: Workspace, p: Principal) -> list[str]:
    """The tenants the caller sees: the configured ones and ``default``, within its scope."""
    every = list(ws.config.tenants) + ["default"]
    return [t for t in every if p.scope is None or t in p.scope]


@router.get("/")
def overview(request: Request, p: Principal = User, ws: Workspace = WS):
    """Per tenant: the latest report's verdict, its open incidents; the sensors' health."""
    fs = api.findings(ws, p)
    latest: dict = {}
    for r in api.reports(ws, p):  # newest first
        latest.setdefault(r["tenant"], r)
    cards = []
    for t in tenants(ws, p):
        mine = [f for f in fs if (f.tenant or "default") == t]
        cards.append({"tenant": t, "report": latest.get(t) or latest.get(None), "findings": len(mine),
                      "incidents": sorted(group_incidents(mine), key=lambda i: -i.score)})
    # the sensors only: the content-inspection shares (a scan of every outbound flow) are the
    # coverage page's
    sensors = api.coverage(ws, p, payload=False)["sensors"]
    return render(request, "overview.html", p, tenants=cards, sensors=sensors)


@router.get("/findings")
def findings(request: Request, severity: Optional[str] = None, host: Optional[str] = None,
             detection: Optional[str] = None, p: Principal = User, ws: Workspace = WS):
    fs = api.findings(ws, p, severity or None, host or None, detection or None)
    return render(request, "findings.html", p, findings=fs, severities=SEVERITIES,
                  q={"severity": severity or "", "host": host or "", "detection": detection or ""})


@router.get("/findings/{finding_id}")
def explain(request: Request, finding_id: str, p: Principal = User, ws: Workspace = WS):
    return render(request, "explain.html", p, **api.explain(ws, p, finding_id))


@router.get("/incidents")
def incidents(request: Request, p: Principal = User, ws: Workspace = WS):
    inc = api.incidents(ws, p)
    return render(request, "incidents.html", p, incidents=sorted(inc["incidents"], key=lambda i: -i["score"]))


@router.get("/incidents/{incident_id}")
def incident(request: Request, incident_id: str, p: Principal = User, ws: Workspace = WS):
    """An incident, its findings and its case log, with the form to record a measure taken."""
    inc = api.incident(ws, p, incident_id)
    fs = [f for f in api.findings(ws, p, host=inc["internal_host"]) if f.id in set(inc["finding_ids"])]
    return render(request, "incident.html", p, i=inc, findings=fs, can_write=allowed(p, "case", inc["tenant"]))


@router.post("/incidents/{incident_id}/log")
def add_case_entry(request: Request, incident_id: str, csrf: str = Form(""), what: str = Form(""),
                   p: Principal = User, ws: Workspace = WS):
    check_csrf(request, csrf)
    inc = api.add_case_entry(ws, p, incident_id, what)
    return RedirectResponse(f"/incidents/{inc['incident']}", 303)


@router.get("/ledger")
def ledger(request: Request, start: Optional[str] = Query(None, alias="from"),
           end: Optional[str] = Query(None, alias="to"), host: Optional[str] = None, tenant: Optional[str] = None,
           destination: Optional[str] = None, sort: str = "bytes_out", p: Principal = User, ws: Workspace = WS):
    q = LedgerQuery(parse_time(start, "from"), parse_time(end, "to"), host or None, tenant or None,
                    destination or None, sort, 200)
    rows, tot = api.ledger(ws, p, q)
    return render(request, "ledger.html", p, rows=rows, totals=tot, sorts=list(SORT_KEYS),
                  tenants=tenants(ws, p),
                  q={"from": start or "", "to": end or "", "host": host or "", "tenant": tenant or "",
                     "destination": destination or "", "sort": sort})


@router.get("/hosts/{host}")
def host(request: Request, host: str, p: Principal = User, ws: Workspace = WS):
    data = api.host_outflow(ws, p, host)
    return render(request, "host.html", p, d=data, figure=charts.host_outflow(data),
                  findings=api.findings(ws, p, host=host))


@router.get("/coverage")
def coverage(request: Request, p: Principal = User, ws: Workspace = WS):
    cov = api.coverage(ws, p)
    return render(request, "coverage.html", p, sensors=cov["sensors"], payload=cov.get("payload"),
                  figure=charts.coverage_timeline(cov["sensors"]))


@router.get("/reports")
def reports(request: Request, p: Principal = User, ws: Workspace = WS):
    return render(request, "reports.html", p, reports=api.reports(ws, p), tenants=tenants(ws, p))


@router.post("/reports")
def generate_report(request: Request, csrf: str = Form(""), tenant: str = Form(""), start: str = Form("", alias="from"),
                    end: str = Form("", alias="to"), aware_at: str = Form(""), lang: str = Form("en"),
                    p: Principal = User, ws: Workspace = WS):
    check_csrf(request, csrf)
    rep = api.generate_report(ws, p, None, parse_time(start, "from"), parse_time(end, "to"), tenant or None,
                                  parse_time(aware_at, "aware at"), lang if lang in ("en", "de") else "en")
    return RedirectResponse(f"/reports/{rep['report_id']}", 303)


@router.get("/reports/{report_id}")
def report(request: Request, report_id: str, p: Principal = User, ws: Workspace = WS):
    r = api.report(ws, p, report_id)
    try:
        rep = json.loads((Path(r["path"]) / "report.json").read_text())
    except (OSError, ValueError):
        rep = {}
    drafts = {t: sorted(v.get("drafts", {})) for t, v in rep.get("notifications", {}).get("tenants", {}).items()}
    return render(request, "report.html", p, r=r, statement=rep.get("statement"),
                  confidence=rep.get("confidence"), drafts=drafts, tenant_dir=tenant_dir)


@router.get("/reports/{report_id}/files/{name:path}")
def report_file(report_id: str, name: str, p: Principal = User, ws: Workspace = WS):
    return download(api.report_file(ws, p, report_id, name), report_id)


@router.get("/live")
def live(request: Request, p: Principal = User, ws: Workspace = WS):
    return render(request, "live.html", p, findings=api.findings(ws, p)[:50])


@router.get("/live/events")
async def live_events(request: Request):
    """Server-sent events: each finding stored or raised after the page opened, once, as JSON.
    The catalog is polled (opened, read, closed) so ``watch`` keeps committing meanwhile."""
    app = request.app

    def poll(since):
        with api.open_workspace(app.state.workspace, app.state.config) as ws:
            # the user as the workspace knows it now: a removed user's stream ends here
            return api.findings_since(ws, current_user(request, ws), since)

    _, first = await run_in_threadpool(poll, None)  # not logged in: the redirect, before any event

    async def stream():
        since = first
        yield "retry: 2000\n\n"
        stopping = app.state.stopping
        while not stopping.is_set() and not await request.is_disconnected():
            await asyncio.sleep(app.state.live_poll)
            if stopping.is_set():  # the server stops: end the stream, the browser reconnects later
                return
            try:
                fs, since = await run_in_threadpool(poll, since)
            except HTTPException:
                return
            if fs and app.state.warmer is not None:  # new findings: a new workspace state to warm
                app.state.warmer.nudge()
            for f in fs:
                d = {k: f.to_dict()[k] for k in ("id", "detection", "severity", "score", "internal_hosts",
                                                 "external_names", "external_hosts", "bytes_out", "explanation",
                                                 "tenant", "start")}
                yield f"event: finding\ndata: {json.dumps(d)}\n\n"
            yield ": keep-alive\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
