"""Real tunnel tools (lab/tunnels.py: iodine, dns2tcp, ptunnel-ng; iodine through DoH) against their truth.

Each committed capture holds one tunnel moving a known number of bytes; every one must give a
dns_tunnel (or icmp_tunnel) finding of at least medium severity for the client whose bytes
estimate is within 15 % of what entered the tunnel (examples/tunnels/tunnels-truth.json).
Regenerating the captures is the lab's job (sudo make lab-tunnels), not the test's.
"""

from __future__ import annotations

import json

import pytest

from conftest import EXAMPLES
from detkit import analyze_capture, assert_golden

DIR = EXAMPLES / "tunnels"
TRUTH = json.loads((DIR / "tunnels-truth.json").read_text())["runs"]
STRONG = ("medium", "high", "critical")


#: The lab's resolver configured (without it, a capture where the client asks only the tunnel
#: server teaches no resolver, and no server is judged for not being one).
RESOLVER = '[networks]\nresolvers = ["10.10.0.20/32"]\n'


def _findings(name: str, tmp_path_factory, detection: str, config: str | None = None):
    pcap = DIR / name
    assert pcap.exists(), f"{pcap} missing: rebuild with sudo make lab-tunnels"
    return analyze_capture(str(pcap), tmp_path_factory.mktemp(name.replace(".", "-")), config, only=(detection,))


@pytest.mark.parametrize("rid", sorted(r for r in TRUTH if TRUTH[r]["expected_detection"]))
def test_every_tunnel_is_found_with_its_bytes(rid, tmp_path_factory):
    t = TRUTH[rid]
    fs = _findings(t["pcap"], tmp_path_factory, t["expected_detection"])
    mine = [f for f in fs if f.internal_hosts == [t["client"]] and f.severity in STRONG]
    assert mine, f"{rid}: no {t['expected_detection']} finding of medium or more for {t['client']}: {fs}"
    truth = t["bytes_into_tunnel"]
    best = min(mine, key=lambda f: abs(f.bytes_out - truth))
    assert abs(best.bytes_out - truth) <= 0.15 * truth, (rid, best.bytes_out, truth, best.explanation)
    if t["tool"] != "ptunnel-ng":
        assert t["server"] in best.evidence["dns_servers"] or t["resolver"] in best.evidence["dns_servers"]


def test_iodine_raw_mode_is_found_from_flows_alone(tmp_path_factory):
    # iodine's default, straight to its server: after the DNS handshake the data goes in raw UDP
    # datagrams to port 53 that are no DNS messages; the reader counts them as skips, the
    # flow-level check finds the bytes.
    t = TRUTH["iodine-default-direct"]
    assert t["tool_log"]["raw_udp_mode"] is True
    fs = _findings(t["pcap"], tmp_path_factory, "dns_tunnel", RESOLVER)
    (f,) = [f for f in fs if f.key[0] == "dns_flows"]
    assert f.key == ("dns_flows", t["client"], t["server"]) and f.external_hosts == [t["server"]]
    assert f.metrics["undecoded_share"] > 0.9 and f.metrics["server_is_resolver"] is False
    assert_golden("dns_tunnel-iodine-raw", fs)


def test_base128_names_are_stored_escaped_and_measured_on_their_bytes(tmp_path_factory):
    t = TRUTH["iodine-null-direct"]
    assert t["tool_log"]["upstream_encoding"] == "Base128"
    (f,) = [f for f in _findings(t["pcap"], tmp_path_factory, "dns_tunnel", RESOLVER) if f.key[0] == t["client"]]
    assert f.key == (t["client"], t["registered_domain"])
    assert f.metrics["label_entropy"] > 6.8  # 7 bits per byte of base128, measured on bytes not escapes
    assert f.metrics["non_resolver_servers"] == 1 and "is not one of the configured resolvers" in f.explanation
    assert_golden("dns_tunnel-iodine-base128", [f])


@pytest.mark.parametrize("rid", sorted(r for r in TRUTH if "netflow" in TRUTH[r]))
def test_netflow_only_view_of_a_tunnel(rid, tmp_path_factory):
    # softflowd's NetFlow v9 export of the same capture: no DNS decoded, only flows.
    t = TRUTH[rid]
    fs = _findings(t["netflow"]["pcap"], tmp_path_factory, "dns_tunnel")
    (f,) = [f for f in fs if f.internal_hosts == [t["client"]] and f.severity in STRONG]
    assert f.key[0] == "dns_flows" and f.metrics["undecoded_share"] is None  # NetFlow decodes nothing
    assert {"large_queries", "socket_reuse"} <= set(f.score_parts)  # one socket, long names
    assert_golden(f"dns_tunnel-netflow-{rid}", fs)


def test_doh_tunnel_is_found_by_its_session_shape(tmp_path_factory):
    """iodine (defaults) -> dnss (DoH stub) -> HTTPS -> dnsdist -> iodined: the capture holds one
    look-up of the DoH name at the LAN resolver and one TLS connection to the DoH server that
    carries every byte of the tunnel; no tunnel name is visible. dns_tunnel finds the session by
    its shape (DNS-sized, paired, busy, sending as much as it gets back), medium on the shape
    alone, and the report's verdict rests on it."""
    from abfluss import open_workspace
    from abfluss.report.render import build
    from detkit import workspace_for

    t = TRUTH["iodine-doh"]
    assert (t["path"], t["expected_detection"], t["doh_url"]) == ("doh", "dns_tunnel", "https://doh.tunlab.test/dns-query")
    assert t["tool_log"]["raw_udp_mode"] is False and t["moved"]["received"] == t["bytes_through_tunnel"]
    fs = _findings(t["pcap"], tmp_path_factory, "dns_tunnel")
    ws = open_workspace(workspace_for((str(DIR / t["pcap"]),), tmp_path_factory.mktemp("doh")))
    try:
        out = ws.con.execute("SELECT external_host, external_name, service, resp_p, bytes_out FROM flows "
                             "WHERE direction = 'outbound'").fetchall()
        names = ws.con.execute("SELECT DISTINCT query FROM dns_raw").fetchall()
        rep = build(ws)
    finally:
        ws.close()
    (flow,) = out
    assert flow[:4] == (t["server"], "doh.tunlab.test", "tls", 443)
    assert flow[4] >= t["bytes_into_tunnel"]  # the tunnel and the DoH, HTTP/2 and TLS framing around it
    assert names == [("doh.tunlab.test",)]  # no tunnel name is visible: they travel encrypted
    (f,) = fs
    assert f.key == ("doh_tunnel", t["client"], t["server"]) and f.channel == "doh"
    assert f.external_names == ["doh.tunlab.test"] and set(f.score_parts) == {"tunnel_shape", "volume", "dns_name"}
    assert f.score_parts["tunnel_shape"] >= 40 and f.severity == "high"  # medium without the name
    assert abs(f.bytes_out - t["bytes_into_tunnel"]) <= 0.15 * t["bytes_into_tunnel"]
    assert_golden("dns_tunnel-iodine-doh", fs)
    assert rep["verdict"] == "EXFIL_CONFIRMED"
    assert [b["detection"] for b in rep["assessment"]["basis"]] == ["dns_tunnel"]


def test_every_iodine_upstream_encoding_has_a_capture():
    """iodine picks its upstream encoding from what the path passes (no option sets it): the
    filter runs (dnsdist refusing upper case, bytes above 127, or those and "+") make it use
    Base32, Base64 and Base64u; a clean path gives Base128. Each is found by the test above."""
    up = {t["tool_log"]["upstream_encoding"].split()[0]: rid for rid, t in sorted(TRUTH.items())
          if t["tool"] == "iodine" and not t["tool_log"]["raw_udp_mode"]}
    assert set(up) == {"Base32", "Base64", "Base64u", "Base128"}, up
    assert all(TRUTH[r]["expected_detection"] == "dns_tunnel" for r in up.values())
