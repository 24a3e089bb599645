"""``abfluss report``: the evidence report and notification drafts (``abfluss.report``)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import _open, app, human_bytes, out, parse_time
from .. import units


class Lang(str, Enum):
    en = "en"
    de = "de"


@app.command(name="report")
def report_command(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for report.html, report.pdf and report.json.")],
    start: Annotated[Optional[str], typer.Option("--from", help="Window start (ISO 8601, inclusive; default: first record).")] = None,
    end: Annotated[Optional[str], typer.Option("--to", help="Window end (ISO 8601, exclusive; default: after the last record).")] = None,
    tenant: Annotated[Optional[str], typer.Option(help="Only this tenant (data controller); default: all.")] = None,
    aware_at: Annotated[Optional[str], typer.Option("--aware-at", help="When the organisation became aware (ISO 8601): starts the notification clocks.")] = None,
    lang: Annotated[Lang, typer.Option(help="Language of the report: en or de.")] = Lang.en,
) -> None:
    """Write the evidence report (HTML, PDF, JSON) with a calibrated verdict, and each tenant's notification drafts.

    Example: abfluss report --from 2024-02-08T00:00Z --tenant aok-x --aware-at 2024-02-09T07:30Z --lang de --out case1/
    """
    from .. import api
    from ..report.case import tenant_dir
    with _open() as ws:
        rep = api.generate_report(ws, None, out_dir, parse_time(start, "--from"), parse_time(end, "--to"), tenant,
                                  parse_time(aware_at, "--aware-at"), lang.value)
    w = rep["window"]
    out.print(f"{rep['verdict']} (confidence {rep['confidence']:.2f}, {rep['confidence_label']}) for "
              f"{units.when(w['start'], seconds=True)} – {units.when(w['end'], seconds=True)} "
              f"({units.duration(w['seconds'])}); outbound {human_bytes(rep['payload']['outbound_bytes'])}, "
              f"{units.count(len(rep['findings']), 'finding')}", markup=False)
    for name in ("report.html", "report.pdf", "report.json"):
        out.print(f"wrote {out_dir / name}", markup=False)
    if rep["deadlines"]["aware_at_source"] == "assumed":
        out.print(f"no --aware-at given: awareness assumed to be now ({units.when(rep['deadlines']['aware_at'])}); "
                  "the deadlines run from then", markup=False)
    for name, t in rep["notifications"]["tenants"].items():
        due = [d for d in t["drafts"].values() if d.get("deadline")]
        # the next deadline still ahead, else the most recently passed one
        ahead = [d for d in due if d["time_left"] >= 0]
        soon = min(ahead or due, key=lambda d: abs(d["time_left"])) if due else None
        left = f"; next deadline {soon['title']}: {units.deadline_status(soon['deadline'], t['now'])}" if soon else ""
        out.print(f"tenant {name}: {t['verdict']}, {units.count(len(t['drafts']), 'draft')} in "
                  f"{out_dir / 'notifications' / tenant_dir(name)} (version {t['version']}){left}", markup=False)
