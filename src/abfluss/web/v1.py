"""``/api/v1``: the JSON the CLI prints with ``--format json``, for a SIEM or a script, behind a
Bearer token. Query parameters are the CLI's flags (``from``, ``to``, ``severity``, ``host`` …)."""

from __future__ import annotations

from typing import Literal, Optional

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from ..ledger import LedgerQuery
from ..store import Workspace
from .. import api
from .deps import parse_time, workspace
from .json import CLIJSON
from .security import api_principal
from ..auth import Principal

router = APIRouter(prefix="/api/v1", tags=["api"])
#: Ledger rows an API call returns unless ``limit`` says otherwise (0: all).
LEDGER_LIMIT = 1000
#: ... and the pairs ``account`` lists (the console's warm-up computes the accounting with it).
ACCOUNT_LIMIT = LEDGER_LIMIT

Caller = Depends(api_principal)
WS = Depends(workspace)


@router.get("/findings")
def findings(severity: Optional[str] = None, host: Optional[str] = None, detection: Optional[str] = None,
             p: Principal = Caller, ws: Workspace = WS):
    """Stored findings, strongest first: ``abfluss findings --format json``."""
    return CLIJSON([f.to_dict() for f in api.findings(ws, p, severity, host, detection)])


@router.get("/findings/{finding_id}")
def explain(finding_id: str, p: Principal = Caller, ws: Workspace = WS):
    """Why a finding was raised: ``abfluss explain ID --format json``."""
    return CLIJSON(api.explain(ws, p, finding_id))


@router.get("/incidents")
def incidents(p: Principal = Caller, ws: Workspace = WS):
    """Findings grouped per host: ``abfluss incidents --format json``."""
    return CLIJSON(api.incidents(ws, p))


@router.get("/incidents/{incident_id}")
def incident(incident_id: str, p: Principal = Caller, ws: Workspace = WS):
    """One incident with its tenant and case log."""
    return CLIJSON(api.incident(ws, p, incident_id))


class CaseEntry(BaseModel):
    what: str


@router.post("/incidents/{incident_id}/log", status_code=201)
def add_case_entry(incident_id: str, entry: CaseEntry, p: Principal = Caller, ws: Workspace = WS):
    """Record a measure taken (time and author are set by the server)."""
    return CLIJSON(api.add_case_entry(ws, p, incident_id, entry.what), status_code=201)


@router.get("/ledger")
def ledger(start: Optional[str] = Query(None, alias="from"), end: Optional[str] = Query(None, alias="to"),
           host: Optional[str] = None, tenant: Optional[str] = None, destination: Optional[str] = None,
           sort: str = "bytes_out", limit: int = LEDGER_LIMIT, p: Principal = Caller, ws: Workspace = WS):
    """Bytes out and in per host x destination x hour: ``abfluss ledger --format json``
    (``limit`` defaults to 1000 rows here; 0 returns all)."""
    q = LedgerQuery(parse_time(start, "from"), parse_time(end, "to"), host, tenant, destination, sort,
                    limit or None)
    return CLIJSON(api.ledger(ws, p, q)[0])


@router.get("/account")
def account(start: Optional[str] = Query(None, alias="from"), end: Optional[str] = Query(None, alias="to"),
            tenant: Optional[str] = None, limit: int = Query(ACCOUNT_LIMIT, ge=0), p: Principal = Caller,
            ws: Workspace = WS):
    """Every byte out in one class: ``abfluss account --format json`` (flags from the stored findings);
    ``pairs`` holds the ``limit`` largest host x destination x class (default 1000, as the ledger's
    rows; 0 returns all: hundreds of thousands over a day of ten million flows)."""
    return CLIJSON(api.account(ws, p, parse_time(start, "from"), parse_time(end, "to"), tenant, limit or None))


@router.get("/coverage")
def coverage(p: Principal = Caller, ws: Workspace = WS):
    """Per sensor: span, gaps, capture loss: ``abfluss coverage --format json``."""
    return CLIJSON(api.coverage(ws, p))


class ReportRequest(BaseModel):
    start: Optional[str] = Field(None, alias="from")
    end: Optional[str] = Field(None, alias="to")
    tenant: Optional[str] = None
    aware_at: Optional[str] = None
    lang: Literal["en", "de"] = "en"


@router.post("/reports", status_code=201)
def generate_report(req: ReportRequest, p: Principal = Caller, ws: Workspace = WS):
    """Write the evidence report and the drafts (``abfluss report``); an officer's is for their tenant."""
    rep = api.generate_report(ws, p, None, parse_time(req.start, "from"), parse_time(req.end, "to"),
                                  req.tenant, parse_time(req.aware_at, "aware_at"), req.lang)
    return CLIJSON(api.report(ws, p, rep["report_id"]), status_code=201)


@router.get("/reports")
def reports(p: Principal = Caller, ws: Workspace = WS):
    """The archived reports the caller may see, newest first."""
    return CLIJSON(api.reports(ws, p))


@router.get("/reports/{report_id}")
def report(report_id: str, p: Principal = Caller, ws: Workspace = WS):
    return CLIJSON(api.report(ws, p, report_id))


@router.get("/reports/{report_id}/files/{name:path}")
def report_file(report_id: str, name: str, p: Principal = Caller, ws: Workspace = WS):
    """A file of the report: ``report.html``, ``report.pdf``, ``report.json``, or a draft
    ``notifications/<tenant>/<duty>.md`` (and ``iocs.stix.json``)."""
    return download(api.report_file(ws, p, report_id, name), report_id)


#: Media types of the files a report holds.
MEDIA = {".html": "text/html; charset=utf-8", ".pdf": "application/pdf", ".json": "application/json",
         ".md": "text/markdown; charset=utf-8"}


def download(path, report_id: str) -> FileResponse:
    """A report file as an attachment (never rendered in the console's origin)."""
    return FileResponse(path, media_type=MEDIA.get(path.suffix, "application/octet-stream"),
                        filename=f"{report_id}-{path.name}", content_disposition_type="attachment")


class ContainRequest(BaseModel):
    hosts: list[str] = []
    indicators: list[str] = []
    start: Optional[str] = Field(None, alias="from")
    end: Optional[str] = Field(None, alias="to")


@router.post("/contain")
def contain(req: ContainRequest, p: Principal = Caller, ws: Workspace = WS):
    """The blast radius: ``abfluss contain --format json`` (analysts and admins)."""
    return CLIJSON(api.contain(ws, p, req.hosts, req.indicators, parse_time(req.start, "from"),
                                   parse_time(req.end, "to")))
