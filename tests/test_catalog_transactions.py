"""A writer's statements on the catalog in one transaction each where they belong together
(``store.catalog.transaction``): creating a catalog commits once (each commit writes the
catalog's log to disk: thirty of them were most of a first ingest's fixed cost), and the
enrichment views a writer replaces and their digest change together or not at all."""

from __future__ import annotations

import pytest

import abfluss
from abfluss import enrich
from abfluss.config import Config
from abfluss.store import engine
from abfluss.store.catalog import initialise


class _Recording:
    """A connection that notes every statement it runs."""

    def __init__(self, con):
        self.con, self.statements = con, []

    def execute(self, sql, *args):
        self.statements.append(" ".join(sql.split())[:40])
        return self.con.execute(sql, *args)


def test_a_new_catalog_is_created_in_one_commit(tmp_path):
    rec = _Recording(engine.module().connect(str(tmp_path / "catalog.duckdb")))
    initialise(rec, new=True)
    commits = [s for s in rec.statements if s.startswith(("COMMIT", "BEGIN"))]
    assert commits == ["BEGIN TRANSACTION", "COMMIT"] and rec.statements[0] == "BEGIN TRANSACTION"
    assert len(rec.statements) > 10  # the tables and views, all between the two
    assert rec.con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'flows_raw'").fetchall() == [(1,)]


def test_a_writers_views_and_their_digest_change_together(tmp_path, monkeypatch):
    with abfluss.open_workspace(tmp_path / "ws", write=True) as ws:
        kept = ws.con.execute("SELECT value FROM enrich_state WHERE key = 'views'").fetchall()
        view = ws.con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'address_class'").fetchall()
        assert kept and view

        def fail(*_a, **_k):
            raise RuntimeError("stopped halfway")

        monkeypatch.setattr(enrich, "_dedup_view", fail)
        with pytest.raises(RuntimeError, match="stopped halfway"):
            enrich.apply(ws, Config(internal=("10.99.0.0/16",)))
        assert ws.con.execute("SELECT value FROM enrich_state WHERE key = 'views'").fetchall() == kept
        assert ws.con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'address_class'").fetchall() == view
