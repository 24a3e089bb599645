"""The ``contain`` command: blast radius of indicators and compromised hosts, and block lists.

Registered on the Typer app when ``abfluss.cli`` imports this module; a thin shell over ``abfluss.contain``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..units import count, noun
from .app import _dump_json, _json_default, _open, app, human_bytes, out, parse_time
from ..errors import AbflussError
from ..fsutil import replace_file

#: Files ``contain --out DIR`` writes; the block lists only when indicators were given.
FILES = {"radius": "blast-radius.json", "nftables": "blocklist.nft", "plain": "blocklist.txt",
         "stix": "blocklist.stix.json"}


class ContainFmt(str, Enum):
    table = "table"
    json = "json"


def _t(v) -> str:
    return _json_default(v)[:19].replace("T", " ") if isinstance(v, datetime) else "-"


def _print(res: dict) -> None:
    seeds = [i["value"] for i in res["indicators"]] + res["hosts"]
    if res["radius"]:
        t = Table(title=f"blast radius of {', '.join(seeds)}: {count(len(res['radius']), 'internal_host')}")
        for c in ("internal host", "via", "first contact (UTC)", "last contact (UTC)", "out", "in", "flows",
                  "DNS lookups"):
            t.add_column(c, justify="right" if c in ("out", "in", "flows", "DNS lookups") else "left")
        for r in res["radius"]:
            t.add_row(r["internal_host"], ", ".join(r["reasons"]), _t(r["first_contact"] or r["first_lookup"]),
                      _t(r["last_contact"] or r["last_lookup"]), human_bytes(r["bytes_out"]),
                      human_bytes(r["bytes_in"]), str(r["flows"]), str(r["dns_lookups"]))
        out.print(t)
    else:
        out.print(f"blast radius empty: no other internal host talked to {', '.join(seeds)} in the window")
    hosts = [c for c in res["contacts"] if c["seed_kind"] == "host"]
    if hosts:
        t = Table(title=f"contacts of the compromised {noun(len(res['hosts']), 'host')}")
        for c in ("host", "peer", "name", "kind", "first contact (UTC)", "last contact (UTC)", "sent", "received",
                  "flows"):
            t.add_column(c, justify="right" if c in ("sent", "received", "flows") else "left")
        for c in hosts:
            t.add_row(c["seed"], c["peer"], c["peer_name"] or "-", "internal" if c["peer_internal"] else "external",
                      _t(c["first_contact"]), _t(c["last_contact"]), human_bytes(c["bytes_out"]),
                      human_bytes(c["bytes_in"]), str(c["flows"]))
        out.print(t)
    for i in res["indicators"]:
        if i["kind"] == "domain":
            out.print(f"{i['value']} resolved (workspace DNS answers) to: {', '.join(i['addresses']) or 'nothing'}")
    for m in res["messages"]:
        out.print(m, markup=False, highlight=False)


def _write(res: dict, dest: Path) -> list[Path]:
    from ..contain import blocklists
    dest.mkdir(parents=True, exist_ok=True)
    texts = {"radius": json.dumps(res, default=_json_default, indent=1) + "\n"}
    if res["indicators"]:
        texts.update(blocklists(res, datetime.now(timezone.utc).replace(microsecond=0)))
    paths = []
    for key, text in texts.items():
        p = dest / FILES[key]
        replace_file(p, text)  # a planted symlink is replaced, never written through
        paths.append(p)
    return paths


@app.command()
def contain(
    host: Annotated[Optional[list[str]], typer.Option("--host", help="A compromised internal host (IP); its internal and external peers are listed. Repeatable.")] = None,
    indicator: Annotated[Optional[list[str]], typer.Option("--indicator", help="An external IP, CIDR or domain (subdomains included); domains resolve through the workspace's DNS answers only. Repeatable.")] = None,
    start: Annotated[Optional[str], typer.Option("--from", help="Window start (ISO 8601, inclusive; default: first record).")] = None,
    end: Annotated[Optional[str], typer.Option("--to", help="Window end (ISO 8601, exclusive; default: after the last record).")] = None,
    format: Annotated[ContainFmt, typer.Option("--format", help="table or json.")] = ContainFmt.table,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Also write blast-radius.json and, for indicators, blocklist.nft, blocklist.txt and blocklist.stix.json here.")] = None,
) -> None:
    """The blast radius: every internal host that talked to an indicator or a compromised host, and block lists.

    Example: abfluss contain --indicator c2.update-check.test --host 10.10.0.11 --out ./containment
    """
    from .. import api
    from ..contain import parse_host, parse_indicator
    if not host and not indicator:
        raise AbflussError("give at least one --host IP or --indicator VALUE")
    t0, t1 = parse_time(start, "--from"), parse_time(end, "--to")
    for h in host or ():
        parse_host(h)  # a typo fails before the workspace is opened
    for i in indicator or ():
        parse_indicator(i)
    with _open() as ws:
        res = api.contain(ws, None, host or (), indicator or (), t0, t1)
        paths = _write(res, out_dir) if out_dir else []
        if paths:
            api.record_export(ws, None, f"contain block lists and blast radius in {out_dir}")
    if format is ContainFmt.json:
        _dump_json({**res, "files": [str(p) for p in paths]})
        return
    _print(res)
    for p in paths:
        out.print(f"wrote {p}", markup=False, highlight=False)
