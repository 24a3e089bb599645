"""Containment: blast radius on real captures against their truth, block lists, the CLI.

The lab captures' truth is what the tools reported (examples/lab-truth.json); flow times in the
store have millisecond resolution, so contact times are compared truncated to the millisecond.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime, timezone

import pytest
import stix2

import abfluss
from abfluss.contain import blast_radius, blocklists, block_networks, parse_indicator
from abfluss.errors import AbflussError

from conftest import EXAMPLES, run_cli
from detkit import workspace_for

TRUTH = json.loads((EXAMPLES / "lab-truth.json").read_text())["scenarios"]
GENERATED = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def _ms(t: datetime | float) -> int:
    return int(t.timestamp() * 1000) if isinstance(t, datetime) else int(t * 1000)


@pytest.fixture(scope="module")
def ws_for(tmp_path_factory):
    opened = []

    def open_(rel: str):
        ws = abfluss.open_workspace(workspace_for((rel,), tmp_path_factory.mktemp("contain")))
        opened.append(ws)
        return ws

    yield open_
    for ws in opened:
        ws.close()


# -- parsing -------------------------------------------------------------------------------

@pytest.mark.parametrize("value, kind, norm", [
    ("203.0.113.66", "ip", "203.0.113.66"),
    ("203.0.113.66/32", "cidr", "203.0.113.66/32"),
    ("198.51.100.7/24", "cidr", "198.51.100.0/24"),
    ("2001:DB8::1", "ip", "2001:db8::1"),
    ("::ffff:203.0.113.66", "ip", "203.0.113.66"),
    ("2001:db8::/32", "cidr", "2001:db8::/32"),
    ("C2.Update-Check.test.", "domain", "c2.update-check.test"),
    ("*.files-drop.test", "domain", "files-drop.test"),
    ("bücher.test", "domain", "xn--bcher-kva.test"),
])
def test_indicators_are_normalised(value, kind, norm):
    ind = parse_indicator(value)
    assert (ind.kind, ind.value) == (kind, norm)


@pytest.mark.parametrize("value", ["10.0.0.1/33", "300.1.2.3", "10.0.0", "2001:db8::g", "1.2.3.4/x",
                                   "bad domain.test", "-x.test", "a..b"])
def test_invalid_indicators_are_errors(value):
    with pytest.raises(AbflussError, match="--indicator"):
        parse_indicator(value)


# -- blast radius on real captures ---------------------------------------------------------

def test_beacon_domain_reaches_exactly_the_beaconing_host(ws_for):
    t = TRUTH["beacon"]["summary"]
    beacons = [e["wire"] for e in TRUTH["beacon"]["events"] if e["kind"] == "beacon"]
    res = blast_radius(ws_for(str(EXAMPLES / "lab-beacon.pcap")), indicators=[t["server_name"]])
    assert res["indicators"] == [{"value": "c2.update-check.test", "kind": "domain", "addresses": [t["server_ip"]],
                                  "names": ["c2.update-check.test"], "matched": True}]
    (r,) = res["radius"]
    assert r["internal_host"] == t["client_ip"] == "10.10.0.12" and r["reasons"] == [t["server_name"]]
    assert _ms(r["first_contact"]) == _ms(min(w["first_packet"] for w in beacons)) == _ms(t["first_syn"])
    assert _ms(r["last_contact"]) == _ms(max(w["last_packet"] for w in beacons))
    assert (r["bytes_out"], r["bytes_in"]) == (t["bytes_total"]["wire_payload_up"], t["bytes_total"]["wire_payload_down"])
    assert (r["bytes_out"], r["bytes_in"], r["flows"]) == (50391, 90677, t["connections"])
    assert r["dns_lookups"] == 2 * t["beacons"] == 106  # A and AAAA before every beacon
    assert [(c["internal_host"], c["peer"], c["peer_name"], c["flows"]) for c in res["contacts"]] == [
        ("10.10.0.12", "203.0.113.66", "c2.update-check.test", 53)]
    assert res["messages"] == []


def test_overlapping_indicators_count_each_flow_once(ws_for):
    ws = ws_for(str(EXAMPLES / "lab-beacon.pcap"))
    res = blast_radius(ws, indicators=["c2.update-check.test", "203.0.113.0/24"])
    (r,) = res["radius"]
    cidr = [c for c in res["contacts"] if c["seed"] == "203.0.113.0/24"]
    assert [c["peer"] for c in cidr] == ["203.0.113.20", "203.0.113.66"]
    assert (r["bytes_out"], r["flows"]) == (sum(c["bytes_out"] for c in cidr), sum(c["flows"] for c in cidr)) == (52932, 61)
    assert r["reasons"] == ["c2.update-check.test", "203.0.113.0/24"]
    assert res["indicators"][1]["names"] == ["c2.update-check.test", "cdn.example-media.test"]


def test_unknown_indicator_gives_an_empty_radius_with_a_reason(ws_for):
    res = blast_radius(ws_for(str(EXAMPLES / "lab-beacon.pcap")), indicators=["nowhere.test", "192.0.2.1"])
    assert res["radius"] == [] and res["contacts"] == []
    assert res["messages"] == ["nowhere.test: no flow or DNS record in the window matches it",
                               "192.0.2.1: no flow or DNS record in the window matches it"]
    assert blocklists(res, GENERATED)["plain"] == "192.0.2.1\nnowhere.test\n"


def test_compromised_host_lists_its_exfil_peers_with_bytes_each_way(ws_for):
    t = TRUTH["https-upload"]["summary"]
    res = blast_radius(ws_for(str(EXAMPLES / "lab-https-upload.pcap")), hosts=[t["client_ip"]])
    ext = {c["peer_name"]: c for c in res["contacts"] if not c["peer_internal"]}
    assert set(ext) == set(t["per_destination"]) == {
        "upload.files-drop.test", "www.example-shop.test", "cdn.example-media.test"}
    for name, d in t["per_destination"].items():
        c = ext[name]
        assert (c["peer"], c["bytes_out"], c["bytes_in"], c["flows"]) == (
            d["server_ip"], d["wire_payload_up"], d["wire_payload_down"], d["connections"]), name
    assert ext["upload.files-drop.test"]["bytes_out"] == 8_021_598
    # the one internal peer is the LAN resolver: it enters the radius, seen from its side
    (dns,) = [c for c in res["contacts"] if c["peer_internal"]]
    (r,) = res["radius"]
    assert (dns["peer"], r["internal_host"], r["reasons"]) == ("10.10.0.20", "10.10.0.20", ["10.10.0.11"])
    assert (r["bytes_out"], r["bytes_in"], r["flows"]) == (dns["bytes_in"], dns["bytes_out"], dns["flows"])


def test_lateral_peer_of_a_compromised_proxy_in_a_window(ws_for):
    ws = ws_for("rita/proxy")
    (r,) = blast_radius(ws, hosts=["10.136.0.16"])["radius"]
    assert (r["internal_host"], r["bytes_out"], r["bytes_in"], r["flows"]) == ("10.136.0.18", 278685, 772336, 407)
    assert (r["first_contact"].isoformat(), r["last_contact"].isoformat()) == (
        "2023-01-04T14:37:36.913119+00:00", "2023-01-05T18:48:43.037232+00:00")
    start, end = datetime(2023, 1, 5, tzinfo=timezone.utc), datetime(2023, 1, 5, 12, tzinfo=timezone.utc)
    res = blast_radius(ws, hosts=["10.136.0.16"], start=start, end=end)
    (r,) = res["radius"]
    assert (r["bytes_out"], r["bytes_in"], r["flows"]) == (117798, 249516, 174)
    assert start <= r["first_contact"] and r["last_contact"] < end
    (c,) = res["contacts"]  # the same flows seen from the compromised proxy
    assert (c["peer"], c["peer_internal"], c["bytes_out"], c["bytes_in"]) == ("10.136.0.18", True, 249516, 117798)


# -- block lists ---------------------------------------------------------------------------

LITERAL = {"indicators": [
    {"value": "198.51.100.0/24", "kind": "cidr", "addresses": []},
    {"value": "198.51.100.7", "kind": "ip", "addresses": []},
    {"value": "2001:db8::1", "kind": "ip", "addresses": []},
    {"value": "c2.example.test", "kind": "domain", "addresses": ["203.0.113.5", "203.0.113.4", "2001:db8:1::5"]},
]}

NFT = """#!/usr/sbin/nft -f
# abfluss containment block list, generated 2026-03-02T09:00:00Z; load with: nft -f FILE
# remove with: nft delete table inet abfluss_contain
# indicator 198.51.100.0/24
# indicator 198.51.100.7
# indicator 2001:db8::1
# indicator c2.example.test (resolved in the workspace's DNS answers to 203.0.113.5, 203.0.113.4, 2001:db8:1::5)
table inet abfluss_contain
delete table inet abfluss_contain
table inet abfluss_contain {
\tset block_v4 {
\t\ttype ipv4_addr
\t\tflags interval
\t\telements = { 198.51.100.0/24, 203.0.113.4/31 }
\t}
\tset block_v6 {
\t\ttype ipv6_addr
\t\tflags interval
\t\telements = { 2001:db8::1, 2001:db8:1::5 }
\t}
""" + "".join(f"""\tchain {c} {{
\t\ttype filter hook {c} priority filter - 10; policy accept;
\t\tip saddr @block_v4 counter drop
\t\tip daddr @block_v4 counter drop
\t\tip6 saddr @block_v6 counter drop
\t\tip6 daddr @block_v6 counter drop
\t}}
""" for c in ("input", "forward", "output")) + "}\n"


def _nft_check(path) -> subprocess.CompletedProcess:
    proc = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True)
    if proc.returncode and "Operation not permitted" in proc.stderr:  # not root: a private namespace
        proc = subprocess.run(["unshare", "-rn", "nft", "-c", "-f", str(path)], capture_output=True, text=True)
    return proc


def test_nftables_file_exact_and_loadable(tmp_path):
    text = blocklists(LITERAL, GENERATED)["nftables"]
    assert text == NFT  # overlapping and adjacent elements merged: interval sets reject overlaps
    if shutil.which("nft"):  # Debian package nftables; the exact text above is the check without it
        (tmp_path / "ok.nft").write_text(text)
        proc = _nft_check(tmp_path / "ok.nft")
        assert proc.returncode == 0, proc.stderr
        (tmp_path / "bad.nft").write_text(text.replace("198.51.100.0/24", "198.51.100.0/33"))
        assert _nft_check(tmp_path / "bad.nft").returncode != 0  # the check does catch errors


def test_empty_sets_stay_loadable(tmp_path):
    text = blocklists({"indicators": [{"value": "x.test", "kind": "domain", "addresses": []}]}, GENERATED)["nftables"]
    assert "elements" not in text and "set block_v4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t}" in text
    if shutil.which("nft"):
        (tmp_path / "e.nft").write_text(text)
        assert _nft_check(tmp_path / "e.nft").returncode == 0


def test_plain_list_and_networks():
    assert blocklists(LITERAL, GENERATED)["plain"] == (
        "198.51.100.0/24\n198.51.100.7\n203.0.113.4\n203.0.113.5\n2001:db8::1\n2001:db8:1::5\nc2.example.test\n")
    assert [str(n) for n in block_networks(LITERAL)] == [
        "198.51.100.0/24", "203.0.113.4/31", "2001:db8::1/128", "2001:db8:1::5/128"]


def test_stix_bundle_parses_with_one_indicator_per_value():
    bundle = stix2.parse(blocklists(LITERAL, GENERATED)["stix"], allow_custom=False)
    assert bundle.type == "bundle" and all(o.type == "indicator" and o.spec_version == "2.1" for o in bundle.objects)
    assert [o.pattern for o in bundle.objects] == [
        "[ipv4-addr:value = '198.51.100.0/24']", "[ipv4-addr:value = '198.51.100.7']",
        "[ipv6-addr:value = '2001:db8::1']", "[domain-name:value = 'c2.example.test']",
        "[ipv4-addr:value = '203.0.113.5']", "[ipv4-addr:value = '203.0.113.4']",
        "[ipv6-addr:value = '2001:db8:1::5']"]
    assert {o.valid_from for o in bundle.objects} == {GENERATED}


# -- command line --------------------------------------------------------------------------

def test_cli_writes_radius_and_block_lists(tmp_path, tmp_path_factory):
    root = workspace_for((str(EXAMPLES / "lab-beacon.pcap"),), tmp_path_factory.mktemp("contain"))
    out = tmp_path / "out"
    proc = run_cli("contain", "--indicator", "c2.update-check.test", "--out", str(out), "--format", "json",
                workspace=root)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [r["internal_host"] for r in doc["radius"]] == ["10.10.0.12"]
    assert doc["radius"][0]["first_contact"] == "2026-11-29T14:59:50.189000Z"
    assert sorted(p.name for p in out.iterdir()) == [
        "blast-radius.json", "blocklist.nft", "blocklist.stix.json", "blocklist.txt"]
    assert (out / "blocklist.txt").read_text() == "203.0.113.66\nc2.update-check.test\n"
    assert json.loads((out / "blast-radius.json").read_text())["radius"] == doc["radius"]
    proc = run_cli("contain", "--indicator", "nowhere.test", workspace=root)
    assert proc.returncode == 0 and "blast radius empty" in proc.stdout
    assert "nowhere.test: no flow or DNS record in the window matches it" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (("--indicator", "10.0.0.1/33"), "abfluss: --indicator '10.0.0.1/33': not a valid IP address or CIDR\n"),
    (("--host", "10.0.0.300"), "abfluss: --host '10.0.0.300': not a valid IP address\n"),
    ((), "abfluss: give at least one --host IP or --indicator VALUE\n"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args, message):
    proc = run_cli("contain", *args, workspace=tmp_path / "ws")
    assert (proc.returncode, proc.stderr) == (2, message)


def test_cli_help_has_an_example():
    proc = run_cli("contain", "--help")
    assert proc.returncode == 0 and "Example:" in proc.stdout
