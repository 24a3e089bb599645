"""Indicator loading: plain lists, CSV, STIX 2.1 bundles, inline values, and errors with file:line."""

from __future__ import annotations

import pytest

from abfluss import intel
from abfluss.errors import ConfigError
from conftest import ROOT, data, run_cli

INTEL = ROOT / "tests" / "data" / "intel"


def values(s: intel.IndicatorSet) -> list[tuple[str, str, str]]:
    return [(i.value, i.kind, i.source.rsplit("/", 1)[-1]) for i in s.indicators]


def test_plain_list_comments_wildcards_case_and_trailing_dots():
    assert values(intel.load((str(INTEL / "c2-domains.txt"),))) == [
        ("testing.com", "domain", "c2-domains.txt:3"),
        ("files-drop.test", "domain", "c2-domains.txt:4"),  # "*." says what a domain means anyway
        ("evil-example.test", "domain", "c2-domains.txt:5")]


def test_csv_with_indicator_column_skips_empty_cells():
    assert values(intel.load((str(INTEL / "c2-addresses.csv"),))) == [
        ("141.193.213.20", "ipv4", "c2-addresses.csv:2"), ("198.51.100.250", "ipv4", "c2-addresses.csv:3")]


def test_csv_header_in_a_comment_and_ip_port_values():
    assert values(intel.load((str(INTEL / "abusech-style.csv"),))) == [
        ("141.193.213.21", "ipv4", "abusech-style.csv:5"), ("192.0.2.77", "ipv4", "abusech-style.csv:6")]
    # ThreatFox: "ioc_value" wins over "ioc_id"; "a.b.c.d:port" is the address.
    assert values(intel.load((str(INTEL / "threatfox-style.csv"),))) == [
        ("141.193.213.21", "ipv4", "threatfox-style.csv:2"), ("testing.com", "domain", "threatfox-style.csv:3")]


def test_stix_bundle_patterns():
    s = intel.load((str(INTEL / "c2-bundle.json"),))
    assert values(s) == [
        ("141.193.213.0/24", "ipv4", "c2-bundle.json:12"),  # ISSUBSET
        ("c2.evil-example.test", "domain", "c2-bundle.json:23"),  # OR of observations
        ("192.0.2.10", "ipv4", "c2-bundle.json:23"), ("192.0.2.11", "ipv4", "c2-bundle.json:23"),  # IN
        ("2001:db8::66", "ipv6", "c2-bundle.json:23")]  # network-traffic:dst_ref.value
    assert s.skipped == 2  # the file hash and the snort rule; the revoked one is simply gone


def test_inline_values_normalised_and_deduplicated():
    s = intel.load((str(INTEL / "c2-domains.txt"),), addresses=("10.1.2.3/8", "2001:DB8:0::5", " 192.0.2.1 "),
                   domains=("Testing.COM", "c2.example.test."))
    assert values(s) == [
        ("testing.com", "domain", "c2-domains.txt:3"),  # first source kept
        ("files-drop.test", "domain", "c2-domains.txt:4"), ("evil-example.test", "domain", "c2-domains.txt:5"),
        ("10.0.0.0/8", "ipv4", "threat_intel.addresses[1]"), ("2001:db8::5", "ipv6", "threat_intel.addresses[2]"),
        ("192.0.2.1", "ipv4", "threat_intel.addresses[3]"), ("c2.example.test", "domain", "threat_intel.domains[2]")]
    assert s.ipv4_networks() == [("10.0.0.0/8", 8, 167772160), ("192.0.2.1", 32, 3221225985)]
    assert s.domains() == ["testing.com", "files-drop.test", "evil-example.test", "c2.example.test"]
    assert s.ipv6_addresses() == ["2001:db8::5"]
    assert s.source_of("c2.example.test") == "threat_intel.domains[2]"


def test_tls_fingerprints_from_sslbl_csv_stix_and_plain_lists():
    s = intel.load((str(INTEL / "sslbl-ja3.csv"), str(INTEL / "tls-bundle.json"), str(INTEL / "fingerprints.txt")))
    assert [(i.value, i.kind, i.source.rsplit("/", 1)[-1], i.reason) for i in s.indicators] == [
        # SSLBL: header in the last comment line, Listingreason is the reason
        ("6734f37431670b3ab4292b8f60f29984", "ja3", "sslbl-ja3.csv:8", "Trickbot"),
        ("e7d705a3286e19ea42f587b344ee6865", "ja3", "sslbl-ja3.csv:9", "Tor"),
        ("49ed2ef3f1321e5f044f1e71b0e6fdd5", "ja3", "sslbl-ja3.csv:10", "TrickBot (server JA3S)"),
        # STIX: x509-certificate:hashes.'SHA-1' and custom ja3/ja4 properties; the name is the reason
        ("0a6b201a7bff643cc5dd6631e5940e858ee07d25", "sha1", "tls-bundle.json:12", "Test C2 certificate"),
        ("t13d3112h2_e8f1e7e78f70_b26ce05bbdd6", "ja4", "tls-bundle.json:23", "Test loader TLS client")]
    assert s.skipped == 1  # a file MD5 is no JA3, though it looks the same
    assert s.fingerprints()[3:] == [("0a6b201a7bff643cc5dd6631e5940e858ee07d25", "sha1"),
                                    ("t13d3112h2_e8f1e7e78f70_b26ce05bbdd6", "ja4")]
    assert s.reason_of("e7d705a3286e19ea42f587b344ee6865") == "Tor" and s.reason_of("nothing") == ""
    # plain list: upper case and colons normalised; a hex string is never a one-label domain
    plain = intel.load((str(INTEL / "fingerprints.txt"),))
    assert [(i.value, i.kind) for i in plain.indicators] == [
        ("6734f37431670b3ab4292b8f60f29984", "ja3"), ("t13d3112h2_e8f1e7e78f70_b26ce05bbdd6", "ja4"),
        ("0a6b201a7bff643cc5dd6631e5940e858ee07d25", "sha1")]
    assert plain.domains() == [] and plain.ipv4_networks() == []


def test_a_stix_fingerprint_property_with_another_kind_of_value_is_an_error(tmp_path):
    bundle = tmp_path / "b.json"
    bundle.write_text('{"type": "bundle", "objects": [{"type": "indicator", "id": "indicator--1", '
                      '"pattern": "[x-tls:ja3 = \'evil.test\']", "pattern_type": "stix"}]}')
    with pytest.raises(ConfigError, match=r"b.json:1: 'evil.test' compared with a ja3 property is no ja3 value"):
        intel.load((str(bundle),))


@pytest.mark.parametrize("name,message", [
    ("bad-url.txt", ":3: 'http://testing.com/beacon' is neither an IP address, an IPv4 network, a domain name "
                    "nor a TLS fingerprint"),
    ("bad-ipv6-net.txt", ":2: IPv6 network '2001:db8::/32' is not supported, list its addresses"),
    ("bad-columns.csv", ":1: no indicator column (name one indicator, ioc, value, ip, domain, ja3, ja4 or sha1)"),
    ("bad-json.json", ":4: invalid JSON: Expecting property name enclosed in double quotes"),
    ("bad-pattern.json", ":11: indicator indicator--9e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f: invalid STIX pattern: "
                         "1:35: mismatched input '<EOF>' expecting ']'"),
    ("missing.txt", ": indicator file not found"),
])
def test_bad_files_name_file_and_line(name, message):
    with pytest.raises(ConfigError) as e:
        intel.load((str(INTEL / name),))
    assert str(e.value) == f"{INTEL / name}{message}"
    assert "\n" not in str(e.value)


def test_bad_inline_values():
    with pytest.raises(ConfigError, match=r"^threat_intel.domains\[1\]: '192.0.2.1' is an address"):
        intel.load(domains=("192.0.2.1",))
    with pytest.raises(ConfigError, match=r"^threat_intel.addresses\[2\]: 'evil test' is neither"):
        intel.load(addresses=("192.0.2.1", "evil test"))
    with pytest.raises(ConfigError, match=r"^threat_intel.addresses\[1\]: '192.0.2.256' is neither"):
        intel.load(addresses=("192.0.2.256",))  # not taken for a domain with a numeric top level


def test_one_indicator_per_line(tmp_path):
    p = tmp_path / "hosts.txt"
    p.write_text("0.0.0.0 evil.test\n")
    with pytest.raises(ConfigError, match=r"hosts.txt:1: one indicator per line expected, got '0.0.0.0 evil.test'"):
        intel.load((str(p),))


def test_not_utf8_names_the_line(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes(b"evil.test\nb\xe4d.test\n")
    with pytest.raises(ConfigError, match=r"latin1.txt:2: not UTF-8 text \(byte 11\)"):
        intel.load((str(p),))


def test_cli_reports_a_bad_file_in_one_line_relative_to_the_config(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "lists").mkdir()
    (ws / "lists" / "c2.txt").write_text((INTEL / "bad-url.txt").read_text())
    (ws / "abfluss.toml").write_text('[networks]\ninternal = ["10.0.2.0/24"]\n'
                                     '[detections.threat_intel]\nfiles = ["lists/c2.txt"]\n')
    run_cli("ingest", str(data("zeek-traces/bro.org.pcap")), workspace=ws, check=True)
    proc = run_cli("analyze", "--only", "threat_intel", workspace=ws)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"abfluss: {ws / 'lists' / 'c2.txt'}:3: 'http://testing.com/beacon' is "
                                   "neither an IP address, an IPv4 network, a domain name nor a TLS fingerprint")
