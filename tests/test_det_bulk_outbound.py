"""bulk_outbound: literal hours, days and transfers; golden findings on real uploads and the demo."""

from __future__ import annotations

import json
from datetime import timedelta

from abfluss.detections.bulk_outbound import Settings
from conftest import EXAMPLES, data
from detkit import T0, analyze_capture, assert_golden, flow, run, split_loopback

MB = 1_000_000
DROP = "203.0.113.66"  # the never-seen destination of the literal tests
USUAL = "198.51.100.20"  # where the host usually sends


def working_hours(days: int = 10, size=lambda d, h: (45 + (h * 7) % 13) * MB, dest: str = USUAL) -> list[dict]:
    """History: ``days`` days before T0, ten hours a day (09-18 UTC), one flow per hour."""
    return [flow(T0 - timedelta(days=d) + timedelta(hours=h), orig_bytes=size(d, h), resp_h=dest,
                 orig_p=40000 + d * 10 + h) for d in range(1, days + 1) for h in range(10)]


def burst(at_hours: float, total: int, n: int, dest: str = DROP, **kw) -> list[dict]:
    """``n`` flows of ``total / n`` bytes to ``dest`` within the hour starting ``at_hours`` after T0."""
    return [flow(at_hours * 3600 + i * 60, orig_bytes=total // n, resp_h=dest, orig_p=50000 + i,
                 resp_bytes=1000, server_name="drop.example" if dest == DROP else None, **kw) for i in range(n)]


def positive_tables() -> dict:
    # 100 usual hours of 45-56 MB; then 2.1 GB in 30 flows of 70 MB (no single large transfer)
    # at 03:00 UTC on Tuesday, next to a usual 50 MB hour at 11:00 on Monday.
    return {"history": working_hours(),
            "flows": [flow(2 * 3600, orig_bytes=50 * MB, resp_h=USUAL)] + burst(18, 2100 * MB, 30)}


def test_positive_hour_far_above_the_hosts_own_baseline():
    (f,) = run("bulk_outbound", **positive_tables())
    assert f.key == ("10.0.0.5", "hour") and f.external_hosts == [DROP]
    # median of the 101 other hours is 50 MB, their MAD 3 MB: 42x, robust z 461
    assert f.explanation == ("10.0.0.5 sent 2.1 GB in the hour from 03:00 UTC on 2026-03-03, 42× its median "
                             "hour of 50.0 MB (MAD 3.0 MB, 101 other active hours); top destination "
                             "drop.example (2.1 GB).")
    assert f.bytes_out == 2050 * MB  # the excess over the median
    assert (f.metrics["median"], f.metrics["mad"], f.metrics["baseline_n"]) == (50 * MB, 3 * MB, 101)
    assert (f.metrics["ratio"], f.metrics["robust_z"]) == (42.0, 460.9)
    assert f.score_parts == {"volume": 32.5, "robust_z": 25.0, "ratio": 10.7, "unknown_destination": 10.0}
    assert f.severity == "high" and f.channel == "https" and len(f.evidence["top_flows"]) == 10


def test_negative_the_same_hour_is_usual_for_a_backup_server():
    hist = working_hours(size=lambda d, h: (2000 + (h * 7) % 13 * 10) * MB, dest=DROP)
    assert run("bulk_outbound", history=hist, flows=burst(18, 2100 * MB, 30)) == []


def test_negative_quiet_host_is_no_incident_below_the_floor():
    hist = working_hours(size=lambda d, h: 100_000 + h * 1000)
    # 50x its median hour, but only 5 MB
    assert run("bulk_outbound", history=hist, flows=burst(18, 5 * MB, 5)) == []


def test_without_baseline_only_large_volume_counts():
    assert run("bulk_outbound", flows=burst(0, 200 * MB, 4)) == []
    (f,) = run("bulk_outbound", flows=burst(0, 300 * MB, 6))
    assert f.key == ("10.0.0.5", "hour") and f.bytes_out == 300 * MB
    assert "with no baseline yet (0 other active hours, 8 needed)" in f.explanation
    assert f.score_parts == {"volume": 15.6, "unknown_destination": 10.0} and f.severity == "low"


def test_slow_leak_under_the_hourly_floor_is_a_day_finding():
    # usual days: ten hours of 9-11 MB (90-110 MB a day); then 40 MB every hour for a whole day
    hist = working_hours(size=lambda d, h: (9 + d % 3) * MB)
    leak = [flow(T0 - timedelta(hours=9) + timedelta(hours=i), orig_bytes=40 * MB, resp_h=DROP, orig_p=50000 + i)
            for i in range(24)]
    (f,) = run("bulk_outbound", history=hist, flows=leak)
    assert f.key == ("10.0.0.5", "day") and f.bytes_out == 860 * MB
    assert (f.metrics["median"], f.metrics["mad"], f.metrics["baseline_n"]) == (100 * MB, 10 * MB, 10)
    assert f.explanation.startswith("10.0.0.5 sent 960.0 MB on 2026-03-02 (UTC day), 10× its median day of "
                                    "100.0 MB (MAD 10.0 MB, 10 other active days)")


def test_single_large_transfer_to_a_new_destination():
    big = flow(600, orig_bytes=150 * MB, resp_bytes=20_000, resp_h=DROP, server_name="drop.example", duration=95)
    (f,) = run("bulk_outbound", flows=[big])
    assert f.key == ("10.0.0.5", DROP) and f.bytes_out == 150 * MB and f.external_names == ["drop.example"]
    assert f.score_parts == {"transfer": 20.0, "transfer_volume": 4.7, "one_way": 10.0, "unknown_destination": 10.0}
    assert f.explanation == ("10.0.0.5 sent 150.0 MB to drop.example (203.0.113.66) over https in 1 flow "
                             "(largest 150.0 MB), receiving 20 KB: 100% of the bytes went out.")
    # the same upload to a destination the host used before: no unknown_destination part
    seen = [flow(T0 - timedelta(days=2), orig_bytes=1000, resp_h=DROP)]
    (g,) = run("bulk_outbound", flows=[big], history=seen)
    assert "unknown_destination" not in g.score_parts and g.metrics["new_destination"] is False


def test_negative_downloads_and_internal_copies_are_not_outbound():
    download = flow(0, orig_bytes=2000, resp_bytes=900 * MB, resp_h=DROP)
    internal = flow(60, orig_bytes=900 * MB, resp_h="10.0.0.9")
    assert run("bulk_outbound", flows=[download, internal]) == []


def test_transfer_size_is_a_site_setting():
    f2 = flow(0, orig_bytes=2 * MB, resp_h=DROP)
    assert run("bulk_outbound", flows=[f2]) == []
    (f,) = run("bulk_outbound", settings=Settings(single_transfer_bytes=1e6), flows=[f2])
    assert f.key == ("10.0.0.5", DROP) and f.bytes_out == 2 * MB


# -- real captures ---------------------------------------------------------------------------


SMALL_SITE = "[detections.bulk_outbound]\nsingle_transfer_bytes = 50000\n"


def test_golden_putty_upload(tmp_path):
    # putty.exe POSTed over HTTP: 82 789 bytes up in one flow, 93 bytes back.
    pcap = tmp_path / "putty.pcap"
    split_loopback(data("zeek-traces/putty-upload.pcap"), pcap, "203.0.113.80")
    fs = analyze_capture(str(pcap), tmp_path, SMALL_SITE, only=("bulk_outbound",))
    assert [(f.key, f.bytes_out, f.channel, f.external_names) for f in fs] == [
        (("127.0.0.1", "203.0.113.80"), 82789, "http", ["localhost"])]
    assert "one_way" in fs[0].score_parts
    assert_golden("bulk_outbound-putty-upload", fs)


def test_golden_http_post_large(tmp_path):
    # Two POSTs of about 62 KB (ports 80 and 5000) whose server echoes about as much back:
    # large transfers, but not one-way.
    pcap = tmp_path / "post.pcap"
    split_loopback(data("zeek-traces/http-post-large.pcap"), pcap, "203.0.113.80")
    fs = analyze_capture(str(pcap), tmp_path, SMALL_SITE, only=("bulk_outbound",))
    assert [(f.key, f.bytes_out, f.evidence["flows"]) for f in fs] == [
        (("127.0.0.1", "203.0.113.80"), 61907 + 61917, 2)]
    assert "one_way" not in fs[0].score_parts and fs[0].metrics["out_share"] == 0.506
    assert_golden("bulk_outbound-http-post-large", fs)


def test_golden_demo_uploads(tmp_path):
    # Lab site: transfers from 500 KB are large. Ground truth: ws2 uploads 2 MB over HTTPS and
    # ws1 POSTs 1 MB over HTTP, both to upload.files-drop.test; nothing else leaves in bulk.
    truth = {s["id"]: s for s in json.loads((EXAMPLES / "demo-truth.json").read_text())["scenarios"]}
    up, post = truth["upload-https"], truth["post-http"]
    cfg = "[detections.bulk_outbound]\nsingle_transfer_bytes = 500000\n"
    fs = analyze_capture(str(EXAMPLES / "demo.pcap"), tmp_path, cfg, only=("bulk_outbound",))
    got = {f.key: f for f in fs}
    assert set(got) == {(up["client_ip"], up["server_ip"]), (post["client_ip"], post["server_ip"])}
    https, http = got[(up["client_ip"], up["server_ip"])], got[(post["client_ip"], post["server_ip"])]
    assert (http.bytes_out, http.channel) == (post["client_sent"]["total"], "http")
    # TLS adds its handshake and record overhead to curl's 2 000 438 bytes
    assert (https.bytes_out, https.channel) == (2003787, "https")
    assert all(f.external_names == ["upload.files-drop.test"] and f.severity == "medium" for f in fs)
    assert_golden("bulk_outbound-demo", fs)


def test_benign_controls_stay_quiet(tmp_path_factory):
    for rel in ("zeek-traces/wikipedia.pcap", "zeek-traces/bro.org.pcap"):
        assert analyze_capture(rel, tmp_path_factory.mktemp("bo"), only=("bulk_outbound",)) == [], rel
