"""upload_heavy: literal positive and negatives, golden findings on real uploads and benign controls."""

from __future__ import annotations

from pathlib import Path

from detkit import analyze_capture, assert_golden, flow, run, split_loopback

from abfluss.detections.upload_heavy import Settings
from conftest import EXAMPLES, data

ONLY = ("upload_heavy",)
#: The Zeek upload traces ran client and server on 127.0.0.1 (see split_loopback): the server
#: side becomes 127.0.0.2, and only 127.0.0.1 is internal. Their uploads are 60-85 KB, so the
#: volume floor is lowered the way a site would for a short capture.
LOOPBACK_CFG = ('[networks]\ninternal = ["127.0.0.1/32"]\n'
                "[detections.upload_heavy]\nmin_bytes_out = 50000\n")


def positive_tables() -> dict:
    """A workstation browses (downloads) and uploads 3 MB to one name on a shared CDN address."""
    return {"flows": [
        flow(0, orig_bytes=600, resp_bytes=250_000, server_name="www.shop.test", resp_h="198.51.100.10"),
        flow(5, orig_bytes=3_000_000, resp_bytes=2_000, server_name="upload.drop.test", resp_h="198.51.100.20"),
        flow(9, orig_bytes=700, resp_bytes=900_000, server_name="media.drop.test", resp_h="198.51.100.20"),
    ]}


def test_positive_upload_among_browsing_is_found_by_name():
    (f,) = run("upload_heavy", **positive_tables())
    assert f.key == ("10.0.0.5", "upload.drop.test")
    assert f.external_names == ["upload.drop.test"] and f.external_hosts == ["198.51.100.20"]
    assert (f.bytes_out, f.metrics["bytes_in"], f.metrics["ratio"]) == (3_000_000, 2_000, 1500.0)
    assert f.channel == "https" and f.severity == "medium"
    assert f.score_parts == {"upload_heavy": 10.0, "ratio": 30.0, "volume": 7.2}
    assert "sent 3.0 MB to upload.drop.test and received 2 KB (1,500:1)" in f.explanation


def test_negative_same_upload_grouped_by_address_would_drown():
    # The shared address as a whole sent back 902 KB: per address the ratio is 3.3, not 1500.
    # Without names the flows fall back to the address and nothing is upload-heavy.
    tables = positive_tables()
    for r in tables["flows"]:
        r["server_name"] = r["external_name"] = None
    assert run("upload_heavy", **tables) == []


def test_negative_below_volume_floor_and_ratio():
    small = [flow(0, orig_bytes=900_000, resp_bytes=100, server_name="api.small.test")]
    echo = [flow(0, orig_bytes=5_000_000, resp_bytes=600_000, server_name="sync.echo.test")]  # ratio 8.3
    assert run("upload_heavy", flows=small) == []
    assert run("upload_heavy", flows=echo) == []
    assert [f.key for f in run("upload_heavy", settings=Settings(min_bytes_out=500_000), flows=small)] == [
        ("10.0.0.5", "api.small.test")]


def test_negative_inbound_download_from_an_exposed_server():
    # An external client pulls 50 MB from an internal web server: outflow, but not an upload
    # the internal host started (bulk_outbound's subject, not this one's).
    rows = [flow(0, orig_h="203.0.113.9", resp_h="10.0.0.80", resp_p=443, orig_bytes=2_000, resp_bytes=50_000_000)]
    assert run("upload_heavy", flows=rows) == []


def test_volume_raises_severity():
    rows = [flow(0, orig_bytes=2_000_000_000, resp_bytes=40_000, server_name="bulk.drop.test")]
    (f,) = run("upload_heavy", flows=rows)
    # 10 + 30 (ratio 50 000:1) + 60 * log(2e9 / 1e6) / log(1e10 / 1e6) = 10 + 30 + 49.5
    assert f.severity == "critical" and f.score == 89.5


# -- real captures ---------------------------------------------------------------------------

def test_golden_putty_upload(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uh-putty")
    assert split_loopback(data("zeek-traces/putty-upload.pcap"), tmp / "putty-upload.pcap") == [8080]
    fs = analyze_capture(str(tmp / "putty-upload.pcap"), tmp, LOOPBACK_CFG, only=ONLY)
    (f,) = fs
    # GET of the form (656 B out, 345 B in) and the POST of putty.exe (82 789 B out, 93 B in).
    assert f.key == ("127.0.0.1", "localhost") and f.external_hosts == ["127.0.0.2"]
    assert (f.bytes_out, f.metrics["bytes_in"], f.metrics["flows"], f.metrics["ratio"]) == (83445, 438, 2, 190.5)
    assert f.channel == "http" and f.severity == "low"
    assert_golden("upload_heavy-putty-upload", fs)


def test_http_post_large_is_an_echo_not_an_upload(tmp_path_factory):
    # Both POSTs of 61 KB are answered with 60 KB: the ratio (1.02) is what rejects them.
    tmp = tmp_path_factory.mktemp("uh-post")
    assert split_loopback(data("zeek-traces/http-post-large.pcap"), tmp / "post.pcap") == [80, 5000]
    assert analyze_capture(str(tmp / "post.pcap"), tmp, LOOPBACK_CFG, only=ONLY) == []
    cfg = LOOPBACK_CFG + "min_ratio = 1.0\n"
    (f,) = analyze_capture(str(tmp / "post.pcap"), tmp, cfg, only=ONLY)
    assert (f.bytes_out, f.metrics["bytes_in"], f.metrics["ratio"]) == (123824, 120956, 1.0)


def test_golden_demo_singles_out_the_upload(tmp_path_factory):
    fs = analyze_capture(str(EXAMPLES / "demo.pcap"), tmp_path_factory.mktemp("uh-demo"), only=ONLY)
    got = {(f.internal_hosts[0], f.external_names[0], f.channel, f.bytes_out, f.metrics["bytes_in"]) for f in fs}
    assert got == {("10.10.0.11", "upload.files-drop.test", "http", 1000158, 190),
                   ("10.10.0.12", "upload.files-drop.test", "https", 2003787, 1636)}
    assert {f.severity for f in fs} == {"medium"}
    assert_golden("upload_heavy-demo", fs)


def test_demo_browsing_never_qualifies_even_without_a_floor(tmp_path_factory):
    cfg = "[detections.upload_heavy]\nmin_bytes_out = 1\n"
    fs = analyze_capture(str(EXAMPLES / "demo.pcap"), tmp_path_factory.mktemp("uh-demo0"), cfg, only=ONLY)
    assert {f.key[1] for f in fs} == {"upload.files-drop.test"}


BENIGN = ("zeek-traces/wikipedia.pcap", "zeek-traces/bro.org.pcap", "zeek-traces/206_example_b.pcap",
          "zeek-traces/m57-long-49583-80.pcap", "zeek-traces/tls-1.2-stream-keylog.pcap")


def test_benign_controls_give_nothing_medium_or_higher(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uh-benign")
    for rel in BENIGN:
        fs = analyze_capture(rel, tmp, only=ONLY)
        assert [f for f in fs if f.severity not in ("info", "low")] == [], rel
    # wikipedia's clients are public addresses: as the site's own network they still upload nothing.
    wiki = analyze_capture(BENIGN[0], tmp, '[networks]\ninternal = ["141.142.220.0/24"]\n', only=ONLY)
    assert wiki == []
