"""``abfluss report``: the evidence report and notification drafts (``abfluss.report``)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import _open, app, human_bytes, out, parse_time
from ..report.case import write_case


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
    with _open() as ws:
        rep = write_case(ws, out_dir, parse_time(start, "--from"), parse_time(end, "--to"), tenant,
                         parse_time(aware_at, "--aware-at"), lang.value)
    out.print(f"{rep['verdict']} (confidence {rep['confidence']:.2f}, {rep['confidence_label']}) for "
              f"{rep['window']['start']} .. {rep['window']['end']}; outbound {human_bytes(rep['payload']['outbound_bytes'])}, "
              f"{len(rep['findings'])} findings", markup=False)
    for name in ("report.html", "report.pdf", "report.json"):
        out.print(f"wrote {out_dir / name}", markup=False)
    for name, t in rep["notifications"]["tenants"].items():
        due = [d for d in t["drafts"].values() if d.get("deadline")]
        soon = min(due, key=lambda d: d["time_left"]) if due else None
        left = f"; next deadline {soon['deadline']} ({soon['title']}, {soon['time_left'] / 3600:+.1f} h left)" if soon else ""
        out.print(f"tenant {name}: {t['verdict']}, {len(t['drafts'])} draft(s) in "
                  f"{out_dir / 'notifications' / name} (version {t['version']}){left}", markup=False)
