"""abfluss report as a whole: the evidence report plus each tenant's drafts, follow-ups,
deadlines from the awareness time, and measures drawn from the blast radius."""

from __future__ import annotations

import json

from conftest import EXAMPLES, run_cli

TENANTS = ('[tenants.kasse_a]\nnetworks = ["10.10.0.11/32"]\n'
           '[tenants.kasse_b]\nnetworks = ["10.10.0.12/32"]\n'
           '[assets]\nepa = ["10.10.0.11/32"]\n')


def test_report_with_tenants_drafts_and_follow_up(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "abfluss.toml").write_text(TENANTS)
    run_cli("ingest", str(EXAMPLES / "lab-dlp.pcap"), str(EXAMPLES / "lab-beacon.pcap"), workspace=ws, check=True)
    out = tmp_path / "case"
    r = run_cli("report", "--out", str(out), "--aware-at", "2026-11-29T15:00Z", workspace=ws, check=True)
    assert r.stdout.startswith("EXFIL_CONFIRMED")
    rep = json.loads((out / "report.json").read_text())
    t = rep["notifications"]["tenants"]
    # kasse_a (ws1) sent the insured-person CSV: every duty, §329 SGB V because ws1 serves the ePA
    a = t["kasse_a"]
    assert (a["verdict"], a["status"], a["version"]) == ("EXFIL_CONFIRMED", "affected", 1)
    assert sorted(a["drafts"]) == sorted(["art33", "art34", "sgb10_83a", "sgb5_329", "nis2_early",
                                          "nis2_notification", "nis2_final", "register"])
    assert a["drafts"]["art33"]["deadline"] == "2026-12-02T15:00:00Z"
    assert a["drafts"]["nis2_early"]["deadline"] == "2026-11-30T15:00:00Z"
    assert a["drafts"]["art34"]["high_risk"] is True
    assert "| health insurance numbers (KVNR) | 120 |" in (out / "notifications/kasse_a/art33.md").read_text()
    assert json.loads((out / "notifications/kasse_a/iocs.stix.json").read_text())["type"] == "bundle"
    # kasse_b (ws2) only beaconed: indicated, its own clock and its own drafts
    b = t["kasse_b"]
    assert b["verdict"] == "EXFIL_INDICATED" and "art33" in b["drafts"]
    assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
    html = (out / "report.html").read_text()
    assert "Notification drafts" in html and "kasse_b" in html
    # the same case again: follow-up drafts (Art. 33(4)) that say nothing changed
    run_cli("report", "--out", str(out), "--aware-at", "2026-11-29T15:00Z", workspace=ws, check=True)
    again = json.loads((out / "report.json").read_text())["notifications"]["tenants"]["kasse_a"]
    assert again["version"] == 2 and again["stage"] == "follow-up"
    assert "Changes since version 1" in again["drafts"]["art33"]["text"]


def test_report_for_one_tenant_in_german(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "abfluss.toml").write_text(TENANTS)
    run_cli("ingest", str(EXAMPLES / "lab-https-upload.pcap"), workspace=ws, check=True)
    out = tmp_path / "case"
    run_cli("report", "--out", str(out), "--tenant", "kasse_b", "--lang", "de", workspace=ws, check=True)
    rep = json.loads((out / "report.json").read_text())
    assert rep["lang"] == "de" and rep["verdict"] == "NO_EXFIL_EVIDENCE" and rep["confidence"] < 1
    (b,) = rep["notifications"]["tenants"].values()
    assert b["tenant"] == "kasse_b" and b["status"] == "no_evidence" and list(b["drafts"]) == ["register"]
    bad = run_cli("report", "--out", str(out), "--tenant", "nobody", workspace=ws)
    assert bad.returncode == 2 and "unknown tenant" in bad.stderr and "Traceback" not in bad.stderr
