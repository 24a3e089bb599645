"""The verdict never says more than the telemetry allows (issue 11): NOT_ASSESSABLE for empty
telemetry, a missed tunnel is still indicated through the accounting, and the thresholds."""

from __future__ import annotations

import json

import pytest

import abfluss
from abfluss.report import verdict
from abfluss.report.render import build
from conftest import EXAMPLES, data, run_cli
from detkit import workspace_for


def _report(rels, tmp, config=None):
    ws = abfluss.open_workspace(workspace_for(rels, tmp, config))
    try:
        return build(ws)
    finally:
        ws.close()


def test_capture_outside_the_default_networks_is_not_assessable(tmp_path):
    """test-cc: a public client address, the default internal networks match nothing: no flow is
    outbound, so "outbound 0 B, no outflow" must not be said. The drafts say the extent cannot yet
    be determined and name the fix."""
    ws = tmp_path / "ws"
    run_cli("ingest", str(data("slips/test-cc/test-cc-capture-1.pcap")), workspace=ws, check=True)
    out = tmp_path / "case"
    r = run_cli("report", "--out", str(out), "--aware-at", "2024-02-09T08:00Z", workspace=ws, check=True)
    assert r.stdout.startswith("NOT_ASSESSABLE (confidence 0.00, low)")
    rep = json.loads((out / "report.json").read_text())
    missing = {m["reason"]: m for m in rep["assessment"]["missing"]}
    assert list(missing) == ["internal_unmatched", "channel_unchecked"]
    m = missing["internal_unmatched"]
    assert m["busiest"].startswith("147.32.80.37 (298), 141.193.213.21 (296)")
    assert "`[networks] internal`" in m["fix"] and "match no address seen" in m["text"]
    assert rep["accounting"]["bytes_out"] == 0 and rep["accounting"]["telemetry"]["boundary_flows"] == 0
    (t,) = rep["notifications"]["tenants"].values()
    assert (t["verdict"], t["status"]) == ("NOT_ASSESSABLE", "undetermined")
    assert sorted(t["drafts"]) == ["art33", "register", "sgb10_83a"]
    art33 = (out / "notifications" / "default" / "art33.md").read_text()
    assert "cannot yet be determined" in art33 and "Art. 33(4)" in art33 and "match no address seen" in art33
    # with its network configured the same capture is assessable: the beacon is indicated
    (ws / "abfluss.toml").write_text('[networks]\ninternal = ["147.32.80.0/24"]\n')
    again = run_cli("report", "--out", str(tmp_path / "case2"), workspace=ws, check=True)
    assert again.stdout.startswith("EXFIL_INDICATED")


def test_dns_and_tls_logs_without_flows_are_not_assessable(tmp_path_factory):
    rep = _report(("wrccdc-zeek/zeek-tsv",), tmp_path_factory.mktemp("wrccdc"))
    assert (rep["verdict"], rep["confidence"]) == ("NOT_ASSESSABLE", 0.0)
    assert [m["reason"] for m in rep["assessment"]["missing"]] == ["no_flows"]
    assert rep["assessment"]["missing"][0]["fix"].startswith("Ingest the flow records of the window")
    assert rep["coverage"]["dns_queries"] > 0 and rep["accounting"]["telemetry"]["flows"] == 0


def test_a_tunnel_the_detections_miss_is_still_indicated(tmp_path_factory):
    """lab-dns-tunnel with dns_tunnel switched off: no finding names the tunnel, but 366 KB went
    from the resolver to one unknown server; the accounting makes it EXFIL_INDICATED."""
    rep = _report((str(EXAMPLES / "lab-dns-tunnel.pcap"),), tmp_path_factory.mktemp("tunnel"),
                  "[detections.dns_tunnel]\nenabled = false\n")
    assert rep["findings"] == [] and rep["verdict"] == "EXFIL_INDICATED"
    top = rep["assessment"]["basis"][0]
    assert (top["kind"], top["host"], top["destination"], top["channel"]) == (
        "unexplained", "10.10.0.20", "203.0.113.53", "dns")
    assert top["bytes_out"] == 366361 and rep["accounting"]["categories"]["unexplained"] == 370483
    assert rep["statement"].startswith("In the period") and "370.5 KB (100.0% of the outflow)" in rep["statement"]
    assert rep["confidence"] == 0.7  # 0.4 + 0.3 x 100 % unexplained


def test_one_big_upload_to_a_first_seen_destination_is_confirmed(tmp_path_factory):
    """lab-big-upload (lab-truth.json): 21 MB in one HTTPS connection to intake.data-collect.test,
    which no internal host contacted before. upload_heavy and rare_destination are each only
    medium, but they corroborate each other on that destination with the single 21 MB transfer:
    EXFIL_CONFIRMED, and the host's incident is raised to high."""
    from abfluss.analysis import analyze
    from abfluss.findings import incidents

    ws = abfluss.open_workspace(workspace_for((str(EXAMPLES / "lab-big-upload.pcap"),),
                                              tmp_path_factory.mktemp("bigup")))
    try:
        fs = analyze(ws, store=False).findings
        rep = build(ws, findings=fs)
    finally:
        ws.close()
    assert sorted((f["detection"], f["severity"]) for f in rep["findings"]) == [
        ("rare_destination", "medium"), ("upload_heavy", "medium")]
    assert (rep["verdict"], rep["confidence"]) == ("EXFIL_CONFIRMED", 0.8)
    (c,) = rep["assessment"]["corroborated"]
    assert (c["host"], c["name"], c["signals"]) == (
        "10.10.0.11", "intake.data-collect.test", ["upload_heavy", "first_seen_single_host", "large_single_transfer"])
    truth = json.loads((EXAMPLES / "lab-truth.json").read_text())["scenarios"]["big-upload"]["summary"]
    assert c["largest_flow"] == truth["upload_wire_payload_up"] == 21_032_018
    (inc,) = incidents(fs)
    assert (inc.severity, inc.corroborated["detections"]) == ("high", ["rare_destination", "upload_heavy"])


def _acc(unexplained: int, total: int) -> dict:
    return {"categories": {"unexplained": unexplained}, "shares": {"unexplained": unexplained / total}}


@pytest.mark.parametrize("unexplained,total,small", [
    (100_000, 100_000, True),      # negligible whatever its share
    (100_001, 100_001, False),     # above it at 100 %
    (250_000, 5_000_000, True),    # 5 % of the outflow
    (250_000, 4_999_999, False),   # just over 5 %
    (250_001, 100_000_000, False),  # never small above 250 KB
])
def test_unexplained_thresholds(unexplained, total, small):
    assert verdict.unexplained_small(_acc(unexplained, total)) is small
