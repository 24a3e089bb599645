"""The whole case file for a window: the evidence report plus every tenant's notification drafts.

``abfluss report`` writes, into ``--out``:

- ``report.json``, ``report.html``, ``report.pdf``: the evidence report (``render.build``), with
  the drafts under ``notifications``;
- ``notifications/<tenant>/<duty>.md``: each draft as Markdown, and ``iocs.stix.json``, the
  indicators as a STIX 2.1 bundle for the NIS2 incident notification.

Each tenant's drafts rest on that tenant's own report (verdict, confidence, coverage), since
each insurer is a controller with its own duties and clock. The proposed measures draw on the
blast radius of the indicators (``abfluss.contain``): which other internal hosts talked to them.
Writing into a folder that already holds a report makes the drafts follow-ups that say what
changed since then (GDPR Art. 33(4)).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from .. import analysis
from ..contain import blast_radius, parse_indicator
from ..errors import AbflussError
from ..fsutil import is_stale, read_text_nofollow, replace_file, scratch_dir
from ..store import Workspace
from .drafts import apply_report, build_all, drafts_from_findings
from .drafts_html import notifications_html
from .render import build, write_files

TITLES = {"en": "Notification drafts", "de": "Entwürfe der Meldungen"}
#: What a case consists of, in the order it is put into place: ``report.json`` last, since the
#: next report reads it to make follow-ups.
CASE_FILES = ("notifications", "report.html", "report.pdf", "report.json")
#: Scratch folder (inside ``--out``) in which a case is assembled before it is moved into place.
STAGING = ".case-"


def _previous(out: Path) -> dict | None:
    try:
        return json.loads(read_text_nofollow(out / "report.json")).get("notifications")
    except (OSError, ValueError, AttributeError):
        return None


def tenant_dir(name: str) -> str:
    """A tenant's folder name under ``notifications/``: never a path (``..``, ``/``) or hidden."""
    safe = name.replace("/", "_").replace("\\", "_").replace("\0", "_")
    return "_" + safe if not safe.strip(".") or safe.startswith(".") else safe


def _utc(t: datetime | None) -> datetime | None:
    return t if t is None or t.tzinfo else t.replace(tzinfo=timezone.utc)


def _usable(value: str) -> bool:
    """Whether a finding's destination can seed a blast radius: names come from the traffic
    (an SNI such as ``files drop.example``), and odd data must never stop a report."""
    try:
        parse_indicator(value)
    except AbflussError:
        return False
    return True


def _measures(ws: Workspace, inp, start, end) -> tuple[str, ...]:
    """Proposed measures, with the other internal hosts that talked to the indicators."""
    values = [i.value for i in inp.indicators if _usable(i.value)]
    if not values:
        return inp.measures_proposed
    radius = blast_radius(ws, indicators=values, start=start, end=end).get("radius", [])
    others = sorted({r["internal_host"] for r in radius} - {h.ip for h in inp.hosts})
    extra = (f"check {h}: it also contacted the indicators" for h in others)
    return tuple(inp.measures_proposed) + tuple(extra)


def write_case(ws: Workspace, out_dir: str | Path, start: datetime | None = None, end: datetime | None = None,
               tenant: str | None = None, aware_at: datetime | None = None, lang: str = "en",
               now: datetime | None = None, pdf: bool = True, findings: list | None = None) -> dict:
    """Write the report and the drafts; return the report dict (``notifications`` included).

    ``findings`` are the window's findings when the caller already has them (several reports of
    one window: languages, awareness times); by default the detections run here, unstored.
    """
    out = Path(out_dir)
    now = _utc(now) or datetime.now(timezone.utc)
    aware = _utc(aware_at) or now
    if out.is_dir():
        recover(out)
    previous = _previous(out)
    lo, hi = analysis.data_span(ws)
    start, end = _utc(start or lo), _utc(end or hi)
    if start is None or end is None:
        raise AbflussError("the workspace holds no records yet: nothing to report on (abfluss ingest FILE)")
    if findings is None:
        findings = analysis.analyze(ws, start, end, store=False).findings
    rep = build(ws, start, end, tenant, aware_at, lang, findings=findings, now=now)
    inputs = drafts_from_findings(ws, aware, findings=findings, window=(start, end), previous=previous,
                                  aware_at_assumed=aware_at is None)
    if tenant:
        inputs = [i for i in inputs if i.tenant == tenant]
    own = []
    for inp in inputs:
        tenant_rep = rep if inp.tenant == tenant or len(inputs) == 1 else build(
            ws, start, end, inp.tenant if inp.tenant in ws.config.tenants else None, aware_at, lang, findings=findings,
            now=now)
        inp = apply_report(inp, tenant_rep)
        own.append(replace(inp, measures_proposed=_measures(ws, inp, start, end)))
    rep["notifications"] = build_all(own, now, lang)
    html_extra = {"notifications": {"title": TITLES[lang], "html": notifications_html(rep["notifications"], lang)}}
    out.mkdir(parents=True, exist_ok=True)
    with scratch_dir(out, STAGING) as stage:
        (stage / "new").mkdir()
        write_files(rep, stage / "new", html_extra, pdf)
        _write_drafts(stage / "new" / "notifications", rep["notifications"])
        replace_file(stage / "complete", "\n".join(sorted(os.listdir(stage / "new"))) + "\n")
        _install(stage, out)
    return rep


def recover(out: Path) -> None:
    """Finish putting into place a case that a killed ``report`` had completely written (its
    staging folder says ``complete``); drop one it had not. Another report still running is
    left alone."""
    for e in os.scandir(out):
        d = Path(e.path)
        if e.name.startswith(STAGING) and not e.is_symlink() and e.is_dir() and is_stale(d):
            if (d / "complete").is_file() and not (d / "complete").is_symlink():
                _install(d, out)
            shutil.rmtree(d, ignore_errors=True)


def _install(stage: Path, out: Path) -> None:
    """Move the staged case into ``out``, each entry by rename (replacing, never following, what
    is there); entries of the previous case that this one lacks (a PDF) go to ``stage/old``.
    Repeatable after a kill: ``complete`` lists the case's entries, so one already moved is
    recognised."""
    entries = set(read_text_nofollow(stage / "complete").split())
    (stage / "old").mkdir(exist_ok=True)
    for name in CASE_FILES:
        new, dest = stage / "new" / name, out / name
        if name in entries and not (new.exists() or new.is_symlink()):
            continue  # moved into place before a kill
        present = dest.is_symlink() or dest.exists()
        if present and not (new.is_file() and (dest.is_symlink() or dest.is_file())):
            os.rename(dest, stage / "old" / name)  # a folder, or an entry this case does not have
        if name in entries:
            os.replace(new, dest)


def _write_drafts(root: Path, notif: dict) -> None:
    for name, t in notif["tenants"].items():
        d = root / tenant_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        for kind, draft in t["drafts"].items():
            replace_file(d / f"{kind}.md", draft["text"])
        if t.get("stix"):
            stix = t["stix"] if isinstance(t["stix"], str) else json.dumps(t["stix"], indent=1)
            replace_file(d / "iocs.stix.json", stix)
