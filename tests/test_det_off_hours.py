"""off_hours: literal nights, days, weekends and daylight saving; golden findings on the demo."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from abfluss.detections import settings_for
from abfluss.detections.off_hours import Settings
from abfluss.errors import ConfigError
from conftest import EXAMPLES
from detkit import analyze_capture, assert_golden, flow, run

MB = 1_000_000
DROP = "203.0.113.66"
USUAL = "198.51.100.20"
TUE_0200 = datetime(2026, 3, 3, 1, 0, tzinfo=timezone.utc)  # Tuesday 02:00 in Berlin (CET, UTC+1)


def nights(days: int = 14, size=lambda d: 2 * MB + d * 50_000, dest: str = USUAL) -> list[dict]:
    """History: for ``days`` days before TUE_0200, one flow at 02:00 local and 30 MB at 11:00 local."""
    out = []
    for d in range(1, days + 1):
        night = TUE_0200 - timedelta(days=d)
        out.append(flow(night, orig_bytes=size(d), resp_h=dest, orig_p=41000 + d))
        out.append(flow(night + timedelta(hours=9), orig_bytes=30 * MB, resp_h=USUAL, orig_p=42000 + d))
    return out


def upload(at: datetime, total: int = 300 * MB, dest: str = DROP) -> list[dict]:
    """``total`` bytes to ``dest`` in three one-minute flows starting 0, 5 and 10 minutes after ``at``."""
    return [flow(at + timedelta(minutes=5 * i), orig_bytes=total // 3, resp_h=dest, orig_p=50000 + i,
                 server_name="drop.example" if dest == DROP else None, duration=60) for i in range(3)]


def positive_tables() -> dict:
    # two weeks of ~2 MB at night (updates) and 30 MB by day; then 300 MB at 02:00 on Tuesday
    return {"history": nights(), "flows": upload(TUE_0200)}


def test_positive_night_upload_against_a_small_night_baseline():
    (f,) = run("off_hours", **positive_tables())
    assert f.key == ("10.0.0.5",) and f.external_hosts == [DROP] and f.external_names == ["drop.example"]
    assert f.explanation == ("10.0.0.5 sent 300.0 MB outside working hours (07-19 h on Mon-Fri) between "
                             "Tue 2026-03-03 02:00 and 02:11 Europe/Berlin, 117× its median off-hours volume "
                             "of 2.6 MB (MAD 300 KB, 14 other periods); top destination drop.example (300.0 MB).")
    assert f.bytes_out == 300 * MB - 2_575_000  # the excess over the median night
    assert (f.metrics["median"], f.metrics["mad"], f.metrics["baseline_n"]) == (2_575_000, 300_000, 14)
    assert f.metrics["period_start"] == "2026-03-02T19:00"
    assert f.score_parts == {"volume": 7.2, "robust_z": 25.0, "ratio": 15.0, "unknown_destination": 10.0}
    assert f.severity == "medium" and f.start == TUE_0200 and len(f.evidence["top_flows"]) == 3


def test_negative_same_volume_in_working_hours():
    assert run("off_hours", history=nights(), flows=upload(TUE_0200 + timedelta(hours=9))) == []


def test_negative_usual_night_backups_are_in_the_baseline():
    hist = nights(size=lambda d: 290 * MB + d * 1_000_000, dest=DROP)
    assert run("off_hours", history=hist, flows=upload(TUE_0200, 305 * MB)) == []


def test_negative_below_the_floor():
    # 50x the host's usual night, but only 40 MB
    hist = nights(size=lambda d: 800_000 + d * 1000)
    assert run("off_hours", history=hist, flows=upload(TUE_0200, 40 * MB)) == []


def test_host_silent_at_night_sends_at_night():
    # active every working day for two weeks, never outside working hours
    hist = [r for r in nights() if r["orig_p"] >= 42000]
    (f,) = run("off_hours", history=hist, flows=upload(TUE_0200))
    assert "while it sent nothing outside working hours in its 14 other active periods" in f.explanation
    assert f.metrics["median"] == 0 and f.metrics["ratio"] is None and f.bytes_out == 300 * MB
    assert f.score_parts["robust_z"] == 25.0 and f.score_parts["ratio"] == 15.0


def test_weekends_are_off_hours_unless_configured_as_workdays():
    saturday_11 = datetime(2026, 3, 7, 10, 0, tzinfo=timezone.utc)
    (f,) = run("off_hours", history=nights(), flows=upload(saturday_11))
    assert "Sat 2026-03-07 11:00" in f.explanation
    six_days = Settings(workdays=(1, 2, 3, 4, 5, 6))
    assert run("off_hours", settings=six_days, history=nights(), flows=upload(saturday_11)) == []


def test_a_night_is_one_period_across_midnight():
    # 150 MB at 23:30 and 150 MB at 00:30 local; no baseline, so 250 MB are needed in one period:
    # cut at midnight neither half would count.
    late = datetime(2026, 3, 3, 22, 30, tzinfo=timezone.utc)
    flows = upload(late, 150 * MB) + upload(late + timedelta(hours=1), 150 * MB)
    (f,) = run("off_hours", flows=flows)
    assert f.metrics["bytes"] == 300 * MB and f.metrics["unusual_periods"] == 1
    assert "between Tue 2026-03-03 23:30 and Wed 2026-03-04 00:41 Europe/Berlin" in f.explanation
    assert "with no baseline yet (0 other active periods, 5 needed)" in f.explanation


def test_daylight_saving_time_follows_the_tz_database():
    # 05:30 UTC is 06:30 in Berlin before 29 March 2026 (off-hours) and 07:30 after (working).
    before = datetime(2026, 3, 23, 5, 30, tzinfo=timezone.utc)
    after = datetime(2026, 3, 30, 5, 30, tzinfo=timezone.utc)
    (f,) = run("off_hours", flows=upload(before))
    assert "Mon 2026-03-23 06:30" in f.explanation
    assert run("off_hours", flows=upload(after)) == []
    # The same instant in New York (01:30 EDT) is night.
    (g,) = run("off_hours", settings=Settings(timezone="America/New_York"), flows=upload(after))
    assert "Mon 2026-03-30 01:30 and 01:41 America/New_York" in g.explanation


def test_invalid_working_hours_are_configuration_errors():
    with pytest.raises(ConfigError, match="work_start_hour < work_end_hour"):
        settings_for("off_hours", {"work_start_hour": 19, "work_end_hour": 7})
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        settings_for("off_hours", {"timezone": "Mars/Olympus"})
    with pytest.raises(ConfigError, match="workdays"):
        settings_for("off_hours", {"workdays": [0, 8]})
    assert settings_for("off_hours", {"workdays": [1, 2, 3, 4]}).workdays == (1, 2, 3, 4)


def test_golden_demo_sunday_uploads(tmp_path):
    # The demo lab ran on Sunday 29 November 2026, 14:57 in Berlin: everything is off-hours.
    # Lab floors of 500 KB: both upload hosts stand out (no baseline: one period only); the
    # bytes are all their outbound bytes that afternoon, uploads included.
    cfg = "[detections.off_hours]\nfloor_bytes = 500000\nunbaselined_bytes = 500000\n"
    fs = analyze_capture(str(EXAMPLES / "demo.pcap"), tmp_path, cfg, only=("off_hours",))
    assert [(f.key, f.bytes_out, f.external_names) for f in sorted(fs, key=lambda f: f.key)] == [
        (("10.10.0.11",), 1003117, ["cdn.example-media.test", "upload.files-drop.test", "www.example-shop.test"]),
        (("10.10.0.12",), 2005536, ["cdn.example-media.test", "upload.files-drop.test", "www.example-shop.test"])]
    assert all("at Sun 2026-11-29 14:57 Europe/Berlin" in f.explanation for f in fs)
    assert all(f.metrics["top_destinations"].get("upload.files-drop.test", 0) >= 1_000_000 for f in fs)
    assert_golden("off_hours-demo", fs)


def test_benign_controls_stay_quiet(tmp_path_factory):
    # wikipedia.pcap was captured on a Friday at 20:06 in Berlin (off-hours), bro.org.pcap on
    # a Tuesday at 18:04 (working hours); neither sends anything near the floor.
    for rel in ("zeek-traces/wikipedia.pcap", "zeek-traces/bro.org.pcap"):
        assert analyze_capture(rel, tmp_path_factory.mktemp("oh"), only=("off_hours",)) == [], rel
