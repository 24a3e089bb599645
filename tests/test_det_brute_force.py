"""brute_force: literal guessing by connections, by the server's refusals (SMTP, FTP) and by HTTP
401/403 series against their benign look-alikes; golden findings on real SSH, FTP and SMTP guessing."""

import pytest
from detkit import analyze_capture, assert_golden, flow, http_req, login, run

from abfluss.detections.brute_force import Settings
from conftest import EXAMPLES

MEDIUM_OR_MORE = ("medium", "high", "critical")


def guesses(n, every, **kw) -> list[dict]:
    row = dict(orig_h="203.0.113.50", resp_h="10.0.0.22", resp_p=22, service="ssh", duration=3.0,
               conn_state="SF", resp_bytes=2300)
    row.update(kw)
    size = row.pop("orig_bytes", 2600)
    return [flow(i * every, orig_p=52000 + i, orig_bytes=size + (i % 3) * 8, **row) for i in range(n)]


def request(ts, status, **kw) -> dict:
    """A request from an external client to an internal login form, answered ``status``."""
    row = dict(ua="python-requests/2.31", orig_h="203.0.113.7", resp_h="10.0.0.80", method="POST",
               host="intranet.example", uri="/login", status_code=status)
    return http_req(ts, **{**row, **kw})


def positive_tables():
    return {"flows": guesses(30, 2)}


# -- connections (flow records) ---------------------------------------------------------------

def test_password_guessing_on_ssh():
    (f,) = run("brute_force", **positive_tables())
    assert f.key == ("203.0.113.50", "ssh", "10.0.0.22:22")
    assert f.internal_hosts == ["10.0.0.22"] and f.external_hosts == ["203.0.113.50"]
    assert f.attack == ["T1110", "T1110.001"] and f.channel == "ssh" and f.metrics["evidence"] == ["connections"]
    assert f.metrics["count"] == 30 and f.metrics["client_bytes_median"] == 2608
    assert f.score_parts["alike"] > 9 and f.bytes_out == 30 * 2300


def test_guessing_on_a_named_service_counts_its_unnamed_resets():
    # SSH on port 902: the sensor names 15 sessions ssh, 10 reset after the banner are unnamed.
    named = guesses(15, 1, resp_p=902)
    resets = [flow(20 + i, orig_h="203.0.113.50", resp_h="10.0.0.22", resp_p=902, orig_p=53000 + i,
                   service="unknown", orig_bytes=2600, resp_bytes=22, duration=0.01, conn_state="RST")
              for i in range(10)]
    (f,) = run("brute_force", flows=named + resets)
    assert f.key == ("203.0.113.50", "tcp/902", "10.0.0.22:902") and f.metrics["count"] == 25


def test_git_polling_and_interactive_sessions_are_not_guessing():
    assert run("brute_force", flows=guesses(60, 60, orig_h="10.0.0.5", resp_h="140.82.121.4")) == []
    flows = [flow(i * 10, orig_h="10.0.0.5", resp_h="10.0.0.22", resp_p=22, service="ssh", orig_p=52000 + i,
                  duration=5 + i, orig_bytes=2600 + 700 * i, resp_bytes=50_000) for i in range(25)]
    assert run("brute_force", flows=flows) == []


def test_guessing_on_many_hosts_folds_per_port():
    flows = [g for h in range(12) for g in guesses(20, 1, resp_h=f"10.0.5.{h + 1}")]
    (f,) = run("brute_force", flows=flows)
    assert f.key == ("203.0.113.50", "ssh", "*:22")
    assert f.metrics["count"] == 240 and len(f.internal_hosts) == 12


# -- the server's refusals (logins table) -----------------------------------------------------

def test_smtp_auth_failures_in_seconds_from_a_workstation():
    (f,) = run("brute_force", logins=[login(i * 3) for i in range(4)])
    assert f.key == ("10.0.0.5", "smtp", "198.51.100.25:25") and f.channel == "smtp"
    assert f.internal_hosts == ["10.0.0.5"] and f.external_hosts == ["198.51.100.25"]
    assert f.metrics["login_failures"] == 4 and f.metrics["evidence"] == ["login_failures"]
    assert f.severity == "medium" and "4 SMTP logins refused" in f.explanation
    assert f.evidence["top_flows"] == ["C0", "C3", "C6", "C9"]


def test_a_person_retyping_a_password_is_not_guessing():
    # three failures 20 s apart, then the right password
    assert run("brute_force", logins=[login(i * 20) for i in range(3)] + [login(70, "success")]) == []
    # records without an outcome (mail sent, FTP RETR) are no attempts at all
    assert run("brute_force", logins=[login(i, result=None) for i in range(50)]) == []


def test_slow_but_many_failures_and_a_success_after_them():
    rows = [login(i * 15, app="ftp", resp_h="10.0.0.21", resp_p=21, orig_h="203.0.113.9", user=f"u{i % 3}")
            for i in range(40)]
    rows.append(login(700, "success", app="ftp", resp_h="10.0.0.21", resp_p=21, orig_h="203.0.113.9"))
    (f,) = run("brute_force", logins=rows)
    assert f.key == ("203.0.113.9", "ftp", "10.0.0.21:21") and f.internal_hosts == ["10.0.0.21"]
    assert f.metrics["success_after_failures"] is True and f.metrics["users"] == 3
    assert f.score_parts["success_after_failures"] == 20 and f.severity in MEDIUM_OR_MORE
    # 40 failures at 4 per minute need the slower rule: raising brute_min_attempts drops them
    assert run("brute_force", settings=Settings(brute_min_attempts=50), logins=rows) == []


def test_connections_and_refusals_of_one_server_make_one_finding():
    flows = guesses(30, 2, resp_p=21, service="ftp")
    logins = [login(i * 2, app="ftp", orig_h="203.0.113.50", resp_h="10.0.0.22", resp_p=21) for i in range(30)]
    (f,) = run("brute_force", flows=flows, logins=logins)
    assert f.key == ("203.0.113.50", "ftp", "10.0.0.22:21")
    assert f.metrics["evidence"] == ["connections", "login_failures"] and f.score_parts["corroborated"] == 10


# -- HTTP 401/403 series ----------------------------------------------------------------------

def test_http_401_series_against_a_login_form():
    (f,) = run("brute_force", http=[request(i, 401) for i in range(50)] + [request(60, 200)])
    assert f.key == ("203.0.113.7", "http", "10.0.0.80:80") and f.internal_hosts == ["10.0.0.80"]
    assert f.metrics["http_denied"] == 50 and f.metrics["http_requests"] == 51


def test_browser_challenges_and_an_api_with_some_refusals_are_not_guessing():
    challenge = [request(i * 30, 401 if i % 2 == 0 else 200, orig_h="10.0.0.5", resp_h="10.0.0.80") for i in range(20)]
    api = [request(i, 403 if i % 5 == 0 else 200, orig_h="10.0.0.6") for i in range(200)]
    assert run("brute_force", http=challenge + api) == []


# -- real captures and logs -------------------------------------------------------------------

def analyze(rel, tmp_path_factory, cfg=None, backend="duckdb"):
    return analyze_capture(rel, tmp_path_factory.mktemp("brute"), cfg, only=("brute_force",), backend=backend)


def test_golden_slips_smtp_auth_bruteforce(tmp_path_factory):
    # Slips test14: 10.1.11.101 refused 4 times by 80.75.42.226:25 ("bad smtp-auth user") in 9 s.
    fs = analyze("slips/test14-malicious-zeek", tmp_path_factory)
    assert [(f.key, f.metrics["login_failures"], f.severity) for f in fs] == [
        (("10.1.11.101", "smtp", "80.75.42.226:25"), 4, "medium")]
    assert_golden("brute_force-slips-test14-smtp", fs)


def test_golden_slips_ssh_bruteforce(tmp_path_factory):
    # nmap ssh-brute on port 902: 66 of the 67 connections are guesses (the first got no data).
    cfg = '[networks]\ninternal = ["147.32.80.0/24"]\n'
    fs = analyze("slips/test19-ssh-bruteforce/malicious-ssh-bruteforce.pcap", tmp_path_factory, cfg)
    assert [(f.key, f.metrics["count"], f.severity) for f in fs] == [
        (("147.32.80.40", "tcp/902", "147.32.80.37:902"), 66, "high")]
    assert_golden("brute_force-slips-ssh-bruteforce", fs)


def test_golden_zeek_sshguess(tmp_path_factory):
    # 11 guesses in 70 s: under the default 20, found with 10 as Zeek's own test sets its limit.
    assert analyze("zeek-traces/sshguess.pcap", tmp_path_factory) == []
    cfg = "[detections.brute_force]\nbrute_min_attempts = 10\n"
    fs = analyze("zeek-traces/sshguess.pcap", tmp_path_factory, cfg)
    assert [(f.key, f.metrics["count"]) for f in fs] == [(("192.168.56.1", "ssh", "192.168.56.103:22"), 11)]
    assert_golden("brute_force-zeek-sshguess", fs)


def test_golden_zeek_ftp_bruteforce(tmp_path_factory):
    # FTP login guessing: 30 connections of 25 client bytes each within a minute, and the server's
    # 30 "530 Login incorrect." decoded from the capture (Zeek's ftp.log says the same): both kinds
    # of evidence agree.
    fs = analyze("zeek-traces/bruteforce.pcap", tmp_path_factory)
    assert [(f.key, f.metrics["count"], f.metrics["connections"], f.metrics["login_failures"], f.channel,
             f.severity) for f in fs] == [
        (("192.168.56.1", "ftp", "192.168.56.101:21"), 30, 30, 30, "ftp", "critical")]
    assert_golden("brute_force-zeek-ftp-bruteforce", fs)


@pytest.mark.parametrize("rel", ["rita/open_conns", str(EXAMPLES / "demo.pcap"), str(EXAMPLES / "lab-beacon.pcap")])
def test_benign_controls_give_no_guessing(rel, tmp_path_factory):
    assert analyze(rel, tmp_path_factory) == []
