"""beaconing: literal beacons and non-beacons, golden findings on real captures, and RITA v5's
beacon score (ANCHORS.md 2.1) computed on the same pairs as an oracle to rank against."""

from __future__ import annotations

import itertools
import math
import random
from statistics import median

import abfluss
from detkit import analyze_capture, assert_golden, flow, run, workspace_for

from abfluss.detections.beaconing import Settings

C2 = dict(server_name="c2.example.net")
CC = "slips/test-cc/test-cc-capture-1.pcap"
CC_CONFIG = '[networks]\ninternal = ["147.32.80.0/24"]\n'  # the capture's lab host is not RFC 1918


def _jittered(period: float, jitter: float, start: float, end: float, seed: int) -> list[float]:
    """Check-in times every ``period`` seconds ±``jitter`` (uniform), like a C2 sleep with jitter."""
    rng, t, out = random.Random(seed), start, []
    while t < end:
        out.append(round(t, 3))
        t += period * (1 + rng.uniform(-jitter, jitter))
    return out


def _beacon_flows() -> list[dict]:
    """60 s ±20 % for 2 h, 480-520 bytes out, one SNI on two CDN addresses taken in turn."""
    rng = random.Random(11)
    return [flow(t, orig_p=20000 + i, resp_h=("203.0.113.9", "203.0.113.10")[i % 2],
                 orig_bytes=rng.randint(480, 520), **C2)
            for i, t in enumerate(_jittered(60, 0.2, 0, 7200, seed=5))]


def positive_tables():
    return {"flows": _beacon_flows()}


# -- RITA v5 beacon score (activecm/rita analysis/beacons.go, shipped defaults) ----------------

def _quartiles(x: list[float]) -> tuple[float, float, float]:
    n = len(x)
    lo, hi = x[: n // 2], x[n // 2 + n % 2:]  # halves without the middle element, as RITA's stats lib
    return median(lo), median(x), median(hi)


def _rita_stat(values: list[float], default_mad: float) -> float:
    """(1 - |Bowley skew|  +  (median - MAD) / median) / 2, with RITA's guards."""
    x = sorted(values)
    q1, q2, q3 = _quartiles(x)
    skew = (q1 + q3 - 2 * q2) / (q3 - q1) if q3 - q1 >= 10 and q2 not in (q1, q3) else 0.0
    mad = median(abs(v - q2) for v in x)
    mad_score = max(0.0, (q2 - mad) / q2 if q2 >= 1 else default_mad)
    return round((1 - abs(skew) + mad_score) / 2 * 1000) / 1000


def _rita_hist(lo: int, hi: int, ts: list[int], bins: int = 24) -> tuple[float, int, int]:
    """Histogram score (max of CV score and bimodal fit), non-empty bins, longest wrapped run."""
    step = (hi - lo) / bins
    h = [0] * bins
    for t in ts:
        h[min(bins - 1, int((t - lo) // step))] += 1
    bars, size = sum(1 for c in h if c), math.ceil(max(h) * 0.05)
    modes = {}
    for c in (c for c in h if c):
        modes[c // size * size] = modes.get(c // size * size, 0) + 1
    runs = [len(list(g)) for k, g in itertools.groupby(h + h, key=bool) if k]
    mean = sum(h) / bins
    cv = math.sqrt(sum((c - mean) ** 2 for c in h) / bins) / mean
    score = 0.0 if cv > 1 else round((1 - cv) * 1000) / 1000
    if bars >= 11:
        top = sorted(modes.values(), reverse=True) + [0]
        score = max(score, min(1.0, round((top[0] + top[1]) / max(bars - 1, 1) * 1000) / 1000))
    return score, bars, min(bins, max(runs or [0]))


def rita_beacon(ts_list, bytes_list, lo: int, hi: int) -> float | None:
    """RITA's beacon score 0..1 for one pair (timestamps in whole seconds), None if no candidate."""
    ts = sorted(int(t) for t in ts_list)
    deltas = [b - a for a, b in zip(ts, ts[1:]) if b > a]
    if len(set(ts)) < 4 or len(ts) >= 86400 or len(deltas) < 3:
        return None
    hist, bars, run_ = _rita_hist(lo, hi, ts)
    dur = 0.0
    if bars >= 6:
        cover = min(1.0, math.ceil((ts[-1] - ts[0]) / (hi - lo) * 1000) / 1000)
        dur = max(cover, min(1.0, math.ceil(run_ / 12 * 1000) / 1000))
    parts = (_rita_stat(deltas, 1.0), _rita_stat(bytes_list, 0.0), hist, dur)
    return round(sum(parts) / 4 * 1000) / 1000


def _rita_literal(flows: list[dict]) -> float | None:
    ts = [f["ts"].timestamp() for f in flows]
    return rita_beacon(ts, [f["orig_ip_bytes"] for f in flows], int(min(ts)), int(max(ts)))


def rita_pairs(rels, tmp, config) -> dict[tuple[str, str], float]:
    """RITA's score for every candidate pair of a capture, paired by name where the name pair has
    4 unique timestamps (RITA's SNI rule), else by address."""
    ws = abfluss.open_workspace(workspace_for(rels, tmp, config))
    try:
        lo, hi = ws.con.execute("SELECT floor(epoch(min(ts))), floor(epoch(max(ts))) FROM flows").fetchone()
        got = ws.con.execute(
            """SELECT internal_host, external_host, lower(nullif(external_name, '')), floor(epoch(ts)),
                      coalesce(orig_ip_bytes, 0) FROM flows WHERE direction = 'outbound'""").fetchall()
    finally:
        ws.close()
    names: dict = {}
    for h, _, n, t, _b in got:
        if n:
            names.setdefault((h, n), set()).add(t)
    pairs: dict = {}
    for h, a, n, t, b in got:
        key = (h, n) if n and len(names[(h, n)]) >= 4 else (h, a)
        pairs.setdefault(key, []).append((t, b))
    scores = {k: rita_beacon([t for t, _ in v], [b for _, b in v], int(lo), int(hi))
              for k, v in pairs.items()}
    return {k: v for k, v in scores.items() if v is not None}


# -- literal positives ------------------------------------------------------------------------

def test_positive_jittered_beacon_collapses_onto_its_name():
    flows = _beacon_flows()
    (f,) = run("beaconing", **positive_tables())
    deltas = [b["ts"].timestamp() - a["ts"].timestamp() for a, b in zip(flows, flows[1:])]
    assert f.key == ("10.0.0.5", "c2.example.net") and f.metrics["grouping"] == "name"
    assert f.external_hosts == ["203.0.113.10", "203.0.113.9"] and f.external_names == ["c2.example.net"]
    assert f.metrics["connections"] == len(flows) == 120
    assert f.metrics["period_seconds"] == round(median(deltas), 3)
    assert f.metrics["on_beat_share"] == 1.0 and f.metrics["regular_size_share"] == 1.0
    assert f.bytes_out == sum(x["orig_bytes"] for x in flows)
    assert f.score >= 99 and f.severity == "critical" and f.channel == "https"
    assert set(f.score_parts) == {"interval_regularity", "connection_count", "size_regularity",
                                  "duration_coverage", "hourly_spread"}
    assert "c2.example.net (2 addresses) 120 times" in f.explanation
    # RITA scores it high too: the literal positive is a beacon by both measures.
    assert _rita_literal(flows) >= 0.9


def test_missed_beats_keep_the_rhythm():
    # A 5-min beacon where every third check-in is lost (capture gap, host busy).
    times = [t for i, t in enumerate(_jittered(300, 0.03, 0, 6 * 3600, seed=2)) if i % 3 != 2]
    flows = [flow(t, orig_p=21000 + i, orig_bytes=700, **C2) for i, t in enumerate(times)]
    (f,) = run("beaconing", flows=flows)
    assert f.metrics["missed_beat_intervals"] == len(times) // 2 - 1
    assert f.metrics["on_beat_share"] == 1.0 and f.metrics["coverage"] == 1.0
    assert f.severity == "critical" and "more spanning missed beats" in f.explanation


def test_names_that_rotate_fall_back_to_the_address():
    # One address, a fresh name every two check-ins (DGA-like): no name pair is big enough.
    times = _jittered(120, 0.1, 0, 4 * 3600, seed=3)
    flows = [flow(t, orig_p=22000 + i, orig_bytes=300, server_name=f"x{i // 2}.example.org")
             for i, t in enumerate(times)]
    (f,) = run("beaconing", flows=flows)
    assert f.key == ("10.0.0.5", "203.0.113.9") and f.metrics["grouping"] == "address"
    assert len(f.external_names) == math.ceil(len(times) / 2) and f.severity == "critical"


def test_strobe_scaled_to_the_observed_span():
    rng = random.Random(4)
    times = list(itertools.accumulate(rng.uniform(0.2, 1.4) for _ in range(4000)))  # 4000 in ~53 min
    flows = [flow(t, orig_p=10000 + i, orig_bytes=rng.randint(50, 5000), resp_p=8443, service="")
             for i, t in enumerate(times)]
    (f,) = run("beaconing", flows=flows)
    assert f.metrics["strobe"] and f.thresholds["strobe_connections"] == 3600
    assert f.score == Settings().strobe_score and "strobe" in f.score_parts and "strobe" in f.explanation
    # Over a day-long span the same 4000 connections are far below RITA's 86 400 per day.
    spread_out = [dict(x, ts=x["ts"] + (x["ts"] - flows[0]["ts"]) * 20) for x in flows]
    assert run("beaconing", flows=spread_out) == []


# -- literal negatives ------------------------------------------------------------------------

def test_negative_browsing_bursts():
    # Page loads: a few parallel connections, then some sequential ones, then reading time.
    rng, times = random.Random(9), []
    for start in (0, 640, 1500, 2280, 3900, 4470, 6100, 7000):
        t = start
        for _ in range(rng.randint(4, 12)):
            times.append(t)
            t += rng.choice([0.05, 0.1, 0.3, 0.6, 2.5, 4.0, 7.0])
    flows = [flow(t, orig_p=23000 + i, orig_bytes=rng.randint(300, 3000), server_name="news.example.com")
             for i, t in enumerate(times)]
    assert run("beaconing", flows=flows) == []


def test_negative_regular_bursts_cover_no_time():
    # Worst case for interval statistics: bursts with a steady 1.2 s cadence inside, hours apart.
    # 95 % of intervals are on beat, but the rhythm holds for 84 s of the 2 h.
    times = [b + 1.2 * k for b in (0, 900, 2100, 5000, 6800) for k in range(15)]
    flows = [flow(t, orig_p=24000 + i, orig_bytes=500, **C2) for i, t in enumerate(times)]
    assert run("beaconing", flows=flows) == []
    (f,) = run("beaconing", flows=flows, settings=Settings(min_score=0))
    assert f.metrics["on_beat_share"] >= 0.9 and f.metrics["coverage"] < 0.02 and f.score < 30
    assert _rita_literal(flows) <= 0.5  # RITA: at most its base threshold (histogram, duration 0)


def test_negative_random_timing_even_with_constant_sizes():
    # Poisson arrivals (mean 60 s) of same-sized connections all through the span: RITA scores
    # this 0.75 (steady, even, constant size); there is no rhythm, so nothing here.
    rng, t, times = random.Random(3), 0.0, []
    while t < 7200:
        times.append(t)
        t += rng.expovariate(1 / 60)
    flows = [flow(t, orig_p=25000 + i, orig_bytes=500, **C2) for i, t in enumerate(times)]
    assert run("beaconing", flows=flows, settings=Settings(min_score=0)) == []
    assert _rita_literal(flows) >= 0.7


def test_negative_too_few_connections():
    flows = [flow(60 * i, orig_p=26000 + i, orig_bytes=500, **C2) for i in range(5)]
    assert run("beaconing", flows=flows, settings=Settings(min_score=0)) == []


def test_negative_link_local_multicast_is_not_a_beacon():
    # SSDP and router solicitations are periodic by design and never leave the link (RITA scores
    # SSDP in slips/test6 at 0.96).
    flows = [flow(30 * i, orig_p=1900, resp_h="239.255.255.250", resp_p=1900, proto="udp", service="")
             for i in range(200)]
    flows += [flow(30 * i, orig_h="fe80::1", resp_h="ff02::2", orig_p=0, resp_p=0, proto="icmp6",
                   orig_bytes=16, service="") for i in range(200)]
    assert run("beaconing", flows=flows) == []


# -- real captures ----------------------------------------------------------------------------

def test_golden_slips_test_cc_beacon_outranks_rita(tmp_path_factory):
    # curl https://testing.com every ~2 s for 11 min, on two addresses. The span is 11 min, so
    # coverage is measured against the observed span (no override needed).
    tmp = tmp_path_factory.mktemp("bcn-cc")
    (f,) = analyze_capture(CC, tmp, CC_CONFIG, only=("beaconing",))
    assert f.key == ("147.32.80.37", "testing.com")
    assert f.external_hosts == ["141.193.213.20", "141.193.213.21"]
    assert f.metrics["connections"] == 298 and f.metrics["on_beat_share"] == 1.0
    assert 2.1 < f.metrics["period_seconds"] < 2.3
    rita = rita_pairs((CC,), tmp, CC_CONFIG)
    assert rita == {("147.32.80.37", "testing.com"): 0.875}
    assert f.score >= 100 * rita[f.key] and f.severity == "critical"
    assert_golden("beaconing-slips-test-cc", [f])


def test_golden_slips_test6_missed_beats_and_multicast(tmp_path_factory):
    # Suricata eve of an IoT camera (192.168.1.129): heartbeats every 19.2 min and 77.6 min with
    # lost beats in between, a double check-in to www.myedimax.com, SSDP multicast and broadcast.
    rel = "slips/test6-malicious.suricata.json"
    tmp = tmp_path_factory.mktemp("bcn-t6")
    fs = analyze_capture(rel, tmp, None, only=("beaconing",))
    got = {f.key[1]: (f.severity, f.metrics["missed_beat_intervals"]) for f in fs}
    assert got == {"122.248.234.231": ("critical", 17), "www.google.com": ("medium", 5),
                   "www.myedimax.com": ("medium", 6)}
    # RITA's top pair is SSDP multicast; it ranks the double check-in (myedimax) below the
    # Google connectivity check, as we do, but neither sees the lost beats.
    assert rita_pairs((rel,), tmp, None) == {
        ("192.168.1.129", "239.255.255.250"): 0.96, ("192.168.1.129", "122.248.234.231"): 0.954,
        ("192.168.1.129", "www.google.com"): 0.868, ("192.168.1.129", "255.255.255.255"): 0.839,
        ("192.168.1.129", "www.myedimax.com"): 0.656}
    assert_golden("beaconing-slips-test6", fs)


BENIGN = (
    ("zeek-traces/wikipedia.pcap", '[networks]\ninternal = ["141.142.0.0/16"]\n'),
    ("zeek-traces/bro.org.pcap", None),
    ("examples/demo.pcap", None),  # lab browsing of two workstations
    ("rita/open_conns/closed", None),
    ("zeek-traces/206_example_b.pcap", None),
    ("slips/test9-mixed-zeek", None),  # a person browsing (plus a Tor client): no beacon in it
)


def test_benign_controls_stay_below_medium_and_below_rita(tmp_path_factory):
    from conftest import EXAMPLES

    ours, theirs = {}, {}
    for rel, net in BENIGN:
        rel = str(EXAMPLES / "demo.pcap") if rel.startswith("examples/") else rel
        # min_score 0 shows every judged pair; scores are those of the defaults, only unfiltered.
        cfg = (net or "") + "[detections.beaconing]\nmin_score = 0\n"
        tmp = tmp_path_factory.mktemp("bcn-benign")
        fs = analyze_capture(rel, tmp, cfg, only=("beaconing",))
        rita = rita_pairs((rel,), tmp, cfg)
        for f in fs:
            assert f.score < Settings().min_score, (rel, f.key, f.score)
            assert f.key not in rita or f.score <= 100 * rita[f.key], (rel, f.key, f.score, rita[f.key])
        name = rel.rsplit("/", 1)[-1]
        ours[name] = {f.key: f.score for f in fs}
        theirs[name] = rita
    # What was judged. RITA's top benign pair is the browsing host's DNS resolver (144 queries in
    # 3 min, steady and same-sized), then an HTTP server; neither has a rhythm here.
    top = max(theirs["test9-mixed-zeek"].items(), key=lambda kv: kv[1])
    assert top == (("10.0.2.15", "147.32.82.19"), 0.849)
    assert theirs["test9-mixed-zeek"][("10.0.2.15", "147.32.80.7")] == 0.714
    assert not {("10.0.2.15", "147.32.82.19"), ("10.0.2.15", "147.32.80.7")} & set(ours["test9-mixed-zeek"])
    assert theirs["closed"] == {("192.168.88.2", "165.227.88.15"): 0.5}
    assert ours["closed"] == {("192.168.88.2", "165.227.88.15"): 18.5}  # 10 s of rhythm in 3 min
    assert all(not ours[n] for n in ("wikipedia.pcap", "bro.org.pcap", "demo.pcap", "206_example_b.pcap"))
