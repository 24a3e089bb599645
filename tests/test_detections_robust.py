"""Detections never crash: property-based telemetry of degenerate shapes, on DuckDB and on Spark.

Hypothesis draws small telemetry tables with what real sensors produce on bad days — identical
timestamps, zero intervals, a single flow, nulls in every optional column, 1970 timestamps,
byte counts near 2**62, local and odd addresses — and every registered detection must run over
them without an exception (``run_detections`` reports one as an error; there must be none).
Each example runs all detections (seconds), so the suite draws five on DuckDB and one on Spark
(the shared session); ``ABFLUSS_ROBUST_EXAMPLES=200 pytest tests/test_detections_robust.py``
draws N on each for a longer hunt.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from abfluss import analysis, detections
from abfluss.config import Config

from detkit import T0, alert, dns, flow, mac, telemetry
from test_det_cleartext_sensitive_data import hit, side

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
TIMES = [T0, EPOCH, EPOCH + timedelta(microseconds=1), T0 + timedelta(microseconds=1), T0.replace(hour=23, minute=59)]
HUGE = 2**62
ADDRS = ["10.0.0.5", "10.0.0.6", "203.0.113.9", "198.51.100.1", "ff02::1", "2001:db8::1", "fe80::1",
         "239.255.255.250", "0.0.0.0", "255.255.255.255"]
NAMES = [None, "", "a", "x.test", "t.exfil.test", "xn--bcher-kva.example", "a" * 63 + "." + "b" * 63 + ".test",
         "\\x00\\xff.bin.test", "."]
MACS = [None, "", "x", "00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff", "02:00:00:00:00:05", "02:00:00:00:00:06"]
EXAMPLES = int(os.environ.get("ABFLUSS_ROBUST_EXAMPLES", "0"))

maybe = lambda s: st.one_of(st.none(), s)  # noqa: E731
counts = st.one_of(st.none(), st.sampled_from([0, 1, 52, 1500, HUGE]))


@st.composite
def flows(draw):
    n = draw(st.sampled_from([1, 2, 7, 12]))
    start = draw(st.sampled_from(TIMES))
    step = draw(st.sampled_from([0.0, 0.0, 0.001, 1.0, 60.0, 86400.0]))  # identical times, zero intervals
    pair = (draw(st.sampled_from(ADDRS)), draw(st.sampled_from(ADDRS)))
    out = []
    for i in range(n):
        same = draw(st.booleans())
        orig_h, resp_h = pair if same else (draw(st.sampled_from(ADDRS)), draw(st.sampled_from(ADDRS)))
        ob, rb, op, rp = draw(counts), draw(counts), draw(counts), draw(counts)
        dur = draw(st.one_of(st.none(), st.sampled_from([0.0, 0.001, 3600.0, 10 * 86400.0])))
        ts = start + timedelta(seconds=step * i)
        out.append(flow(
            ts, duration=dur, ts_end=ts + timedelta(seconds=dur or 0),
            proto=draw(st.sampled_from(["tcp", "udp", "icmp", "icmp6", "47", None])),
            orig_h=orig_h, resp_h=resp_h, orig_p=draw(maybe(st.sampled_from([0, 53, 50000, 65535]))),
            resp_p=draw(maybe(st.sampled_from([0, 22, 53, 80, 443, 445, 3389, 8, 65535]))),
            orig_bytes=ob, resp_bytes=rb, orig_pkts=op, resp_pkts=rp,
            orig_ip_bytes=draw(counts), resp_ip_bytes=draw(counts),
            service=draw(st.sampled_from([None, "", "tls", "dns", "http", "ssh", "unknown", "smtp,ssl"])),
            server_name=draw(st.sampled_from(NAMES)), history=draw(st.sampled_from([None, "", "ShADadFf", "DdA"])),
            conn_state=draw(st.sampled_from([None, "SF", "S0", "REJ", "OTH"])), open=draw(maybe(st.booleans())),
            community_id=draw(st.sampled_from([None, "1:abc="])), uid=draw(st.sampled_from([None, f"U{i}", "U0"])),
            tenant=draw(st.sampled_from([None, "default"])), missed_bytes=draw(counts), user_agent=None,
            bytes_out=ob, bytes_in=rb))
    return out


@st.composite
def tables(draw):
    fl = draw(flows())
    anchor = fl[0]
    qs = [dns(anchor["ts"] + timedelta(seconds=draw(st.sampled_from([0, 0, 1]))),
              orig_h=draw(st.sampled_from(ADDRS)), resp_h=draw(st.sampled_from(ADDRS)),
              query=draw(st.sampled_from([n for n in NAMES if n is not None])),
              qtype=draw(st.sampled_from([None, "A", "TXT", "NULL", "65399"])),
              rcode=draw(st.sampled_from([None, "NOERROR", "NXDOMAIN"])),
              answers=draw(st.sampled_from([None, [], ["203.0.113.9"], ["x.test"]])),
              query_bytes=draw(counts), answer_bytes=draw(counts))
          for _ in range(draw(st.sampled_from([0, 1, 8])))]
    al = [alert(anchor["ts"], orig_h=draw(maybe(st.sampled_from(ADDRS))), resp_h=draw(maybe(st.sampled_from(ADDRS))),
                severity=draw(st.sampled_from([None, 0, 1, 3, 255])), signature=draw(st.sampled_from([None, "", "S"])),
                signature_id=draw(maybe(st.just(HUGE))), uid=anchor["uid"], community_id=None)
          for _ in range(draw(st.sampled_from([0, 2])))]
    http = [dict(ts=anchor["ts"], uid=anchor["uid"], orig_h=anchor["orig_h"], resp_h=anchor["resp_h"],
                 resp_p=anchor["resp_p"], method=draw(st.sampled_from([None, "POST", "CONNECT"])),
                 host=draw(st.sampled_from(NAMES)), uri=draw(st.sampled_from([None, "/", "x" * 3000])),
                 request_body_len=draw(counts), response_body_len=draw(counts), sensor="test")] * draw(st.sampled_from([0, 1]))
    tls = [dict(ts=anchor["ts"], uid=anchor["uid"], orig_h=anchor["orig_h"], resp_h=anchor["resp_h"],
                resp_p=anchor["resp_p"], server_name=draw(st.sampled_from(NAMES)), sensor="test")] \
        * draw(st.sampled_from([0, 1]))
    dlp = [hit(0, f"v{i}", category=draw(st.sampled_from(["kvnr", "iban", "icd10", "email"])),
               hits=draw(st.sampled_from([None, 1, HUGE])), tenant=None) for i in range(draw(st.sampled_from([0, 3])))]
    insp = [side(0, payload_bytes=draw(counts), scanned_bytes=draw(counts))] * bool(dlp)
    hist = draw(st.sampled_from([[], fl, [dict(r, ts=EPOCH, ts_end=EPOCH) for r in fl]]))
    # MAC bindings follow from the flows drawn (no draws of their own, so the examples above stay
    # the ones every other detection has been checked with): odd MACs on every drawn address
    macs = [mac(r[side], mac=MACS[(i + k) % len(MACS)], ts=r["ts"], last=r["ts_end"], flows=r["orig_pkts"],
                arp_frames=r["resp_pkts"]) for i, r in enumerate(fl) for k, side in enumerate(("orig_h", "resp_h"))]
    return dict(flows=fl, history=hist, dns=qs, alerts=al, http=http, tls=tls, dlp=dlp, inspected=insp, macs=macs)


def _config() -> Config:
    """Default settings, plus beaconing without merging (zero intervals reach its period)."""
    return replace(Config(), detections={"beaconing": {"merge_seconds": 0.0}})


def _check(t: dict, backend: str) -> None:
    with telemetry(**t, backend=backend) as tel:
        found, _seconds, errors = analysis.run_detections(tel, _config())
    assert errors == {}, errors
    for f in found:
        assert 0 <= f.score <= 100 and f.detection in detections.MODULES


# No shrinking: each example runs every detection, so shrinking would cost minutes; the failing
# example is printed whole and the assertion names the detection and its error.
COMMON = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None,
              phases=(Phase.explicit, Phase.generate))


@settings(max_examples=EXAMPLES or 5, **COMMON)
@given(tables())
def test_every_detection_survives_degenerate_telemetry_on_duckdb(t):
    _check(t, "duckdb")


@pytest.mark.filterwarnings("ignore")
@settings(max_examples=EXAMPLES or 1, **COMMON)
@given(tables())
def test_every_detection_survives_degenerate_telemetry_on_spark(spark_session, t):
    _check(t, "pyspark")


def test_a_failing_detection_is_one_error_and_the_others_still_find(monkeypatch):
    """Isolation: a detection that raises costs only its own check."""
    from test_det_long_connection import positive_tables

    mod = detections.module("beaconing")

    def broken(tel, s):
        raise ZeroDivisionError("float division by zero\nsecond line never shown")

    monkeypatch.setattr(mod, "detect", broken)
    with telemetry(**positive_tables()) as tel:
        found, _seconds, errors = analysis.run_detections(tel, None)
    assert errors == {"beaconing": "ZeroDivisionError: float division by zero"}
    assert {f.detection for f in found} >= {"long_connection"}


def _huge_sums() -> dict:
    """Four flows of one pair whose counters a broken exporter set near 2**62: their sum passes
    int64, which DuckDB keeps as HUGEINT and Arrow cannot hold as int64."""
    fl = [flow(T0 + timedelta(seconds=i), orig_h="10.0.0.5", resp_h="203.0.113.9", resp_p=443,
               orig_bytes=HUGE, bytes_out=HUGE) for i in range(4)]
    return dict(flows=fl)


def test_counters_summing_past_int64_are_no_error_on_duckdb():
    t = _huge_sums()
    _check(t, "duckdb")
    with telemetry(**t, backend="duckdb") as tel:
        found, _seconds, _errors = analysis.run_detections(tel, _config())
    bulk = [f for f in found if f.detection == "bulk_outbound"]
    assert bulk and bulk[0].bytes_out >= 2**62  # saturated, not wrapped to a negative or small number
