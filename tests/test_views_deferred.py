"""The enrichment views are bound when a query uses them, not when a workspace creates them
(``store.views.deferring``: most of opening a new workspace was DuckDB binding the nested views), and
a writer's lookup of the empty tables binds none of them (``store.views._columns``)."""

from __future__ import annotations

import duckdb

import abfluss
from abfluss import schema
from abfluss.ingest import ingest_paths
from abfluss.store import views
from conftest import EXAMPLES, data


def unbound(ws) -> set[str]:
    return {r[0] for r in ws.con.execute(
        "SELECT view_name FROM duckdb_views() WHERE NOT internal AND NOT is_bound").fetchall()}


def test_views_are_bound_when_used(tmp_path):
    with abfluss.open_workspace(tmp_path / "ws", write=True) as ws:
        assert views._DEFER[duckdb.__version__]  # this DuckDB takes WITH (DEFER_BINDING)
        before = unbound(ws)
        assert {"flows", "flows_directed", "proxy_targets", "address_class"} <= before
        empty = [f"_empty_{t}" for t in schema.TABLES]
        assert views._columns(ws.con, empty) == {t: schema.TABLES[t[len("_empty_"):]].names for t in empty}
        assert unbound(ws) == before
        ingest_paths(ws, [EXAMPLES / "demo.pcap"], jobs=1)
        # the views over the stored files too: refreshed after each commit without reading every
        # file's footer (binding them was most of a commit of many small logs). Not flows_raw
        # here: the capture's interim records made flows_dedup its de-duplicating form, bound
        assert "dns_raw" in unbound(ws) and ws.con.execute("SELECT count(*) FROM dns_raw").fetchall()[0][0] > 0
        assert ws.con.execute("SELECT count(*) FROM flows").fetchall()[0][0] > 0


def test_flows_dedup_follows_commits_reading_only_the_new_flow_files(tmp_path, monkeypatch):
    """After a commit, whether flows_dedup must become its de-duplicating form is decided from
    the new flow files alone (and not looked up at all once interim records are stored): it
    was a pass over every stored flow file per commit."""
    from abfluss.store import workspace

    executed: list[str] = []

    class Recording:
        def __init__(self, con):
            self.con = con

        def execute(self, sql, *args):
            executed.append(sql)
            return self.con.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self.con, name)

    real = workspace.connect
    monkeypatch.setattr(workspace, "connect", lambda *a, **k: Recording(real(*a, **k)))

    def dedup_form(ws) -> bool:
        sql = ws.con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'flows_dedup' AND NOT temporary")
        return "row_number" in sql.fetchall()[0][0]

    def over_stored_flows() -> list[str]:
        return [s for s in executed if "flows_raw WHERE open" in s]

    with abfluss.open_workspace(tmp_path / "ws", write=True) as ws:
        ingest_paths(ws, [data("slips/port-scans/vertical-portscan.conn.log")], jobs=1)
        assert not dedup_form(ws) and ws._open_flows is False
        executed.clear()
        ingest_paths(ws, [data("slips/port-scans/horizontal-portscan.conn.log")], jobs=1)
        assert not dedup_form(ws) and not over_stored_flows()
        ingest_paths(ws, [data("rita/open_sni/open_conn.17_32_32-18_00_00.log.gz")], jobs=1)  # interim records
        assert dedup_form(ws) and ws._open_flows is True and not over_stored_flows()
        executed.clear()
        ingest_paths(ws, [data("rita/proxy/conn.log")], jobs=1)
        assert dedup_form(ws) and not [s for s in executed if "WHERE open" in s]
    with abfluss.open_workspace(tmp_path / "ws") as ws:  # what a reader finds
        assert dedup_form(ws)
