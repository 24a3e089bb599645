"""The ledger and enrichment semantics, on small literal tables and on a real capture."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pytest

import abfluss
from abfluss import config as cfgmod
from abfluss import enrich
from abfluss.store import StoredInput
from conftest import data


def T(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=timezone.utc)


def store(ws, table: str, rows: list[dict], input_id: str) -> None:
    keys = dict.fromkeys(k for r in rows for k in r)
    cols = {k: [r.get(k) for r in rows] for k in keys}
    with ws.writer(input_id) as w:
        w.write(table, pa.table(cols), "test")
        w.commit(StoredInput(input_id, input_id, 0, "literal", "test", {table: len(rows)}, 0, [], None, None))


def flow(ts, orig, resp, ob, rb, **kw):
    return {"ts": T(ts), "ts_end": T(ts), "proto": "tcp", "orig_h": orig, "orig_p": 40000,
            "resp_h": resp, "resp_p": 443, "orig_bytes": ob, "resp_bytes": rb, "open": False, **kw}


def test_outflow_is_bytes_from_internal_to_external_whoever_opened(ws):
    store(ws, "flows", [
        flow("2024-01-01T10:05:00", "10.0.0.5", "203.0.113.9", 1000, 50),     # upload, opened inside
        flow("2024-01-01T10:20:00", "198.51.100.7", "10.0.0.9", 30, 7000),   # download from exposed server
        flow("2024-01-01T10:30:00", "10.0.0.5", "10.0.0.9", 99999, 99999),   # internal: not in the ledger
        flow("2024-01-01T11:10:00", "10.0.0.5", "203.0.113.9", 500, 5),      # next hour
    ], "a")
    rows = abfluss.ledger(ws, abfluss.LedgerQuery(sort="hour")).to_pylist()
    got = [(r["internal_host"], r["external_host"], r["hour"].hour, r["bytes_out"], r["bytes_in"], r["flows"])
           for r in rows]
    assert got == [("10.0.0.5", "203.0.113.9", 10, 1000, 50, 1),
                   ("10.0.0.9", "198.51.100.7", 10, 7000, 30, 1),
                   ("10.0.0.5", "203.0.113.9", 11, 500, 5, 1)]
    assert abfluss.totals(ws) == {"bytes_out": 8500, "bytes_in": 85, "flows": 3, "open_flows": 0,
                                  "internal_hosts": 2, "external_hosts": 2}


def test_filters_host_destination_window_and_sort(ws):
    store(ws, "flows", [
        flow("2024-01-01T10:05:00", "10.0.0.5", "203.0.113.9", 1000, 50, server_name="up.drop.test"),
        flow("2024-01-01T10:06:00", "10.0.0.6", "203.0.113.10", 3000, 50, server_name="cdn.example.test"),
        flow("2024-01-02T09:00:00", "10.0.0.6", "203.0.113.10", 10, 50, server_name="cdn.example.test"),
    ], "b")
    q = abfluss.LedgerQuery
    assert [r["internal_host"] for r in abfluss.ledger(ws, q()).to_pylist()] == ["10.0.0.6", "10.0.0.5", "10.0.0.6"]
    assert abfluss.ledger(ws, q(host="10.0.0.5")).num_rows == 1
    assert abfluss.ledger(ws, q(destination="example.test")).column("bytes_out").to_pylist() == [3000, 10]
    assert abfluss.ledger(ws, q(destination="203.0.113.9")).column("external_name").to_pylist() == ["up.drop.test"]
    assert abfluss.ledger(ws, q(start=T("2024-01-02T00:00:00"))).column("bytes_out").to_pylist() == [10]
    assert abfluss.ledger(ws, q(end=T("2024-01-02T00:00:00"))).num_rows == 2
    with pytest.raises(abfluss.AbflussError, match="unknown sort key"):
        abfluss.ledger(ws, q(sort="nonsense"))


def test_names_from_dns_answers_and_tls_by_uid(ws):
    store(ws, "dns", [{"ts": T("2024-01-01T10:00:00"), "orig_h": "10.0.0.5", "resp_h": "10.0.0.1",
                       "query": "Files.Drop.test", "qtype": "A", "answers": ["203.0.113.9"]}], "d")
    store(ws, "tls", [{"ts": T("2024-01-01T10:00:01"), "uid": "C2", "server_name": "api.saas.test"}], "t")
    store(ws, "flows", [flow("2024-01-01T10:00:01", "10.0.0.5", "203.0.113.9", 10, 10, uid="C1"),
                        flow("2024-01-01T10:00:01", "10.0.0.5", "198.51.100.1", 10, 10, uid="C2")], "f")
    names = {r["external_host"]: r["external_name"] for r in abfluss.ledger(ws).to_pylist()}
    assert names == {"203.0.113.9": "files.drop.test", "198.51.100.1": "api.saas.test"}


def test_open_record_replaced_by_its_closed_connection(ws):
    store(ws, "flows", [flow("2024-01-01T10:00:00", "10.0.0.5", "203.0.113.9", 100, 1, uid="C1", open=True),
                        flow("2024-01-01T10:00:00", "10.0.0.5", "203.0.113.9", 200, 1, uid="C1", open=True,
                             ts_end=T("2024-01-01T10:30:00")),
                        flow("2024-01-01T10:00:00", "10.0.0.6", "203.0.113.9", 70, 1, uid="C3", open=True)], "o")
    assert abfluss.totals(ws)["bytes_out"] == 270  # latest snapshot of C1 plus C3
    assert abfluss.totals(ws)["open_flows"] == 2
    store(ws, "flows", [flow("2024-01-01T10:00:00", "10.0.0.5", "203.0.113.9", 900, 1, uid="C1")], "c")
    assert abfluss.totals(ws)["bytes_out"] == 970
    assert abfluss.totals(ws)["open_flows"] == 1


def test_configured_networks_tenants_and_allowlists(tmp_path):
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "abfluss.toml").write_text("""
[networks]
internal = ["192.0.2.0/24"]
[tenants.kasse_nord]
networks = ["192.0.2.0/25"]
[allowlist]
domains = ["*.windowsupdate.test"]
networks = ["198.51.100.0/24"]
""")
    ws = abfluss.open_workspace(tmp_path / "ws", write=True)
    store(ws, "flows", [
        flow("2024-01-01T10:00:00", "192.0.2.5", "10.1.1.1", 5, 0),  # 10/8 is external under this config
        flow("2024-01-01T10:00:00", "192.0.2.200", "198.51.100.3", 7, 0),
        flow("2024-01-01T10:00:00", "192.0.2.5", "203.0.113.3", 9, 0, server_name="dl.windowsupdate.test"),
    ], "x")
    rows = {r["external_host"]: (r["internal_host"], r["tenant"], r["dest_class"]) for r in abfluss.ledger(ws).to_pylist()}
    assert rows == {"10.1.1.1": ("192.0.2.5", "kasse_nord", "unknown"),
                    "198.51.100.3": ("192.0.2.200", "default", "allowlisted"),
                    "203.0.113.3": ("192.0.2.5", "kasse_nord", "allowlisted")}
    assert abfluss.ledger(ws, abfluss.LedgerQuery(tenant="kasse_nord")).num_rows == 2
    ws.close()


@pytest.mark.parametrize("addr,internal", [
    ("10.1.2.3", True), ("172.31.255.255", True), ("172.32.0.1", False), ("100.64.0.1", True),
    ("192.0.2.1", False), ("198.51.100.1", False), ("203.0.113.1", False), ("8.8.8.8", False),
    ("224.0.0.251", False), ("fd00::1", True), ("fe80::1", True), ("2001:db8::1", False), ("::1", True)])
def test_default_internal_networks(ws, addr, internal):
    ws.con.execute("INSERT INTO addresses VALUES (?, ?, 1)", [addr, cfgmod.pack(addr)])
    enrich.apply(ws, ws.config)
    assert ws.con.execute("SELECT internal FROM address_class WHERE addr = ?", [addr]).fetchall()[0][0] is internal


def test_ledger_on_real_beacon_capture(ws):
    abfluss.ingest_file(ws, data("slips/test-cc/test-cc-capture-1.pcap"))
    ws.config = cfgmod.parse({"networks": {"internal": ["147.32.0.0/16"]}})
    enrich.apply(ws, ws.config)
    rows = abfluss.ledger(ws).to_pylist()
    assert [(r["internal_host"], r["external_host"], r["external_name"], r["bytes_out"], r["bytes_in"], r["flows"])
            for r in rows] == [("147.32.80.37", "141.193.213.21", "testing.com", 249895, 1158215, 296),
                               ("147.32.80.37", "141.193.213.20", "testing.com", 1682, 7808, 2)]


def test_coverage_gaps_loss_and_interim(ws):
    store(ws, "flows", [
        flow("2024-01-01T10:00:00", "10.0.0.5", "203.0.113.9", 1000, 1000, ts_end=T("2024-01-01T10:05:00")),
        flow("2024-01-01T10:04:00", "10.0.0.5", "203.0.113.9", 500, 500, missed_bytes=1000),
        # silence from 10:05 to 10:35: a 30-minute gap
        flow("2024-01-01T10:35:00", "10.0.0.6", "203.0.113.9", 0, 0, open=True, uid="C9",
             ts_end=T("2024-01-01T10:40:00")),
    ], "cov")
    [c] = abfluss.coverage(ws)
    assert (c["sensor"], c["records"], c["span_minutes"], c["gap_minutes"], c["gaps"]) == ("test", 3, 40.0, 30, 1)
    assert c["largest_gaps"] == [{"start": T("2024-01-01T10:05:00"), "end": T("2024-01-01T10:35:00"), "minutes": 30.0}]
    assert c["missed_bytes"] == 1000 and c["missed_share"] == pytest.approx(1000 / 4000)
    assert c["interim_flows"] == 1
    health = ws.con.sql("SELECT minute, records FROM sensor_health ORDER BY minute").fetchall()
    assert [(m.minute, n) for m, n in health] == [(0, 1), (4, 1), (35, 1)]


#: The gaps as defined: each record's start against the latest end of the records that started
#: before it (a window sorted over every record; ``coverage`` groups per minute first).
EVERY_RECORD_GAPS = """
    WITH r AS (SELECT sensor, ts, coalesce(ts_end, ts) AS e FROM flows_raw
               UNION ALL SELECT sensor, ts, ts FROM dns_raw UNION ALL SELECT sensor, ts, ts FROM http_raw
               UNION ALL SELECT sensor, ts, ts FROM tls_raw UNION ALL SELECT sensor, ts, ts FROM alerts_raw),
    o AS (SELECT sensor, ts, max(e) OVER (PARTITION BY sensor ORDER BY ts
              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end FROM r)
    SELECT sensor, prev_end, ts, epoch(ts - prev_end) FROM o WHERE epoch(ts - prev_end) >= 60"""


def test_coverage_gaps_equal_those_over_every_record(tmp_path):
    """rita (Zeek logs of three sensors, 505 silences): the per-minute grouping finds
    exactly the gaps of the window over every record."""
    from detkit import workspace_for

    ws = abfluss.open_workspace(workspace_for(("rita/proxy", "rita/open_conns", "rita/open_sni"), tmp_path))
    try:
        want = ws.con.execute(EVERY_RECORD_GAPS).fetchall()
        cov = abfluss.coverage(ws)
    finally:
        ws.close()
    assert len(want) == 505
    by_sensor = {}
    for s, start, end, seconds in want:
        by_sensor.setdefault(s, []).append((seconds, start, end))
    for c in cov:
        mine = sorted(by_sensor.pop(c["sensor"], []), key=lambda g: (-g[0], g[2]))
        assert (c["gaps"], c["gap_minutes"]) == (len(mine), int(sum(g[0] for g in mine) // 60))
        assert [(g["start"], g["end"]) for g in c["largest_gaps"]] == [(a, b) for _, a, b in mine[:10]]
    assert not by_sensor
