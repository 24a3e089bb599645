"""STIX 2.1 bundles of indicators: valid for the stix2 library, deterministic, marked."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import stix2

import abfluss
from abfluss import analysis
from abfluss.report import drafts, stix
from abfluss.report.drafts import Indicator

from conftest import EXAMPLES
from detkit import workspace_for

UTC = timezone.utc
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
INDS = (Indicator("203.0.113.50", "ipv4-addr", T0, T0 + timedelta(minutes=17), 4, ("upload_heavy",)),
        Indicator("2001:db8::7", "ipv6-addr", T0, T0, 1, ("beaconing",)),
        Indicator("upload.files-drop.test", "domain-name", T0, T0 + timedelta(minutes=17), 9,
                  ("rare_destination", "upload_heavy")))


def _objects(text: str) -> dict[str, list]:
    b = stix2.parse(text, allow_custom=False)
    assert b.type == "bundle"
    out: dict[str, list] = {}
    for o in b.objects:
        out.setdefault(o.type, []).append(o)
    return out


def test_bundle_parses_with_indicators_sightings_and_tlp():
    text = stix.bundle(INDS, tenant="kasse_nord", now=NOW)
    o = _objects(text)
    assert sorted(o) == ["identity", "indicator", "marking-definition", "sighting"]
    assert [m.name for m in o["marking-definition"]] == ["TLP:AMBER"]
    assert [i.pattern for i in o["indicator"]] == ["[ipv4-addr:value = '203.0.113.50']",
                                                   "[ipv6-addr:value = '2001:db8::7']",
                                                   "[domain-name:value = 'upload.files-drop.test']"]
    assert {i.indicator_types[0] for i in o["indicator"]} == {"malicious-activity"}
    by_ref = {s.sighting_of_ref: s for s in o["sighting"]}
    s = by_ref[o["indicator"][2].id]
    assert (s.count, s.first_seen, s.last_seen) == (9, T0, T0 + timedelta(minutes=17))
    assert s.where_sighted_refs == [o["identity"][0].id] and o["identity"][0].name == "kasse_nord"
    tlp = o["marking-definition"][0].id
    assert all(x.object_marking_refs == [tlp] for t in ("identity", "indicator", "sighting") for x in o[t])
    # the same evidence gives the same bundle; another tenant gets other ids
    assert stix.bundle(INDS, tenant="kasse_nord", now=NOW) == text
    other = _objects(stix.bundle(INDS, tenant="kasse_sued", now=NOW, tlp="red", anomalous=True))
    assert {i.id for i in other["indicator"]}.isdisjoint(i.id for i in o["indicator"])
    assert other["marking-definition"][0].name == "TLP:RED"
    assert {i.indicator_types[0] for i in other["indicator"]} == {"anomalous-activity"}


def test_pattern_escapes_quotes_and_bad_tlp_is_refused():
    assert stix.pattern("domain-name", "a'b\\c.test") == "[domain-name:value = 'a\\'b\\\\c.test']"
    weird = (Indicator("a'b.test", "domain-name", T0, T0),)
    (ind,) = _objects(stix.bundle(weird, tenant="t", now=NOW))["indicator"]
    assert ind.pattern == "[domain-name:value = 'a\\'b.test']"
    with pytest.raises(ValueError, match="tlp"):
        stix.bundle(INDS, tenant="t", now=NOW, tlp="amber+strict")


def test_lab_upload_bundle_from_the_drafts(tmp_path_factory):
    t = json.loads((EXAMPLES / "lab-truth.json").read_text())["scenarios"]["https-upload"]["summary"]
    dest = t["per_destination"]["upload.files-drop.test"]
    root = workspace_for((str(EXAMPLES / "lab-https-upload.pcap"),), tmp_path_factory.mktemp("stix"),
                         '[tenants.kasse_nord]\nnetworks = ["10.10.0.0/24"]\n')
    ws = abfluss.open_workspace(root, write=True)
    try:
        analysis.analyze(ws)
        (inp,) = drafts.drafts_from_findings(ws, NOW)
        flows = ws.con.execute("SELECT count(*) FROM flows WHERE external_host = ?", [dest["server_ip"]]).fetchone()[0]
    finally:
        ws.close()
    out = drafts.build_drafts(inp, NOW, "en")
    o = _objects(out["stix"])
    assert sorted(i.pattern for i in o["indicator"]) == [
        "[domain-name:value = 'upload.files-drop.test']", f"[ipv4-addr:value = '{dest['server_ip']}']"]
    counts = {s.sighting_of_ref: s.count for s in o["sighting"]}
    ip = next(i for i in o["indicator"] if i.pattern.startswith("[ipv4"))
    assert counts[ip.id] == flows == dest["connections"]
    assert {i.indicator_types[0] for i in o["indicator"]} == {"anomalous-activity"}  # indicated, not confirmed
