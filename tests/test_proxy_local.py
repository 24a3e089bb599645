"""Proxies and local destinations: who really is the destination.

Traffic to a forward proxy counts to its real target (ledger and every detection), the proxy is
never a finding's destination; multicast, broadcast, link-local and unspecified destinations are
``dest_class = "local"`` in the ledger and never reach the detections.
"""

from __future__ import annotations

import ipaddress
import json

import pytest

import abfluss
from abfluss.enrich import LOCAL_NETWORKS
from abfluss.ledger import LedgerQuery, ledger

from conftest import EXAMPLES, data
from detkit import analyze_capture, workspace_for

PROXY = '[networks]\nproxies = ["10.136.0.16/32"]\n'
_LOCAL = [ipaddress.ip_network(n) for n in LOCAL_NETWORKS]


def is_local(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in _LOCAL)


def ledger_rows(root) -> list[dict]:
    ws = abfluss.open_workspace(root)
    try:
        return ledger(ws, LedgerQuery()).to_pylist()
    finally:
        ws.close()


@pytest.mark.parametrize("cfg", [PROXY, None], ids=["configured", "detected"])
def test_rita_proxy_beacon_is_named_never_the_proxy(cfg, tmp_path_factory):
    """397 CONNECTs of 10.136.0.18 through 10.136.0.16:3128 to www.honestimnotevil.com."""
    tmp = tmp_path_factory.mktemp("proxy")
    fs = analyze_capture("rita/proxy", tmp, cfg)
    assert [(f.detection, f.severity, f.internal_hosts, f.external_hosts, f.external_names) for f in fs] == [
        ("beaconing", "critical", ["10.136.0.18"], ["www.honestimnotevil.com"], ["www.honestimnotevil.com"])]
    assert not any("10.136.0.16" in f.external_hosts + f.external_names + [str(k) for k in f.key] for f in fs)
    rows = ledger_rows(workspace_for(("rita/proxy",), tmp, cfg))
    per_dest = {}
    for r in rows:
        per_dest.setdefault((r["internal_host"], r["external_host"], r["dest_class"]), []).append(r["flows"])
    assert {k: sum(v) for k, v in per_dest.items() if k[2] != "local"} == {
        ("10.136.0.18", "www.honestimnotevil.com", "unknown"): 397, ("10.136.0.18", "74.125.196.103", "unknown"): 10}  # www.google.com: the DNS answers know it
    assert all(is_local(k[1]) for k in per_dest if k[2] == "local")  # IPv6 router solicitations to ff02::2


def test_proxy_targets_literal_addresses_ports_and_dns(tmp_path):
    """CONNECT to an IPv6 literal, an absolute URI with a port, a name resolved by the workspace's
    DNS; and a connection to the proxy without any request log (transit, not a destination)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    conn = [dict(ts=1700000000 + i, uid=f"C{i}", **{"id.orig_h": "10.0.0.5", "id.orig_p": 40000 + i,
                 "id.resp_h": "192.0.2.80", "id.resp_p": 8080}, proto="tcp", service="http",
                 duration=1.0, orig_bytes=1000 * (i + 1), resp_bytes=100, conn_state="SF") for i in range(4)]
    http = [dict(ts=1700000000, uid="C0", **{"id.orig_h": "10.0.0.5", "id.orig_p": 40000, "id.resp_h": "192.0.2.80",
                 "id.resp_p": 8080}, method="CONNECT", host="[2001:db8::7]", uri="[2001:db8::7]:8443", status_code=200),
            dict(ts=1700000001, uid="C1", **{"id.orig_h": "10.0.0.5", "id.orig_p": 40001, "id.resp_h": "192.0.2.80",
                 "id.resp_p": 8080}, method="POST", host="files.example.test:8081",
                 uri="http://user@Files.Example.test:8081/up?x=1", status_code=201),
            dict(ts=1700000002, uid="C2", **{"id.orig_h": "10.0.0.5", "id.orig_p": 40002, "id.resp_h": "192.0.2.80",
                 "id.resp_p": 8080}, method="GET", host="www.example.test", uri="https://www.example.test/",
                 status_code=200)]
    dns = [dict(ts=1699999999, uid="D0", **{"id.orig_h": "192.0.2.80", "id.orig_p": 5353, "id.resp_h": "192.0.2.53",
                "id.resp_p": 53}, proto="udp", query="files.example.test", qtype_name="A", rcode_name="NOERROR",
                answers=["198.51.100.7"], TTLs=[60.0])]
    for name, recs in (("conn", conn), ("http", http), ("dns", dns)):
        (logs / f"{name}.log").write_text("".join(json.dumps(dict(_path=name, **r)) + "\n" for r in recs))
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "abfluss.toml").write_text('[networks]\nproxies = ["192.0.2.80"]\n')
    ws = abfluss.open_workspace(tmp_path / "ws", write=True)
    try:
        assert {r.status for r in abfluss.ingest_paths(ws, [logs])} == {"stored"}
        abfluss.refresh(ws)
        got = ws.con.execute("""SELECT uid, resp_h, resp_p, proxy, proxy_p, external_host, external_name, dest_class,
                                       bytes_out FROM flows ORDER BY uid""").fetchall()
    finally:
        ws.close()
    assert got == [
        ("C0", "2001:db8::7", 8443, "192.0.2.80", 8080, "2001:db8::7", None, "unknown", 1000),
        ("C1", "198.51.100.7", 8081, "192.0.2.80", 8080, "198.51.100.7", "files.example.test", "unknown", 2000),
        ("C2", "www.example.test", 443, "192.0.2.80", 8080, "www.example.test", "www.example.test", "unknown", 3000),
        ("C3", "192.0.2.80", 8080, "192.0.2.80", 8080, "192.0.2.80", None, "proxy", 4000)]
    rows = ledger_rows(tmp_path / "ws")
    assert sorted((r["external_host"], r["dest_class"], r["bytes_out"]) for r in rows) == [
        ("192.0.2.80", "proxy", 4000), ("198.51.100.7", "unknown", 2000),
        ("2001:db8::7", "unknown", 1000), ("www.example.test", "unknown", 3000)]


def test_squid_log_attributes_to_the_real_destination(tmp_path):
    root = workspace_for((str(EXAMPLES / "squid" / "access.log"),), tmp_path, '[networks]\ninternal = ["127.0.0.1/32"]\n')
    rows = ledger_rows(root)
    flows = {}
    for r in rows:
        flows[(r["external_host"], r["external_name"])] = flows.get((r["external_host"], r["external_name"]), 0) + r["flows"]
    assert flows == {("127.0.0.2", "www.example-shop.test"): 4, ("127.0.0.3", "beacon.c2-example.test"): 8,
                     ("no-such-host.example.test", "no-such-host.example.test"): 1,
                     ("blocked.example.test", "blocked.example.test"): 1}


@pytest.mark.parametrize("rel", ["netflow-pmacct", "slips/test6-malicious.suricata.json"])
def test_local_destinations_are_in_the_ledger_never_in_findings(rel, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("local")
    fs = analyze_capture(rel, tmp)
    for f in fs:
        dests = f.external_hosts or [str(f.key[0])]
        assert not all(is_local(d) for d in dests), f
    rows = ledger_rows(workspace_for((rel,), tmp))
    local = [r for r in rows if r["dest_class"] == "local"]
    assert local and all(is_local(r["external_host"]) for r in local)
    assert not [r for r in rows if r["dest_class"] != "local" and is_local(r["external_host"])]
    if rel == "netflow-pmacct":  # ff02::12 (VRRP) and 239.255.255.250 (SSDP) were upload_heavy findings
        assert {r["external_host"] for r in local} >= {"ff02::12"}
        assert fs == []
