"""The lab's exfiltration scenarios (lab/scenarios.py, captures in examples/) against their truth.

Byte estimates are compared with what the tools themselves reported (examples/lab-truth.json),
with the tolerance each channel allows: TLS adds its handshake and record headers to what curl
counts; a DNS tunnel's estimate is the information in the query names, close to the file.
"""

from __future__ import annotations

import json

import pytest

from conftest import EXAMPLES
from detkit import analyze_capture

TRUTH = json.loads((EXAMPLES / "lab-truth.json").read_text())["scenarios"]


def _lab(name: str, tmp_path_factory, only=()):
    pcap = EXAMPLES / TRUTH[name]["pcap"]
    assert pcap.exists(), f"{pcap} missing: rebuild with sudo make lab-scenarios"
    return analyze_capture(str(pcap), tmp_path_factory.mktemp(name), only=only)


def _strong(fs):
    return [f for f in fs if f.severity in ("medium", "high", "critical")]


def test_dns_tunnel(tmp_path_factory):
    t = TRUTH["dns-tunnel"]["summary"]
    fs = _lab("dns-tunnel", tmp_path_factory)
    tunnel = [f for f in fs if f.detection == "dns_tunnel"]
    # the client, and the LAN resolver that forwarded every query upstream
    assert [(f.internal_hosts, f.external_names) for f in tunnel] == [
        ([t["client_ip"]], [t["registered_domain"]]), ([t["resolver_ip"]], [t["registered_domain"]])]
    f = tunnel[0]
    assert f.severity == "critical" and f.channel == "dns"
    assert f.metrics["unique_subdomains"] == f.evidence["unique_names"] == t["unique_subdomains"] == 1567
    assert f.evidence["queries"] == t["queries"]
    # the label bytes are within 2 % of the truth's subdomain bytes; base32 carries 5 bits in each
    # of them, and the estimate undoes that: within 10 % of the file (sequence and session labels)
    assert abs(f.metrics["label_bytes"] - t["subdomain_bytes"]) <= 0.02 * t["subdomain_bytes"]
    assert abs(f.bytes_out - t["file_bytes"]) <= 0.10 * t["file_bytes"]
    assert {g.detection for g in _strong(fs)} == {"dns_tunnel"}


def test_beacon(tmp_path_factory):
    t = TRUTH["beacon"]["summary"]
    fs = _lab("beacon", tmp_path_factory)
    (b,) = [f for f in fs if f.detection == "beaconing"]
    assert (b.internal_hosts, b.external_hosts, b.external_names) == (
        [t["client_ip"]], [t["server_ip"]], [t["server_name"]])
    assert b.severity == "critical" and b.channel == "https"
    assert b.metrics["connections"] == t["connections"] == 53
    # the period is the median interval of the SYNs: within 1 % despite ±25 % jitter
    assert abs(b.metrics["period_seconds"] - t["syn_intervals"]["median_s"]) <= 0.01 * t["syn_intervals"]["median_s"]
    assert b.bytes_out == t["bytes_total"]["wire_payload_up"]  # TCP payload, TLS records included
    # the browsing beside it raises nothing of medium or more
    assert [(f.detection, f.external_names) for f in _strong(fs)] == [("beaconing", [t["server_name"]])]


def test_https_upload_hidden_in_browsing(tmp_path_factory):
    t = TRUTH["https-upload"]["summary"]
    dest = t["per_destination"]["upload.files-drop.test"]
    fs = _lab("https-upload", tmp_path_factory)
    (u,) = [f for f in fs if f.detection == "upload_heavy"]
    assert (u.internal_hosts, u.external_names, u.external_hosts) == (
        [t["client_ip"]], ["upload.files-drop.test"], [dest["server_ip"]])
    # curl's count <= estimate <= curl + TLS overhead (2500 bytes + 0.5 % per connection)
    curl, n = dest["curl_sent"], dest["connections"]
    assert curl <= u.bytes_out <= curl + n * 2500 + curl / 200
    assert u.bytes_out == dest["wire_payload_up"]
    browsed = {"www.example-shop.test", "cdn.example-media.test"}
    assert not [f for f in _strong(fs) if browsed & set(f.external_names)]
    assert {(f.detection, tuple(f.external_names)) for f in _strong(fs)} == {
        ("upload_heavy", ("upload.files-drop.test",)), ("rare_destination", ("upload.files-drop.test",))}


def test_dlp_csv_over_http_smtp_ftp_counts_exactly(tmp_path_factory):
    t = TRUTH["dlp"]["summary"]
    content = t["content"]
    fs = _lab("dlp", tmp_path_factory)
    dlp = {f.external_hosts[0]: f for f in fs if f.detection == "cleartext_sensitive_data"}
    assert sorted(dlp) == sorted(c["destination"]["ip"] for c in t["channels"])
    for c in t["channels"]:
        f = dlp[c["destination"]["ip"]]
        exp = c["identifiers_expected"]
        assert f.internal_hosts == [t["client_ip"]] and f.severity == "critical"
        # only the valid check digits count: 120 of the 150 KVNR- and IBAN-shaped values
        assert f.metrics["counts"] == {"kvnr": exp["kvnr_valid_distinct"], "ik": content["ik_valid_distinct"],
                                       "iban": exp["iban_valid_distinct"], "idnr": 0, "rvnr": 0,
                                       "icd10": content["icd10_codes_distinct"],
                                       "email": 0,  # the lab's addresses are RFC 2606 example domains
                                       "phone": 0}
        assert f.metrics["hits"]["kvnr"] == exp["kvnr_valid_occurrences"]
        assert (f.metrics["subjects_lower"], f.metrics["subjects_upper"]) == (120, 240)
        assert f.bytes_out == c["wire_payload_client_to_server"]
    assert {f.channel for f in dlp.values()} == {"http", "smtp", "ftp-data"}


def test_dlp_same_csv_over_tls_is_not_inspected_but_counted(tmp_path_factory):
    import abfluss
    from abfluss.coverage import payload_coverage
    from detkit import workspace_for

    t = TRUTH["dlp-tls"]["summary"]["channels"][0]
    pcap = str(EXAMPLES / TRUTH["dlp-tls"]["pcap"])
    fs = analyze_capture(pcap, tmp_path_factory.mktemp("dlp-tls"))
    assert [f for f in fs if f.detection == "cleartext_sensitive_data"] == []
    ws = abfluss.open_workspace(workspace_for((pcap,), tmp_path_factory.mktemp("unused")))
    try:
        p = payload_coverage(ws)
    finally:
        ws.close()
    assert p["encrypted_bytes"] == t["wire_payload_client_to_server"] == 21708
    assert p["cleartext_bytes"] == 0 and p["encrypted_share"] == 1.0


def test_dlp_exports_written_by_real_tools_count_exactly(tmp_path_factory):
    """sqlite3 .mode json over HTTP, a zip of sqlite3 csv/insert/markdown exports by SMTP, a
    tar.gz of sqlite3 .dump by FTP (issue 12): the same distinct counts as the CSV itself."""
    t = TRUTH["dlp-exports"]["summary"]
    fs = _lab("dlp-exports", tmp_path_factory, only=("cleartext_sensitive_data",))
    dlp = {f.external_hosts[0]: f for f in fs if f.detection == "cleartext_sensitive_data"}
    assert sorted(dlp) == sorted(c["destination"]["ip"] for c in t["channels"])
    for c in t["channels"]:
        f, exp = dlp[c["destination"]["ip"]], c["identifiers_expected"]
        assert f.internal_hosts == [t["client_ip"]] and f.severity == "critical"
        assert f.metrics["counts"] == {"kvnr": exp["kvnr_valid_distinct"], "ik": exp["ik_valid_distinct"],
                                       "iban": exp["iban_valid_distinct"], "idnr": 0, "rvnr": 0,
                                       "icd10": exp["icd10_codes_distinct"], "email": 0, "phone": 0}, c["carrier"]
        assert f.bytes_out == c["wire_payload_client_to_server"]
    assert {f.channel for f in dlp.values()} == {"http", "smtp", "ftp-data"}
