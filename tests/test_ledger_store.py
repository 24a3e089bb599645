"""The stored hourly ledger (``abfluss.ledger_store``) answers exactly what grouping the flows
answers, on real logs and captures, after every ingest: the first, a second one that names flows
of the first (incremental), one that changes what applies to every day (proxies seen), the same
content again, and overlapping content."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone

import pytest

import abfluss
from abfluss import ledger_store
from abfluss.ingest import ingest_paths
from abfluss.ledger import LedgerQuery, ledger_with_totals
from conftest import EXAMPLES, data

RITA = "rita/proxy"


def T(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=timezone.utc)


#: Whole data, one host, windows whose edges cut hours, a window inside one hour, an empty one.
QUERIES = (LedgerQuery(), LedgerQuery(sort="hour"), LedgerQuery(limit=7, sort="bytes_in"),
           LedgerQuery(host="10.136.0.18"), LedgerQuery(T("2023-01-04T14:20"), T("2023-01-04T17:45")),
           LedgerQuery(T("2023-01-04T14:20"), T("2023-01-04T14:50")), LedgerQuery(T("2023-01-04T15:00"), T("2023-01-04T15:00")),
           LedgerQuery(destination="github.com"))


def live(ws, q, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(ledger_store, "current", lambda ws: False)
        return ledger_with_totals(ws, q)


def assert_same(ws, monkeypatch):
    assert ledger_store.current(ws)
    for q in QUERIES:
        stored, tot = ledger_with_totals(ws, q)
        want, want_tot = live(ws, q, monkeypatch)
        assert stored.to_pylist() == want.to_pylist(), q
        assert tot == want_tot, q
    dup = ws.con.execute("SELECT count(*) FROM (SELECT internal_id, external_id, external_text, hour_key "
                         "FROM ledger_hourly GROUP BY ALL HAVING count(*) > 1)").fetchall()[0][0]
    assert dup == 0


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    d = tmp_path_factory.mktemp("rita")
    for name in ("conn", "dns", "http", "ssl"):
        (d / name).mkdir()
        shutil.copy(data(f"{RITA}/{name}.log"), d / name / f"{name}.log")
    return d


def test_every_ingest_keeps_the_stored_ledger_equal_to_the_flows(tmp_path, logs, monkeypatch):
    with abfluss.open_workspace(tmp_path / "ws", write=True) as ws:
        ingest_paths(ws, [logs / "conn", logs / "dns", EXAMPLES / "demo.pcap"], jobs=1)
        assert ws.con.execute("SELECT count(*) FROM ledger_hourly").fetchall()[0][0] > 0
        assert ledger_store._proxies(ws) is None  # grouped without the proxy views (same rows)
        assert_same(ws, monkeypatch)

        # http.log makes 10.136.0.16 a proxy seen: every day's groups change (a full regrouping)
        ingest_paths(ws, [logs / "http"], jobs=1)
        assert ledger_store._proxies(ws) == "10.136.0.16"
        assert ws.con.execute("SELECT value FROM ledger_state WHERE key = 'globals'").fetchall()
        assert_same(ws, monkeypatch)

        # ssl.log names stored flows by uid: only their days are grouped again
        calls = []
        real = ledger_store.update
        monkeypatch.setattr(ledger_store, "update", lambda ws: calls.append(real(ws)) or calls[-1])
        ingest_paths(ws, [logs / "ssl"], jobs=1)
        assert calls and calls[0]["full"] is False and calls[0]["days"] >= 1
        assert_same(ws, monkeypatch)

        # the same content again: nothing stored, nothing to do
        rows = ws.con.execute("SELECT count(*), sum(flows) FROM ledger_hourly").fetchall()
        assert [r.status for r in ingest_paths(ws, [logs / "conn"], jobs=1)] == ["duplicate"]
        assert real(ws) is None
        assert ws.con.execute("SELECT count(*), sum(flows) FROM ledger_hourly").fetchall() == rows

        # overlapping content (the first rows of conn.log in a file of its own): counted again,
        # as the flows count it, and only the days it touches are grouped again
        lines = (logs / "conn" / "conn.log").read_text().splitlines()
        part = tmp_path / "part"
        part.mkdir()
        (part / "conn.log").write_text("\n".join(lines[:208]) + "\n")
        calls.clear()
        ingest_paths(ws, [part], jobs=1)
        assert calls[0]["full"] is False
        assert ws.con.execute("SELECT sum(flows) FROM ledger_hourly").fetchall()[0][0] > rows[0][1]
        assert_same(ws, monkeypatch)


def test_another_configuration_groups_the_flows(tmp_path, logs, monkeypatch):
    """A reader whose configuration decides directions differently never reads the stored rows;
    the next writer groups every day again under its configuration."""
    root = tmp_path / "ws"
    with abfluss.open_workspace(root, write=True) as ws:
        ingest_paths(ws, [logs / "conn", logs / "http"], jobs=1)
        assert ledger_store.current(ws)
    cfg = tmp_path / "other.toml"
    cfg.write_text('[networks]\ninternal = ["10.136.0.18/32"]\n')
    with abfluss.open_workspace(root, config=cfg) as ws:
        assert not ledger_store.current(ws)
        assert ledger_with_totals(ws, LedgerQuery())[1] == live(ws, LedgerQuery(), monkeypatch)[1]
    with abfluss.open_workspace(root, config=cfg, write=True) as ws:
        assert ledger_store.update(ws)["full"] is True
        assert_same(ws, monkeypatch)


def test_account_reads_stored_findings_and_stored_ledger_as_a_fresh_analysis_would(tmp_path, monkeypatch):
    """After ``analyze`` over all data, ``account`` takes the stored findings instead of analysing
    again, and its answer over that window is the fresh analysis's, to the byte."""
    from abfluss import accounting, analysis

    with abfluss.open_workspace(tmp_path / "ws", write=True) as ws:
        ingest_paths(ws, [EXAMPLES / "demo.pcap"], jobs=1)
        assert accounting.stored_findings(ws, *analysis.data_span(ws)) is None  # not analysed yet
        abfluss.api.analyze(ws)
        lo, hi = analysis.data_span(ws)
        assert accounting.stored_findings(ws, lo, hi) is not None
        fresh = accounting.account(ws, findings=analysis.analyze(ws, store=False).findings)
        monkeypatch.setattr(analysis, "analyze", lambda *a, **k: pytest.fail("analysed again"))
        stored = abfluss.api.account(ws)
        assert stored == fresh and stored["categories"]["flagged"] == 3003945
        with monkeypatch.context() as m:  # the first-contact details from the flows, as before
            m.setattr(ledger_store, "current", lambda ws: False)
            assert abfluss.api.account(ws) == stored


def test_a_reader_uses_the_writers_views_when_its_configuration_defines_the_same(tmp_path, monkeypatch):
    """A writer keeps a digest of its enrichment views; a reader whose configuration defines the
    same views uses them (no views of its own to create and bind) and answers exactly as with its
    own; under another configuration it creates its own."""
    from abfluss import enrich

    root = tmp_path / "ws"
    with abfluss.open_workspace(root, write=True) as ws:
        ingest_paths(ws, [EXAMPLES / "demo.pcap"], jobs=1)

    def own_views(ws) -> int:
        return ws.con.execute("SELECT count(*) FROM duckdb_views() WHERE temporary AND view_name = 'flows'"
                              ).fetchall()[0][0]

    queries = (LedgerQuery(), LedgerQuery(sort="hour", limit=3))
    with abfluss.open_workspace(root) as ws:
        assert own_views(ws) == 0
        kept = [ledger_with_totals(ws, q) for q in queries] + [live(ws, LedgerQuery(), monkeypatch)]
    with monkeypatch.context() as m:
        m.setattr(enrich, "_kept", lambda ws, cfg: False)
        with abfluss.open_workspace(root) as ws:
            assert own_views(ws) == 1
            own = [ledger_with_totals(ws, q) for q in queries] + [live(ws, LedgerQuery(), monkeypatch)]
    assert [(t.to_pylist(), tot) for t, tot in kept] == [(t.to_pylist(), tot) for t, tot in own]
    assert kept[0][1]["bytes_out"] > 0
    cfg = tmp_path / "other.toml"
    cfg.write_text('[networks]\ninternal = ["10.10.0.11/32"]\n')
    with abfluss.open_workspace(root, config=cfg) as ws:
        assert own_views(ws) == 1
