"""Zeek x509.log into ``certs`` and the ssl.log fields that point at it (TSV and JSON, both
Zeek's file-id and fingerprint keyed layouts); Slips' test9 and test10 logs."""

from __future__ import annotations

from datetime import datetime, timezone

from abfluss.readers import zeek
from abfluss.readers.base import ReadReport
from conftest import data


def read(path):
    report = ReadReport(str(path))
    tables: dict = {}
    for table, t in zeek.read(path, report):
        tables.setdefault(table, []).extend(t.to_pylist())
    return tables, report


def utc(s: float) -> datetime:
    return datetime.fromtimestamp(s, timezone.utc)


def test_x509_tsv_rows_and_the_handshakes_that_refer_to_them():
    certs, _ = read(data("slips/test10-mixed-zeek/x509.log"))
    assert [(c["fuid"], c["subject"], c["san_dns"], c["ca"]) for c in certs["certs"]] == [
        ("FRBu481kCfyF0aScA1", "CN=virtual.rsecai.com", ["virtual.secai.com"], False),
        ("FjGF8o46zypp408Lm5", "CN=virtual.secai.com", ["virtual.secai.com"], False)]
    first = certs["certs"][0]
    assert (first["not_before"], first["not_after"]) == (utc(1599538205), utc(1607317805))
    assert first["issuer"] == "CN=Let's Encrypt Authority X3,O=Let's Encrypt,C=US" and first["san_ip"] is None
    tls, _ = read(data("slips/test10-mixed-zeek/ssl.log"))
    row = next(r for r in tls["tls"] if r["uid"] == "CYetmM3b29tLNkUk42")
    assert row["cert_fuids"] == ["FRBu481kCfyF0aScA1", "Fyjto01jEK20hLjiY1"] and row["validation_status"] == "ok"


def test_x509_json_without_path_is_recognised_by_its_fields():
    certs, report = read(data("slips/test9-mixed-zeek/x509.log"))
    assert report.ignored is None and len(certs["certs"]) == 154
    bing = next(c for c in certs["certs"] if c["fuid"] == "FKMTO94tQEsBTFbPgc")
    assert bing["subject"] == "CN=www.bing.com" and "*.bing.com" in bing["san_dns"]
    tls, _ = read(data("slips/test9-mixed-zeek/ssl.log"))
    assert [r["ja3s"] for r in tls["tls"] if r["ja3s"]] == ["e7d705a3286e19ea42f587b344ee6865"]


def test_zeek_4_2_fingerprint_keys(tmp_path):
    # From Zeek 4.2 certificates are logged once, keyed by their SHA-256 fingerprint.
    x509 = tmp_path / "x509.log"
    x509.write_text('{"ts":1700000000.5,"fingerprint":"ab12","certificate.subject":"CN=a.test",'
                    '"certificate.issuer":"CN=a.test","certificate.not_valid_before":1690000000.0,'
                    '"certificate.not_valid_after":1695000000.0,"san.dns":["a.test"],"basic_constraints.ca":false}\n')
    ssl = tmp_path / "ssl.log"
    ssl.write_text('{"ts":1700000000.4,"uid":"C1","id.orig_h":"10.0.0.5","id.orig_p":5000,"id.resp_h":"198.51.100.1",'
                   '"id.resp_p":443,"server_name":"a.test","established":true,"cert_chain_fps":["ab12"],'
                   '"validation_status":"self signed certificate","ja3s":"00ff"}\n')
    certs, _ = read(x509)
    assert [(c["fuid"], c["not_after"]) for c in certs["certs"]] == [("ab12", utc(1695000000))]
    tls, _ = read(ssl)
    (row,) = tls["tls"]
    assert (row["cert_fuids"], row["validation_status"], row["ja3s"]) == (["ab12"], "self signed certificate", "00ff")


def test_wrccdc_x509_tsv_gz():
    certs, report = read(data("wrccdc-zeek/zeek-tsv/x509.log.gz"))
    rows = certs["certs"]
    assert report.skipped == 0 and len(rows) == report.records["certs"] > 0
    assert all(r["fuid"] and r["subject"] is not None for r in rows)
    assert any(r["not_after"] is not None and r["not_after"] > r["not_before"] for r in rows)


def test_wrccdc_json_with_iso_times_equals_tsv():
    # Zeek JSON with ISO 8601 times writes the validity bounds as ISO strings too; before, every
    # certificate of this log was a skip ("bad certificate.not_valid_before").
    js, report = read(data("wrccdc-zeek/zeek-json/x509.json.gz"))
    tsv, _ = read(data("wrccdc-zeek/zeek-tsv/x509.log.gz"))
    assert report.skipped == 0 and len(js["certs"]) == len(tsv["certs"]) == 348
    bounds = lambda rows: sorted((c["fuid"], c["not_before"], c["not_after"]) for c in rows)  # noqa: E731
    assert bounds(js["certs"]) == bounds(tsv["certs"])
    vmware = next(c for c in js["certs"] if c["fuid"].startswith("b2dafbcd"))
    assert vmware["not_before"] == utc(1315656902)  # 2011-09-10T12:15:02.000000Z
