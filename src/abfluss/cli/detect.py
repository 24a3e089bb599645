"""Commands around detections: analyze, findings, explain, incidents, detections.

Registered on the Typer app when ``abfluss.cli`` imports this module; as thin as the rest of the CLI.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..units import count
from .app import _dump_json, _json_default, _open, app, err, esc, human_bytes, out, parse_time, state
from ..errors import AbflussError
from ..findings import Finding, host_risk


class FindingFmt(str, Enum):
    table = "table"
    json = "json"
    ecs = "ecs"
    ocsf = "ocsf"
    cef = "cef"


class Engine(str, Enum):
    duckdb = "duckdb"
    pyspark = "pyspark"


def _print_findings(findings, limit: int | None = None) -> None:
    t = Table(title="findings")
    for c in ("id", "severity", "score", "detection", "internal", "destination", "out", "start (UTC)"):
        t.add_column(c, justify="right" if c in ("score", "out") else "left")
    for f in findings[:limit] if limit else findings:
        dest = ", ".join(f.external_names[:1] or f.external_hosts[:1]) or "-"
        t.add_row(f.id, f.severity, f"{f.score:.0f}", f.detection, ", ".join(f.internal_hosts[:2]), dest,
                  human_bytes(f.bytes_out), f.start.strftime("%Y-%m-%d %H:%M") if f.start else "-")
    out.print(t)


@app.command()
def analyze(
    start: Annotated[Optional[str], typer.Option("--from", help="Window start (ISO 8601, inclusive; default: first record).")] = None,
    end: Annotated[Optional[str], typer.Option("--to", help="Window end (ISO 8601, exclusive; default: after the last record).")] = None,
    only: Annotated[Optional[str], typer.Option(help="Comma-separated detection ids to run (default: all enabled).")] = None,
    sink: Annotated[Optional[list[str]], typer.Option(help="Send new findings to ndjson:PATH, udp://HOST:PORT or tcp://HOST:PORT (syslog), or an http(s):// webhook. Repeatable.")] = None,
    sink_format: Annotated[Optional[FindingFmt], typer.Option(help="Payload for sinks: json, ecs, ocsf or cef (default: ecs for ndjson, cef for syslog).")] = None,
    engine: Annotated[Engine, typer.Option(help="duckdb (this machine) or pyspark (Spark, local or cluster).")] = Engine.duckdb,
    spark_master: Annotated[Optional[str], typer.Option(help="With --engine pyspark: the cluster's master URL, e.g. spark://host:7077 (default $SPARK_MASTER, else local).")] = None,
    format: Annotated[FindingFmt, typer.Option("--format", help="table or json summary.")] = FindingFmt.table,
) -> None:
    """Run the detections over a window and store their findings (re-analysis updates, never duplicates).

    Example: abfluss analyze --from 2024-02-08T15:00Z --sink udp://127.0.0.1:514
    """
    import os
    if spark_master:
        if engine is not Engine.pyspark:
            raise AbflussError("--spark-master needs --engine pyspark")
        os.environ["SPARK_MASTER"] = spark_master  # read by abfluss.spark when the session starts
    fmt = sink_format.value if sink_format else None
    if fmt == "table":
        raise AbflussError("--sink-format: json, ecs, ocsf or cef")
    ids = tuple(x.strip() for x in only.split(",") if x.strip()) if only else ()
    # A watch running on the workspace holds the writer's lock and the warm detections: it runs
    # the analysis (watch/resident.py); with none answering, this process does, as it always did.
    run = _by_the_watch(start, end, ids, sink or [], fmt) if engine is Engine.duckdb else None
    if run is None:
        run = _here(start, end, ids, sink or [], fmt, engine)
    _print_run(run, format)


@dataclass
class _Run:
    """What ``analyze`` prints, from an analysis run here or by the watch on the workspace."""

    start: object
    end: object
    flows: int
    findings: list  # Finding
    docs: list | None  # their JSON form (None: from ``findings``)
    new: list[str]
    seconds: dict
    errors: dict
    done: dict  # sink spec -> what delivery did (sent, queued, error)


def _here(start, end, ids, sink, fmt, engine) -> _Run:
    from .. import api
    from ..outputs.delivery import deliver
    from ..outputs.sinks import Sink
    sinks = [Sink(s, fmt) for s in sink]
    with _open(write=True) as ws:
        res = api.analyze(ws, None, parse_time(start, "--from"), parse_time(end, "--to"), ids, engine.value,
                          sinks=tuple(s.spec for s in sinks))
        done = deliver(ws, sinks)  # this run's findings and any a sink missed before
    return _Run(res.start, res.end, res.flows, res.findings, None, [f.id for f in res.new], res.seconds,
                res.errors, done)


def _by_the_watch(start, end, ids, sink, fmt) -> _Run | None:
    """The analysis run by the watch on this workspace, or None when no watch answers."""
    import os
    from datetime import datetime
    from pathlib import Path
    from types import SimpleNamespace

    from ..watch import resident
    request = {"command": "analyze", "start": parse_time(start, "--from"), "end": parse_time(end, "--to"),
               "only": list(ids), "sinks": list(sink), "sink_format": fmt, "cwd": os.getcwd(),
               "config": str(Path(state.config).resolve()) if state.config else None}
    try:
        r = resident.hand_over(resident.workspace_root(state.workspace), request)
    except resident.NoWatch:
        return None
    except resident.Failed as e:
        if e.exit == 2:
            raise  # one line, as the command's own error
        if e.detail:
            sys.stderr.write(e.detail)
        err.print(f"abfluss: {e}", markup=False, highlight=False)
        raise typer.Exit(e.exit) from None

    def when(t):
        return datetime.fromisoformat(t) if t else None
    return _Run(when(r["start"]), when(r["end"]), r["flows"], [Finding.from_dict(d) for d in r["findings"]],
                r["findings"], r["new"], r["seconds"], r["errors"],
                {d["spec"]: SimpleNamespace(sent=d["sent"], queued=d["queued"], error=d["error"]) for d in r["sinks"]})


def _print_run(res: _Run, format: "FindingFmt") -> None:
    done = res.done
    sent = {spec: d.sent for spec, d in done.items()}
    for det_id, why in res.errors.items():  # one line each; the other detections' findings are stored
        err.print(f"abfluss: detection {det_id} failed and was not checked: {why}", markup=False, highlight=False)
    if format is FindingFmt.json:
        _dump_json({"start": res.start, "end": res.end, "flows": res.flows,
                    "findings": res.docs if res.docs is not None else [f.to_dict() for f in res.findings],
                    "new": res.new, "sent": sent, "queued": {spec: d.queued for spec, d in done.items()},
                    "seconds": res.seconds, "errors": res.errors})
        _sink_errors(done)
        return
    if res.start is None:
        out.print("nothing to analyze: the workspace holds no flows yet (abfluss ingest FILE)")
        return
    out.print(f"window {_json_default(res.start)} .. {_json_default(res.end)}: {res.flows:,} flows, "
              f"{count(len(res.findings), 'finding')} ({len(res.new)} new or raised)")
    if res.findings:
        _print_findings(res.findings, 30)
        risk = host_risk(res.findings)
        top = sorted(risk.items(), key=lambda kv: -kv[1])[:10]
        out.print("host risk: " + ", ".join(f"{h} {s:.0f}" for h, s in top))
        out.print("details: abfluss explain ID")
    for spec, d in done.items():
        out.print(f"sent {count(d.sent, 'finding')} to {spec}"
                  + (f"; {d.queued} queued for the next run" if d.queued else ""))
    _sink_errors(done)


def _sink_errors(done) -> None:
    """A sink that failed: one line each, and exit 1 (its findings stay queued, nothing is lost)."""
    failed = [d for d in done.values() if d.error]
    for d in failed:
        err.print(f"abfluss: {d.error}; {count(d.queued, 'finding')} kept for the next run")
    if failed:
        raise typer.Exit(1)


@app.command()
def findings(
    severity: Annotated[Optional[str], typer.Option(help="Minimum severity: info, low, medium, high, critical.")] = None,
    host: Annotated[Optional[str], typer.Option(help="Only findings naming this internal host.")] = None,
    detection: Annotated[Optional[str], typer.Option(help="Only this detection id.")] = None,
    format: Annotated[FindingFmt, typer.Option("--format", help="table, json (array), ecs/ocsf (NDJSON) or cef (lines).")] = FindingFmt.table,
) -> None:
    """Stored findings, strongest first.

    Example: abfluss findings --severity high --format ecs > alerts.ndjson
    """
    from .. import api
    with _open(enrich=False) as ws:  # the stored findings only: no views over the flows needed
        fs = api.findings(ws, None, severity, host, detection)
    if format is FindingFmt.table:
        _print_findings(fs) if fs else out.print("no findings (run: abfluss analyze)")
    elif format is FindingFmt.json:
        _dump_json([f.to_dict() for f in fs])
    else:
        from ..outputs.sinks import render  # with the sinks' HTTP client: 0.03 CPU s, for these formats only
        for f in fs:
            sys.stdout.write(render(f, format.value) + "\n")


@app.command()
def incidents(format: Annotated[FindingFmt, typer.Option("--format", help="table or json.")] = FindingFmt.table) -> None:
    """Findings grouped per internal host into incidents, with the host's risk score.

    Example: abfluss incidents --format json
    """
    from .. import api
    with _open() as ws:
        res = api.incidents(ws)
    if format is not FindingFmt.table:
        _dump_json(res)
        return
    t = Table(title="incidents")
    for c in ("incident", "host", "severity", "score", "start (UTC)", "end (UTC)", "out", "detections"):
        t.add_column(c)
    for i in sorted(res["incidents"], key=lambda i: -i["score"]):
        t.add_row(i["id"], i["internal_host"], i["severity"], f"{i['score']:.0f}", i["start"].strftime("%Y-%m-%d %H:%M"),
                  i["end"].strftime("%Y-%m-%d %H:%M"), human_bytes(i["bytes_out"]), ", ".join(i["detections"]))
    out.print(t)


@app.command()
def explain(
    finding_id: Annotated[str, typer.Argument(help="A finding id (or a unique prefix of one).")],
    format: Annotated[FindingFmt, typer.Option("--format", help="table or json.")] = FindingFmt.table,
) -> None:
    """Why a finding was raised: the numbers, the thresholds, the score parts, the top evidence flows.

    Example: abfluss explain 48c778ed74ac6f2e
    """
    from .. import api, detections
    from ..findings import Finding
    with _open() as ws:
        res = api.explain(ws, None, finding_id)
    if format is not FindingFmt.table:
        _dump_json(res)
        return
    f, flows = Finding.from_dict(res["finding"]), res["evidence_flows"]
    meta = detections.module(f.detection).META if f.detection in detections.MODULES else None
    out.print(f"[bold]{esc(f.id)}[/] {esc(f.detection)} — {esc(f.severity)}, score {f.score:.0f}/100", markup=True)
    out.print(f.explanation)
    parts = " + ".join(f"{k} {v:g}" for k, v in f.score_parts.items())
    out.print(f"score = {parts}")
    helps = {n: h for n, _, h in detections.settings_help(f.detection)} if meta else {}
    if f.metrics:
        out.print("measured: " + json.dumps(f.metrics, default=str))
    for k, v in f.thresholds.items():
        out.print(f"threshold {k} = {v}  ({helps.get(k, '')})")
    if flows:
        t = Table(title="top evidence flows")
        for c in ("uid", "start (UTC)", "originator", "responder", "service", "out", "in", "seconds"):
            t.add_column(c)
        for r in flows:
            t.add_row(r["uid"] or "-", _json_default(r["ts"]), f"{r['orig_h']}:{r['orig_p']}",
                      f"{r['resp_h']}:{r['resp_p']}", r["service"] or "-", human_bytes(r["bytes_out"]),
                      human_bytes(r["bytes_in"]), f"{r['duration'] or 0:.1f}")
        out.print(t)
    if meta:
        out.print(f"ATT&CK: {', '.join(f.attack)}\nrunbook: {meta.runbook}")


@app.command(name="detections")
def list_detections(format: Annotated[FindingFmt, typer.Option("--format", help="table or json.")] = FindingFmt.table) -> None:
    """Every detection with its ATT&CK ids and its settings as configured for this workspace.

    Example: abfluss detections --format json
    """
    from .. import detections
    with _open() as ws:
        cfg = ws.config
    rows = []
    for det in detections.MODULES:
        overrides = dict(cfg.detections.get(det, {}))
        enabled = overrides.pop("enabled", True)
        s = detections.settings_for(det, overrides)
        meta = detections.module(det).META
        rows.append({"id": det, "title": meta.title, "attack": list(meta.attack), "enabled": enabled,
                     "settings": {n: getattr(s, n) for n, _, _ in detections.settings_help(det)}})
    if format is not FindingFmt.table:
        _dump_json(rows)
        return
    for r in rows:
        out.print(f"[bold]{esc(r['id'])}[/] — {esc(r['title'])} ({esc(', '.join(r['attack']))})"
                  f"{'' if r['enabled'] else esc(' [disabled]')}", markup=True)
        out.print("  " + ", ".join(f"{k}={v}" for k, v in r["settings"].items()), markup=False)
