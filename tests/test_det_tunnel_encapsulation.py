"""tunnel_encapsulation: literal GRE, Teredo and IP-in-IP tunnels from flow records and the sensor's
decapsulation against proxy tunnels; goldens on Slips test14's GRE and Zeek's Teredo capture."""

from detkit import analyze_capture, assert_golden, flow, run, tunnel


def positive_tables():
    flows = [flow(i, proto="gre", orig_p=0, resp_p=0, resp_h="198.51.100.7", service="gre", orig_bytes=9000,
                  resp_bytes=100) for i in range(3)]
    return {"flows": flows, "tunnels": [tunnel(0)]}


def test_gre_to_the_internet_from_flows_and_the_sensor_merge():
    (f,) = run("tunnel_encapsulation", **positive_tables())
    assert f.key == ("10.0.0.5", "gre", "198.51.100.7") and f.severity == "medium"
    assert f.metrics["sources"] == ["flows", "tunnels"] and f.metrics["flows"] == 3 and f.bytes_out == 27000


def test_teredo_by_port_and_internal_ip_in_ip_and_proxy_tunnels():
    teredo = [flow(0, proto="udp", resp_p=3544, service=None, resp_h="65.55.158.80")]
    (f,) = run("tunnel_encapsulation", flows=teredo)
    assert f.key == ("10.0.0.5", "teredo", "65.55.158.80") and f.attack == ["T1572"]
    (g,) = run("tunnel_encapsulation", tunnels=[tunnel(0, "ip-in-ip", resp_h="10.0.9.1")])
    assert g.severity == "low" and g.internal_hosts == ["10.0.0.5", "10.0.9.1"]
    assert run("tunnel_encapsulation", tunnels=[tunnel(0, "http")]) == []  # CONNECT through a proxy



def analyze(rel, tmp_path_factory):
    return analyze_capture(rel, tmp_path_factory.mktemp("tun"), only=("tunnel_encapsulation",))


def test_golden_slips_test14_gre(tmp_path_factory):
    # Slips: GRE tunnel — Zeek's tunnel.log: 10.0.2.15 <-> 115.112.11.30 (discover, expire)
    fs = analyze("slips/test14-malicious-zeek", tmp_path_factory)
    assert [(f.key, f.severity, f.metrics["tunnel_records"]) for f in fs] == [
        (("10.0.2.15", "gre", "115.112.11.30"), "medium", 2)]
    assert_golden("tunnel_encapsulation-slips-test14", fs)


def test_golden_zeek_teredo_capture(tmp_path_factory):
    # nDPI names the outer UDP flows to Microsoft's Teredo servers; gre-within-gre.pcap has two
    # public ends (72.205.54.70 <-> 86.106.164.150), no internal one: nothing
    fs = analyze("zeek-traces/Teredo.pcap", tmp_path_factory)
    assert sorted((f.key, f.severity) for f in fs) == [
        (("192.168.2.16", "teredo", "65.55.158.80"), "medium"), (("192.168.2.16", "teredo", "65.55.158.81"), "medium")]
    assert analyze("zeek-traces/gre-within-gre.pcap", tmp_path_factory) == []
    assert_golden("tunnel_encapsulation-zeek-teredo", fs)
