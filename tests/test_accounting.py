"""Outflow accounting: every byte out in exactly one class, summing to the ledger to the byte,
on every lab capture, on a multi-day Zeek set, per tenant and per day; and the class rules."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest

import abfluss
from abfluss import accounting, analysis
from abfluss.accounting import CATEGORIES, account, classify
from abfluss.findings import Finding
from abfluss.ledger import LedgerQuery, totals
from conftest import EXAMPLES, run_cli
from detkit import workspace_for

TRUTH = json.loads((EXAMPLES / "lab-truth.json").read_text())["scenarios"]
LAB = sorted(p.name for p in EXAMPLES.glob("*.pcap"))
#: Bytes per class of every lab capture over its whole span (reviewed by hand: the flagged bytes
#: are the exfiltration of the scenario's truth, the rest is its page views and look-ups).
EXPECTED = {
    "demo.pcap": {"flagged": 3003945, "unexplained": 4708},
    "lab-beacon.pcap": {"flagged": 50391, "unexplained": 16741},
    "lab-big-upload.pcap": {"flagged": 21032018, "unexplained": 4145},
    "lab-dlp-tls.pcap": {"unexplained": 21708},
    "lab-dlp.pcap": {"flagged": 70607, "unexplained": 932},
    "lab-dlp-exports.pcap": {"flagged": 90984},
    "lab-dns-tunnel.pcap": {"flagged": 366361, "unexplained": 4122},
    "lab-https-upload.pcap": {"flagged": 8021598, "unexplained": 19910},
}


def _acc(root, start=None, end=None, tenant=None):
    ws = abfluss.open_workspace(root)
    try:
        lo, hi = analysis.data_span(ws)
        a = account(ws, start, end, tenant)
        t = totals(ws, LedgerQuery(start or lo, end or hi, tenant=tenant))
    finally:
        ws.close()
    return a, t


def test_every_lab_capture_is_accounted_to_the_byte(tmp_path_factory):
    assert set(EXPECTED) == set(LAB), "a new lab capture needs its accounting reviewed here"
    tmp = tmp_path_factory.mktemp("acc")
    for name in LAB:
        a, t = _acc(workspace_for((str(EXAMPLES / name),), tmp))
        assert sum(a["categories"].values()) == a["bytes_out"] == t["bytes_out"], name
        assert a["categories"] == {c: EXPECTED[name].get(c, 0) for c in CATEGORIES}, name
        assert sum(p["bytes"] for p in a["pairs"]) == t["bytes_out"], name
    # the flagged bytes of the upload are exactly the truth's payload to the drop site
    a, _ = _acc(workspace_for((str(EXAMPLES / "lab-https-upload.pcap"),), tmp))
    (up,) = a["flagged"]
    truth = TRUTH["https-upload"]["summary"]
    assert (up["host"], up["destination"], up["name"]) == ("10.10.0.11", truth["upload_destination"]["ip"],
                                                          "upload.files-drop.test")
    assert up["bytes"] == truth["per_destination"]["upload.files-drop.test"]["wire_payload_up"]
    assert up["flows"] == 4 and up["channel"] == "tls" and up["largest_flow"] == 2006424
    assert [p["name"] for p in a["top_unexplained"]] == ["cdn.example-media.test", "www.example-shop.test"]
    assert a["top_unexplained"][0]["first_seen"] == "2026-11-29T15:00:32.040000Z"


def test_every_tunnel_capture_is_accounted_to_the_byte(tmp_path_factory):
    """examples/tunnels/ (iodine, dns2tcp, ptunnel-ng; pcap and NetFlow views) in one workspace, one
    sensor each: the whole span and every capture's own span sum to the ledger to the byte."""
    caps = sorted(str(p) for p in (EXAMPLES / "tunnels").glob("*.pcap"))
    assert len(caps) >= 10
    root = workspace_for(tuple(caps), tmp_path_factory.mktemp("acc-tunnels"))
    ws = abfluss.open_workspace(root)
    try:
        findings = analysis.analyze(ws, store=False).findings  # once: every window below reuses them
        whole = account(ws, findings=findings)
        lo, hi = analysis.data_span(ws)
        assert sum(whole["categories"].values()) == whole["bytes_out"] == totals(ws, LedgerQuery(lo, hi))["bytes_out"]
        assert whole["categories"]["flagged"] > 0.9 * whole["bytes_out"]  # the tunnels are found
        inputs = ws.inputs()
        assert len(inputs) == len(caps)
        for i in inputs:
            end = i["last_ts"] + timedelta(microseconds=1)
            a = account(ws, i["first_ts"], end, findings=findings)
            t = totals(ws, LedgerQuery(i["first_ts"], end))
            assert sum(a["categories"].values()) == a["bytes_out"] == t["bytes_out"] > 0, i["path"]
    finally:
        ws.close()


def test_multi_day_zeek_set_per_day_and_in_all(tmp_path_factory):
    """rita/proxy: Zeek TSV over two days; every day's classes and the whole span's sum to the ledger."""
    root = workspace_for(("rita/proxy",), tmp_path_factory.mktemp("acc-rita"))
    whole, t = _acc(root)
    assert sum(whole["categories"].values()) == whole["bytes_out"] == t["bytes_out"] > 0
    days = [datetime(2023, 1, 4, tzinfo=timezone.utc), datetime(2023, 1, 5, tzinfo=timezone.utc),
            datetime(2023, 1, 6, tzinfo=timezone.utc)]
    per_day = []
    for lo, hi in zip(days, days[1:]):
        a, td = _acc(root, lo, hi)
        assert sum(a["categories"].values()) == a["bytes_out"] == td["bytes_out"] > 0
        per_day.append(a["bytes_out"])
    ws = abfluss.open_workspace(root)
    try:
        all_days = totals(ws, LedgerQuery(days[0], days[-1]))["bytes_out"]
    finally:
        ws.close()
    assert sum(per_day) == all_days


def test_tenants_split_the_accounting(tmp_path_factory):
    cfg = '[tenants.kasse-a]\nnetworks = ["10.10.0.11/32"]\n[tenants.kasse-b]\nnetworks = ["10.10.0.12/32"]\n'
    root = workspace_for((str(EXAMPLES / "demo.pcap"),), tmp_path_factory.mktemp("acc-t"), cfg)
    a, ta = _acc(root, tenant="kasse-a")
    b, tb = _acc(root, tenant="kasse-b")
    whole, t = _acc(root)
    assert sum(a["categories"].values()) == ta["bytes_out"] and sum(b["categories"].values()) == tb["bytes_out"]
    assert {c: a["categories"][c] + b["categories"][c] for c in CATEGORIES} == whole["categories"]
    assert {p["host"] for p in a["pairs"]} == {"10.10.0.11"} and a["flagged"][0]["bytes"] == 1000158


T0 = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)


def _row(host, dest, hour, b, cls="unknown", name=None):
    return {"internal_host": host, "external_host": dest, "external_name": name, "hour": T0 + timedelta(hours=hour),
            "bytes_out": b, "flows": 1, "first_seen": T0, "last_seen": T0, "dest_class": cls}


def test_class_rules_in_order():
    history = [_row("10.0.0.5", "192.0.2.7", -h, 1000 + 10 * (h % 3)) for h in range(1, 25)]
    rows = [
        _row("10.0.0.5", "239.255.255.250", 0, 500),                 # SSDP multicast
        _row("10.0.0.5", "ff02::fb", 0, 400, cls="local"),            # as the ledger classes it
        _row("10.0.0.5", "192.0.2.9", 0, 300, cls="allowlisted"),
        _row("10.0.0.5", "192.0.2.7", 0, 1015),                       # within its history's range
        _row("10.0.0.6", "192.0.2.7", 0, 1010),                       # another host, same normal destination
        _row("10.0.0.5", "192.0.2.7", 1, 9000),                       # far above it
        _row("10.0.0.5", "198.51.100.3", 0, 70000, name="up.drop.test"),  # named by a medium finding
        _row("10.0.0.5", "198.51.100.4", 0, 800, name="x.drop.test"),     # a name below the finding's domain
        _row("10.0.0.7", "198.51.100.5", 2, 5000),                    # host-level finding spanning hour 2
        _row("10.0.0.7", "198.51.100.5", 5, 5000),                    # outside that span
        _row("10.0.0.8", "198.51.100.6", 0, 2000),                    # only a low finding: not flagged
    ]
    fs = [Finding("upload_heavy", ("10.0.0.5", "drop.test"), {"x": 50}, "", ["10.0.0.5"], [], ["drop.test"]),
          Finding("bulk_outbound", ("10.0.0.7",), {"x": 65}, "", ["10.0.0.7"], start=T0 + timedelta(hours=2, minutes=5),
                  end=T0 + timedelta(hours=2, minutes=40)),
          Finding("rare_destination", ("10.0.0.8", "198.51.100.6"), {"x": 25}, "", ["10.0.0.8"], ["198.51.100.6"]),
          Finding("scan_and_lateral", ("10.0.0.8",), {"x": 90}, "", ["10.0.0.8"], ["198.51.100.6"])]
    got = [c for c, _, _ in classify(rows, history, fs)]
    assert got == ["local", "local", "allowlisted", "baseline", "baseline", "unexplained", "flagged", "flagged",
                   "flagged", "unexplained", "unexplained"]
    assert accounting.is_local("255.255.255.255") and accounting.is_local("fe80::1")
    assert not accounting.is_local("8.8.8.8") and not accounting.is_local("not an address")


def test_cli_account_json_csv_and_table(tmp_path_factory):
    root = workspace_for((str(EXAMPLES / "lab-dns-tunnel.pcap"),), tmp_path_factory.mktemp("acc-cli"))
    js = json.loads(run_cli("account", "--format", "json", workspace=root, check=True).stdout)
    assert js["categories"] == {c: EXPECTED["lab-dns-tunnel.pcap"].get(c, 0) for c in CATEGORIES}
    (tun,) = js["flagged"]  # the resolver's leg to the tunnel server, named by the dns_tunnel finding
    assert (tun["host"], tun["destination"], tun["channel"]) == ("10.10.0.20", "203.0.113.53", "dns")
    assert tun["bytes"] == TRUTH["dns-tunnel"]["summary"]["forwarded_leg"]["payload_to_server"]
    rows = list(csv.DictReader(io.StringIO(run_cli("account", "--format", "csv", workspace=root, check=True).stdout)))
    assert sum(int(r["bytes"]) for r in rows) == js["bytes_out"]
    table = run_cli("account", "--from", "2026-11-29T14:00Z", "--to", "2026-11-29T16:00Z", workspace=root, check=True)
    assert "unexplained" in table.stdout and "cdn.example-media.test" in table.stdout
    bad = run_cli("account", "--tenant", "nobody", workspace=root)
    assert bad.returncode == 2 and "unknown tenant" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("args", [("--from", "2026-11-29T16:00Z", "--to", "2026-11-29T15:00Z")])
def test_empty_window_is_a_one_line_error(tmp_path_factory, args):
    root = workspace_for((str(EXAMPLES / "lab-dns-tunnel.pcap"),), tmp_path_factory.mktemp("acc-cli"))
    r = run_cli("account", *args, workspace=root)
    assert r.returncode == 2 and "empty window" in r.stderr and "Traceback" not in r.stderr


def test_thresholds_in_duckdb_equal_baseline():
    """``account`` computes each destination's threshold in DuckDB (``accounting_sql.limits_sql``): it equals
    ``baseline``'s on lists of every length from 1 to 420 and two longer ones (odd and even
    counts, p99 ranks that round half to even), with ties, heavy tails and counts up to 10^12."""
    import random

    import duckdb

    from abfluss import accounting_sql

    rng = random.Random(14)
    lists = {}
    for n in list(range(1, 421)) + [1001, 5000]:
        kind = n % 3
        if kind == 0:
            vals = [rng.randint(1, 5) for _ in range(n)]  # many ties
        elif kind == 1:
            vals = [int(rng.lognormvariate(9, 2)) + 1 for _ in range(n)]
        else:
            vals = [rng.randint(1, 10**12) for _ in range(n)]
        lists[f"d{n}"] = vals
    con = duckdb.connect()
    try:
        sql = accounting_sql.limits_sql("SELECT unnest(?::VARCHAR[]) AS external_host, unnest(?::BIGINT[]) AS v",
                                     "external_host")
        got = dict(con.execute(sql, [[x for x, vs in lists.items() for _ in vs],
                                     [v for vs in lists.values() for v in vs]]).fetchall())
    finally:
        con.close()
    assert got == {x: accounting.baseline(vs)["threshold"] for x, vs in lists.items()}


def test_account_is_kept_until_the_workspace_changes(tmp_path_factory, monkeypatch):
    """An accounting from stored data is given again from the process's cache (a copy) until the
    workspace changes: here an analysis stores findings, and it is computed afresh."""
    import shutil

    src = workspace_for((str(EXAMPLES / "lab-dns-tunnel.pcap"),), tmp_path_factory.mktemp("acc-cli"))
    root = shutil.copytree(src, tmp_path_factory.mktemp("acc-cache") / "ws")
    calls = []
    real = accounting._account
    monkeypatch.setattr(accounting, "_account", lambda *a, **k: calls.append(1) or real(*a, **k))
    with abfluss.open_workspace(root, write=True) as ws:
        first = account(ws)
        assert account(ws) == first and len(calls) == 1
        first["pairs"].clear()
        assert account(ws)["pairs"] and len(calls) == 1
        analysis.analyze(ws)
        again = account(ws)
        assert len(calls) == 2 and again["categories"] == {c: EXPECTED["lab-dns-tunnel.pcap"].get(c, 0)
                                                            for c in CATEGORIES}
