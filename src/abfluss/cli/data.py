"""Commands over stored telemetry: ingest, ledger, inputs, coverage, and the demo."""

from __future__ import annotations

import shutil
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..errors import AbflussError
from ..progress import read_position
from ..units import count, human_bytes
from .app import Fmt, _dump_csv, _dump_json, _json_default, _open, app, err, esc, out, parse_time

#: Ledger rows a terminal table shows unless --limit says otherwise.
TABLE_ROWS = 50


@app.command()
def ingest(
    paths: Annotated[Optional[list[str]], typer.Argument(help="Files or directories (walked recursively).", show_default=False)] = None,
    sensor: Annotated[Optional[str], typer.Option(help="Sensor name recorded for these inputs (default: the format).")] = None,
    interface: Annotated[Optional[str], typer.Option(help="Capture live from this interface (needs root and tcpdump).")] = None,
    duration: Annotated[float, typer.Option(help="Seconds to capture with --interface.")] = 60.0,
    no_inspect: Annotated[bool, typer.Option("--no-inspect", help="Do not inspect capture payload for "
                                             "sensitive identifiers (only hashes are ever stored).")] = False,
    jobs: Annotated[Optional[int], typer.Option("--jobs", min=1, show_default="number of cores",
                                                help="Processes to use: files are read in parallel, "
                                                "a capture's packets split over them.")] = None,
) -> None:
    """Read captures and logs into the workspace; the format is detected from the content.

    Example: abfluss -w ./case ingest capture.pcap zeek-logs/ eve.json
    """
    _arrow_without_pandas()
    from .. import ingest as _ingest
    if not paths and not interface:
        raise AbflussError("give at least one PATH, or --interface IF --duration S")
    with _open(write=True) as ws:
        with _IngestProgress() as progress:
            results = []
            if interface:
                results.append(_ingest.capture_live(ws, interface, duration, sensor, progress, not no_inspect))
            if paths:
                results += _ingest.ingest_paths(ws, [Path(p) for p in paths], sensor, progress, not no_inspect, jobs)
    _print_summary(results)
    if results and all(r.status == "failed" for r in results):  # ignored inputs are no failure
        raise typer.Exit(1)


def _arrow_without_pandas() -> None:
    """Let pyarrow find no pandas for its implicit checks in this process, which ends after ingest.

    The first time pyarrow converts a value (``pa.scalar``, ``pa.array``, a compute call with a
    Python number) it asks whether the value is a pandas object and imports pandas for that:
    0.3 CPU s on a quiet machine, 0.6 s at load, a third of a fresh ``abfluss ingest``'s start-up,
    for a question ingest never needs answered (no reader hands pyarrow a pandas object).
    With ``pandas`` unimportable at that moment pyarrow records "no pandas" and asks again only
    where pandas is required (``to_pandas``), so nothing that needs it breaks; ``import pandas``
    itself works normally afterwards (NFStream imports it for captures). Only this command does
    it: ``analyze`` and ``watch`` hand pandas objects to pyarrow through Ibis."""
    if "pandas" in sys.modules:  # imported already: pyarrow will use it, nothing to save
        return
    import pyarrow as pa

    sys.meta_path.insert(0, _NoPandas)
    try:
        pa.scalar(0)  # pyarrow's one check for pandas happens here
    finally:
        sys.meta_path.remove(_NoPandas)


class _NoPandas:
    """An import finder under which ``import pandas`` raises ImportError (a ``None`` entry in
    ``sys.modules`` would not do: pyarrow's compiled import then returns None)."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "pandas":
            raise ModuleNotFoundError("pandas is not used by ingest", name=name)
        return None


class _IngestProgress:
    """A progress bar per large input (bytes read, rate, time left), a status line for small ones.

    The position comes from /proc (see abfluss.progress), polled on a thread, so it moves while
    NFStream meters a capture in its own process too."""

    LARGE = 20_000_000  # bytes: below this an input is done before a bar would help

    def __init__(self):
        # rich.progress only here: 0.015 CPU s of every other command
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)
        self.bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                            TimeRemainingColumn(), TextColumn("{task.fields[records]} records"),
                            console=err, transient=True, disable=not err.is_terminal)
        self.task = None
        self.path: Optional[Path] = None
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, daemon=True)

    def __call__(self, shown: str, records: int) -> None:
        if records == 0:
            path = Path(shown)
            size = path.stat().st_size if path.is_file() else 0
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.path = path if size >= self.LARGE else None
            self.task = self.bar.add_task(shown, total=size or None, records="0")
        elif self.task is not None:
            self.bar.update(self.task, records=f"{records:,}")

    def _poll(self) -> None:
        while not self._stop.wait(0.3):
            path, task = self.path, self.task
            if path is not None and task is not None:
                pos = read_position(path)
                if pos is not None:
                    self.bar.update(task, completed=pos)

    def __enter__(self) -> "_IngestProgress":
        self.bar.__enter__()
        if not self.bar.disable:
            self._poller.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.bar.__exit__(*exc)


def _print_summary(results) -> None:
    for r in results:
        for m in r.messages:
            err.print(f"[yellow]skipped[/]: {esc(m)}", markup=True, highlight=False)
        if r.status == "failed" and r.error not in r.messages:
            err.print(f"[red]error[/]: {esc(r.error)}", markup=True, highlight=False)
    t = Table(title="ingest summary")
    for c in ("input", "format", "status", "records", "skipped"):
        t.add_column(c, justify="right" if c in ("records", "skipped") else "left")
    for r in results:
        counts = ", ".join(f"{k} {v:,}" for k, v in sorted(r.records.items())) or "0"
        t.add_row(r.path, r.format or "-", r.status, counts, f"{r.skipped:,}")
    out.print(t)
    stored = [r for r in results if r.status == "stored"]
    ignored = sum(r.status == "ignored" for r in results)
    out.print(f"{len(stored)} stored, {sum(r.status == 'duplicate' for r in results)} already present, "
              + (f"{ignored} ignored (kinds abfluss does not use), " if ignored else "")
              + f"{sum(r.status == 'failed' for r in results)} failed; "
              f"{sum(r.total for r in stored):,} records read, {sum(r.skipped for r in results):,} skipped")


@app.command()
def ledger(
    start: Annotated[Optional[str], typer.Option("--from", help="Start (ISO 8601, inclusive).")] = None,
    end: Annotated[Optional[str], typer.Option("--to", help="End (ISO 8601, exclusive).")] = None,
    host: Annotated[Optional[str], typer.Option(help="Only this internal host.")] = None,
    tenant: Annotated[Optional[str], typer.Option(help="Only this tenant.")] = None,
    destination: Annotated[Optional[str], typer.Option(help="Only this external address, name or domain.")] = None,
    sort: Annotated[str, typer.Option(help="bytes_out, bytes_in, flows, hour, first_seen, host, destination.")] = "bytes_out",
    limit: Annotated[Optional[int], typer.Option(help="At most this many rows (table format: default 50; 0 = all).")] = None,
    format: Annotated[Fmt, typer.Option("--format", help="table, json or csv.")] = Fmt.table,
) -> None:
    """Bytes out and in per internal host x external destination x hour, with totals.

    Example: abfluss ledger --from 2024-02-08 --host 10.0.0.5 --format json
    """
    from .. import api
    from ..ledger import COLUMNS as LEDGER_COLUMNS, LedgerQuery
    if limit is None and format is Fmt.table:
        limit = TABLE_ROWS
    q = LedgerQuery(parse_time(start, "--from"), parse_time(end, "--to"), host, tenant,
                    destination, sort, limit or None)
    with _open() as ws:
        rows, tot = api.ledger(ws, None, q)
    if format is Fmt.json:
        _dump_json(rows)
    elif format is Fmt.csv:
        _dump_csv(rows, LEDGER_COLUMNS)
    else:
        _print_ledger(rows, tot)
        if q.limit and len(rows) == q.limit:
            out.print(f"showing the first {q.limit} rows by {sort}; --limit 0 or --format json/csv for all")


def _print_ledger(rows, tot) -> None:
    t = Table(title="outflow ledger")
    for c in ("internal host", "external host", "name", "hour (UTC)", "out", "in", "flows", "open"):
        t.add_column(c, justify="right" if c in ("out", "in", "flows", "open") else "left")
    for r in rows:
        t.add_row(r["internal_host"], r["external_host"], r["external_name"] or "-",
                  r["hour"].strftime("%Y-%m-%d %H:00"), human_bytes(r["bytes_out"]),
                  human_bytes(r["bytes_in"]), str(r["flows"]), str(r["open_flows"] or ""))
    out.print(t)
    out.print(f"total: {human_bytes(tot['bytes_out'])} out, {human_bytes(tot['bytes_in'])} in, "
              f"{tot['flows']:,} flows ({tot['open_flows']:,} still open, interim), "
              f"{tot['internal_hosts']} internal hosts, {tot['external_hosts']} external destinations")


@app.command()
def inputs(format: Annotated[Fmt, typer.Option("--format", help="table, json or csv.")] = Fmt.table) -> None:
    """Every ingested input: SHA-256, size, format, sensor, time span, records and skipped.

    Example: abfluss inputs --format json
    """
    from .. import api
    with _open() as ws:
        rows = api.inputs(ws)
    if format is not Fmt.table:
        (_dump_json if format is Fmt.json else _dump_csv)(rows)
        return
    t = Table(title="inputs")
    for c in ("sha256", "path", "format", "sensor", "first", "last", "records", "skipped"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["input_id"][:16], r["path"], r["format"], r["sensor"],
                  _json_default(r["first_ts"]) if r["first_ts"] else "-",
                  _json_default(r["last_ts"]) if r["last_ts"] else "-", f"{r['records']:,}", f"{r['skipped']:,}")
    out.print(t)


@app.command()
def coverage(format: Annotated[Fmt, typer.Option("--format", help="table, json or csv.")] = Fmt.table) -> None:
    """Per sensor: time span seen, minutes without records, capture loss, interim flows.

    Example: abfluss coverage --format json
    """
    from .. import api
    with _open() as ws:
        res = api.coverage(ws)
    rows, p = res["sensors"], res["payload"]
    if format is not Fmt.table:
        (_dump_json if format is Fmt.json else _dump_csv)(rows)
        return
    t = Table(title="coverage")
    for c in ("sensor", "first seen", "last seen", "span min", "records", "gap min", "missed", "interim"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["sensor"], _json_default(r["first_seen"]), _json_default(r["last_seen"]),
                  str(r["span_minutes"]), f"{r['records']:,}", str(r["gap_minutes"]),
                  f"{r['missed_share']:.2%}", str(r["interim_flows"]))
    out.print(t)
    out.print(f"payload content checked: {p['cleartext_share']:.1%} of {human_bytes(p['outbound_bytes'])} out "
              f"in cleartext, {p['encrypted_share']:.1%} encrypted (not inspectable), "
              f"{p['not_inspected_share']:.1%} seen as flow records only")


def demo_capture() -> Path:
    return Path(__file__).resolve().parents[3] / "examples" / "demo.pcap"


@app.command()
def demo(capture: Annotated[Optional[Path], typer.Option(help="Capture to use instead of the bundled demo.")] = None,
         report_dir: Annotated[Path, typer.Option(help="Where the evidence report is written.")] = Path("abfluss-demo-report")) -> None:
    """Run the whole pipeline on the bundled demo capture in a fresh temporary workspace.

    Example: abfluss demo
    """
    import tempfile

    from .. import api
    from .. import ingest as _ingest
    from ..ledger import LedgerQuery
    capture = capture or demo_capture()
    if not capture.exists():
        raise AbflussError(f"{capture}: demo capture not found (regenerate it with: sudo python3 lab/make_demo.py)")
    tmp = Path(tempfile.mkdtemp(prefix="abfluss-demo-"))
    try:
        with api.open_workspace(tmp / "ws", write=True) as ws:
            out.rule(f"ingest {capture.name}")
            _print_summary([_ingest.ingest_file(ws, capture, "demo")])
            out.rule("outflow ledger (top 15 by bytes out)")
            _print_ledger(*api.ledger(ws, None, LedgerQuery(limit=15)))
            out.rule("coverage")
            for r in api.coverage(ws, payload=False)["sensors"]:
                out.print(f"sensor {r['sensor']}: {r['span_minutes']} min seen, {r['gap_minutes']} min without "
                          f"records, {r['missed_share']:.2%} bytes missed, {count(r['interim_flows'], 'flow')} still open")
            out.rule("findings (abfluss analyze)")
            res = api.analyze(ws)
            for f in res.findings:
                out.print(f"{f.severity:8s} {f.score:3.0f}  {f.detection:24s} {f.explanation}", markup=False)
            if not res.findings:
                out.print("no findings")
            out.rule("evidence report (abfluss report)")
            rep = api.generate_report(ws, None, report_dir)
            out.print(f"{rep['verdict']}, confidence {rep['confidence']:.2f}: {rep['statement']}", markup=False)
            out.print(f"wrote {report_dir}/report.html, report.pdf, report.json and notifications/", markup=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
