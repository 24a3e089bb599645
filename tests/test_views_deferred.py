"""The enrichment views are bound when a query uses them, not when a workspace creates them
(``store.views.deferring``: most of opening a new workspace was DuckDB binding the nested views), and
a writer's lookup of the empty tables binds none of them (``store.views._columns``)."""

from __future__ import annotations

import duckdb

import abfluss
from abfluss import schema
from abfluss.ingest import ingest_paths
from abfluss.store import views
from conftest import EXAMPLES


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
