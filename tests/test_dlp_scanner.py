"""The DLP scanner: patterns, check digits, context anchors, suppression, privacy, real captures."""

from __future__ import annotations

import dataclasses
import logging
import random
import uuid
from collections import Counter, defaultdict

import dpkt
import pytest
from conftest import data

from abfluss.dlp import CATEGORIES, Hit, Scanner, ScanSettings, mask, value_hash
from abfluss.dlp import identifiers as ids
from abfluss.dlp.context import Anchors, CsvHeaders, Payload
from abfluss.dlp.scanner import _CLASS_TABLE, _Cand

KEY = b"\x11" * 32
OPEN = ScanSettings(suppress_values=frozenset(), suppress_email_domains=())  # nothing suppressed


def kvnr(body: str) -> str:
    return body + str(ids.kvnr_check_digit(body))


def cats(hits: list[Hit]) -> list[tuple[str, str, bool]]:
    return [(h.category, h.masked, h.anchored) for h in hits]


# --- every DOMAIN.md §2 vector, in context ----------------------------------------------------------
CONTEXT = {"kvnr": "Versichertennummer: {}", "ik": "IK: {}", "iban": "IBAN: {}", "idnr": "Steuer-ID: {}",
           "rvnr": "Rentenversicherungsnummer {}", "icd10": "Diagnose: {}", "email": "E-Mail: {}",
           "phone": "Tel.: {}"}
POSITIVE = [("kvnr", v) for v in ("A123456780", "X110411675", "M987654323", "Z000000017")] + \
    [("ik", v) for v in ("101575519", "104940005", "108310400", "109519005")] + \
    [("iban", v) for v in ("DE89370400440532013000", "DE89 3704 0044 0532 0130 00",
                           "DE23100000001234567890", "GB82WEST12345698765432")] + \
    [("idnr", v) for v in ("36574261809", "86095742719", "47036892816", "11213456783")] + \
    [("rvnr", v) for v in ("10010490A443", "15070649C103", "65170839J003")] + \
    [("icd10", v) for v in ("E11.90", "J45.0 G", "S51.9 GL", "A54.4†", "U07.1!")] + \
    [("email", v) for v in ("max.mustermann@aok.de", "dr.mueller@praxis-mueller.kim.telematik",
                            "a.b+c@sub.example.org")] + \
    [("phone", v) for v in ("+49 201 1234567", "0201/1234567", "+49 (0)170 1234567", "0049 30 12345678")]
NEGATIVE = [("kvnr", v) for v in ("A123456789", "G995030567", "X11041167", "1234567890")] + \
    [("ik", v) for v in ("101575518", "104940006", "10157551")] + \
    [("iban", v) for v in ("DE89370400440532013001", "DE88370400440532013000", "DE8937040044053201300")] + \
    [("idnr", v) for v in ("36574261890", "36554266806", "06574261809")] + \
    [("rvnr", v) for v in ("10010490A444", "15070649C104", "1001049A0443")] + \
    [("icd10", v) for v in ("E1.1", "EX1.2", "ISO9001", "A123456780")] + \
    [("email", v) for v in ("foo@bar", "@example.org", "foo@-bad.de")] + \
    [("phone", v) for v in ("12345", "+49 0 123", "0170 12")]


@pytest.mark.parametrize("category,value", POSITIVE)
def test_positive_vector_found_anchored(category, value):
    hits = Scanner(KEY, OPEN).scan(CONTEXT[category].format(value))
    assert cats(hits) == [(category, mask(category, value), True)]
    assert hits[0].hmac == value_hash(KEY, category, value)


@pytest.mark.parametrize("category,value", NEGATIVE)
def test_negative_vector_not_found(category, value):
    assert category not in {h.category for h in Scanner(KEY, OPEN).scan(CONTEXT[category].format(value))}


def test_kvnr_is_not_claimed_by_the_icd_pattern():
    assert cats(Scanner(KEY).scan("Diagnose: A123456780")) == [("kvnr", "A12******0", False)]


def test_idnr_3_adjacent_rule_is_a_confidence_modifier():
    assert cats(Scanner(KEY).scan("Steuer-ID: 11123456786")) == [("idnr", "111*******6", True)]
    loose = Scanner(KEY, ScanSettings(require_anchor=()))
    assert cats(loose.scan("11123456786")) == []                         # breaks the rule: needs an anchor
    assert cats(loose.scan("36574261809")) == [("idnr", "365*******9", False)]


def test_rvnr_irregular_day_needs_an_anchor():
    body = "10320490A44"  # day 32
    digits = body[:8] + "01" + body[9:11]
    v = body + str(ids._weighted_qs(digits, (2, 1, 2, 5, 7, 1, 2, 1, 2, 1, 2, 1)))
    assert ids.is_rvnr(v) and not ids.rvnr_date_regular(v)
    assert cats(Scanner(KEY).scan(f"Nr. {v}")) == []
    assert cats(Scanner(KEY).scan(f"RVNR {v}")) == [("rvnr", "103********" + v[-1], True)]


def test_lower_case_kvnr_only_with_anchor():
    assert cats(Scanner(KEY).scan("kvnr=a123456780")) == [("kvnr", "A12******0", True)]
    assert cats(Scanner(KEY).scan("id=a123456780")) == []
    assert cats(Scanner(KEY, ScanSettings(lowercase_kvnr=False)).scan("kvnr=a123456780")) == []


# --- weak categories and unanchored values ---------------------------------------------------------
def test_unanchored_values():
    s = Scanner(KEY)
    assert cats(s.scan("Bestellung A123456780 geliefert")) == [("kvnr", "A12******0", False)]
    assert s.scan("Artikel 101575519") == []        # IK needs context
    assert s.scan("Modell E11.90 in Grau") == []    # ICD needs context
    assert s.scan("Auftrag 36574261809") == []      # IdNr needs context


def test_icd_in_the_same_record_as_a_kvnr():
    s = Scanner(KEY)
    assert cats(s.scan("A123456780;Meier;E11.90 G\n")) == [("kvnr", "A12******0", False),
                                                           ("icd10", "***.**", True)]
    assert cats(s.scan("A123456780;Meier\nE11.90 G\n")) == [("kvnr", "A12******0", False)]


def test_icd_code_list_restricts():
    listed = Scanner(KEY, ScanSettings(icd10_codes=frozenset({"E1190"})))
    assert cats(listed.scan("ICD: E11.90, ICD: E11.99")) == [("icd10", "***.**", True)]


def test_full_kvnr_counts_its_ik_and_both_ids():
    ik, main = "101575519", kvnr("M98765432")
    assert cats(Scanner(KEY).scan(f"record {kvnr('A12345678')}{ik}7 end")) == [
        ("kvnr", "A12******0", True), ("ik", "101*****9", True)]
    assert [h.category for h in Scanner(KEY).scan(f"x {kvnr('A12345678')}{ik}{main}7 y")] == ["kvnr", "ik", "kvnr"]
    assert Scanner(KEY).scan(f"x {kvnr('A12345678')}1015755187 y") == []  # IK check fails


def test_suppressed_test_identities():
    s = Scanner(KEY)
    assert s.scan("IBAN: DE89 3704 0044 0532 0130 00") == []  # no phone number inside it either
    assert s.scan("IBAN GB82WEST12345698765432") == []
    inside, outside = kvnr("X00000001"), kvnr("X00005001")
    assert s.scan(f"KVNR {inside} KVNR {kvnr('X00005000')}") == []
    assert cats(s.scan(f"KVNR {outside}")) == [("kvnr", "X00******" + outside[-1], True)]
    assert s.scan("E-Mail: max@example.com, a@b.example, x@host.test") == []


def test_overlaps_go_to_the_stronger_identifier():
    assert [h.category for h in Scanner(KEY).scan("IBAN DE23 1000 0000 1234 5678 90")] == ["iban"]
    assert [h.category for h in Scanner(KEY).scan("IBAN: DE23100000001234567890 1234")] == ["iban"]


# --- context: FHIR, CSV, clusters --------------------------------------------------------------------
FHIR = """{"resourceType": "Patient", "identifier": [{"type": {"coding": [{"system":
 "http://fhir.de/CodeSystem/identifier-type-de-basis", "code": "GKV"}]},
 "system": "http://fhir.de/sid/gkv/kvid-10", "value": "%s",
 "assigner": {"identifier": {"system": "http://fhir.de/sid/arge-ik/iknr", "value": "104940005"}}}],
 "name": [{"family": "Müller", "given": ["Jürgen"]}], "birthDate": "1961-03-02"}
{"resourceType": "Condition", "code": {"coding": [{"system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm",
 "version": "2024", "code": "E11.90"}]}}"""


def test_fhir_resources_are_anchored_by_their_systems():
    assert cats(Scanner(KEY).scan(FHIR % "X110411675")) == [
        ("kvnr", "X11******5", True), ("ik", "104*****5", True), ("icd10", "***.**", True)]


def _rows(n: int, rng: random.Random) -> list[str]:
    return [f"{kvnr(chr(65 + rng.randrange(26)) + str(rng.randrange(10**7, 10**8)))};Müller;"
            f"{rng.randrange(10**10, 10**11)};Straße {i}" for i in range(n)]


def test_csv_header_anchors_its_column_far_below():
    idnrs = ["36574261809", "86095742719"]
    rows = [f"{kvnr('A12345678')};Müller;{idnrs[0]};Hauptstraße 1 in 12345 Köln"] + \
        [f"{kvnr('B98765432')};Schmidt;{idnrs[1]};Bahnhofstraße 22, 54321 München"] + \
        [";".join(["leer"] * 4) for _ in range(10)]
    body = "kvnr;name;steuer-id;anschrift\n" + "\n".join(rows[1:] + rows[:1]) + "\n"
    for text in (body, "HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\n\r\n" + body.replace("\n", "\r\n")):
        assert Counter((h.category, h.anchored) for h in Scanner(KEY).scan(text)) == {
            ("kvnr", True): 2, ("idnr", True): 2}
    headless = "\n".join(rows)
    assert Counter((h.category, h.anchored) for h in Scanner(KEY).scan(headless)) == {("kvnr", False): 2}


def test_csv_quoted_header_and_table_end():
    text = ('"Versicherten-ID","Name"\n"A123456780","Meier"\n"M987654323","Kunz"\n\n'
            'Bestellung,Name\nZ000000017,Otto\n')
    no_cluster = ScanSettings(cluster_size=4)
    assert cats(Scanner(KEY, no_cluster).scan(text)) == [
        ("kvnr", "A12******0", True), ("kvnr", "M98******3", True), ("kvnr", "Z00******7", False)]


def test_kvnr_cluster_anchors_a_list_but_not_order_numbers():
    rng = random.Random(5)
    rows = _rows(3, rng)
    assert Counter((h.category, h.anchored) for h in Scanner(KEY).scan("\n".join(rows))) == {("kvnr", True): 3}
    shaped = []
    for _ in range(27):  # KVNR-shaped order numbers with a wrong check digit
        v = kvnr(chr(65 + rng.randrange(26)) + str(rng.randrange(10**7, 10**8)))
        shaped.append(v[:9] + str((int(v[9]) + 1) % 10))
    mixed = "\n".join(f"Bestellung {v}" for v in shaped) + "\n" + "\n".join(r.split(";")[0] for r in rows)
    assert Counter((h.category, h.anchored) for h in Scanner(KEY).scan(mixed)) == {("kvnr", False): 3}


def test_value_split_across_lines_is_not_joined():
    s = Scanner(KEY)
    assert s.scan("Versichertennummer: A1234\n56780\n") == []
    assert "iban" not in {h.category for h in s.scan("IBAN: DE23 1000 0000\n1234 5678 90")}
    assert s.scan("kvnr\nA12345\n6780\n") == []


# --- encodings -------------------------------------------------------------------------------------
def test_utf8_latin1_and_str_give_the_same_hits():
    text = "Versichertennummer von Jürgen Müller (Größe 1,80 m): A123456780; Diagnose: A54.4† G; Straße ß"
    expected = [("kvnr", "A12******0", True), ("icd10", "***.*", True)]
    s = Scanner(KEY)
    results = [s.scan(text), s.scan(text.encode("utf-8")), s.scan(text.encode("cp1252")),
               s.scan(text.replace("†", "+").encode("iso-8859-15"))]
    assert all(cats(r) == expected for r in results)
    assert {r[1].hmac for r in results} == {value_hash(KEY, "icd10", "A54.4")}


def test_undecodable_bytes_do_not_raise():
    junk = (bytes(range(32)) + bytes(range(128, 256))) * 4
    junk += b"\x81\x8d\xff\xfe Versichertennummer A123456780 \xc3\x28\x81"
    assert cats(Scanner(KEY).scan(junk)) == [("kvnr", "A12******0", True)]
    assert cats(Scanner(KEY).scan("lone surrogate \ud800 KVNR A123456780")) == [("kvnr", "A12******0", True)]
    assert Scanner(KEY).scan(b"") == [] and Scanner(KEY).scan("") == []


# --- no false positives on noise ---------------------------------------------------------------------
def test_random_digit_strings_and_wrong_check_digits_give_nothing():
    rng = random.Random(11)
    digits = " ".join(str(rng.randrange(10**(n - 1), 10**n)) for n in (rng.randrange(5, 15) for _ in range(20000)))
    assert Scanner(KEY).scan(digits) == []
    orders = []
    while len(orders) < 5000:
        v = chr(65 + rng.randrange(26)) + str(rng.randrange(10**8, 10**9))
        if not ids.is_kvnr(v):
            orders.append(f"Bestellung {v} Versand")
    assert Scanner(KEY).scan("\n".join(orders)) == []


def test_hex_and_uuid_noise_gives_no_identifiers():
    rng = random.Random(12)
    noise = " ".join(str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(20000))
    noise += " " + " ".join(f"{rng.getrandbits(160):040x}" for _ in range(5000))
    assert {h.category for h in Scanner(KEY).scan(noise)} <= {"phone"}  # 0-led digit runs are phone-shaped
    assert not any(h.anchored for h in Scanner(KEY).scan(noise))


def test_mail_message_ids_and_irc_hostmasks_are_not_addresses():
    mail = ("Message-ID: <304326.76866.mv@mail.klinik.de>\r\nReferences: <a1@x.de>\r\n <b2@y.de>\r\n"
            "From: Dr. Kunz <kunz@praxis.de>\r\n:tim2!tim@irc.server.de PRIVMSG #c :hi\r\n")
    assert cats(Scanner(KEY).scan(mail)) == [("email", "k***@p***.de", False)]


# --- keys and privacy ------------------------------------------------------------------------------------
def test_hmac_stable_per_key_and_different_across_keys():
    text = "KVNR A123456780, IBAN DE23100000001234567890, mail max@aok.de"
    a1, a2, b = Scanner(KEY).scan(text), Scanner(KEY).scan(text.encode()), Scanner(b"\x22" * 32).scan(text)
    assert [h.hmac for h in a1] == [h.hmac for h in a2]
    assert [h.masked for h in a1] == [h.masked for h in b]
    assert not {h.hmac for h in a1} & {h.hmac for h in b}
    assert [h.hmac for h in a1] == [value_hash(KEY, "kvnr", "A123456780"),
                                    value_hash(KEY, "iban", "DE23100000001234567890"),
                                    value_hash(KEY, "email", "max@aok.de")]


def _sample():
    rng = random.Random(13)
    values = [(kvnr(chr(65 + rng.randrange(26)) + str(rng.randrange(10**7, 10**8))), "Versichertennummer")
              for _ in range(200)]
    values += [("101575519", "IK"), ("DE23100000001234567890", "IBAN"), ("36574261809", "Steuer-ID"),
               ("10010490A443", "RVNR"), ("E11.90", "ICD"), ("max.mustermann@aok.de", "E-Mail"),
               ("+49 201 1234567", "Tel")]
    return values, "\n".join(f"{anchor}: {v}" for v, anchor in values)


def test_no_raw_value_in_masks_or_any_repr(caplog, capsys):
    values, text = _sample()
    caplog.set_level(logging.DEBUG)
    scanner = Scanner(KEY)
    hits = scanner.scan(text)
    assert len(hits) == len(values)
    raw = {ids.normalise(h.category, v) for h, (v, _) in zip(hits, values)} | {v for v, _ in values}
    p = Payload(text.encode(), text.encode().translate(_CLASS_TABLE))
    objects = [scanner, scanner.settings, ScanSettings(), p, _Cand("kvnr", 0, 10, values[0][0]),
               Anchors(p, [(0, 10)], 64), CsvHeaders(p, [], 4096, 48, 4096), *hits]
    shown = " ".join(repr(o) + str(o) for o in objects) + " ".join(h.masked for h in hits)
    assert not [v for v in raw if v in shown]
    assert KEY.hex() not in shown and repr(KEY) not in shown
    assert "DE89370400440532013000" not in repr(ScanSettings())  # suppression list stays out of repr
    assert caplog.records == [] and capsys.readouterr() == ("", "")


def test_scan_settings_are_documented():
    for f in dataclasses.fields(ScanSettings):
        assert len(f.metadata.get("help", "")) > 20, f.name
    assert CATEGORIES == ("kvnr", "ik", "iban", "idnr", "rvnr", "icd10", "email", "phone")


# --- real captures ----------------------------------------------------------------------------------------
def tcp_streams(rel: str) -> dict[tuple[int, int], bytes]:
    """TCP payload per direction (ports), ordered by sequence number; enough for these short captures."""
    segments: dict[tuple[int, int], dict[int, bytes]] = defaultdict(dict)
    with open(data(rel), "rb") as f:
        reader = dpkt.pcapng.Reader(f) if rel.endswith(".pcapng") else dpkt.pcap.Reader(f)
        for _, buf in reader:
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) and isinstance(ip.data, dpkt.tcp.TCP) and ip.data.data:
                segments[(ip.data.sport, ip.data.dport)].setdefault(ip.data.seq, bytes(ip.data.data))
    return {k: b"".join(v[s] for s in sorted(v)) for k, v in segments.items()}


def test_smtp_capture_addresses_counted_message_id_ignored():
    streams = tcp_streams("suricata-verify/mta-smtp/10.7.29.101_49898-178.63.41.150_25.pcap")
    s = Scanner(KEY)
    to_server = s.scan(streams[(49898, 25)])
    # MAIL FROM x2, RCPT TO x2, "for" in Received, To: x2, From: -- the Message-ID is not an address
    assert Counter((h.masked, h.anchored) for h in to_server) == {
        ("s***@g***.com", True): 1, ("u***@g***.com", True): 1, ("m***@a***.ch", True): 2,
        ("m***@a***.ch", False): 3, ("d***@d***.com", False): 1}
    assert len({h.hmac for h in to_server}) == 4
    assert Counter(h.masked for h in s.scan(streams[(25, 49898)])) == {
        "s***@g***.com": 2, "u***@g***.com": 1, "m***@a***.ch": 1}


@pytest.mark.parametrize("rel", ["zeek-traces/wikipedia.pcap", "zeek-traces/bro.org.pcap",
                                 "zeek-traces/http-post-large.pcap", "zeek-traces/m57-long-49583-80.pcap",
                                 "zeek-traces/irc-dcc-send.pcapng", "zeek-traces/ssh.pcap"])
def test_benign_captures_give_no_hits(rel):
    streams = tcp_streams(rel)
    assert sum(len(v) for v in streams.values()) > 1000
    assert [h for v in streams.values() for h in Scanner(KEY).scan(v)] == []
