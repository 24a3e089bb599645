"""arp_scan: literal ARP scans, floods and outside requests against routers and announcements;
the ARP frames the pcap reader stores; the golden Slips ARP scan; benign controls."""

from datetime import timedelta

import abfluss
import pytest
from detkit import T0, analyze_capture, assert_golden, assert_same_on_spark, run, workspace_for

from abfluss.detections.arp_scan import Settings
from conftest import EXAMPLES

MEDIUM_OR_MORE = ("medium", "high", "critical")
BROADCAST = "ff:ff:ff:ff:ff:ff"


def arp(ts, target, sender="192.168.1.50", op="request", **kw) -> dict:
    """One ARP frame as the pcap reader stores it (``ts`` seconds after T0)."""
    row = dict(ts=T0 + timedelta(seconds=ts), op=op, orig_h=sender, orig_mac="02:00:00:00:00:50",
               resp_h=target, resp_mac="00:00:00:00:00:00", eth_dst=BROADCAST, gratuitous=sender == target,
               sensor="test", input_id="literal", tenant="default")
    row.update(kw)
    return row


def positive_tables():
    # arp-scan of a /24: one request per address, 100 per second.
    return {"arp": [arp(i * 0.01, f"192.168.1.{i}") for i in range(1, 255)]}


def test_arp_scan_of_a_subnet():
    (f,) = run("arp_scan", **positive_tables())
    assert f.key == ("192.168.1.50", "arp_scan", "*") and f.attack == ["T1018", "T1595.001"]
    assert f.internal_hosts == ["192.168.1.50"] and f.external_hosts == [] and f.channel == "arp"
    # its own address (.50) is an announcement, not a request for another host
    assert f.metrics["count"] == 253 and f.metrics["frames"] == 253 and len(f.metrics["addresses"]) == 20
    assert f.metrics["sender_mac"] == "02:00:00:00:00:50" and f.severity in ("high", "critical")
    assert f.score_parts["speed"] == 20 and 49.9 < f.score_parts["breadth"] <= 50


def test_router_resolving_clients_over_hours_is_no_scan():
    # A gateway asks for 60 clients, one every 2 minutes, each again every 20 minutes.
    frames = [arp(k * 120 + r * 1200, f"192.168.1.{k + 10}", sender="192.168.1.1")
              for k in range(60) for r in range(6)]
    assert run("arp_scan", arp=frames) == []
    # The same requests at the scan rate are a scan.
    assert run("arp_scan", settings=Settings(scan_min_rate=0.2), arp=frames)[0].key[1] == "arp_scan"


def test_few_neighbours_and_replies_are_nothing():
    frames = [arp(i, f"192.168.1.{i % 5 + 2}") for i in range(200)]  # 5 neighbours, often
    replies = [arp(i, f"192.168.1.{i + 2}", sender="192.168.1.1", op="reply", eth_dst="02:00:00:00:00:50")
               for i in range(100)]  # answers to requests: unicast replies
    assert run("arp_scan", arp=frames + replies) == []


def test_gratuitous_flood_and_a_boot_announcement():
    flood = [arp(i * 0.5, "192.168.1.1", sender="192.168.1.1", orig_mac="de:ad:be:ef:00:01") for i in range(200)]
    (f,) = run("arp_scan", arp=flood)
    assert f.key == ("192.168.1.1", "gratuitous_flood", "*") and f.attack == ["T1557.002"]
    assert f.metrics["frames"] == 200 and f.severity in MEDIUM_OR_MORE and "de:ad:be:ef:00:01" in f.explanation
    # Unsolicited replies to broadcast count as well.
    replies = [arp(i, "192.168.1.9", sender="192.168.1.1", op="reply") for i in range(40)]
    assert run("arp_scan", arp=replies)[0].key[1] == "gratuitous_flood"
    boot = [arp(i, "192.168.1.60", sender="192.168.1.60") for i in range(3)]
    assert run("arp_scan", arp=boot) == []


def test_requests_outside_the_senders_network_are_low():
    frames = [arp(i, f"10.20.{i}.1", sender="192.168.1.50") for i in range(4)]
    (f,) = run("arp_scan", arp=frames)
    assert f.key == ("192.168.1.50", "outside_network", "*") and f.severity == "low"
    assert run("arp_scan", settings=Settings(local_prefix=0), arp=frames) == []
    assert run("arp_scan", settings=Settings(local_prefix=16),
               arp=[arp(i, f"192.168.{i}.1") for i in range(4)]) == []
    # Address conflict probes come from 0.0.0.0.
    assert run("arp_scan", arp=[arp(i, f"10.0.0.{i}", sender="0.0.0.0") for i in range(4)]) == []


def test_golden_slips_arp_scan(tmp_path_factory):
    # Slips' test8: 192.168.1.247 asks for all of 192.168.1.0/24 in 3 s (509 ARP frames of it).
    tmp = tmp_path_factory.mktemp("arp")
    fs = analyze_capture("slips/test8-malicious.pcap", tmp, only=("arp_scan",))
    (f,) = fs
    assert f.key == ("192.168.1.247", "arp_scan", "*") and f.severity in MEDIUM_OR_MORE
    assert f.metrics["count"] == 255 and f.metrics["frames"] == 507
    assert_golden("arp_scan-slips-test8", fs)
    ws = abfluss.open_workspace(workspace_for(("slips/test8-malicious.pcap",), tmp))
    try:  # every ARP frame of the capture is stored: the scanner's 509 are Slips' count
        got = ws.con.execute("SELECT op, count(*) FROM arp_raw WHERE orig_h = '192.168.1.247' "
                             "GROUP BY op ORDER BY op").fetchall()
        assert ws.con.execute("SELECT count(*) FROM arp_raw").fetchall() == [(519,)]
    finally:
        ws.close()
    assert got == [("reply", 2), ("request", 507)]


def test_golden_slips_arp_scan_is_the_same_on_spark(tmp_path_factory, spark_session):
    assert_same_on_spark("slips/test8-malicious.pcap", tmp_path_factory.mktemp("arp"), "arp_scan")


@pytest.mark.parametrize("rel", ["rita/open_conns", str(EXAMPLES / "demo.pcap"), str(EXAMPLES / "lab-beacon.pcap")])
def test_benign_controls_give_no_arp_finding(rel, tmp_path_factory):
    assert analyze_capture(rel, tmp_path_factory.mktemp("benign"), only=("arp_scan",)) == []


def test_forged_sender_hardware_address():
    # The ARP payload claims 50:50:50:50:50:50, the Ethernet frame came from another card: crafted.
    frames = [arp(0, "69.220.152.0", sender="192.168.1.15", orig_mac="50:50:50:50:50:50", eth_src="50:5b:c2:db:c3:17"),
              arp(0.1, "69.220.152.0", sender="192.168.1.15", op="reply", orig_mac="50:50:50:50:50:50",
                  eth_src="50:5b:c2:db:c3:17")]
    (f,) = run("arp_scan", arp=frames)
    assert f.key == ("192.168.1.15", "forged_sender", "*") and f.severity == "medium" and f.attack == ["T1557.002"]
    assert f.metrics["unsolicited"] == 1 and f.metrics["outside"] == ["69.220.152.0"]
    assert f.explanation == ("192.168.1.15 sent ARP frames claiming hardware address 50:50:50:50:50:50 from Ethernet "
                             "source 50:5b:c2:db:c3:17: forged ARP (2 ARP frames; 1 unsolicited (broadcast reply or "
                             "gratuitous); for 69.220.152.0, outside its network).")
    # the same frames from the card they name are one stray request and one announcement
    honest = [dict(r, eth_src="50:50:50:50:50:50") for r in frames]
    assert run("arp_scan", arp=honest) == []


def test_slips_test9_zeek_arp_log(tmp_path_factory):
    # Slips: "sending ARP packet to a destination address outside of local network" and
    # "broadcasting unsolicited ARP" — two crafted frames in Zeek's arp.log
    fs = analyze_capture("slips/test9-mixed-zeek", tmp_path_factory.mktemp("arp9"), only=("arp_scan",))
    assert [(f.key, f.metrics["unsolicited"], f.metrics["outside"]) for f in fs] == [
        (("192.168.1.15", "forged_sender", "*"), 1, ["69.220.152.0"])]
