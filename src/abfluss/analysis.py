"""Run the detections over a window of the workspace and keep their findings.

The enriched window (flows, DNS, HTTP, TLS, and the look-back before it) is written once to
Parquet in a private temporary folder; the detections then query those files through Ibis,
on DuckDB by default or on Spark (``backend="pyspark"``). Both engines read exactly the same
rows, which is what lets the test suite demand identical findings from both.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from . import detections as _det
from .enrich import domain_match
from .errors import AbflussError
from .findings import Finding
from .fsutil import scratch_dir
from .store import Workspace
# the stored findings' reads and writes live in their own module; callers use them from here too
from .stored_findings import evidence_flows, get, last_update, load, merge, runs, save, TENANT_SQL  # noqa: F401

if TYPE_CHECKING:
    from .analysis_resident import Resident

#: How far before the window baselines and first-seen dates look.
LOOKBACK = timedelta(days=30)
#: Flows the detections see: not allowlisted, not to a local address (multicast, broadcast,
#: link-local, unspecified) and not transit to a proxy whose real destination is unknown.
DETECTED_CLASSES = "dest_class NOT IN ('allowlisted', 'local', 'proxy')"


@dataclass
class AnalysisResult:
    start: datetime | None
    end: datetime | None
    findings: list[Finding]
    new: list[Finding] = field(default_factory=list)  # new, or raised in severity since last sent
    flows: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # per detection
    #: CPU seconds per detection (this process, all its threads: DuckDB's too), the figure to
    #: compare on a shared machine where wall time depends on the load.
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    #: Detections that failed, with one line saying why; their checks count as not run, and the
    #: other detections' findings are kept all the same.
    errors: dict[str, str] = field(default_factory=dict)
    #: Detections not run because every table they read was empty in the window.
    skipped: list[str] = field(default_factory=list)


def data_span(ws: Workspace) -> tuple[datetime | None, datetime | None]:
    rows = ws.con.execute("SELECT min(ts), max(ts) FROM (SELECT ts FROM flows_raw UNION ALL "
                          "SELECT ts FROM dns_raw UNION ALL SELECT ts FROM dlp_raw UNION ALL "
                          "SELECT ts FROM alerts_raw UNION ALL SELECT ts FROM arp_raw UNION ALL "
                          "SELECT ts FROM logins_raw UNION ALL SELECT ts FROM files_raw UNION ALL "
                          "SELECT ts FROM software_raw UNION ALL SELECT ts FROM tunnels_raw UNION ALL "
                          "SELECT ts FROM tls_raw UNION ALL SELECT ts FROM certs_raw UNION ALL "
                          "SELECT ts FROM http_raw)").fetchall()
    lo, hi = rows[0]
    return lo, (hi + timedelta(microseconds=1) if hi is not None else None)


def sql_string(value) -> str:
    """``value`` as a SQL string literal (a path with a quote in it stays one literal)."""
    return "'" + str(value).replace("'", "''") + "'"


def _window_sql(start, end, col: str = "ts") -> str:
    return f"{col} >= TIMESTAMPTZ '{start.isoformat()}' AND {col} < TIMESTAMPTZ '{end.isoformat()}'"


def export_window(ws: Workspace, start: datetime, end: datetime, out: Path) -> dict[str, Path]:
    """Write the window's enriched tables as Parquet files into ``out``; return their paths."""
    cfg = ws.config
    allow_name = domain_match("lower(query)", cfg.allow_domains)
    queries = {
        "flows": f"SELECT * FROM flows WHERE {_window_sql(start, end)} AND {DETECTED_CLASSES}",
        "history": f"SELECT * FROM flows WHERE {_window_sql(start - LOOKBACK, start)} AND {DETECTED_CLASSES}",
        "dns": f"""SELECT d.*, coalesce(c.internal, false) AS client_internal,
                          coalesce(s.internal, false) AS server_internal
                   FROM dns_raw d LEFT JOIN address_class c ON c.addr = d.orig_h
                   LEFT JOIN address_class s ON s.addr = d.resp_h
                   WHERE {_window_sql(start, end, 'd.ts')} AND d.query IS NOT NULL
                     AND NOT coalesce({allow_name}, false) AND NOT coalesce(s.allow_net, false)
                     AND NOT coalesce(s.local, false)""",
        "tls": f"""SELECT d.*, coalesce(o.internal, false) AS orig_internal,
                          coalesce(r.internal, false) AS resp_internal, coalesce(o.tenant, r.tenant) AS tenant
                   FROM tls_raw d LEFT JOIN address_class o ON o.addr = d.orig_h
                   LEFT JOIN address_class r ON r.addr = d.resp_h
                   WHERE {_window_sql(start, end, 'd.ts')}
                     AND NOT coalesce({domain_match('lower(d.server_name)', cfg.allow_domains)}, false)
                     AND NOT coalesce(r.allow_net, false)""",
    }
    # the same four columns on every table of two endpoints (files: sender and receiver)
    for name, a, b in (("dlp", "orig", "resp"), ("inspected", "orig", "resp"), ("alerts", "orig", "resp"),
                       ("logins", "orig", "resp"), ("tunnels", "orig", "resp"), ("files", "tx", "rx"),
                       ("http", "orig", "resp")):
        queries[name] = f"""SELECT d.*, coalesce(o.internal, false) AS {a}_internal,
                                   coalesce(r.internal, false) AS {b}_internal,
                                   coalesce(o.tenant, r.tenant) AS tenant,
                                   coalesce(o.allow_net, false) OR coalesce(r.allow_net, false) AS allowlisted
                            FROM {name}_raw d LEFT JOIN address_class o ON o.addr = d.{a}_h
                            LEFT JOIN address_class r ON r.addr = d.{b}_h
                            WHERE {_window_sql(start, end, 'd.ts')}"""
    # HTTP requests to allowlisted names are left out, as flows to allowlisted destinations are
    queries["http"] += f" AND NOT coalesce({domain_match('lower(d.host)', cfg.allow_domains)}, false)"
    queries["software"] = f"""SELECT d.*, coalesce(o.internal, false) AS host_internal, o.tenant AS tenant
                              FROM software_raw d LEFT JOIN address_class o ON o.addr = d.host
                              WHERE {_window_sql(start, end, 'd.ts')}"""
    # Certificates belong to no connection of their own: the handshakes that sent them say whose.
    queries["certs"] = f"SELECT * FROM certs_raw WHERE {_window_sql(start - LOOKBACK, end)}"
    # ARP never crosses a router: its sender is on a local link, so no address class is needed.
    queries["arp"] = f"""SELECT d.*, coalesce(o.tenant, 'default') AS tenant
                         FROM arp_raw d LEFT JOIN address_class o ON o.addr = d.orig_h
                         WHERE {_window_sql(start, end, 'd.ts')}"""
    queries["macs"] = macs_sql(_window_sql(start - LOOKBACK, end, "ts"))
    temp = _flows_once(ws, start, end)
    if temp:
        queries["flows"] = f"SELECT * FROM {temp} WHERE ts >= TIMESTAMPTZ '{start.isoformat()}'"
        queries["history"] = f"SELECT * FROM {temp} WHERE ts < TIMESTAMPTZ '{start.isoformat()}'"
    paths = {}
    try:
        for name, sql in queries.items():
            p = out / f"{name}.parquet"
            # The store partitions its Parquet by day (data/<table>/day=.../), and a table's view
            # shows that ``day`` column only once the table has files. Left out, a table has the same
            # columns empty or not, so the detections build the same queries on both (and reuse
            # their SQL, see detections._sql); no detection reads it.
            ws.con.execute(f"COPY (SELECT COLUMNS(lambda c: c <> 'day') FROM ({sql})) TO {sql_string(p)} "
                           "(FORMAT parquet, COMPRESSION zstd)")
            paths[name] = p
    finally:
        if temp:  # also when a COPY failed (a full disk): a long-running watch keeps its connection
            ws.con.execute(f"DROP TABLE IF EXISTS {temp}")
    return paths


#: Up to this many flows in the window and its look-back, the enriched flows are computed once
#: into a temporary table (see ``_flows_once``); more are read from the view twice, as memory
#: for a copy of them is then worth more than a plan.
FLOWS_ONCE_LIMIT = 500_000


def _flows_once(ws: Workspace, start: datetime, end: datetime) -> str | None:
    """The enriched flows of the window and its look-back in a temporary table (its name), or
    None above ``FLOWS_ONCE_LIMIT`` raw flows. DuckDB plans the ``flows`` view (the enrichment:
    directions, address classes, names, tenants) in 0.1-0.2 CPU s, as long as running it on a
    small workspace; the window and the history before it are then two plans of a plain table.
    The same rows either way (detections do not depend on row order: Spark's are compared with
    DuckDB's)."""
    raw = ws.con.execute(f"SELECT count(*) FROM flows_raw WHERE {_window_sql(start - LOOKBACK, end)}").fetchall()
    if raw[0][0] > FLOWS_ONCE_LIMIT:
        return None
    import secrets

    name = f"abfluss_window_flows_{secrets.token_hex(6)}"  # two exports on one connection never meet
    ws.con.execute(f"CREATE TEMP TABLE {name} AS SELECT * FROM flows "
                   f"WHERE {_window_sql(start - LOOKBACK, end)} AND {DETECTED_CLASSES}")
    return name


def macs_sql(window: str) -> str:
    """Which link-layer (MAC) address carried which IP address: per (MAC, address) pair of the
    flows' frames (both sides, to every destination class: mDNS and DHCP show a device's
    addresses too) and of ARP senders, with first and last sight and the address's class.
    Aggregated here, so a detection reads one small row per pair, not two per flow."""
    return f"""
        WITH b AS (
            SELECT ts, coalesce(ts_end, ts) AS last, lower(orig_mac) AS mac, orig_h AS addr, 1 AS flow, 0 AS arp
            FROM flows_raw WHERE orig_mac IS NOT NULL AND orig_h IS NOT NULL AND {window}
            UNION ALL
            SELECT ts, coalesce(ts_end, ts), lower(resp_mac), resp_h, 1, 0
            FROM flows_raw WHERE resp_mac IS NOT NULL AND resp_h IS NOT NULL AND {window}
            UNION ALL
            SELECT ts, ts, lower(orig_mac), orig_h, 0, 1
            FROM arp_raw WHERE orig_mac IS NOT NULL AND orig_h IS NOT NULL AND {window})
        SELECT b.mac, b.addr, min(b.ts) AS ts, max(b.last) AS ts_end, sum(b.flow)::BIGINT AS flows,
               sum(b.arp)::BIGINT AS arp_frames, coalesce(bool_or(c.internal), false) AS internal,
               coalesce(bool_or(c.local), false) AS local, coalesce(max(c.tenant), 'default') AS tenant
        FROM b LEFT JOIN address_class c ON c.addr = b.addr
        GROUP BY b.mac, b.addr"""


def sql_kept(ws: Workspace):
    """Keep the detections' compiled SQL in the workspace (``cache/sql``, see detections._sql)."""
    from .detections._sql import kept_in

    return kept_in(ws.root / "cache" / "sql")


def duckdb_backend(**kw):
    """An Ibis DuckDB connection. ``ibis.duckdb`` finds its backend through the installed packages'
    entry points, which reads every package's metadata (0.2-0.4 s in this environment); the
    class is imported directly instead (it has no options to register)."""
    from ._ibis import lazy_compilers

    lazy_compilers()
    from ibis.backends.duckdb import Backend

    return Backend().connect(**kw)


@contextmanager
def telemetry_from_parquet(paths: dict[str, Path], start, end, backend: str = "duckdb",
                           extra: dict | None = None, resident: Resident | None = None) -> Iterator[_det.Telemetry]:
    """Ibis tables over exported Parquet files on the chosen engine (with ``resident``, on the
    connection it keeps, the detections' expressions kept too)."""
    import ibis
    import pyarrow.parquet as pq

    if backend != "duckdb":
        resident = None  # it keeps a DuckDB connection
    # the footers: no data read
    counts = resident.counts(paths) if resident else {k: pq.read_metadata(p).num_rows for k, p in paths.items()}

    if resident:
        tables = resident.telemetry_tables(paths)
    elif backend == "duckdb":
        con = duckdb_backend(threads=2)
        tables = parquet_tables(con, paths)
    elif backend == "pyspark":
        from .spark import connect as spark_connect
        con = spark_connect()
        tables = {k: con.read_parquet(str(p), table_name=f"abfluss_{k}") for k, p in paths.items()}
    else:
        raise AbflussError(f"unknown engine {backend!r} (duckdb or pyspark)")
    tel = _det.Telemetry(flows=tables["flows"], history=tables["history"], dns=tables["dns"],
                         http=tables["http"], tls=tables["tls"], dlp=tables["dlp"],
                         inspected=tables["inspected"], alerts=tables.get("alerts"), arp=tables.get("arp"),
                         logins=tables.get("logins"), files=tables.get("files"),
                         software=tables.get("software"), tunnels=tables.get("tunnels"),
                         certs=tables.get("certs"), macs=tables.get("macs"), start=start, end=end,
                         backend=backend, extra=extra or {}, rows=counts)
    try:
        with resident.memo.active() if resident else nullcontext():
            yield tel
    finally:
        if resident:
            resident.release(tel)
        elif backend == "duckdb":
            con.disconnect()


def parquet_tables(con, paths: dict[str, Path]) -> dict:
    """``{name: con.read_parquet(path, table_name=name)}`` for an Ibis DuckDB connection ``con``:
    the same views and the same tables (tests/test_analysis.py compares them), with the columns
    of all views described in one query and each distinct column type parsed once, not one
    ``DESCRIBE`` and a type parse per column and table (0.05-0.1 CPU s of every analysis)."""
    import ibis.expr.operations as ops
    import ibis.expr.schema as sch

    if not paths:
        return {}
    for name, p in paths.items():
        con.con.execute(f'CREATE OR REPLACE TEMPORARY VIEW "{name}" AS SELECT * FROM '
                        f"read_parquet([{sql_string(p)}])")
    described = " UNION ALL ".join(f"SELECT {i} AS t, column_name, column_type, \"null\" FROM "
                                   f'(DESCRIBE "{name}")' for i, name in enumerate(paths))
    columns: dict[int, list] = {i: [] for i in range(len(paths))}
    for t, column, typ, null in con.con.execute(described).fetchall():  # in each view's column order
        columns[t].append((column, typ, null))
    parsed: dict[tuple[str, bool], object] = {}

    def dtype(typ: str, nullable: bool):
        if (typ, nullable) not in parsed:
            parsed[typ, nullable] = con.compiler.type_mapper.from_string(typ, nullable=nullable)
        return parsed[typ, nullable]

    return {name: ops.DatabaseTable(name, schema=sch.Schema({c: dtype(typ, null == "YES")
                                                            for c, typ, null in columns[i]}),
                                    source=con, namespace=ops.Namespace(catalog=None, database=None)).to_expr()
            for i, name in enumerate(paths)}


def warm(ws: Workspace | None = None, resident: Resident | None = None) -> None:
    """Import what a detection run needs (Ibis, its DuckDB backend, every detection): a
    long-running process (``watch``) pays for it once at start, not at its first alert.

    With ``ws``, also run every enabled detection once over an empty window of it (the tables
    with their columns, no rows): their queries are compiled to SQL now and kept (see
    ``detections._sql``), so the first real run only executes them. A configuration error
    (a bad indicator file) is raised here, at start, as the first run would raise it.
    """
    duckdb_backend().disconnect()
    _det.all_modules()
    if ws is None:
        return
    never = datetime(1970, 1, 1, tzinfo=timezone.utc)  # no row, not even in the look-back before it
    check_config(ws.config)
    with scratch_dir(ws.root, ".analysis-") as tmp:
        paths = export_window(ws, never, never, tmp)
        with telemetry_from_parquet(paths, never, never, resident=resident) as tel, sql_kept(ws):
            tel.rows = {}  # row counts unknown: no detection is skipped, every one builds its queries
            run_detections(tel, ws.config)


def check_config(cfg) -> None:
    """Every [detections.<id>] table names a known detection and known, well-typed settings."""
    for det_id, table in cfg.detections.items():
        overrides = dict(table)
        if not isinstance(overrides.pop("enabled", True), bool):
            raise AbflussError(f"{cfg.source}: detections.{det_id}.enabled must be true or false")
        _det.settings_for(det_id, overrides)


def run_detections(tel: _det.Telemetry, cfg, only: tuple[str, ...] = (), cpu: dict[str, float] | None = None
                   ) -> tuple[list[Finding], dict[str, float], dict[str, str]]:
    """Every enabled detection over ``tel``: (findings, seconds per detection, errors); with
    ``cpu``, the CPU seconds per detection go into it.

    A detection that raises is isolated: its error becomes one line in ``errors`` and the
    others run and keep their findings (a bug in one check must not hide the rest). A
    configuration error (``AbflussError``, e.g. a bad indicator file) still stops the run.
    """
    import time

    found: list[Finding] = []
    seconds, errors = {}, {}
    tel.extra.setdefault("resolvers", tuple(cfg.resolvers) if cfg else ())  # [networks] resolvers
    for det_id in _det.MODULES:
        overrides = dict(cfg.detections.get(det_id, {})) if cfg else {}
        if overrides.pop("enabled", True) is False or (only and det_id not in only):
            continue
        mod = _det.module(det_id)
        settings = _det.settings_for(det_id, overrides)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            if hasattr(mod, "prepare"):  # I/O a detection needs (indicator files) stays outside detect()
                tel.extra[det_id] = mod.prepare(settings)
            # on no rows a detection finds nothing: its queries need not run (a window without
            # TLS or HTTP skips those checks; a bad indicator file above is still reported)
            mine = [] if tel.empty(mod.META.inputs) else list(mod.detect(tel, settings))
        except AbflussError:  # a configuration problem (bad indicator file): the user must fix it
            raise
        except Exception as e:  # noqa: BLE001 - any failure of one check is reported, never fatal
            errors[det_id] = error_line(e)
            mine = []
        for f in mine:
            f.attack = f.attack or list(mod.META.attack)
            f.channel = f.channel or mod.META.channel
            found.append(f)
        seconds[det_id] = round(time.perf_counter() - t0, 3)
        if cpu is not None:
            cpu[det_id] = round(time.process_time() - c0, 3)
    found.sort(key=lambda f: (-f.score, f.detection, f.id))
    return found, seconds, errors


def error_line(e: BaseException, limit: int = 300) -> str:
    """One line for an unexpected error: its type and the first line of its message."""
    text = " ".join(str(e).split("\n", 1)[0].split())
    line = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def analyze(ws: Workspace, start: datetime | None = None, end: datetime | None = None,
            only: tuple[str, ...] = (), backend: str = "duckdb", store: bool = True,
            sinks: tuple[str, ...] = (), resident: Resident | None = None) -> AnalysisResult:
    """Run every enabled detection over [start, end) (default: all data) and store the findings;
    new or raised ones are queued for the ``sinks`` (specs; see ``outputs.delivery``). A
    long-running process passes its ``resident`` (DuckDB engine only)."""
    for d in only:
        _det.module(d)
    check_config(ws.config)
    lo, hi = data_span(ws)
    start = start or lo
    end = end or hi
    if start is None or end is None:
        return AnalysisResult(None, None, [])
    start, end = _utc(start), _utc(end)
    # a private scratch folder; one left by a killed analyze is removed here (see fsutil). A Spark
    # cluster's executors read it, so ABFLUSS_SPARK_SCRATCH may put it on storage they all mount.
    parent = ws.root
    if backend == "pyspark" and os.environ.get("ABFLUSS_SPARK_SCRATCH"):
        parent = Path(os.environ["ABFLUSS_SPARK_SCRATCH"])
        parent.mkdir(parents=True, exist_ok=True)
    if backend != "duckdb":
        resident = None
    with (nullcontext(None) if resident else scratch_dir(parent, ".analysis-")) as tmp:
        paths = resident.export(ws, start, end) if resident else export_window(ws, start, end, tmp)
        with telemetry_from_parquet(paths, start, end, backend, resident=resident) as tel, sql_kept(ws):
            cpu: dict[str, float] = {}
            findings, seconds, errors = run_detections(tel, ws.config, only, cpu)
            skipped = [d for d in seconds if tel.empty(_det.module(d).META.inputs)]
            flows = tel.rows["flows"]
    result = AnalysisResult(start, end, findings, flows=flows, seconds=seconds, errors=errors, skipped=skipped,
                            cpu_seconds=cpu)
    if store:
        result.new = save(ws, findings, sinks, window=(start, end), engine=backend, only=only)
    return result


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
