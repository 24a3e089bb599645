"""mac_ip_change: literal address changes against routers, multi-homed and group addresses; the
MAC columns the pcap and Zeek readers fill; the golden Slips test7 device; benign controls."""

import abfluss
import pytest
from detkit import analyze_capture, assert_golden, assert_same_on_spark, mac, run, workspace_for

from abfluss.detections.mac_ip_change import Settings
from conftest import EXAMPLES

DEV = "02:00:00:00:00:05"
GW = "02:00:00:00:00:01"


def positive_tables():
    # A laptop self-assigns 169.254.7.7 while DHCP is silent, then gets 192.168.1.23.
    return {"macs": [mac("169.254.7.7", ts=0, last=20, flows=4), mac("192.168.1.23", ts=30, last=600, flows=40)]}


def test_link_local_then_dhcp_lease_is_a_change():
    (f,) = run("mac_ip_change", **positive_tables())
    assert f.key == (DEV, "*") and f.severity == "low" and f.attack == ["T1036"]
    assert f.internal_hosts == ["169.254.7.7", "192.168.1.23"] and f.external_hosts == []
    assert f.metrics["count"] == 2 and f.metrics["clean_change"] and f.metrics["newest"] == "192.168.1.23"
    assert f.explanation == ("MAC address 02:00:00:00:00:05 carried 2 internal addresses, one after the other: "
                             "169.254.7.7 from 2026-03-02 09:00:00; 192.168.1.23 from 2026-03-02 09:00:30; "
                             "the newest is 192.168.1.23.")


def test_an_address_another_card_holds_is_named():
    rows = positive_tables()["macs"] + [mac("192.168.1.1", ts=40), mac("192.168.1.1", mac=GW, ts=0, last=900)]
    (f,) = [f for f in run("mac_ip_change", macs=rows) if f.key[0] == DEV]
    assert f.metrics["shared_with"] == {"192.168.1.1": [GW]} and f.attack == ["T1036", "T1557.002"]
    assert f.score == 25 + 5 + 5 and not f.metrics["clean_change"]
    assert "192.168.1.1 from 2026-03-02 09:00:40 (also carried by 02:00:00:00:00:01)" in f.explanation


def test_routers_group_addresses_and_one_address_are_nothing():
    # The gateway's MAC carries every routed address, external ones included.
    router = [mac(a, mac=GW) for a in ("192.168.1.1", "10.20.0.5", "10.20.0.6", "203.0.113.9")]
    # A router between internal networks only: more addresses than one device has.
    inner = [mac(f"10.30.0.{i}", mac="02:00:00:00:00:0a") for i in range(1, 7)]
    # Multicast and broadcast MACs, DHCP's 0.0.0.0 and the broadcast address, one steady host.
    group = [mac("224.0.0.251", mac="01:00:5e:00:00:fb"), mac("192.168.1.255", mac="ff:ff:ff:ff:ff:ff"),
             mac("192.168.1.7", mac="ff:ff:ff:ff:ff:ff")]
    steady = [mac("0.0.0.0", ts=0), mac("255.255.255.255", ts=1), mac("192.168.1.23", ts=2, last=900)]
    # IPv6: link-local and global addresses at once.
    six = [mac("fe80::5", mac="02:00:00:00:00:06"), mac("fd00::5", mac="02:00:00:00:00:06")]
    assert run("mac_ip_change", macs=router + inner + group + steady + six) == []
    assert len(run("mac_ip_change", settings=Settings(max_addresses=6), macs=inner)) == 1
    assert len(run("mac_ip_change", settings=Settings(ipv4_only=False), macs=six)) == 1


def test_a_change_before_the_window_is_not_reported_again():
    # Both addresses first appeared in the look-back: the change is old news in this window.
    from detkit import T0
    from datetime import timedelta
    assert run("mac_ip_change", macs=positive_tables()["macs"], start=T0 + timedelta(seconds=60),
               end=T0 + timedelta(hours=1)) == []


def test_readers_fill_the_mac_columns(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("macs")
    ws = abfluss.open_workspace(workspace_for(("slips/test14-malicious-zeek",), tmp))
    try:  # Zeek conn.log orig_l2_addr/resp_l2_addr
        assert ws.con.execute("SELECT DISTINCT orig_mac, resp_mac FROM flows_raw").fetchall() == [
            ("08:00:27:ef:ee:34", "33:33:00:01:00:02")]
    finally:
        ws.close()
    ws = abfluss.open_workspace(workspace_for((str(EXAMPLES / "lab-beacon.pcap"),), tmp))
    try:  # NFStream's frames: the host's own card and the gateway's
        got = ws.con.execute("SELECT DISTINCT orig_h, orig_mac, resp_mac FROM flows_raw "
                             "WHERE resp_h = '203.0.113.66'").fetchall()
        assert got == [("10.10.0.12", "0e:65:60:10:ff:c7", "6a:04:bb:66:41:7c")]
    finally:
        ws.close()
    ws = abfluss.open_workspace(workspace_for(("zeek-traces/http-post-large.pcap",), tmp))
    try:  # a loopback capture has no link-layer addresses: null, not zeros
        assert ws.con.execute("SELECT count(*), count(orig_mac), count(resp_mac) FROM flows_raw").fetchall()[0][1:] == (0, 0)
    finally:
        ws.close()


def test_golden_slips_device_changing_ips(tmp_path_factory):
    # Slips' test7: 68:5b:35:b1:55:93 self-assigned 169.254.242.182 (mDNS, ARP probes), then got
    # 192.168.2.12 by DHCP; its DHCP answers also came from the gateway's 192.168.2.1.
    fs = analyze_capture("slips/test7-malicious.pcap", tmp_path_factory.mktemp("mac"), only=("mac_ip_change",))
    got = {f.key[0]: f for f in fs}
    f = got["68:5b:35:b1:55:93"]
    assert [a["addr"] for a in f.metrics["addresses"]] == ["169.254.242.182", "192.168.2.1", "192.168.2.12"]
    assert f.metrics["newest"] == "192.168.2.12" and f.metrics["shared_with"] == {"192.168.2.1": ["a6:d1:8c:1f:ce:64"]}
    # the Raspberry Pi's Docker bridge address leaked onto the LAN twice (IGMP from 172.17.0.1)
    assert [a["addr"] for a in got["b8:27:eb:c7:e9:c9"].metrics["addresses"]] == ["192.168.2.16", "172.17.0.1"]
    assert len(fs) == 2 and all(f.severity == "low" for f in fs)
    assert_golden("mac_ip_change-slips-test7", fs)


def test_golden_slips_device_changing_ips_is_the_same_on_spark(tmp_path_factory, spark_session):
    assert_same_on_spark("slips/test7-malicious.pcap", tmp_path_factory.mktemp("mac"), "mac_ip_change")


@pytest.mark.parametrize("rel", ["rita/open_conns", str(EXAMPLES / "demo.pcap"), str(EXAMPLES / "lab-beacon.pcap")])
def test_benign_controls_give_no_finding(rel, tmp_path_factory):
    assert analyze_capture(rel, tmp_path_factory.mktemp("benign"), only=("mac_ip_change",)) == []
