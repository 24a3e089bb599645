"""The same detections on DuckDB and on Apache Spark (Ibis's PySpark backend) give identical
findings on real captures: what lets a site move to a cluster without changing results."""

from __future__ import annotations

import pytest

from conftest import EXAMPLES
from detkit import analyze_capture, canonical

CASES = {
    "beacon": ("slips/test-cc/test-cc-capture-1.pcap", '[networks]\ninternal = ["147.32.80.0/24"]\n'),
    "dns-tunnel": ("dns-tunnel/netrack-dns2tcp/dns2tcp-2018-03-23.pcap", None),
    "open-conns": ("rita/open_conns/open", "[detections.long_connection]\nmin_total_seconds = 1800\n"),
    "port-scans": ("slips/port-scans", None),
    "demo": (str(EXAMPLES / "demo.pcap"), None),
    # escaped base128 names and the flow-level DNS check
    "iodine": (str(EXAMPLES / "tunnels" / "iodine-null-direct.pcap"), '[networks]\nresolvers = ["10.10.0.20/32"]\n'),
    # Zeek notices (ids_alert) and non-HTTP on port 80 (protocol_mismatch)
    "zeek-mixed": ("slips/test9-mixed-zeek", None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_duckdb_and_spark_agree(case, tmp_path_factory, spark_session):
    rel, cfg = CASES[case]
    tmp = tmp_path_factory.mktemp(f"spark-{case}")
    duck = canonical(analyze_capture(rel, tmp, cfg))
    spark = canonical(analyze_capture(rel, tmp, cfg, backend="pyspark"))
    assert duck, f"{case}: no findings at all, the comparison would prove nothing"
    assert spark == duck


def test_spark_master_needs_the_spark_engine(tmp_path):
    from conftest import run_cli

    p = run_cli("analyze", "--spark-master", "spark://127.0.0.1:7077", workspace=tmp_path / "ws")
    assert (p.returncode, p.stderr) == (2, "abfluss: --spark-master needs --engine pyspark\n")


def test_shared_parts_of_a_query_are_computed_once(spark_session):
    """A CTE that a query references twice or more is computed once and read back (Spark would
    inline and recompute it at every reference); one referenced once stays inline; rows equal."""
    from ibis.backends.sql.compilers.pyspark import compiler

    from abfluss.spark import materialize_shared_ctes

    query = ("WITH a AS (SELECT id AS x, id % 3 AS g FROM range(10)), b AS (SELECT g, sum(x) AS s FROM a GROUP BY g), "
             "c AS (SELECT g FROM a WHERE x > 4) "
             "SELECT b.g, b.s, b2.s AS s2, (SELECT count(*) FROM c) AS n FROM b JOIN b AS b2 ON b.g = b2.g ORDER BY b.g")
    kept = []
    rewritten = materialize_shared_ctes(spark_session, query, compiler.dialect, kept)
    try:
        assert len(kept) == 2  # a (in b and c) and b (twice in the query), not c
        assert rewritten.count("abfluss_shared_") == 2
        assert [tuple(r) for r in spark_session.sql(rewritten).collect()] == \
               [tuple(r) for r in spark_session.sql(query).collect()] == [(0, 18, 18, 5), (1, 12, 12, 5), (2, 15, 15, 5)]
    finally:
        for df, view in kept:
            df.unpersist()
            spark_session.catalog.dropTempView(view)
