"""Issue 15 (answers in a second): the detections' SQL is compiled once per expression and kept
(``detections/_sql.py``); what DuckDB returns through the kept SQL is exactly what Ibis returns,
and an analysis gives the same findings with the cache off, cold and warm."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import ibis
import pyarrow as pa
import pytest

import abfluss
from abfluss import analysis
from abfluss.detections import _sql

from conftest import EXAMPLES, ROOT
from detkit import canonical, dns, flow, telemetry

UTC = dt.timezone.utc


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "sql"
    monkeypatch.setenv("ABFLUSS_SQL_CACHE", str(d))
    monkeypatch.setattr(_sql, "_memory", {})
    return d


def _entries(d: Path) -> list[Path]:
    return sorted(d.rglob("*.sql"))


FLOWS = [flow(i * 30, orig_h=f"10.0.0.{i % 3 + 1}", resp_h=f"198.51.100.{i % 4 + 1}", orig_p=40000 + i,
              orig_bytes=1000 * i, resp_bytes=None if i == 2 else 300 + i) for i in range(12)]
DNS = [dns(i * 10, orig_h="10.0.0.1", query=f"q{i}.example.org", answers=[f"198.51.100.{i % 4 + 1}"])
       for i in range(5)]


def _queries(tel):
    """Expressions of the kinds the detections run: aggregates with times, joins, windows,
    nulls, lists, and a semi-join with an in-memory table (its rows change run by run)."""
    f = tel.flows
    per = f.group_by("orig_h").aggregate(n=ibis._.count(), out=f.bytes_out.sum(), first=f.ts.min(),
                                         last=f.ts_end.max())
    w = ibis.window(group_by=f.orig_h, order_by=[ibis.desc(f.bytes_out), f.ts, f.uid])
    ranked = f.mutate(rn=ibis.row_number().over(w)).filter(lambda t: t.rn < 2).select("orig_h", "uid", "rn", "ts")
    names = tel.dns.select("orig_h", "query", "answers", "ts").order_by("ts")
    d = tel.dns.select(d_h=tel.dns.orig_h, query=tel.dns.query)
    joined = f.join(d, f.orig_h == d.d_h).group_by("orig_h").aggregate(q=ibis._.query.nunique())
    keys = ibis.memtable(pa.table({"orig_h": ["10.0.0.2", "10.0.0.3"]}))
    semi = f.semi_join(keys, "orig_h").select("uid", "bytes_in").order_by("uid")
    return [per.order_by("orig_h"), ranked.order_by("orig_h"), names, joined.order_by("orig_h"), semi]


def test_kept_sql_gives_the_rows_ibis_gives(cache):
    with telemetry(flows=FLOWS, dns=DNS) as tel:
        queries = _queries(tel)
        expected = [q.to_pyarrow() for q in queries]
        cold = [_sql.to_pyarrow(q) for q in queries]
        n = len(_entries(cache))
        assert n == len(queries)  # one entry per expression, memtable included
        _sql._memory.clear()
        warm = [_sql.to_pyarrow(q) for q in _queries(tel)]  # rebuilt expressions, SQL read from disk
        assert len(_entries(cache)) == n
        for e, c, w in zip(expected, cold, warm):
            assert c.equals(e) and w.equals(e)
            assert _sql.pylist(w) == e.to_pylist()
            assert c.num_rows > 0
        # the same query over another in-memory table's rows: the kept SQL, this run's rows
        other = tel.flows.semi_join(ibis.memtable(pa.table({"orig_h": ["10.0.0.1"]})), "orig_h").select(
            "uid", "bytes_in").order_by("uid")
        assert _sql.to_pyarrow(other).equals(other.to_pyarrow())
        assert len(_entries(cache)) == n
        assert {r["uid"] for r in _sql.pylist(_sql.to_pyarrow(other))} == {r["uid"] for r in FLOWS[::3]}


_FP = """
import sys, ibis
sys.path[:0] = [{tests!r}]
from detkit import telemetry, flow
from abfluss.detections import _sql
with telemetry(flows=[flow(0, orig_bytes=5000), flow(60, orig_bytes=9)]) as tel:
    f = tel.flows
    print(_sql.fingerprint(f.filter(f.bytes_out > 100).group_by("orig_h").aggregate(n=ibis._.count()))[0])
"""


def test_fingerprint_is_stable_and_tells_expressions_apart():
    with telemetry(flows=[flow(0, orig_bytes=5000), flow(60, orig_bytes=9)]) as tel:
        f = tel.flows

        def fp(e):
            return _sql.fingerprint(e)[0]

        base = f.filter(f.bytes_out > 100).group_by("orig_h").aggregate(n=ibis._.count())
        same = f.filter(f.bytes_out > 100).group_by("orig_h").aggregate(n=ibis._.count())
        assert fp(base) == fp(same)
        variants = [f.filter(f.bytes_out > 101).group_by("orig_h").aggregate(n=ibis._.count()),
                    f.filter(f.bytes_out > 100.0).group_by("orig_h").aggregate(n=ibis._.count()),
                    f.filter(f.bytes_in > 100).group_by("orig_h").aggregate(n=ibis._.count()),
                    f.filter(f.bytes_out > 100).group_by("resp_h").aggregate(n=ibis._.count()),
                    f.filter(f.bytes_out > 100).group_by("orig_h").aggregate(m=ibis._.count()),
                    f.filter(f.bytes_out > 100).group_by("orig_h").aggregate(n=ibis._.count()).limit(1),
                    f.filter(f.bytes_out.cast("float64") > 100).group_by("orig_h").aggregate(n=ibis._.count()),
                    tel.history.filter(tel.history.bytes_out > 100).group_by("orig_h").aggregate(
                        n=ibis._.count())]
        prints = {fp(v) for v in variants}
        assert len(prints) == len(variants) and fp(base) not in prints
        # within an analysis the digests of shared subgraphs are kept, and give the same prints
        with _sql.kept_in(Path(os.devnull)):
            assert fp(base) == fp(same) and {fp(v) for v in variants} == prints and _sql._shared
            assert {fp(v) for v in variants} == prints
        assert not _sql._shared
        # an in-memory table is numbered where it is met in each expression, reused or not
        m = _sql.memtable(pa.table({"orig_h": ["10.0.0.1"]}))
        joined = f.join(m, "orig_h")
        with _sql.kept_in(Path(os.devnull)):
            one, names_one = _sql.fingerprint(joined)
            two, names_two = _sql.fingerprint(joined.filter(joined.bytes_out > 1))
            assert names_one == names_two == [m.op().name] and one != two
            assert _sql.fingerprint(joined) == (one, names_one)
        # another process (another string hash seed) computes the same digest
        env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=str(ROOT / "src"))
        out = subprocess.run([sys.executable, "-c", _FP.format(tests=str(ROOT / "tests"))], env=env,
                             capture_output=True, text=True, check=True).stdout.strip()
        assert out == fp(base)


def test_rows_convert_like_arrow():
    """``pylist`` turns aware timestamps into datetimes itself (Arrow would import pandas to do
    it); every value equals Arrow's own ``to_pylist``, key order included."""
    ts = [dt.datetime(2024, 3, 31, 0, 59, 59, 999999, tzinfo=UTC), None, dt.datetime(1969, 12, 31, 23, 0, tzinfo=UTC),
          dt.datetime(2024, 10, 27, 1, 30, tzinfo=UTC)]
    cols = {"z": pa.array([3, None, 1, 2])}
    for i, (unit, tz) in enumerate([("us", "UTC"), ("ms", "Europe/Berlin"), ("s", "+05:30"), ("us", "America/New_York"),
                                    ("ns", "UTC")]):
        vals = [None if t is None else t.replace(microsecond=0) if unit == "s" else
                t.replace(microsecond=t.microsecond // 1000 * 1000) if unit == "ms" else t for t in ts]
        cols[f"t{i}"] = pa.array(vals, pa.timestamp(unit, tz=tz))
    cols["naive"] = pa.array([dt.datetime(2024, 1, 1), None, None, dt.datetime(1970, 1, 1)], pa.timestamp("us"))
    cols["l"] = pa.array([["a"], [], None, ["b", None]])
    table = pa.table(cols)
    got, want = _sql.pylist(table), table.to_pylist()
    assert got == want
    assert [list(r) for r in got] == [list(r) for r in want]
    assert [[type(v) for v in r.values()] for r in got] == [[type(v) for v in r.values()] for r in want]
    assert [[getattr(v, "tzinfo", None) for v in r.values()] for r in got] == \
           [[getattr(v, "tzinfo", None) for v in r.values()] for r in want]
    assert _sql.pylist(pa.table({})) == []


@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("sqlcache") / "ws"
    with abfluss.open_workspace(root, write=True) as w:
        for p in ("demo.pcap", "lab-dns-tunnel.pcap"):
            res = abfluss.ingest_paths(w, [EXAMPLES / p])
            assert all(r.status == "stored" for r in res), res
        abfluss.refresh(w)
    return root


def _analyze(root: Path, only: tuple[str, ...] = ()):
    with abfluss.open_workspace(root, write=True) as w:
        return analysis.analyze(w, only=only, store=False)


def test_analysis_is_the_same_with_the_cache_off_cold_and_warm(demo_ws, cache, monkeypatch):
    monkeypatch.setenv("ABFLUSS_SQL_CACHE", "off")
    off = _analyze(demo_ws)
    assert not _entries(cache)
    monkeypatch.setenv("ABFLUSS_SQL_CACHE", str(cache))
    cold = _analyze(demo_ws)
    kept = _entries(cache)
    assert len(kept) > 20
    assert {f.detection for f in off.findings} >= {"upload_heavy", "rare_destination", "dns_tunnel"}
    assert canonical(off.findings) == canonical(cold.findings)
    assert json.dumps(off.errors) == json.dumps(cold.errors) == "{}"
    _sql._memory.clear()  # as in a new process: the SQL comes from the cache directory
    some = ("upload_heavy", "rare_destination", "dns_tunnel")
    warm = _analyze(demo_ws, some)
    assert _entries(cache) == kept
    assert canonical(warm.findings) == canonical([f for f in off.findings if f.detection in some])
    # a detection whose tables are all empty in the window is not run (demo: no software inventory)
    assert "software_change" in cold.skipped and "upload_heavy" not in cold.skipped
    # by default the SQL is kept in the workspace: it may hold values taken from the data
    monkeypatch.delenv("ABFLUSS_SQL_CACHE")
    _sql._memory.clear()
    _analyze(demo_ws, ("upload_heavy",))
    assert _entries(demo_ws / "cache" / "sql")


def test_the_window_s_tables_are_those_ibis_reads(demo_ws):
    """``analysis.parquet_tables`` describes the exported window's views in one query; each table
    is the operation ``read_parquet`` gives (name, column types and nullability, connection), so
    queries and their cached SQL are the same; the views are read the same way."""
    from abfluss.fsutil import scratch_dir

    with abfluss.open_workspace(demo_ws, write=True) as w:
        lo, hi = analysis.data_span(w)
        with scratch_dir(w.root, ".analysis-") as tmp:
            paths = analysis.export_window(w, lo, hi, tmp)
            con = analysis.duckdb_backend()
            try:
                ours = analysis.parquet_tables(con, paths)
                views = con.con.execute("SELECT view_name, sql FROM duckdb_views() ORDER BY 1").fetchall()
                theirs = {k: con.read_parquet(str(p), table_name=k) for k, p in paths.items()}
                assert views == con.con.execute("SELECT view_name, sql FROM duckdb_views() ORDER BY 1").fetchall()
                assert len(ours) == len(paths) > 10 and all(ours[k].op() == theirs[k].op() for k in paths)
                assert ours["flows"].count().execute() == theirs["flows"].count().execute() > 0
            finally:
                con.disconnect()


def test_the_window_exports_the_same_rows_through_the_temporary_table(demo_ws, monkeypatch):
    """A small window's enriched flows are computed once into a temporary table, a large one's
    read from the view for the window and the look-back (``analysis.FLOWS_ONCE_LIMIT``): the same
    files' rows and the same findings; no temporary table is left on the connection."""
    import duckdb
    from abfluss.fsutil import scratch_dir

    def export(limit):
        monkeypatch.setattr(analysis, "FLOWS_ONCE_LIMIT", limit)
        with abfluss.open_workspace(demo_ws, write=True) as w:
            lo, hi = analysis.data_span(w)
            with scratch_dir(w.root, ".analysis-") as tmp:
                paths = analysis.export_window(w, lo + (hi - lo) / 2, hi, tmp)  # history not empty
                rows = {k: sorted(map(repr, duckdb.sql(f"SELECT * FROM '{p}'").fetchall())) for k, p in paths.items()}
            assert w.con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchall() == [(0,)]
            found = analysis.analyze(w, store=False).findings
        return rows, canonical(found)

    once, twice = export(500_000), export(-1)
    assert once[0]["flows"] and once[0]["history"]
    assert once == twice


def test_an_expression_of_memtables_alone_still_runs(cache):
    """No table of a connection in it: Ibis runs it on its default backend, as before the cache."""
    t = ibis.memtable(pa.table({"a": [2, 1, 2]}))
    e = t.group_by("a").aggregate(n=ibis._.count()).order_by("a")
    assert _sql.pylist(_sql.to_pyarrow(e)) == [{"a": 1, "n": 1}, {"a": 2, "n": 2}]


def test_in_memory_tables_from_python_values_are_arrow_s_own():
    """``arrow_table`` and ``memtable`` give the table and the operation that ``pa.Table.from_pydict``
    and ``ibis.memtable`` give (nulls, big integers, aware and naive times, no rows)."""
    schema = pa.schema([("h", pa.string()), ("b", pa.int64()), ("ts", pa.timestamp("us", tz="UTC")),
                        ("ok", pa.bool_()), ("x", pa.float64())])
    cases = [{"h": ["10.0.0.1", None, "é"], "b": [1, 2**40, None], "ok": [True, None, False], "x": [1, None, 2.5],
              "ts": [dt.datetime(2026, 1, 1, tzinfo=UTC), None, dt.datetime(2026, 1, 1, 3, tzinfo=dt.timezone(
                  dt.timedelta(hours=2)))]},
             {k: [] for k in schema.names}, {k: [None] for k in schema.names}]
    for cols in cases:
        got, want = _sql.arrow_table(cols, schema), pa.Table.from_pydict(cols, schema=schema)
        assert got.equals(want)
        ours, ibis_s = _sql.memtable(got).op(), ibis.memtable(want).op()
        assert (type(ours), ours.schema, ours.data.to_pyarrow(ours.schema).equals(want)) == \
               (type(ibis_s), ibis_s.schema, True)


def test_an_analysis_loads_no_pandas_and_no_other_engine(demo_ws, tmp_path):
    """Detections build in-memory tables from fetched rows; neither that nor reading results
    imports pandas (0.3 CPU s of every ``analyze``). Compiling on DuckDB (an empty SQL cache)
    loads DuckDB's SQL compiler and no other engine's (BigQuery's, Trino's …: 0.3 CPU s, see
    abfluss._ibis), and the DNS detections do not load the packet readers (dpkt)."""
    probe = ("import sys, abfluss\nfrom abfluss import analysis\n"
             f"with abfluss.open_workspace({str(demo_ws)!r}, write=True) as w:\n"
             "    r = analysis.analyze(w, store=False)\n"
             "other = sorted(m for m in sys.modules if m.startswith('ibis.backends.sql.compilers.') "
             "and m.rsplit('.', 1)[1] not in ('duckdb', 'base', '_compat'))\n"
             "print(len(r.findings), sorted(r.errors), 'pandas' in sys.modules, 'dpkt' in sys.modules, "
             "'ibis.backends.sql.compilers.duckdb' in sys.modules, other)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "ABFLUSS_SQL_CACHE": str(tmp_path)})
    n, rest = proc.stdout.split(" ", 1)
    assert int(n) > 0 and rest.strip() == "[] False False True []", proc.stdout + proc.stderr


def test_compilers_load_when_first_named_and_compile_as_before():
    """The package of Ibis's compilers, put in place lazily (``abfluss._ibis``), gives every
    compiler by its class or module name, and DuckDB's SQL is the SQL of the eagerly imported
    package (a fresh process that imports Ibis's package first, so the lazy one never applies)."""
    from abfluss._ibis import lazy_compilers

    lazy_compilers()
    import ibis.backends.sql.compilers as sc

    assert sc.DuckDBCompiler is sc.duckdb.DuckDBCompiler
    assert sc.SQLiteCompiler.__module__ == "ibis.backends.sql.compilers.sqlite"
    assert "PySparkCompiler" in sc.__all__
    with pytest.raises(AttributeError):
        sc.NoSuchCompiler  # noqa: B018
    expr = ("import ibis\n"
            "t = ibis.table({'a': 'int64', 'b': 'string', 'ts': 'timestamp'}, name='flows')\n"
            "e = t.filter(t.b.isin(['x', 'y'])).group_by('b').aggregate(n=t.a.sum(), "
            "last=t.ts.max()).order_by(ibis.desc('n'))\n"
            "print(ibis.to_sql(e, dialect='duckdb'))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    shim = "import sys\nfrom abfluss._ibis import lazy_compilers\nlazy_compilers()\n"
    loaded = "print(sorted(m for m in sys.modules if m.startswith('ibis.backends.sql.compilers.')))"
    lazy = subprocess.run([sys.executable, "-c", shim + expr + loaded],
                          capture_output=True, text=True, check=True, cwd=ROOT, env=env).stdout
    eager = subprocess.run([sys.executable, "-c", "import ibis.backends.sql.compilers\n" + shim + expr],
                           capture_output=True, text=True, check=True, cwd=ROOT, env=env).stdout
    sql, loaded = lazy.rsplit("\n", 2)[0], lazy.rsplit("\n", 2)[1]
    assert sql == eager.rstrip("\n") and "GROUP BY" in sql
    assert "bigquery" not in loaded and "compilers.duckdb" in loaded


def test_a_shared_table_is_computed_once_and_reads_like_its_expression(cache):
    """``Telemetry.shared``: a pre-aggregate several detections start from is one temporary table
    per telemetry with the expression's rows and types (a sum of BIGINT, HUGEINT in DuckDB, stays
    int64), and a query over it keeps its fingerprint from run to run (the name is fixed)."""
    prints = []
    for _ in range(2):
        with telemetry(flows=FLOWS, dns=DNS) as tel:
            f = tel.flows
            built = []

            def build():
                built.append(1)
                return f.group_by("orig_h").aggregate(out=f.bytes_out.sum(), n=ibis._.count())

            t = tel.shared("per_host", build)
            assert tel.shared("per_host", build) is t and len(built) == 1
            assert t.op().name == "abfluss_shared_per_host"  # a table now, not the expression
            expr = build()
            assert t.schema() == expr.schema()
            q = t.filter(t.out > 20000).order_by("orig_h")
            want = expr.filter(expr.out > 20000).order_by("orig_h").to_pyarrow()
            assert _sql.to_pyarrow(q).equals(want) and want.num_rows == 2
            assert _sql.pylist(_sql.to_pyarrow(t.order_by("orig_h")))[0] == {"orig_h": "10.0.0.1", "out": 18000, "n": 4}
            prints.append(_sql.fingerprint(q)[0])
    assert prints[0] == prints[1]
