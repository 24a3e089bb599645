"""``abfluss account``: every byte out in a window in exactly one class (``abfluss.accounting``)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from .app import Fmt, _dump_csv, _dump_json, _open, app, human_bytes, out, parse_time

#: CSV columns: one row per class x internal host x destination (the complete attribution).
CSV_COLUMNS = ("category", "host", "destination", "name", "bytes", "flows", "first_seen", "last_seen")


@app.command(name="account")
def account_command(
    start: Annotated[Optional[str], typer.Option("--from", help="Start (ISO 8601, inclusive; default: first record).")] = None,
    end: Annotated[Optional[str], typer.Option("--to", help="End (ISO 8601, exclusive; default: after the last record).")] = None,
    tenant: Annotated[Optional[str], typer.Option(help="Only this tenant (data controller); default: all.")] = None,
    format: Annotated[Fmt, typer.Option("--format", help="table, json (the report's accounting section) or csv "
                                                         "(every class x host x destination).")] = Fmt.table,
) -> None:
    """Account for every byte out: allowlisted, local, baseline, flagged or unexplained; the classes sum to the ledger.

    Example: abfluss account --from 2024-02-08T00:00Z --to 2024-02-09 --tenant kasse-a
    """
    from .. import api  # loads DuckDB and the detections: only when run

    with _open() as ws:
        acc = api.account(ws, None, parse_time(start, "--from"), parse_time(end, "--to"), tenant)
    if format is Fmt.json:
        _dump_json(acc)
    elif format is Fmt.csv:
        _dump_csv([{k: p[k] for k in CSV_COLUMNS} for p in acc["pairs"]], CSV_COLUMNS)
    else:
        _print(acc)


def _print(acc: dict) -> None:
    from ..accounting import CATEGORIES

    t = Table(title=f"outflow accounting {acc['window']['start']} .. {acc['window']['end']}"
                    + (f", tenant {acc['tenant']}" if acc["tenant"] else ""))
    for c in ("class", "bytes out", "share"):
        t.add_column(c, justify="left" if c == "class" else "right")
    for c in CATEGORIES:
        t.add_row(c, human_bytes(acc["categories"][c]), f"{acc['shares'][c]:.1%}")
    t.add_row("total (ledger)", human_bytes(acc["bytes_out"]), "100.0%" if acc["bytes_out"] else "-")
    out.print(t)
    if acc["top_unexplained"]:
        u = Table(title=f"top unexplained destinations ({acc['unexplained_destinations']} in all)")
        for c in ("host", "destination", "name", "bytes out", "flows", "channel", "first seen"):
            u.add_column(c, justify="right" if c in ("bytes out", "flows") else "left")
        for p in acc["top_unexplained"]:
            u.add_row(p["host"], p["destination"], p["name"] or "-", human_bytes(p["bytes"]), str(p["flows"]),
                      p.get("channel") or "-", p.get("destination_first_seen") or p["first_seen"])
        out.print(u)
    else:
        out.print("no unexplained outflow in this window")
