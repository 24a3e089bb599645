"""Notification drafts: deadlines, mandatory items in both languages, tenants, follow-ups, privacy."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from datetime import datetime, timedelta, timezone

import pytest

import abfluss
from abfluss import analysis
from abfluss.report import drafts
from abfluss.report.drafts import DraftInput, Host, Indicator, Transfer

from conftest import EXAMPLES, ROOT
from detkit import workspace_for

UTC = timezone.utc
AWARE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TRUTH = json.loads((EXAMPLES / "lab-truth.json").read_text())["scenarios"]
CONFIG = '[tenants.kasse_nord]\nnetworks = ["10.10.0.0/24"]\n[tenants.kasse_sued]\nnetworks = ["10.20.0.0/16"]\n'
ASSETS = {"epa": ("10.10.0.11/32",), "backup": ("10.10.0.99/32",)}


def _input(**kw) -> DraftInput:
    t0 = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
    base = dict(tenant="kasse_nord", window=(t0, t0 + timedelta(hours=12)), aware_at=AWARE,
                verdict="EXFIL_CONFIRMED", confidence="high", first_evidence=t0 + timedelta(hours=1),
                last_evidence=t0 + timedelta(hours=2), hosts=(Host("10.10.0.11", ("epa",), 21021),),
                transfers=(Transfer("10.10.0.11", "203.0.113.80", "intake.data-collect.test", 21021, "http"),),
                counts={"kvnr": (120, 120), "icd10": (18, 18)}, records=(120, 120), subjects=(120, 240),
                cleartext=True, detections=("cleartext_sensitive_data",), severity="critical",
                suspected_malicious=True,
                indicators=(Indicator("203.0.113.80", "ipv4-addr", t0, t0 + timedelta(hours=2), 3),))
    base.update(kw)
    return DraftInput(**base)


def test_deadlines_run_from_awareness():
    d = drafts.deadlines(AWARE)
    assert {k: drafts.iso(v) for k, v in d.items()} == {
        "early_warning": "2026-03-03T09:00:00Z", "notification": "2026-03-05T09:00:00Z",
        "art33": "2026-03-05T09:00:00Z",
        "final": "2026-04-05T09:00:00Z"}  # one month after the 72 h notification, not after awareness
    sent = datetime(2026, 3, 3, 15, 30, tzinfo=UTC)
    assert drafts.iso(drafts.deadlines(AWARE, notified_at=sent)["final"]) == "2026-04-03T15:30:00Z"
    assert drafts.add_month(datetime(2026, 1, 31, 10, tzinfo=UTC)) == datetime(2026, 2, 28, 10, tzinfo=UTC)
    assert drafts.add_month(datetime(2028, 1, 31, 10, tzinfo=UTC)) == datetime(2028, 2, 29, 10, tzinfo=UTC)
    assert drafts.add_month(datetime(2026, 12, 15, 8, tzinfo=UTC)) == datetime(2027, 1, 15, 8, tzinfo=UTC)
    # a naive time is UTC; another zone is converted
    cet = timezone(timedelta(hours=1))
    assert drafts.deadlines(datetime(2026, 3, 2, 10, 0, tzinfo=cet))["early_warning"] == d["early_warning"]


def test_time_left_and_overdue():
    out = drafts.build_drafts(_input(), AWARE + timedelta(hours=23), "en")
    ds = out["drafts"]
    assert (ds["nis2_early"]["deadline"], ds["nis2_early"]["time_left"]) == ("2026-03-03T09:00:00Z", 3600)
    assert ds["art33"]["time_left"] == ds["sgb10_83a"]["time_left"] == 49 * 3600
    assert ds["nis2_final"]["provisional"] is True
    assert (ds["art34"]["deadline"], ds["art34"]["time_left"], ds["sgb5_329"]["deadline"]) == (None, None, None)
    assert "- Deadline: 2026-03-03 09:00 UTC (1 h left)" in ds["nis2_early"]["text"]
    late = drafts.build_drafts(_input(), AWARE + timedelta(hours=73, minutes=5), "en")["drafts"]
    assert late["art33"]["time_left"] == -3900
    assert "- Deadline: overdue since 2026-03-05 09:00 UTC" in late["art33"]["text"]
    assert "Reasons for the delay (Art. 33(1))" in late["art33"]["text"]
    assert "Reasons for the delay" not in ds["art33"]["text"]
    de = drafts.build_drafts(_input(), AWARE + timedelta(hours=73, minutes=5), "de")["drafts"]["art33"]["text"]
    assert "- Frist: überfällig seit 05.03.2026 09:00 UTC" in de and "Gründe für die Verzögerung" in de


@pytest.mark.parametrize("lang,items", [
    ("en", {"art33": ["## (a) Nature of the breach", "## (b) Contact point", "## (c) Likely consequences",
                      "## (d) Measures taken or proposed", "health insurance numbers (KVNR) | 120 |",
                      "diagnoses (ICD-10 codes) | 18 |", "data subjects: 120–240", "Data outflow established",
                      "10.10.0.11 | 203.0.113.80 (intake.data-collect.test) | http | 21,021 |"],
            "art34": ["**High risk**", "Art. 34(3)(a): not applicable", "Message to the data subjects"],
            "nis2_early": ["Unlawful or malicious act suspected: yes", "Cross-border impact possible: unknown"],
            "nis2_notification": ["Initial assessment", "Severity: critical", "Attached: STIX 2.1 bundle with 1"],
            "nis2_final": ["## (i)", "## (ii)", "## (iii)", "## (iv)", "progress report"],
            "sgb5_329": ["Affected telematics services: ePA", "gematik GmbH"],
            "sgb10_83a": ["§ 83a SGB X", "## (a) Nature of the breach"],
            "register": ["GDPR Art. 33(5)", "Notified"]}),
    ("de", {"art33": ["## (a) Art der Verletzung", "## (b) Kontaktstelle", "## (c) Wahrscheinliche Folgen",
                      "## (d) Ergriffene oder vorgeschlagene Maßnahmen", "Krankenversichertennummern (KVNR) | 120 |",
                      "betroffener Personen: 120–240", "Ein Datenabfluss wurde festgestellt", "| http | 21.021 |",
                      "Art. 9 DSGVO"],
            "art34": ["**Hohes Risiko**", "Nachricht an die Betroffenen"],
            "nis2_early": ["Verdacht auf rechtswidrige oder böswillige Handlung: ja",
                           "Grenzüberschreitende Auswirkungen möglich: unbekannt"],
            "nis2_notification": ["Erste Bewertung", "Schweregrad: kritisch", "STIX-2.1-Bündel mit 1 Indikator."],
            "nis2_final": ["## (i)", "## (iv)", "Fortschrittsmeldung"],
            "sgb5_329": ["Betroffene TI-Dienste: ePA", "§ 329 Abs. 2 SGB V"],
            "sgb10_83a": ["Rechts-/Fachaufsicht", "## (a) Art der Verletzung"],
            "register": ["Art. 33 Abs. 5 DSGVO", "Gemeldet"]}),
])
def test_texts_carry_the_mandatory_items(lang, items):
    out = drafts.build_drafts(_input(), AWARE + timedelta(hours=2), lang)
    assert sorted(out["drafts"]) == sorted(items)
    for kind, needles in items.items():
        text = out["drafts"][kind]["text"]
        for n in needles:
            assert n in text, (kind, n)
    assert out["drafts"]["art34"]["high_risk"] is True and out["drafts"]["art34"]["communicate"] is True


def test_no_evidence_is_never_a_bare_no():
    inp = _input(verdict="NO_EXFIL_EVIDENCE", confidence="medium", hosts=(), transfers=(), counts={},
                 indicators=(), coverage="92 % of egress bytes", gaps=("tap1 2026-03-01 23:10–23:40",))
    out = drafts.build_drafts(inp, AWARE, "de")
    assert (out["status"], list(out["drafts"]), out["stix"]) == ("no_evidence", ["register"], None)
    text = out["drafts"]["register"]["text"]
    assert "kein Datenabfluss festgestellt" in text and "Die Aussage gilt nur für die abgedeckten Systeme" in text
    assert "bekannte Lücken: tap1 2026-03-01 23:10–23:40" in text and "(92 % of egress bytes)" in text
    assert "Keine Meldung" in text


def test_indicated_without_content_leaves_the_risk_open():
    inp = _input(verdict="EXFIL_INDICATED", counts={}, records=(0, 0), subjects=(0, 0), cleartext=False,
                 hosts=(Host("10.10.0.11"),))
    out = drafts.build_drafts(inp, AWARE, "en")
    assert "sgb5_329" not in out["drafts"]  # no host carries a TI tag
    a = out["drafts"]["art34"]
    assert (a["high_risk"], a["communicate"]) == (None, None)
    assert "Risk not yet determinable" in a["text"] and "to be checked: were the data encrypted" in a["text"]
    assert "Content sent over encrypted channels cannot be inspected" in out["drafts"]["art33"]["text"]


def test_follow_up_shows_what_changed():
    v1 = drafts.build_drafts(_input(verdict="EXFIL_INDICATED", counts={}, records=(0, 0), subjects=(0, 0)),
                             AWARE, "en")
    more = _input(previous=v1, hosts=(Host("10.10.0.11", ("epa",), 21021), Host("10.10.0.12")),
                  transfers=(Transfer("10.10.0.11", "203.0.113.80", "", 30000, "http"),
                             Transfer("10.10.0.12", "203.0.113.25", "", 500, "smtp")))
    v2 = drafts.build_drafts(more, AWARE + timedelta(hours=30), "en")
    assert (v2["stage"], v2["version"]) == ("follow-up", 2)
    assert v2["changes"] == {
        "verdict": ["EXFIL_INDICATED", "EXFIL_CONFIRMED"], "records": [[0, 0], [120, 120]],
        "subjects": [[0, 0], [120, 240]], "counts": {"icd10": [[0, 0], [18, 18]], "kvnr": [[0, 0], [120, 120]]},
        "hosts": {"added": ["10.10.0.12"], "removed": []},
        "transfers": {"added": ["10.10.0.12 -> 203.0.113.25"], "removed": [],
                      "changed": {"10.10.0.11 -> 203.0.113.80": [21021, 30000]}}}
    text = v2["drafts"]["art33"]["text"]
    assert "## Changes since version 1 (Art. 33(4) GDPR)" in text and "- Version: 2 (follow-up)" in text
    assert "- verdict: EXFIL_INDICATED → EXFIL_CONFIRMED" in text
    assert "- health insurance numbers (KVNR): 0 → 120" in text and "- hosts added: 10.10.0.12" in text
    assert "- 10.10.0.11 -> 203.0.113.80: 21,021 → 30,000 bytes" in text
    same = drafts.build_drafts(dataclasses.replace(more, previous=v2), AWARE, "de")
    assert same["version"] == 3 and "Keine Änderung der Befunde." in same["drafts"]["art33"]["text"]


def test_apply_report_takes_the_evidence_verdict():
    r = {"verdict": "NO_EXFIL_EVIDENCE", "confidence": "medium",
         "coverage": {"statement": "98 % of the window", "gaps": ["s1 10:00–10:05"]}}
    inp = drafts.apply_report(_input(), r)
    assert (inp.verdict, inp.confidence, inp.coverage, inp.gaps) == (
        "NO_EXFIL_EVIDENCE", "medium", "98 % of the window", ("s1 10:00–10:05",))
    assert drafts.apply_report(_input(), {}).verdict == "EXFIL_CONFIRMED"


# -- real captures ---------------------------------------------------------------------------

def _ws_drafts(rels, tmp, now, lang="en", previous=None, assets=ASSETS):
    root = workspace_for(tuple(str(EXAMPLES / r) for r in rels), tmp, CONFIG)
    ws = abfluss.open_workspace(root, write=True)
    try:
        analysis.analyze(ws)
        cfg = dataclasses.replace(ws.config, assets=assets)
        inputs = drafts.drafts_from_findings(ws, {"kasse_nord": AWARE, "kasse_sued": AWARE + timedelta(hours=5)},
                                             config=cfg, previous=previous)
        masked = [m for (m,) in ws.con.execute("SELECT DISTINCT masked FROM dlp_raw").fetchall()]
    finally:
        ws.close()
    return inputs, drafts.build_all(inputs, now, lang), masked


def _lab_values() -> set[str]:
    """The raw values the lab CSV carries (regenerated from its seed, never stored)."""
    sys.path.insert(0, str(ROOT / "lab"))
    import dlpdata

    rows = dlpdata.generate(json.loads((EXAMPLES / "lab-truth.json").read_text())["seed"])
    return {str(v) for r in rows for k, v in r.items() if isinstance(v, str) and len(v) >= 6}


def test_lab_dlp_end_to_end(tmp_path_factory):
    t = TRUTH["dlp"]["summary"]
    now = AWARE + timedelta(hours=10)
    inputs, out, masked = _ws_drafts(("lab-dlp.pcap",), tmp_path_factory.mktemp("dlp"), now)
    assert [i.tenant for i in inputs] == ["kasse_nord", "kasse_sued"]
    nord, sued = out["tenants"]["kasse_nord"], out["tenants"]["kasse_sued"]
    # the other controller: only its register entry, with its own clock
    assert (sued["status"], list(sued["drafts"]), sued["stix"], sued["aware_at"]) == (
        "no_evidence", ["register"], None, "2026-03-02T14:00:00Z")
    assert (nord["status"], nord["verdict"], nord["confidence"]) == ("affected", "EXFIL_CONFIRMED", "high")
    assert sorted(nord["drafts"]) == ["art33", "art34", "nis2_early", "nis2_final", "nis2_notification",
                                      "register", "sgb10_83a", "sgb5_329"]
    c = t["content"]
    # distinct values over all three channels at once: the same CSV counts once
    assert nord["basis"]["counts"] == {"kvnr": [120, 120], "iban": [120, 120], "ik": [6, 6],
                                       "icd10": [c["icd10_codes_distinct"]] * 2}
    assert (nord["basis"]["subjects"], nord["basis"]["records"], nord["basis"]["hosts"]) == (
        [120, 240], [120, 120], [t["client_ip"]])
    assert nord["basis"]["transfers"] == {f"{t['client_ip']} -> {ch['destination']['ip']}":
                                          ch["wire_payload_client_to_server"] for ch in t["channels"]}
    assert nord["basis"]["indicators"] == sorted([ch["destination"]["ip"] for ch in t["channels"]]
                                                 + [ch["destination"]["name"] for ch in t["channels"]])
    assert nord["basis"]["ti_services"] == ["ePA"]
    assert nord["drafts"]["art33"]["time_left"] == 62 * 3600
    assert nord["drafts"]["art34"]["high_risk"] is True
    assert "Affected telematics services: ePA" in nord["drafts"]["sgb5_329"]["text"]
    # no identifier, masked or raw, in any draft or in the bundle; only counts
    everything = json.dumps(out, ensure_ascii=False)
    raw = _lab_values()
    assert len(raw) > 500 and masked
    assert [v for v in raw | set(masked) if v in everything] == []
    assert not re.search(r"\b[A-Z][0-9]{9}\b|\bDE[0-9]{20}\b", everything)


def test_lab_https_upload_is_indicated_and_follow_up_adds_dlp(tmp_path_factory):
    t = TRUTH["https-upload"]["summary"]
    dest = t["per_destination"]["upload.files-drop.test"]
    tmp = tmp_path_factory.mktemp("upload")
    _, v1, _ = _ws_drafts(("lab-https-upload.pcap",), tmp, AWARE, "de", assets={})
    nord = v1["tenants"]["kasse_nord"]
    assert (nord["verdict"], nord["confidence"], nord["basis"]["counts"]) == ("EXFIL_INDICATED", "medium", {})
    assert nord["basis"]["transfers"] == {f"{t['client_ip']} -> {dest['server_ip']}": dest["wire_payload_up"]}
    assert "sgb5_329" not in nord["drafts"] and nord["drafts"]["art34"]["high_risk"] is None
    assert f"| https | {dest['wire_payload_up']:,} |".replace(",", ".") in nord["drafts"]["art33"]["text"]
    # more evidence in the same workspace later: a follow-up with what changed
    _, v2, _ = _ws_drafts(("lab-https-upload.pcap", "lab-dlp.pcap"), tmp, AWARE + timedelta(hours=30),
                          "de", previous=v1, assets={})
    n2 = v2["tenants"]["kasse_nord"]
    assert (n2["stage"], n2["version"]) == ("follow-up", 2)
    ch = n2["changes"]
    assert ch["verdict"] == ["EXFIL_INDICATED", "EXFIL_CONFIRMED"]
    assert ch["counts"]["kvnr"] == [[0, 0], [120, 120]]
    assert sorted(ch["transfers"]["added"]) == sorted(
        f"{t['client_ip']} -> {c['destination']['ip']}" for c in TRUTH["dlp"]["summary"]["channels"])
    assert "Änderungen seit Version 1" in n2["drafts"]["art33"]["text"]
    sued = v2["tenants"]["kasse_sued"]  # its register entry is versioned too, and nothing changed
    assert (sued["version"], sued["changes"], sued["status"]) == (2, {}, "no_evidence")
