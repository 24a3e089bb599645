"""dns_txt_entropy: encoded TXT answers (one long, or many short pooled) against mail,
verification and text records; the answer formats of Zeek and of the pcap decoder; dns2tcp's
downstream (golden, both engines); benign controls."""

from __future__ import annotations

import base64
import random

from abfluss.detections.dns_txt_entropy import Settings, payload
from conftest import EXAMPLES
from detkit import analyze_capture, assert_golden, canonical, dns, run

ONLY = ("dns_txt_entropy",)


def blob(n: int, seed: int) -> str:
    rnd = random.Random(seed)
    return base64.b64encode(bytes(rnd.randrange(256) for _ in range(n))).decode()


def positive_tables() -> dict:
    """A stager fetches a 600-byte base64 payload from TXT records of c2-dns.test."""
    return {"dns": [dns(i, query=f"p{i}.c2-dns.test", qtype="TXT", answers=[blob(150, i)], uid=f"D{i}")
                    for i in range(4)]}


def test_encoded_answers_make_a_finding_per_client_and_domain():
    (f,) = run("dns_txt_entropy", **positive_tables())
    assert f.key == ("10.0.0.5", "c2-dns.test") and f.channel == "dns" and f.external_hosts == ["10.0.0.53"]
    assert f.metrics["encoded_answers"] == 4 and f.metrics["answer_bytes"] == 800 and f.metrics["lookups"] == 4
    assert f.metrics["entropy"] > 5.5 and f.severity == "medium" and f.attack == ["T1071.004", "T1105", "T1132.001"]
    assert f.external_names == ["c2-dns.test", "p0.c2-dns.test", "p1.c2-dns.test", "p2.c2-dns.test", "p3.c2-dns.test"]
    assert f.explanation.startswith("10.0.0.5 received 4 TXT answers of encoded text (800 bytes, ")


def test_one_long_answer_is_low_short_ones_count_only_pooled():
    (one,) = run("dns_txt_entropy", dns=[dns(0, query="x.c2-dns.test", qtype="TXT", answers=[blob(200, 1)])])
    assert one.severity == "low" and not one.metrics["pooled"]
    short = [dns(i, query=f"s{i}.tun.test", qtype="TXT", answers=[blob(30, i)]) for i in range(5)]  # 40 chars each
    (f,) = run("dns_txt_entropy", dns=short)
    assert f.metrics["pooled"] and f.metrics["encoded_answers"] == 5
    assert run("dns_txt_entropy", dns=short[:2]) == []  # two short answers: too few to pool
    assert run("dns_txt_entropy", settings=Settings(pool_min_answers=10), dns=short) == []


def test_mail_verification_and_text_records_are_nothing():
    records = ["v=spf1 include:_spf.google.com include:mailgun.org ip4:198.51.100.0/24 ~all",
               "v=DKIM1; k=rsa; p=" + blob(200, 7),
               "google-site-verification=" + blob(32, 8), "MS=ms" + blob(24, 9)[:20],
               "facebook-domain-verification=" + blob(24, 10),
               "This domain is used for the documentation of the example corporation"]
    asks = [dns(i, query=f"example{i}.test", qtype="TXT", answers=[a]) for i, a in enumerate(records)]
    asks.append(dns(9, query="x.c2-dns.test", qtype="A", answers=["198.51.100.9"]))  # not TXT
    asks.append(dns(10, query="y.c2-dns.test", qtype="TXT", answers=[blob(200, 11)],
                    orig_h="198.51.100.77", client_internal=False))  # an outside client
    assert run("dns_txt_entropy", dns=asks) == []


def test_answer_formats():
    # Zeek: "TXT <length> <string>" per string, escapes counted as one byte
    assert payload("TXT 3 abc TXT 4 d\\x2cef") == "abcd,ef"
    assert payload("TXT 22 rpBA=D6:56:BA:A9:C1:2D TXT 5 rpVr=") == "rpBA=D6:56:BA:A9:C1:2DrpVr="
    # pcap decoder: strings joined by a space
    assert payload("Aq+YAAH7 iGJ+i8i2 ") == "Aq+YAAH7iGJ+i8i2"


def test_golden_dns2tcp_downstream(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("txt")
    fs = analyze_capture("dns-tunnel/netrack-dns2tcp/dns2tcp-2018-03-23.pcap", tmp, only=ONLY)
    (f,) = fs
    assert f.key == ("172.17.0.3", "hidemyself.org") and f.metrics["pooled"]
    assert_golden("dns_txt_entropy-dns2tcp", fs)
    spark = analyze_capture("dns-tunnel/netrack-dns2tcp/dns2tcp-2018-03-23.pcap", tmp, only=ONLY, backend="pyspark")
    assert canonical(spark) == canonical(fs)


def test_slips_test10_mdns_printers_are_not_c2(tmp_path_factory):
    # Slips reports "DNS TXT answer with high entropy" here; the only TXT answers are mDNS service
    # announcements of printers to 224.0.0.251 (key=value pairs), which abfluss does not judge.
    assert analyze_capture("slips/test10-mixed-zeek", tmp_path_factory.mktemp("t10"), only=ONLY) == []


def test_benign_controls_give_nothing(tmp_path_factory):
    rels = ("rita/open_conns", "zeek-traces/wikipedia.pcap", str(EXAMPLES / "demo.pcap"))
    assert analyze_capture(rels, tmp_path_factory.mktemp("benign"), only=ONLY) == []
