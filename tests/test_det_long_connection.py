"""long_connection: literal positive and negative, golden findings on rita/open_conns."""

from detkit import analyze_capture, assert_golden, flow, run

from abfluss.detections.long_connection import Settings


def positive_tables():
    return {"flows": [flow(0, duration=3 * 3600, orig_bytes=2_000_000, resp_p=22, service="ssh"),
                      flow(3 * 3600 + 5, duration=2 * 3600, open=True, orig_bytes=10_000, resp_p=22,
                           service="ssh")]}


def test_positive_open_session_hours_long():
    (f,) = run("long_connection", **positive_tables())
    assert f.internal_hosts == ["10.0.0.5"] and f.external_hosts == ["203.0.113.9"]
    assert f.metrics["total_seconds"] == 5 * 3600 and f.metrics["open_flows"] == 1
    assert f.bytes_out == 2_010_000 and f.channel == "ssh"
    assert "still_open" in f.score_parts and "still open" in f.explanation


def test_negative_many_short_connections():
    flows = [flow(i * 60, duration=30) for i in range(100)]  # 50 min in all
    assert run("long_connection", flows=flows) == []


def test_negative_internal_only():
    flows = [flow(0, duration=10 * 3600, resp_h="10.0.0.9")]
    assert run("long_connection", flows=flows) == []


def test_golden_rita_open_conns(tmp_path_factory):
    # RITA's open_conns data: its longest pair is 39 min (an HTTPS session still open in
    # open_conn.log); lowered threshold as a site would for a short capture.
    cfg = "[detections.long_connection]\nmin_total_seconds = 1800\n"
    fs = analyze_capture("rita/open_conns/open", tmp_path_factory.mktemp("lc"), cfg, only=("long_connection",))
    assert [(f.internal_hosts, f.external_hosts) for f in fs] == [(["10.55.100.106"], ["65.52.108.188"])]
    assert_golden("long_connection-rita-open_conns", fs)
