"""ids_alert: literal positive and negatives, golden findings on a real eve.json and Zeek notice logs."""

from detkit import alert, analyze_capture, assert_golden, flow, run

from abfluss.detections.ids_alert import Settings


def positive_tables():
    return {"alerts": [alert(0, community_id="1:abc="), alert(60), alert(120, resp_h="203.0.113.10"),
                       alert(30, signature="ET INFO Something Else", severity=3)]}


def test_positive_one_finding_per_host_and_signature_with_the_alerts_severity():
    fs = {f.metrics["signature"]: f for f in run("ids_alert", **positive_tables())}
    assert set(fs) == {"ET MALWARE Test C2 Beacon", "ET INFO Something Else"}
    c2 = fs["ET MALWARE Test C2 Beacon"]
    assert c2.severity == "high" and c2.internal_hosts == ["10.0.0.5"]
    assert c2.external_hosts == ["203.0.113.10", "203.0.113.9"]
    assert c2.metrics["alerts"] == 3 and c2.evidence["community_ids"] == ["1:abc="]
    assert (c2.start.second, c2.end.minute) == (0, 2) and c2.channel == "ids" and c2.bytes_out == 0
    assert "3 alert(s) 'ET MALWARE Test C2 Beacon' (rule 2000001) for 10.0.0.5" in c2.explanation
    assert fs["ET INFO Something Else"].severity == "low"


def test_inbound_probes_of_an_exposed_server_drop_one_band():
    probes = [alert(i, orig_h="198.51.100.7", resp_h="10.0.0.80", severity=2, uid=f"S{i}") for i in range(3)]
    (f,) = run("ids_alert", alerts=probes)
    assert f.internal_hosts == ["10.0.0.80"] and f.severity == "low" and f.score_parts["inbound_only"] == -20
    # the same alerts on connections the internal host opened (its flows say so) keep their band
    flows = [flow(i, uid=f"S{i}", orig_h="10.0.0.80", resp_h="198.51.100.7") for i in range(3)]
    (f,) = run("ids_alert", alerts=probes, flows=flows)
    assert f.severity == "medium" and "inbound_only" not in f.score_parts


def test_notice_without_severity_uses_the_setting():
    notice = alert(0, signature="Scan::Port_Scan", signature_id=None, severity=None,
                   category="10.0.0.5 scanned at least 15 unique ports of host 203.0.113.9 in 0m2s")
    (f,) = run("ids_alert", alerts=[notice])
    assert f.severity == "low" and "rule" not in f.explanation
    (f,) = run("ids_alert", Settings(unknown_severity=1), alerts=[notice])
    assert f.severity == "high"
    # housekeeping notices are info whatever is configured for the rest
    cert = dict(notice, signature="SSL::Invalid_Server_Cert", category="SSL certificate validation failed")
    (f,) = run("ids_alert", Settings(unknown_severity=1), alerts=[cert])
    assert f.severity == "info"


def test_negative_external_only_allowlisted_and_ignored():
    assert run("ids_alert", alerts=[alert(0, orig_h="198.51.100.1", resp_h="203.0.113.9")]) == []
    assert run("ids_alert", alerts=[alert(0, allowlisted=True)]) == []
    assert run("ids_alert", Settings(ignore_signatures=("ET MALWARE Test C2 Beacon",)), alerts=[alert(0)]) == []


def test_golden_suricata_eve_slips_test6(tmp_path_factory):
    # An exposed server (192.168.1.129) probed from the internet: 745 alerts of 122 signatures,
    # every one on connections opened from outside, so one band below the alert's severity:
    # the two severity-1 exploit attempts are medium, the rest low (severity 2) or info (3).
    fs = analyze_capture("slips/test6-malicious.suricata.json", tmp_path_factory.mktemp("ids"), only=("ids_alert",))
    assert len(fs) == 122 and all("inbound_only" in f.score_parts for f in fs)
    assert sorted(f.metrics["signature"] for f in fs if f.severity == "medium") == [
        "ET EXPLOIT D-Link Devices Home Network Administration Protocol Command Execution",
        "ET WEB_SERVER WGET Command Specifying Output in HTTP Headers"]
    assert {h for f in fs for h in f.internal_hosts} == {"192.168.1.129"}
    assert sum(f.metrics["alerts"] for f in fs) == 745  # every alert names the internal host
    top = max(fs, key=lambda f: f.metrics["alerts"])
    assert top.metrics["signature"] == "ET SCAN Suspicious inbound to MSSQL port 1433" and top.metrics["alerts"] == 131
    assert_golden("ids_alert-slips-test6", fs)


def test_golden_zeek_notice_logs(tmp_path_factory):
    # test9: ICMP address and timestamp scans by 192.168.1.15 (JSON notice log without _path);
    # test10: an external scanner only (no internal host: no finding).
    fs = analyze_capture(("slips/test9-mixed-zeek/notice.log", "slips/test10-mixed-zeek/notice.log"),
                         tmp_path_factory.mktemp("notice"), only=("ids_alert",))
    got = sorted((f.internal_hosts[0], f.metrics["signature"], f.metrics["alerts"], f.severity) for f in fs)
    assert got == [("192.168.1.15", "ICMP::AddressMaskScan", 4, "low"), ("192.168.1.15", "ICMP::ICMPAddressScan", 9, "low"),
                   ("192.168.1.15", "ICMP::TimestampScan", 5, "low")]
    assert_golden("ids_alert-slips-notice", fs)
