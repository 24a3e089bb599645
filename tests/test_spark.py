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
