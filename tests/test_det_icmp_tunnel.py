"""icmp_tunnel: literal tunnels and ping variants, the real 5-pings capture, synthetic captures."""

from __future__ import annotations

import random
import socket

import dpkt

import abfluss
from abfluss.detections.icmp_tunnel import Settings

from detkit import analyze_capture, flow, run, workspace_for

TUNNEL_PEER = "198.51.100.20"


def icmp(ts, out_bytes, out_pkts, in_bytes, in_pkts, duration, **kw) -> dict:
    """An ICMP echo flow as Zeek reports it (orig_p = type 8, resp_p = code 0)."""
    kw.setdefault("resp_h", TUNNEL_PEER)
    return flow(ts, proto="icmp", orig_p=8, resp_p=0, service=None, duration=duration,
                orig_bytes=out_bytes, orig_pkts=out_pkts, resp_bytes=in_bytes, resp_pkts=in_pkts, **kw)


def tunnel_flows() -> list[dict]:
    # Five bursts of 400 requests: ~750-byte data chunks out, small acknowledgements back.
    return [icmp(i * 300, 300_001 + i, 400, 20_000, 400, 20.0) for i in range(5)]


def positive_tables():
    return {"flows": tunnel_flows()}


def test_tunnel_large_varying_asymmetric_payloads():
    (f,) = run("icmp_tunnel", flows=tunnel_flows())
    assert f.key == ("10.0.0.5", TUNNEL_PEER) and f.channel == "icmp"
    assert f.bytes_out == sum(300_001 + i for i in range(5))
    m = f.metrics
    assert (m["packets_out"], m["mean_payload_out"], m["mean_payload_in"]) == (2000, 750.0, 50.0)
    assert m["varying_size_flows"] == 5 and m["packets_per_second"] == 20.0
    assert set(f.score_parts) == {"payload_size", "request_reply_mismatch", "varying_sizes", "rate", "volume"}
    assert f.severity in ("high", "critical")


def test_reverse_shell_answers_carry_the_data():
    # icmpsh-style: the outside host sends echo requests, the internal host's replies carry data.
    flows = [icmp(i * 60, 4_000, 100, 120_000 + i, 100, 50.0, orig_h=TUNNEL_PEER, resp_h="10.0.0.5")
             for i in range(3)]
    (f,) = run("icmp_tunnel", flows=flows)
    assert f.internal_hosts == ["10.0.0.5"] and f.bytes_out == 360_003
    assert f.metrics["mean_payload_out"] == 1200.0 and f.severity in ("high", "critical")


def test_plain_ping_all_day_is_no_finding():
    # A monitoring host pings once a second for 24 h: 4.8 MB, but every packet is ping-shaped.
    flows = [icmp(h * 3600, 56 * 3600, 3600, 56 * 3600, 3600, 3599.0) for h in range(24)]
    assert run("icmp_tunnel", flows=flows) == []


def test_windows_ping_with_lost_replies_is_no_finding():
    flows = [icmp(i * 1000, 32 * 1000, 1000, 32 * 900, 900, 999.0) for i in range(3)]
    assert run("icmp_tunnel", flows=flows) == []


def test_constant_large_pings_stay_low():
    # ping -s 1000 for 200 s: large, but mirrored, constant and once a second.
    (f,) = run("icmp_tunnel", flows=[icmp(0, 200_000, 200, 200_000, 200, 199.0)])
    assert set(f.score_parts) == {"payload_size", "volume"} and f.severity == "low"


def test_small_mtu_probe_is_below_the_volume_gate():
    assert run("icmp_tunnel", flows=[icmp(0, 14_720, 10, 14_720, 10, 9.0)]) == []
    assert run("icmp_tunnel", settings=Settings(min_bytes_out=0), flows=[icmp(0, 14_720, 10, 14_720, 10, 9.0)])


def test_other_icmp_types_and_internal_traffic_are_ignored():
    unreachable = [dict(icmp(i, 300_001, 400, 0, 0, 20.0), orig_p=3, resp_p=3) for i in range(3)]
    internal = [icmp(i, 300_001, 400, 20_000, 400, 20.0, resp_h="10.0.0.9") for i in range(3)]
    assert run("icmp_tunnel", flows=unreachable + internal) == []


# -- real and synthetic captures ---------------------------------------------------------------

def analyze_path(path, tmp, config: str | None = None):
    """The ICMP flows as the pcap reader stored them, and icmp_tunnel's findings."""
    fs = analyze_capture(str(path), tmp, config, only=("icmp_tunnel",))
    ws = abfluss.open_workspace(workspace_for((str(path),), tmp, config))
    try:
        flows = ws.con.execute("SELECT proto, orig_p, resp_p, orig_bytes, orig_pkts, resp_bytes, resp_pkts "
                               "FROM flows WHERE proto = 'icmp'").fetchall()
    finally:
        ws.close()
    return flows, fs


def test_five_pings_capture(tmp_path_factory):
    # How the pcap reader represents ping: one flow, type/code not in the ports, payload bytes
    # without the 8-byte ICMP header (64-byte echo messages -> 56).
    flows, fs = analyze_path("zeek-traces/5-pings.pcap", tmp_path_factory.mktemp("pings"))
    assert flows == [("icmp", 0, 0, 280, 5, 280, 5)] and fs == []
    # Even with the volume gate off, ping-shaped traffic is no finding.
    cfg = "[detections.icmp_tunnel]\nmin_bytes_out = 0\n"
    assert analyze_path("zeek-traces/5-pings.pcap", tmp_path_factory.mktemp("pings0"), cfg)[1] == []


def write_echo_capture(path, pairs) -> None:
    """A pcap of ICMP echo request/reply pairs: ``pairs`` of (time, request payload, reply payload)."""
    a, b = socket.inet_aton("10.1.2.3"), socket.inet_aton(TUNNEL_PEER)
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh)
        for seq, (ts, req, rep) in enumerate(pairs):
            for src, dst, typ, payload, dt in ((a, b, 8, req, 0.0), (b, a, 0, rep, 0.02)):
                msg = dpkt.icmp.ICMP(type=typ, code=0, data=dpkt.icmp.ICMP.Echo(id=7, seq=seq, data=payload))
                ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_ICMP, ttl=64, data=msg)
                ip.len = 20 + len(bytes(msg))
                eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
                w.writepkt(bytes(eth), ts=1_700_000_000 + ts + dt)


def test_synthetic_tunnel_capture_fires(tmp_path_factory):
    rnd = random.Random(5)
    pairs = [(i * 0.05, rnd.randbytes(rnd.randint(200, 1400)), rnd.randbytes(rnd.randint(8, 64)))
             for i in range(600)]
    tmp = tmp_path_factory.mktemp("synth")
    write_echo_capture(tmp / "tunnel.pcap", pairs)
    flows, (f,) = analyze_path(tmp / "tunnel.pcap", tmp)
    sent = sum(len(p[1]) for p in pairs)
    assert flows[0][3] == sent and f.bytes_out == sent and f.metrics["packets_out"] == 600
    assert f.key == ("10.1.2.3", TUNNEL_PEER) and f.severity in ("high", "critical")


def test_synthetic_ping_capture_is_quiet(tmp_path_factory):
    # Ten minutes of ordinary ping: 33.6 KB out, above the volume gate, still no finding.
    pairs = [(float(i), bytes(range(56)), bytes(range(56))) for i in range(600)]
    tmp = tmp_path_factory.mktemp("synthping")
    write_echo_capture(tmp / "ping.pcap", pairs)
    flows, fs = analyze_path(tmp / "ping.pcap", tmp)
    assert flows == [("icmp", 0, 0, 33_600, 600, 33_600, 600)] and fs == []
