"""tls_anomaly: literal certificate mismatches (with and without subjectAltNames), self-signed,
expired and rare client fingerprints against their benign look-alikes; Slips' test9/test15
certificate CN mismatches (golden, both engines); benign controls."""

from __future__ import annotations

from datetime import timedelta

import pytest

from abfluss.detections.tls_anomaly import Settings, judge, name_matches
from conftest import EXAMPLES
from detkit import T0, analyze_capture, assert_golden, canonical, run

ONLY = ("tls_anomaly",)


def tls(ts=0, **kw) -> dict:
    """A handshake of internal 10.0.0.5 with external 203.0.113.9 (internal flags as exported)."""
    r = dict(ts=T0 + timedelta(seconds=ts), uid=f"T{ts}", orig_h="10.0.0.5", orig_p=50000 + ts, resp_h="203.0.113.9",
             resp_p=443, server_name="www.example.test", established=True, orig_internal=True, resp_internal=False,
             tenant="default", sensor="test", input_id="literal")
    r.update(kw)
    return r


def cert(fuid, subject, sans=None, issuer="CN=Test CA", ca=False, **kw) -> dict:
    r = dict(ts=T0 - timedelta(seconds=1), fuid=fuid, subject=subject, issuer=issuer, san_dns=sans, ca=ca,
             not_before=T0 - timedelta(days=30), not_after=T0 + timedelta(days=60), sensor="test", input_id="literal")
    r.update(kw)
    return r


def positive_tables() -> dict:
    """netflix.com answered with a certificate of Google's (Slips' test15, with x509 names)."""
    return {"tls": [tls(0, server_name="netflix.com", cert_fuids=["F1"], resp_h="52.0.131.132")],
            "certs": [cert("F1", "CN=www.google.com", ["www.google.com"])]}


def test_name_rules():
    assert name_matches("a.example.test", "*.example.test") and not name_matches("b.a.example.test", "*.example.test")
    assert not name_matches("example.test", "*.example.test") and name_matches("x.test", "X.TEST.")
    # subjectAltNames known: exact
    assert judge("shop.example.test", "CN=example.test", ["example.test", "*.example.test"]) is None
    assert judge("shop.other.test", "CN=example.test", ["example.test"]) == "example.test"
    # subject only: a copied well-known certificate, or a well-known name with a foreign one
    assert judge("netflix.com", "CN=www.google.com", None) == "Google"
    assert judge("netflix.com", "CN=whatever", None) == "whatever"
    assert judge("ssl.gstatic.com", "CN=*.google.com,O=Google Inc", None) is None  # one operator
    assert judge("eu-west-1.dc.ads.linkedin.com", "CN=ads.linkedin.com", None) is None  # one domain
    assert judge("cdn.shop.test", "CN=a248.e.akamai.net", None) is None  # a CDN's shared certificate
    assert judge("shop.test", "CN=other.test", None) is None  # an unlisted alternative name may cover it
    # a validated chain for a well-known name under a domain the list lacks (Microsoft's CDN)
    assert judge("iecvlist.microsoft.com", "CN=*.vo.msecnd.net", None, validated=True) is None
    assert judge("iecvlist.microsoft.com", "CN=*.vo.msecnd.net", None, validated=False) == "*.vo.msecnd.net"
    assert judge("netflix.com", "CN=www.google.com", None, validated=True) == "Google"  # a copy validates too


def test_certificate_of_another_site():
    handshakes = [tls(0, server_name="netflix.com", cert_fuids=["F1", "F2"], resp_h="52.0.131.132"),
                  tls(5, server_name="netflix.com", cert_fuids=["F1", "F2"], resp_h="52.0.131.132", established=False),
                  tls(9, server_name="www.example.test", cert_fuids=["F3"])]  # fits
    certs = [cert("F1", "CN=www.google.com", ["www.google.com"], issuer="CN=Google Internet Authority G2"),
             cert("F3", "CN=example.test", ["example.test", "*.example.test"])]
    (f,) = run("tls_anomaly", tls=handshakes, certs=certs)
    assert f.key == ("10.0.0.5", "name_mismatch", "52.0.131.132") and f.external_names == ["netflix.com"]
    assert f.score_parts == {"mismatch": 50.0, "impersonation": 15.0, "established": 10.0} and f.severity == "high"
    assert f.metrics["certificate_of"] == "Google" and f.metrics["handshakes"] == 2
    assert f.explanation == ("10.0.0.5 asked 52.0.131.132 for netflix.com and got a certificate that belongs to "
                             "Google (CN=www.google.com) in 2 TLS handshakes: the certificate does not fit the "
                             "server name.")
    assert f.attack == ["T1573.002", "T1557"] and f.evidence["top_flows"] == ["T0", "T5"]


def test_inline_subject_only_is_judged_cautiously():
    handshakes = [tls(0, server_name="shop.test", subject="CN=other.test"),  # may be a SAN
                  tls(1, server_name="www.gstatic.com", subject="CN=*.google.com"),
                  tls(2, server_name="netflix.com", subject="CN=www.google.com", resp_h="198.51.100.5")]
    (f,) = run("tls_anomaly", tls=handshakes)
    assert f.key == ("10.0.0.5", "name_mismatch", "198.51.100.5")


def test_self_signed_and_expired_external_servers_are_low_internal_ones_nothing():
    handshakes = [tls(0, cert_fuids=["S"], resp_h="198.51.100.1", server_name="selfie.test"),
                  tls(1, validation_status="self signed certificate", resp_h="198.51.100.2", server_name=None),
                  tls(2, cert_fuids=["E"], resp_h="198.51.100.3", server_name="old.test"),
                  tls(3, cert_fuids=["S"], resp_h="10.0.0.9", resp_internal=True, server_name="selfie.test")]
    certs = [cert("S", "CN=selfie.test", ["selfie.test"], issuer="CN=selfie.test"),
             cert("E", "CN=old.test", ["old.test"], not_after=T0 - timedelta(days=3))]
    fs = {f.key: f for f in run("tls_anomaly", tls=handshakes, certs=certs)}
    assert set(fs) == {("10.0.0.5", "self_signed", "198.51.100.1"), ("10.0.0.5", "self_signed", "198.51.100.2"),
                       ("10.0.0.5", "expired", "198.51.100.3")}
    assert {f.severity for f in fs.values()} == {"low"}
    old = fs[("10.0.0.5", "expired", "198.51.100.3")]
    assert old.metrics["not_after"].startswith("2026-02-27") and "expired on 2026-02-27" in old.explanation
    # a CA certificate is self-issued by nature; a grace period forgives a lapse of days
    assert run("tls_anomaly", settings=Settings(expired_grace_days=7), tls=handshakes[2:3], certs=certs) == []
    ca = [cert("S", "CN=Root", ["selfie.test"], issuer="CN=Root", ca=True)]
    assert run("tls_anomaly", tls=handshakes[:1], certs=ca) == []


def test_not_yet_valid_is_not_flagged():
    handshakes = [tls(0, cert_fuids=["N"], validation_status="certificate is not yet valid")]
    certs = [cert("N", "CN=www.example.test", ["www.example.test"], not_before=T0 + timedelta(days=1))]
    assert run("tls_anomaly", tls=handshakes, certs=certs) == []


def test_rare_client_fingerprint_beside_a_common_one():
    common, rare = "t13d1516h2_8daaf6152771_02713d6af862", "t12d0909h1_0123456789ab_0123456789ab"
    shakes = [tls(i, orig_h=f"10.0.0.{10 + i}", ja4=common, uid=f"C{i}") for i in range(12)]
    shakes += [tls(100 + i, ja4=rare, resp_h=f"198.51.100.{i}", uid=f"R{i}", server_name=None) for i in range(3)]
    shakes += [tls(200, ja4=common, uid="C200")]  # 10.0.0.5's browser
    (f,) = run("tls_anomaly", tls=shakes)
    assert f.key == ("10.0.0.5", "rare_fingerprint", rare) and f.severity == "low"
    assert f.metrics["servers"] == 3 and f.metrics["fingerprint_kind"] == "ja4" and len(f.external_hosts) == 3
    # a small network: every fingerprint is rare, none is judged
    assert run("tls_anomaly", tls=shakes[8:]) == []
    # a host that only ever uses its one library (a server, an appliance) is not flagged
    assert run("tls_anomaly", tls=shakes[:-1]) == []


def test_golden_slips_certificate_cn_mismatch(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    # test15 has the subject inline only: Slips' "Incompatible certificate CN to IP: 52.0.131.132
    # domain: netflix.com. The certificate is claiming to belong to Google"
    fs = analyze_capture("slips/test15-malicious-zeek", tmp, only=ONLY)
    assert {(f.key, f.metrics["certificate_of"]) for f in fs} == {
        (("10.0.2.15", "name_mismatch", "52.0.131.132"), "Google"),
        (("10.0.2.15", "name_mismatch", "22.33.22.33"), "whatever")}
    assert_golden("tls_anomaly-slips-test15", fs)
    # test9 has x509.log: the subjectAltNames decide (netflix.com served with Microsoft's certificates)
    fs9 = analyze_capture("slips/test9-mixed-zeek", tmp, only=ONLY)
    assert {(f.key[2], f.metrics["certificate_of"], tuple(f.external_names)) for f in fs9} == {
        ("123.33.22.11", "Microsoft", ("www.netflix.com",)), ("22.22.33.22", "Microsoft", ("netflix.com",))}
    assert_golden("tls_anomaly-slips-test9", fs9)
    assert analyze_capture("slips/test10-mixed-zeek", tmp, only=ONLY) == []  # its SAN covers the typo'd CN


def test_golden_is_the_same_on_spark(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls-spark")
    duck = analyze_capture("slips/test9-mixed-zeek", tmp, only=ONLY)
    spark = analyze_capture("slips/test9-mixed-zeek", tmp, only=ONLY, backend="pyspark")
    assert duck and canonical(spark) == canonical(duck)


def test_benign_controls_give_nothing_of_medium_or_more(tmp_path_factory):
    # RITA's TLS logs (inline subjects, among them msecnd.net for microsoft.com), a keylogged TLS
    # trace and the lab's browsing (JA4 only): one workspace
    rels = ("rita/open_conns", "rita/open_sni", "zeek-traces/tls-1.2-stream-keylog.pcap", str(EXAMPLES / "demo.pcap"))
    fs = analyze_capture(rels, tmp_path_factory.mktemp("benign"), only=ONLY)
    assert [f for f in fs if f.severity not in ("info", "low")] == []
