"""Hostile traffic must not steer the tool (issue 13; the promises are listed in docs/security.md).

Each test here reproduces an attack that worked before its fix: firewall rules injected through
DNS text, a report blocked by one odd name, an allowlist bypassed through the malware's own DNS
server, Rich markup and control characters in names, formulas in CSV cells. The telemetry is
written the way sensors write it (Zeek JSON logs, DNS packets in a pcap) and runs through the
real ``abfluss`` command.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess

import pytest
import stix2

import abfluss
from abfluss.contain import blast_radius, blocklists, parse_indicator
from abfluss.errors import AbflussError

from hostile import NAMES, conn, dns, dns_pcap, ssl, zeek_json

NFT_INJECTION = ("flush", "ruleset", "%", "8.8.")


def _nft_check(path) -> subprocess.CompletedProcess:
    proc = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True)
    if proc.returncode and "Operation not permitted" in proc.stderr:  # not root: a private namespace
        proc = subprocess.run(["unshare", "-rn", "nft", "-c", "-f", str(path)], capture_output=True, text=True)
    return proc


def cli(*args: str, workspace, full: bool = False):
    """The command in this process (Rich renders the same way; a subprocess costs seconds each)."""
    from typer.testing import CliRunner

    from abfluss.cli import app

    res = CliRunner().invoke(app, ["--workspace", str(workspace), *args])
    assert res.exit_code == 0 and res.exception is None, (res.output, res.exception)
    return res if full else res.stdout


def _ingest(ws, *paths, sensor: str | None = None):
    return cli("ingest", *map(str, paths), *(["--sensor", sensor] if sensor else []), workspace=ws, full=True)




# -- 1. firewall injection through DNS --------------------------------------------------------

@pytest.fixture(scope="module")
def dns_attack(tmp_path_factory):
    """The attacker's domain answers with text where addresses belong, on the wire and in Zeek."""
    d = tmp_path_factory.mktemp("dnsattack")
    pcap = dns_pcap(d / "dns.pcap", [
        ("evil.example", "TXT", [("TXT", NAMES["nft_scope_id"])]),
        ("evil.example", "TXT", [("TXT", "8.8.8.8")]),
        ("evil.example", "A", [("CNAME", "8.8.4.4"), ("A", "203.0.113.66")]),
        ("evil.example", "AAAA", [("AAAA", "2001:db8::66")]),
    ])
    logs = d / "zeek"
    logs.mkdir()
    zeek_json(logs / "dns.log", "dns", [
        dns(1, "D1", "10.0.0.6", "10.0.0.53", "zeek-evil.example", [NAMES["nft_scope_id"]], qtype="AAAA"),
        dns(2, "D2", "10.0.0.6", "10.0.0.53", "zeek-evil.example", ["9.9.9.9"], qtype="TXT"),
        dns(3, "D3", "10.0.0.6", "10.0.0.53", "zeek-evil.example", ["zeek-cdn.example", "198.51.100.7"]),
    ])
    _ingest(d / "ws", pcap, logs)
    ws = abfluss.open_workspace(d / "ws")
    yield ws
    ws.close()


def test_only_a_and_aaaa_answers_are_addresses(dns_attack):
    res = blast_radius(dns_attack, indicators=["evil.example"])
    (ind,) = res["indicators"]
    assert ind["addresses"] == ["203.0.113.66", "2001:db8::66"]  # not the TXT texts, not the CNAME "8.8.4.4"


def test_zeek_answers_count_only_in_address_responses_in_plain_form(dns_attack):
    (ind,) = blast_radius(dns_attack, indicators=["zeek-evil.example"])["indicators"]
    assert ind["addresses"] == ["198.51.100.7"]


def test_block_lists_of_a_hostile_domain_load_and_hold_no_injection(dns_attack, tmp_path):
    res = blast_radius(dns_attack, indicators=["evil.example", "zeek-evil.example"])
    lists = blocklists(res)
    for text in (lists["nftables"], lists["plain"]):
        assert not any(bad in text for bad in NFT_INJECTION), text
    assert lists["plain"] == "198.51.100.7\n203.0.113.66\n2001:db8::66\nevil.example\nzeek-evil.example\n"
    assert shutil.which("nft"), "nftables (Debian package nftables) is needed: make installs it"
    (tmp_path / "b.nft").write_text(lists["nftables"])
    proc = _nft_check(tmp_path / "b.nft")
    assert proc.returncode == 0, proc.stderr
    bundle = stix2.parse(lists["stix"], allow_custom=False)
    assert sorted(o.pattern for o in bundle.objects) == sorted([
        "[domain-name:value = 'evil.example']", "[domain-name:value = 'zeek-evil.example']",
        "[ipv4-addr:value = '203.0.113.66']", "[ipv6-addr:value = '2001:db8::66']",
        "[ipv4-addr:value = '198.51.100.7']"])


@pytest.mark.parametrize("key", sorted(NAMES))
def test_block_lists_refuse_every_hostile_value(key, tmp_path):
    """A radius is a plain dict: whatever it holds is checked again where the rules are written."""
    name = NAMES[key]
    for kind, value, addresses in (("domain", name, []), ("domain", "ok.example", [name]), ("ip", name, [])):
        radius = {"indicators": [{"value": value, "kind": kind, "addresses": addresses}]}
        if name == "8.8.8.8" and (kind == "ip" or addresses):  # a plain address is a fine address
            (tmp_path / "x.nft").write_text(blocklists(radius)["nftables"])
            assert _nft_check(tmp_path / "x.nft").returncode == 0
        else:
            with pytest.raises(AbflussError, match="block list"):
                blocklists(radius)


@pytest.mark.parametrize("text", [NAMES["nft_scope_id"], "fe80::1%eth0", " 10.0.0.1", "10.0.0.1\n",
                                  "1.2.3.4; flush ruleset", "::ffff:1.2.3.4%1"])
def test_strict_address_rejects_zones_and_padding(text):
    from abfluss.contain import strict_address

    assert strict_address(text) is None


def test_indicator_parsing_is_anchored():
    with pytest.raises(AbflussError):
        parse_indicator("evil.example\nflush ruleset")
    with pytest.raises(AbflussError):
        parse_indicator("1.2.3.4\nx")


def test_stix_pattern_escapes_quotes():
    from abfluss.contain import _pattern

    p = _pattern(NAMES["stix_quote"], "domain")
    assert p == "[domain-name:value = 'evil.example\\'] OR [ipv4-addr:value = \\'0.0.0.0/0']"
    ind = stix2.v21.Indicator(pattern=p, pattern_type="stix", valid_from="2026-03-02T09:00:00Z")
    assert ind.pattern == p


# -- 2, 6, 7. names in reports, terminals and CSV ---------------------------------------------

@pytest.fixture(scope="module")
def named_ws(tmp_path_factory):
    """One upload-heavy connection per hostile name (its SNI), analysed: every name is a finding's
    destination and a ledger row; the log's folder name and a bad field show in the summary."""
    d = tmp_path_factory.mktemp("names")
    logs = d / "[link=https:evil.example]zeek"
    logs.mkdir()
    conns, ssls = [], []
    for i, name in enumerate(NAMES.values()):
        uid, ip = f"C{i:03d}", f"203.0.113.{10 + i}"
        conns.append(conn(60 * i, uid, "10.0.0.5", ip, out=3_000_000, back=2_000))
        ssls.append(ssl(60 * i, uid, "10.0.0.5", ip, name))
    zeek_json(logs / "conn.log", "conn", conns + [{**conn(0, "CX", "10.0.0.5", "203.0.113.9"), "orig_bytes": "[/]"}])
    zeek_json(logs / "ssl.log", "ssl", ssls)
    ws = d / "ws"
    ingest = _ingest(ws, logs, sensor=NAMES["csv_formula"])  # its summary is tested
    cli("analyze", "--only", "upload_heavy", workspace=ws)
    return ws, ingest


def test_upload_findings_exist_for_the_hostile_names(named_ws):
    ws, _ = named_ws
    docs = json.loads(cli("findings", "--format", "json", workspace=ws))
    names = {n for f in docs for n in f["external_names"]}
    assert {NAMES[k].lower() for k in ("space", "rich_close", "csv_formula", "nft_scope_id")} <= names


def test_report_is_never_blocked_by_a_name(tmp_path):
    """Uploads to names that are no valid indicator (each made ``report`` exit 2 before)."""
    from abfluss.report.case import write_case

    logs, ws = tmp_path / "logs", tmp_path / "ws"
    logs.mkdir()
    keys = ("space", "csv_tab", "nft_scope_id")
    zeek_json(logs / "conn.log", "conn", [conn(60 * i, f"C{i}", "10.0.0.5", f"203.0.113.{10 + i}", out=3_000_000,
                                               back=2_000) for i in range(len(keys))])
    zeek_json(logs / "ssl.log", "ssl", [ssl(60 * i, f"C{i}", "10.0.0.5", f"203.0.113.{10 + i}", NAMES[k])
                                        for i, k in enumerate(keys)])
    from abfluss import detections

    ws.mkdir()  # only the detection that finds these uploads: the report's analysis stays cheap
    (ws / "abfluss.toml").write_text("".join(f"[detections.{d}]\nenabled = false\n"
                                             for d in detections.MODULES if d != "upload_heavy"))
    _ingest(ws, logs)
    with abfluss.open_workspace(ws) as w:
        rep = write_case(w, tmp_path / "case", pdf=False)  # raised (exit 2 in the CLI) before
    assert any(NAMES["space"] in f["external_names"] for f in rep["findings"])
    assert json.loads((tmp_path / "case" / "report.json").read_text())["verdict"] == rep["verdict"]


def _shown(text: str, name: str) -> bool:
    """The name shows as itself, its control characters escaped (as cli.app.printable does)."""
    from abfluss.cli.app import printable

    return printable(name) in text


@pytest.mark.parametrize("args", [("ledger", "--limit", "0"), ("findings",), ("incidents",)])
def test_terminal_tables_show_markup_as_text(named_ws, args):
    ws, _ = named_ws
    text = cli(*args, workspace=ws)
    assert "\x1b" not in text and "\x07" not in text and "\u2028" not in text
    if args[0] == "ledger":
        flat = text.replace("\n", "")
        for key in ("rich_close", "rich_style", "rich_emoji", "ansi"):
            assert _shown(flat, NAMES[key].lower()), key


def test_explain_and_contain_print_names_literally(named_ws):
    ws, _ = named_ws
    docs = json.loads(cli("findings", "--format", "json", workspace=ws))
    for key in ("rich_close", "rich_link", "ansi"):
        (f,) = [f for f in docs if NAMES[key].lower() in f["external_names"]]
        text = cli("explain", f["id"], workspace=ws)
        assert "\x1b" not in text and _shown(text, NAMES[key].lower()), key
    text = cli("contain", "--host", "10.0.0.5", workspace=ws)
    assert "│ [/] " in text


def test_ingest_summary_shows_paths_and_messages_literally(named_ws):
    _, proc = named_ws
    assert "skipped: " in proc.stderr and "[link=https:evil.example]zeek/conn.log: line 27: bad orig_bytes " \
        "value '[/]'" in proc.stderr.replace("\n", "")
    assert "[link=https:" in proc.stdout  # the input's path in the summary table


@pytest.mark.parametrize("command", ["ledger", "inputs", "coverage"])
def test_csv_cells_never_start_a_formula(named_ws, command):
    ws, _ = named_ws
    rows = list(csv.reader(io.StringIO(cli(command, "--format", "csv", workspace=ws))))
    assert len({len(r) for r in rows}) == 1  # no cell split a row (a lone CR did)
    cells = [c for r in rows[1:] for c in r]
    assert cells and not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    if command == "ledger":
        assert {"'" + NAMES[k].lower() for k in ("csv_formula", "csv_plus", "csv_minus", "csv_at")} <= set(cells)
        assert {"'" + NAMES["csv_tab"], "'" + NAMES["csv_cr"]} <= set(cells)
    if command == "inputs":
        assert "'" + NAMES["csv_formula"] in cells  # the sensor name


def test_csv_numbers_stay_numbers():
    from abfluss.cli.app import csv_cell

    assert (csv_cell(-5), csv_cell(0.5), csv_cell("-"), csv_cell(["=x"])) == (-5, 0.5, "'-", '["=x"]')


# -- 3. allowlisting only on trusted names ----------------------------------------------------

ALLOW = '[allowlist]\ndomains = ["*.windowsupdate.com"]\n'


def _allowlist_case(tmp_path, config: str):
    """Three hosts use the LAN resolver; 10.0.0.5's malware asks its own server for a Windows
    Update name, which answers with the attacker's address, and uploads 5 MB there. 10.0.0.6
    uploads to a Windows Update address its resolver gave; 10.0.0.7 to one named by its SNI."""
    logs = tmp_path / "logs"
    logs.mkdir()
    rows = [dns(i, f"Q{h}{i}", f"10.0.0.{h}", "10.0.0.53", f"www{i}.example.org", [f"198.51.100.{i}"])
            for h in (5, 6, 7) for i in range(1, 4)]
    rows += [dns(10, "E1", "10.0.0.5", "198.51.100.53", "cdn.windowsupdate.com", ["203.0.113.66"]),
             dns(11, "G1", "10.0.0.6", "10.0.0.53", "update.windowsupdate.com", ["203.0.113.80"])]
    zeek_json(logs / "dns.log", "dns", rows)
    zeek_json(logs / "conn.log", "conn", [
        conn(20, "CEVIL", "10.0.0.5", "203.0.113.66", out=5_000_000, back=8_000, service=None),
        conn(21, "CGOOD", "10.0.0.6", "203.0.113.80", out=5_000_000, back=8_000, service=None),
        conn(22, "CSNI", "10.0.0.7", "203.0.113.90", out=5_000_000, back=8_000)])
    zeek_json(logs / "ssl.log", "ssl", [ssl(22, "CSNI", "10.0.0.7", "203.0.113.90", "dl.windowsupdate.com")])
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "abfluss.toml").write_text(config)
    cli("ingest", str(logs), workspace=ws)
    ledger = {r["external_host"]: (r["external_name"], r["name_source"], r["dest_class"])
              for r in json.loads(cli("ledger", "--format", "json", workspace=ws))}
    found = json.loads(cli("analyze", "--only", "upload_heavy", "--format", "json", workspace=ws))["findings"]
    return ledger, found


@pytest.mark.parametrize("config", [ALLOW, ALLOW + '[networks]\nresolvers = ["10.0.0.53/32"]\n'],
                         ids=["learned", "configured"])
def test_own_dns_server_does_not_allowlist_an_upload(tmp_path, config):
    ledger, found = _allowlist_case(tmp_path, config)
    assert ledger == {"203.0.113.66": (None, None, "unknown"),
                      "203.0.113.80": ("update.windowsupdate.com", "resolver", "allowlisted"),
                      "203.0.113.90": ("dl.windowsupdate.com", "connection", "allowlisted")}
    assert [(f["internal_hosts"], f["external_hosts"], f["bytes_out"]) for f in found] == [
        (["10.0.0.5"], ["203.0.113.66"], 5_000_000)]
    with abfluss.open_workspace(tmp_path / "ws") as ws:
        assert ws.con.execute("SELECT * FROM resolvers").fetchall() == [
            ("10.0.0.53", "configured" if "resolvers" in config else "learned")]



def test_every_promise_names_tests_that_exist():
    """docs/security.md lists no promise without a test: every test it names is defined."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    named = 0
    for line in (root / "docs" / "security.md").read_text().splitlines():
        current = None
        for m in re.finditer(r"`(tests/[\w/]+\.py)?(?:::(\w+))?", line):
            if m.group(1):
                current = root / m.group(1)
                assert current.exists(), m.group(1)
            if m.group(2):
                assert current is not None and re.search(rf"^def {m.group(2)}\b", current.read_text(), re.M), \
                    f"{current}::{m.group(2)}"
                named += 1
    assert named >= 30
