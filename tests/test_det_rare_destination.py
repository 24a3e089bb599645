"""rare_destination: literal positive and negatives, first-seen from the look-back, real captures."""

from __future__ import annotations

from datetime import datetime, timezone

import abfluss
from abfluss import analysis
from detkit import analyze_capture, assert_golden, flow, run, workspace_for

from abfluss.detections.rare_destination import Settings
from conftest import EXAMPLES

ONLY = ("rare_destination",)
DEMO = str(EXAMPLES / "demo.pcap")  # analyze_capture takes absolute paths as they are
DAY = 86400


def positive_tables() -> dict:
    """One workstation sends 3 MB to a destination no other host uses; it also browses a shop."""
    return {"flows": [
        flow(0, orig_bytes=3_000_000, resp_bytes=4_000, server_name="drop.rare.test", resp_h="203.0.113.50"),
        flow(9, orig_bytes=700, resp_bytes=900_000, server_name="www.shop.test", resp_h="198.51.100.10"),
    ]}


def test_positive_single_host_destination():
    (f,) = run("rare_destination", **positive_tables())
    assert f.key == ("10.0.0.5", "drop.rare.test") and f.external_hosts == ["203.0.113.50"]
    assert f.metrics == {"bytes_out": 3_000_000, "bytes_in": 4_000, "flows": 1, "internal_hosts": 1,
                         "first_seen": None}  # no look-back data: first-seen cannot be judged
    assert f.score_parts == {"rare_destination": 20.0, "prevalence": 15.0, "volume": 6.4}
    assert f.explanation == ("10.0.0.5 sent 3.0 MB to drop.rare.test in 1 connection, over https; "
                             "the destination was contacted by no other internal host.")


def test_prevalence_is_an_absolute_host_count():
    def uploads(n):
        return [flow(i, orig_h=f"10.0.0.{10 + i}", orig_bytes=2_000_000, server_name="common.test") for i in range(n)]

    two = run("rare_destination", flows=uploads(2))
    assert [(f.key[0], f.metrics["internal_hosts"], f.score_parts["prevalence"]) for f in two] == [
        ("10.0.0.10", 2, 7.5), ("10.0.0.11", 2, 7.5)]
    assert run("rare_destination", flows=uploads(3)) == []
    assert len(run("rare_destination", settings=Settings(max_hosts=3), flows=uploads(3))) == 3


def test_first_seen_uses_the_look_back():
    window = [flow(i, orig_h=f"10.0.0.{10 + i}", orig_bytes=2_000_000, server_name="new.test") for i in range(3)]
    window += [flow(5, orig_bytes=2_000_000, server_name="known.test")]
    history = [flow(-7 * DAY, orig_h="10.0.0.99", orig_bytes=1_000, server_name="known.test"),
               flow(-6 * DAY, orig_h="10.0.0.98", orig_bytes=1_000, server_name="old-popular.test")]
    window += [flow(6 + i, orig_h=f"10.0.0.{20 + i}", orig_bytes=2_000_000, server_name="old-popular.test")
               for i in range(3)]
    got = {(f.key, f.metrics["first_seen"], f.metrics["internal_hosts"]) for f in
           run("rare_destination", flows=window, history=history)}
    assert got == {
        (("10.0.0.10", "new.test"), True, 3), (("10.0.0.11", "new.test"), True, 3),
        (("10.0.0.12", "new.test"), True, 3),  # new although three hosts use it
        (("10.0.0.5", "known.test"), False, 2),  # seen before, but only two hosts ever
    }  # old-popular.test: seen before and four hosts: not rare


def test_negative_below_floor_and_inbound():
    assert run("rare_destination", flows=[flow(0, orig_bytes=900_000, server_name="api.rare.test")]) == []
    served = [flow(0, orig_h="203.0.113.9", resp_h="10.0.0.80", orig_bytes=500, resp_bytes=50_000_000)]
    assert run("rare_destination", flows=served) == []


# -- real captures ---------------------------------------------------------------------------

def test_golden_test_cc_beacon(tmp_path_factory):
    # The beacon host's network is the site; 252 KB went to testing.com, so the floor is lowered.
    cfg = ('[networks]\ninternal = ["147.32.80.0/24"]\n'
           "[detections.rare_destination]\nmin_bytes_out = 100000\n")
    fs = analyze_capture("slips/test-cc/test-cc-capture-1.pcap", tmp_path_factory.mktemp("rd-cc"), cfg, only=ONLY)
    (f,) = fs
    assert f.key == ("147.32.80.37", "testing.com")
    assert f.external_hosts == ["141.193.213.20", "141.193.213.21"]  # one name, two addresses
    assert (f.bytes_out, f.metrics["bytes_in"], f.metrics["flows"]) == (251577, 1166023, 298)
    assert f.severity == "low"
    assert_golden("rare_destination-test-cc", fs)


def _analyze_window(tmp, rels, start: float, config: str | None = None):
    root = workspace_for(rels, tmp, config)
    ws = abfluss.open_workspace(root, write=True)
    try:
        t0 = datetime.fromtimestamp(start, timezone.utc)
        return analysis.analyze(ws, start=t0, only=ONLY, store=False).findings
    finally:
        ws.close()


def test_golden_demo_upload_is_first_seen(tmp_path_factory):
    # Window from 13:57:40, just before the uploads: the browsing before it is the look-back.
    fs = _analyze_window(tmp_path_factory.mktemp("rd-demo"), (DEMO,), 1795960660.0)
    assert {(f.key, f.metrics["first_seen"], f.metrics["internal_hosts"], f.bytes_out) for f in fs} == {
        (("10.10.0.11", "upload.files-drop.test"), True, 2, 1000158),
        (("10.10.0.12", "upload.files-drop.test"), True, 2, 2003787)}
    assert {f.severity for f in fs} == {"medium"}
    assert_golden("rare_destination-demo-window", fs)


def test_demo_destinations_browsed_before_are_not_new(tmp_path_factory):
    cfg = "[detections.rare_destination]\nmin_bytes_out = 500\n"
    fs = _analyze_window(tmp_path_factory.mktemp("rd-demo2"), (DEMO,), 1795960658.5, cfg)
    assert {(f.key, f.metrics["first_seen"]) for f in fs} == {
        (("10.10.0.12", "www.example-shop.test"), False),  # download-1, 804 B out
        (("10.10.0.11", "cdn.example-media.test"), False),  # download-2, 802 B out
        (("10.10.0.11", "upload.files-drop.test"), True),
        (("10.10.0.12", "upload.files-drop.test"), True)}


def test_demo_whole_capture_has_no_look_back(tmp_path_factory):
    fs = analyze_capture(DEMO, tmp_path_factory.mktemp("rd-demo3"), only=ONLY)
    assert {(f.key[0], f.key[1], f.metrics["first_seen"], f.severity) for f in fs} == {
        ("10.10.0.11", "upload.files-drop.test", None, "low"),
        ("10.10.0.12", "upload.files-drop.test", None, "low")}


BENIGN = ("zeek-traces/wikipedia.pcap", "zeek-traces/bro.org.pcap", "zeek-traces/206_example_b.pcap",
          "zeek-traces/m57-long-49583-80.pcap", "zeek-traces/tls-1.2-stream-keylog.pcap")


def test_benign_controls_give_nothing_medium_or_higher(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rd-benign")
    for rel in BENIGN:
        fs = analyze_capture(rel, tmp, only=ONLY)
        assert [f for f in fs if f.severity not in ("info", "low")] == [], rel
    wiki = analyze_capture(BENIGN[0], tmp, '[networks]\ninternal = ["141.142.220.0/24"]\n', only=ONLY)
    assert wiki == []
