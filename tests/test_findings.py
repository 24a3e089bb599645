"""Findings: stable ids, score and severity, host risk, incidents."""

from datetime import datetime, timedelta, timezone

from abfluss.findings import Finding, combine, host_risk, incidents, severity_of

T = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)


def f(det, host, score, hours=0.0, dest="203.0.113.9", bytes_out=0, severity=None):
    return Finding(detection=det, key=(host, dest), score_parts={"x": score}, explanation="e",
                   internal_hosts=[host], external_hosts=[dest], start=T + timedelta(hours=hours),
                   end=T + timedelta(hours=hours + 1), bytes_out=bytes_out, severity=severity)


def test_id_depends_on_detection_and_key_only():
    a, b = f("beaconing", "10.0.0.5", 50), f("beaconing", "10.0.0.5", 90, hours=30)
    assert a.id == b.id and len(a.id) == 16
    assert f("bulk_outbound", "10.0.0.5", 50).id != a.id


def test_score_is_clipped_sum_and_severity_bands():
    x = Finding(detection="d", key=("h",), score_parts={"a": 70, "b": 45.04}, explanation="e", internal_hosts=["h"])
    assert x.score == 100 and x.severity == "critical"
    assert [severity_of(s) for s in (0, 19.9, 20, 40, 60, 80)] == ["info", "info", "low", "medium", "high", "critical"]
    assert f("d", "h", 10, severity="high").severity == "high"  # a detection's rule may set it


def test_round_trip_through_json():
    a = f("beaconing", "10.0.0.5", 55, bytes_out=123)
    assert Finding.from_dict(a.to_dict()).to_dict() == a.to_dict()


def test_host_risk_is_strongest_plus_a_share_of_the_rest():
    assert combine([60, 40, 20]) == 66.0
    assert combine([95, 90]) == 100.0
    risk = host_risk([f("a", "10.0.0.5", 60), f("b", "10.0.0.5", 40), f("c", "10.0.0.6", 30)])
    assert risk == {"10.0.0.5": 64.0, "10.0.0.6": 30.0}


def test_incidents_group_close_findings_per_host():
    fs = [f("beaconing", "10.0.0.5", 50, 0, bytes_out=10), f("bulk_outbound", "10.0.0.5", 70, 3, bytes_out=900),
          f("dns_tunnel", "10.0.0.5", 45, 30), f("beaconing", "10.0.0.6", 20, 1)]
    inc = incidents(fs)
    assert [(i.internal_host, i.detections, i.bytes_out) for i in inc] == [
        ("10.0.0.5", ["beaconing", "bulk_outbound"], 900),
        ("10.0.0.5", ["dns_tunnel"], 0),
        ("10.0.0.6", ["beaconing"], 0)]
    assert inc[0].score == 75.0 and inc[0].severity == "high"
    assert inc[0].start == T and inc[0].end == T + timedelta(hours=4)



def test_incident_id_is_its_host_and_first_moment():
    """Before: an incident was named by the smallest id among its findings, so a finding that
    joined it later (the next window, the next watch cycle) renamed it about every other time, and
    case log entries stayed behind under the old name. Now findings joining later keep the id; a
    finding that starts earlier, or another host, gives another."""
    first = f("upload_heavy", "10.0.0.5", 45, 1)
    (i,) = incidents([first])
    later = [f(d, "10.0.0.5", 40, h) for d, h in (("rare_destination", 1), ("beaconing", 3), ("off_hours", 5))]
    assert sorted(x.id for x in later)[0] < first.id  # the old rule would have renamed it
    (grown,) = incidents([first] + later)
    assert grown.id == i.id and len(grown.finding_ids) == 4
    assert incidents([first, f("beaconing", "10.0.0.5", 40, 0)])[0].id != i.id
    assert incidents([f("upload_heavy", "10.0.0.6", 45, 1)])[0].id != i.id


def test_incident_id_survives_a_re_analysis_that_finds_more(tmp_path):
    """Real captures: demo.pcap (13:57) and lab-dlp.pcap (15:00) of 10.10.0.11 form one incident.
    Analysed up to 15:00 it holds the demo's two findings; analysed again over all data, the
    lab-dlp findings join it and it keeps its id."""
    import abfluss
    from abfluss import analysis
    from conftest import EXAMPLES

    only = ("upload_heavy", "rare_destination", "cleartext_sensitive_data")
    with abfluss.open_workspace(tmp_path / "ws", write=True) as w:
        abfluss.ingest_paths(w, [EXAMPLES / "demo.pcap", EXAMPLES / "lab-dlp.pcap"])
        abfluss.refresh(w)

        def incident() -> tuple[str, int]:
            (i,) = [i for i in incidents(analysis.load(w)) if i.internal_host == "10.10.0.11"]
            return i.id, len(i.finding_ids)

        analysis.analyze(w, end=datetime(2026, 11, 29, 15, tzinfo=timezone.utc), only=only)
        before = incident()
        analysis.analyze(w, only=only)
        assert before[1] == 2 and incident() == (before[0], 5)


def test_incident_keeps_the_strongest_member_severity():
    (i,) = incidents([f("cleartext_sensitive_data", "10.0.0.5", 30, severity="critical")])
    assert i.score == 30 and i.severity == "critical"


def test_corroborating_findings_on_one_destination_raise_the_incident():
    """Issue 11: a rare destination + an upload-heavy exchange with it (+ off-hours, + volume above
    the host's baseline) raise the incident one severity step per further corroborating detection."""
    up, rare = f("upload_heavy", "10.0.0.5", 45), f("rare_destination", "10.0.0.5", 41)
    (i,) = incidents([up, rare])
    assert (i.severity, i.corroborated["destination"], i.corroborated["detections"]) == (
        "high", "203.0.113.9", ["rare_destination", "upload_heavy"])
    (i,) = incidents([up, rare, f("off_hours", "10.0.0.5", 30, dest="198.51.100.7")])
    assert (i.severity, i.corroborated["detections"]) == ("critical", ["rare_destination", "upload_heavy", "off_hours"])
    # a rare destination elsewhere corroborates nothing: the plain rule (score 49.1: medium)
    (i,) = incidents([up, f("rare_destination", "10.0.0.5", 41, dest="198.51.100.7")])
    assert (i.severity, i.corroborated) == ("medium", None)
    (i,) = incidents([f("beaconing", "10.0.0.5", 45), rare])
    assert (i.severity, i.corroborated) == ("medium", None)
