"""cleartext_sensitive_data: literal positives and negatives, golden findings on real captures."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from detkit import T0, _internal, analyze_capture, assert_golden, flow, run

from abfluss.detections.cleartext_sensitive_data import Settings

HOST, DEST, NAME = "10.10.0.11", "203.0.113.50", "upload.files-drop.test"
CID = "1:Xq0Pp1abcdefghijklmnopqrstu="


def hit(ts: float = 0, value: str = "v", category: str = "kvnr", **kw) -> dict:
    """A ``dlp`` row as the analysis exports it: one distinct value of one flow side."""
    r = dict(ts=T0 + timedelta(seconds=ts), community_id=CID, orig_h=HOST, orig_p=50000, resp_h=DEST,
             resp_p=80, proto="tcp", sender="orig", app="http", category=category, masked="A12******0",
             anchored=True, hits=1, sensor="test", input_id="literal", tenant="default", allowlisted=False)
    r.update(kw)
    r["hmac"] = hashlib.sha256(f"{r['category']}:{value}".encode()).hexdigest()
    r.setdefault("orig_internal", _internal(r["orig_h"]))
    r.setdefault("resp_internal", _internal(r["resp_h"]))
    return r


def side(ts: float = 0, **kw) -> dict:
    """An ``inspected`` row (one flow side)."""
    r = dict(ts=T0 + timedelta(seconds=ts), community_id=CID, orig_h=HOST, orig_p=50000, resp_h=DEST,
             resp_p=80, proto="tcp", sender="orig", app="http", payload_bytes=250_000, scanned_bytes=249_000,
             encrypted=False, gaps=0, sensor="test", input_id="literal", tenant="default", allowlisted=False)
    r.update(kw)
    r.setdefault("orig_internal", _internal(r["orig_h"]))
    r.setdefault("resp_internal", _internal(r["resp_h"]))
    return r


def upload(kvnrs: int = 120, ibans: int = 118, **kw) -> list[dict]:
    return ([hit(1, f"K{i}", **kw) for i in range(kvnrs)]
            + [hit(2, f"I{i}", "iban", anchored=False, **kw) for i in range(ibans)])


def positive_tables() -> dict:
    return dict(
        flows=[flow(0, orig_h=HOST, resp_h=DEST, resp_p=80, service="http", server_name=NAME,
                    orig_bytes=250_000, community_id=CID, uid="Cup1")],
        dlp=upload(),
        inspected=[side(0), side(0, sender="resp", payload_bytes=300, scanned_bytes=300),
                   side(5, community_id="1:tls", resp_p=443, app="tls", payload_bytes=1_000_000,
                        scanned_bytes=0, encrypted=True)],
    )


def test_bulk_upload_of_anchored_kvnrs_is_critical():
    (f,) = run("cleartext_sensitive_data", **positive_tables())
    assert f.severity == "critical" and f.internal_hosts == [HOST] and f.external_hosts == [DEST]
    assert f.explanation == (f"{HOST} sent 120 distinct KVNRs (anchored) and 118 IBANs in cleartext HTTP "
                             f"to {DEST} ({NAME}), about 120 to 238 data subjects.")
    assert f.metrics["counts"] == {"kvnr": 120, "ik": 0, "iban": 118, "idnr": 0, "rvnr": 0, "icd10": 0,
                                   "email": 0, "phone": 0}
    assert (f.metrics["subjects_lower"], f.metrics["subjects_upper"]) == (120, 238)
    assert f.bytes_out == 250_000  # the sending side of the flows with hits
    assert (f.metrics["payload_bytes"], f.metrics["encrypted_bytes"]) == (1_250_000, 1_000_000)
    assert f.evidence == {"flows": 1, "top_flows": ["Cup1"], "community_ids": [CID]}
    assert f.channel == "http" and f.external_names == [NAME]
    assert set(f.score_parts) == {"records", "anchored", "external"} and f.score == 80.0


def test_a_value_sent_in_many_flows_counts_once():
    rows = [hit(i, "same", community_id=f"1:f{i}", hits=3) for i in range(5)]
    (f,) = run("cleartext_sensitive_data", dlp=rows)
    assert f.metrics["counts"]["kvnr"] == 1 and f.metrics["hits"]["kvnr"] == 15 and f.metrics["flows"] == 5


def test_few_anchored_health_identifiers_to_an_external_destination_are_high():
    rows = [hit(0, "K1"), hit(0, "K2"), hit(1, "J45.0", "icd10", anchored=True)]
    (f,) = run("cleartext_sensitive_data", dlp=rows)
    assert f.severity == "high" and f.score < 60
    assert f.explanation == (f"{HOST} sent 2 distinct KVNRs (anchored) and 1 ICD-10 code (anchored) "
                             f"in cleartext HTTP to {DEST}, about 2 data subjects.")


def test_a_single_unanchored_kvnr_is_only_info():
    (f,) = run("cleartext_sensitive_data", dlp=[hit(0, "K1", anchored=False, app="raw", resp_p=9000)])
    assert f.severity == "info" and f.channel == "tcp/9000"
    assert f.explanation == f"{HOST} sent 1 distinct KVNR in cleartext TCP port 9000 to {DEST}, about 1 data subject."


def test_an_internal_server_answering_an_external_client_is_the_sender():
    rows = upload(30, 0, orig_h="198.51.100.7", resp_h="10.20.0.5", sender="resp", orig_p=44000, resp_p=8080)
    (f,) = run("cleartext_sensitive_data", dlp=rows)
    assert f.internal_hosts == ["10.20.0.5"] and f.external_hosts == ["198.51.100.7"] and f.severity == "high"


def test_negative_downloads_internal_destinations_and_allowlisted():
    incoming = upload(150, 0, orig_h="198.51.100.7", resp_h=HOST)  # an external host sends to us
    assert run("cleartext_sensitive_data", dlp=incoming) == []
    internal = upload(150, 0, resp_h="10.10.0.99")
    assert run("cleartext_sensitive_data", dlp=internal) == []
    assert run("cleartext_sensitive_data", dlp=upload(allowlisted=True)) == []
    (f,) = run("cleartext_sensitive_data", settings=Settings(include_internal=True), dlp=internal)
    assert f.external_hosts == [] and "external" not in f.score_parts and f.severity == "high"  # by score only


def test_contact_data_needs_a_list():
    few = [hit(0, f"m{i}@mail.test", "email", anchored=False, app="smtp", resp_p=25) for i in range(4)]
    assert run("cleartext_sensitive_data", dlp=few) == []
    many = [hit(0, f"m{i}@mail.test", "email", anchored=False, app="smtp", resp_p=25) for i in range(150)]
    (f,) = run("cleartext_sensitive_data", dlp=many)
    assert f.severity == "medium" and f.metrics["subjects_lower"] == 150
    assert f.explanation.startswith(f"{HOST} sent 150 distinct e-mail addresses in cleartext SMTP to {DEST}")


def test_golden_smtp_capture_with_a_low_contact_threshold(tmp_path_factory):
    # A spam bot's SMTP session: the envelope and headers name a handful of addresses (no
    # finding at the default of 10); with 1 the finding shows what the inspection found.
    cfg = "[detections.cleartext_sensitive_data]\nmin_contact_distinct = 1\n"
    fs = analyze_capture("suricata-verify/mta-smtp/10.7.29.101_49898-178.63.41.150_25.pcap",
                         tmp_path_factory.mktemp("csd"), cfg, only=("cleartext_sensitive_data",))
    assert [(f.internal_hosts, f.external_hosts, f.severity) for f in fs] == [
        (["10.7.29.101"], ["178.63.41.150"], "low")]
    assert_golden("cleartext_sensitive_data-mta-smtp", fs)
    quiet = analyze_capture("suricata-verify/mta-smtp/10.7.29.101_49898-178.63.41.150_25.pcap",
                            tmp_path_factory.mktemp("csd2"), only=("cleartext_sensitive_data",))
    assert quiet == []


def test_benign_captures_give_nothing(tmp_path_factory):
    for rel in ("zeek-traces/wikipedia.pcap", "zeek-traces/bro.org.pcap", "zeek-traces/m57-long-49583-80.pcap"):
        assert analyze_capture(rel, tmp_path_factory.mktemp("benign"), only=("cleartext_sensitive_data",)) == []
