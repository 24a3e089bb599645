"""Issue 15 (answers in a second): a long-running process keeps what its analyses are built from
(``analysis_resident.Resident``, ``detections/_memo.py``) and still runs every query: its
findings are exactly those of a fresh analysis, on real captures and after new data arrived;
the kept expressions are exact (``1``, ``1.0`` and ``True`` apart, a new reference for each
``view``), and an analysis leaves nothing behind in the kept connection."""

from __future__ import annotations

import json

import ibis
import pytest

import abfluss
from abfluss import analysis
from abfluss.analysis_resident import Resident
from abfluss.detections import _memo

from conftest import EXAMPLES

CAPTURES = ("demo.pcap", "lab-beacon.pcap", "lab-dns-tunnel.pcap", "lab-big-upload.pcap", "lab-dlp.pcap")
LATER = "lab-https-upload.pcap"


def _found(res) -> str:
    return json.dumps([f.to_dict() for f in res.findings], default=str, sort_keys=True)


def _leftovers(r: Resident) -> list[str]:
    raw = r.con.con
    tables = [t for (t,) in raw.execute("SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()]
    return tables + [op.name for op in r.con._memtables]


def test_resident_analyses_equal_fresh_ones(tmp_path, monkeypatch):
    ws = abfluss.open_workspace(tmp_path / "ws", write=True)
    try:
        abfluss.ingest_paths(ws, [EXAMPLES / c for c in CAPTURES])
        abfluss.refresh(ws)
        r = Resident()
        analysis.warm(ws, r)
        exports = []
        real_export = analysis.export_window
        monkeypatch.setattr(analysis, "export_window", lambda *a: exports.append(a) or real_export(*a))
        fresh = _found(analysis.analyze(ws, store=False))
        assert len(json.loads(fresh)) >= 5
        n = len(exports)
        first = analysis.analyze(ws, store=False, resident=r)
        assert _found(first) == fresh
        assert len(exports) == n + 1 and not _leftovers(r)
        hits, misses = r.memo.hits, r.memo.misses
        assert _found(analysis.analyze(ws, store=False, resident=r)) == fresh
        assert len(exports) == n + 1, "the unchanged window is exported once"
        assert r.memo.hits - hits > 10 * (r.memo.misses - misses), "what was built is built again"
        assert not _leftovers(r)
        # another window, then new data: exported afresh, the same findings as a fresh run
        lo, hi = analysis.data_span(ws)
        part = (lo, lo + (hi - lo) / 2)
        assert _found(analysis.analyze(ws, *part, store=False, resident=r)) == _found(
            analysis.analyze(ws, *part, store=False))
        abfluss.ingest_paths(ws, [EXAMPLES / LATER])
        abfluss.refresh(ws)
        later = analysis.analyze(ws, store=False, resident=r)
        assert _found(later) == _found(analysis.analyze(ws, store=False)) != fresh
        assert not _leftovers(r)
        r.close()
        assert not list(ws.root.glob(".analysis-*")), "the kept export goes with the resident"
    finally:
        ws.close()


@pytest.fixture
def table():
    con = analysis.duckdb_backend()
    con.con.execute("CREATE TABLE t AS SELECT range AS a, range::VARCHAR AS b FROM range(5)")
    yield con.table("t")
    con.disconnect()


def test_memo_returns_what_it_built_for_the_same_call(table):
    memo = _memo.Memo()
    with memo.active():
        one = table.filter(ibis._.a > 1).group_by("b").aggregate(n=table.a.count())
        two = table.filter(ibis._.a > 1).group_by("b").aggregate(n=table.a.count())
        assert one is two
        assert table.filter(ibis._.a > 2) is not one
    with memo.active():  # the next analysis: what the last one used is kept
        assert table.filter(ibis._.a > 1).group_by("b").aggregate(n=table.a.count()) is one
    with memo.active():
        pass
    with memo.active():  # not used by the analysis before: gone
        assert table.filter(ibis._.a > 1).group_by("b").aggregate(n=table.a.count()) is not one
    assert table.filter(ibis._.a > 1) is not table.filter(ibis._.a > 1)  # outside: built each time


def test_memo_keys_are_exact(table):
    memo = _memo.Memo()
    with memo.active():
        kinds = [table.mutate(x=v).schema()["x"] for v in (1, True, 1.0, 1)]
        assert [str(k) for k in kinds] == [str(t) for t in (table.mutate(x=1).schema()["x"],
                                                            ibis.literal(True).type(),
                                                            ibis.literal(1.0).type(),
                                                            table.mutate(x=1).schema()["x"])]
        assert len({str(k) for k in kinds}) == 3
        # a function with state: its closed-over value is part of the key
        picked = [table.filter(lambda s, k=k: s.a > k).count().to_pyarrow().as_py() for k in (1, 3)]
        limit = 1
        first = table.filter(lambda s: s.a > limit)
        limit = 3
        second = table.filter(lambda s: s.a > limit)
        assert picked == [3, 1] and first is not second

        def above(k):
            def f(s, *, lo=k):  # the same code, no closure: only the keyword default differs
                return s.a > lo
            return f

        assert [table.filter(above(k)).count().to_pyarrow().as_py() for k in (1, 3)] == [3, 1]
        # each view is a reference of its own: a self-join joins two
        v1, v2 = table.view(), table.view()
        assert v1.op() != v2.op()
        joined = v1.join(v2, v1.a == v2.a + 1).count().to_pyarrow().as_py()
        assert joined == 4
