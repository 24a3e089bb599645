"""The console in a real browser (Playwright driving Debian's chromium) against ``abfluss serve``
over TLS: log in as each role (the session cookie Secure), the
demo's findings, explain, a report generated and downloaded, tenant B's officer seeing nothing of
tenant A, a hostile SNI shown as text, charts drawn under the strict CSP, and the live view
showing a finding that ``watch`` raises while the test feeds it flow events.

Screenshots of the main pages are kept as artefacts in a temporary folder printed at the start."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import webkit

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WATCH = [os.path.join(os.path.dirname(sys.executable), "abfluss")]
A_HOSTS = ("10.10.0.11", "10.0.0.5")


@pytest.fixture(scope="module")
def shots(pytestconfig):
    """The artefacts' folder, named in the test output (also without -s)."""
    d = Path(tempfile.mkdtemp(prefix="abfluss-web-screenshots-"))
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    (reporter.write_line if reporter else print)(f"\nscreenshots of the console: {d}")
    return d


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``abfluss serve`` itself, over TLS with a self-signed certificate, on a free loopback port."""
    ws = webkit.workspace_copy(tmp_path_factory)
    tokens = webkit.add_users(ws)
    proc, base = webkit.start_serve(ws, tmp_path_factory.mktemp("tls"), WATCH)
    try:
        yield base, ws, tokens
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "chromium is missing: make sysdeps installs it"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Session:
    """A browser context logged in as one user; collects console errors (CSP violations show there)."""

    def __init__(self, browser, base: str, user: str):
        self.ctx = browser.new_context(base_url=base, accept_downloads=True, ignore_https_errors=True,
                                       viewport={"width": 1280, "height": 800})
        self.page = self.ctx.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto("/login")
        self.page.fill("input[name=name]", user)
        self.page.fill("input[name=password]", webkit.PASSWORD)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(base + "/")

    def close(self):
        self.ctx.close()


@pytest.fixture(scope="module")
def sessions(server, browser):
    base = server[0]
    made = {u: Session(browser, base, u) for u in webkit.USERS}
    yield made
    for s in made.values():
        s.close()


def finding_ids(page) -> set[str]:
    page.goto("/findings")
    return {x.strip() for x in page.locator("table.findings tbody td:first-child a").all_inner_texts()}


def test_each_role_logs_in_and_sees_its_findings(sessions, server, shots):
    ws = server[1]
    import abfluss

    with abfluss.open_workspace(ws) as w:
        stored = abfluss.analysis.load(w)
    for user, (role, tenant) in webkit.USERS.items():
        (cookie,) = sessions[user].ctx.cookies()
        assert (cookie["name"], cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (
            "abfluss_session", True, True, "Strict")  # served over TLS: Secure
        page = sessions[user].page
        assert user in page.locator("form.who").inner_text()
        want = {f.id for f in stored if tenant is None or f.tenant == tenant}
        assert finding_ids(page) == want, user
        assert sessions[user].errors == [], (user, sessions[user].errors)
    ana = sessions["ana"].page
    ana.goto("/")
    ana.screenshot(path=str(shots / "overview.png"), full_page=True)
    ana.goto("/findings")
    ana.screenshot(path=str(shots / "findings.png"), full_page=True)


def test_explain_from_the_list(sessions, shots):
    page = sessions["offa"].page
    page.goto("/findings")
    page.click("text=f13fd3da146edcd9")
    page.wait_for_url("**/findings/f13fd3da146edcd9")
    assert "upload_heavy" in page.inner_text("main")
    assert page.locator("h2", has_text="Top evidence flows").count() == 1
    page.screenshot(path=str(shots / "explain.png"), full_page=True)


def test_charts_draw_under_the_strict_csp(sessions, shots):
    s = sessions["ana"]
    for path, name in (("/hosts/10.10.0.11", "host.png"), ("/coverage", "coverage.png")):
        s.page.goto(path)
        s.page.wait_for_selector("div.chart .main-svg", timeout=20_000)  # plotly.js drew the server's figure
        s.page.screenshot(path=str(shots / name), full_page=True)
    assert s.errors == [], s.errors  # a CSP violation would be logged here


def test_officer_b_sees_nothing_of_tenant_a(sessions, server):
    base, _ws, tokens = server
    page = sessions["offb"].page
    for path in ("/", "/findings", "/ledger", "/coverage", "/reports", "/live", "/hosts/10.10.0.12"):
        page.goto(path)
        text = page.content()
        assert not any(h in text for h in A_HOSTS) and "kasse_a" not in text, path
    for path in ("/findings/f13fd3da146edcd9", "/hosts/10.10.0.11"):
        assert page.goto(path).status == 403
    api = page.request
    head = {"Authorization": f"Bearer {tokens['offb']}"}
    assert {f["tenant"] for f in api.get(base + "/api/v1/findings", headers=head).json()} == {"kasse_b"}
    assert api.get(base + "/api/v1/findings/f13fd3da146edcd9", headers=head).status == 403


def test_hostile_sni_renders_as_text(sessions):
    from hostile import NAMES

    s = sessions["offa"]
    s.page.goto("/findings")
    cells = s.page.locator("td.dest").all_inner_texts()
    assert NAMES["html"] in cells and NAMES["space"] in cells
    assert s.page.locator("td.dest script").count() == 0 and s.dialogs == []


def test_generate_and_download_a_report(sessions, shots, tmp_path):
    page = sessions["offa"].page
    page.goto("/reports")
    page.click("#generate", no_wait_after=True)  # the report takes a while: wait for its page below
    page.wait_for_url("**/reports/2*", timeout=120_000)
    assert "kasse_a" in page.inner_text("main")
    page.screenshot(path=str(shots / "report.png"), full_page=True)
    with page.expect_download() as d:
        page.click("#dl-pdf")
    pdf = tmp_path / "report.pdf"
    d.value.save_as(pdf)
    assert pdf.read_bytes()[:5] == b"%PDF-"
    with page.expect_download() as d:
        page.click("#dl-json")
    d.value.save_as(tmp_path / "report.json")
    assert json.loads((tmp_path / "report.json").read_text())["verdict"] in page.inner_text(".verdict")
    draft = page.locator("a", has_text="art33.md").first
    with page.expect_download() as d:
        draft.click()
    d.value.save_as(tmp_path / "art33.md")
    assert "kasse_a" in (tmp_path / "art33.md").read_text()


def _eve_flow(i: int, out_bytes: int) -> str:
    # after the demo's records: watch looks back from the newest record
    return json.dumps({"timestamp": f"2026-11-29T15:{i // 60:02d}:{i % 60:02d}.000000+0000",
                       "flow_id": 1000 + i, "event_type": "flow", "src_ip": "10.1.1.5",
                       "src_port": 50000 + i, "dest_ip": "203.0.113.9", "dest_port": 443, "proto": "TCP",
                       "app_proto": "tls", "flow": {"pkts_toserver": 900, "pkts_toclient": 300,
                                                    "bytes_toserver": out_bytes, "bytes_toclient": 20000,
                                                    "start": "2026-11-29T15:00:00.000000+0000",
                                                    "end": "2026-11-29T15:00:30.000000+0000",
                                                    "state": "closed", "reason": "timeout"}}) + "\n"


def test_live_view_shows_what_watch_raises(sessions, server, shots, tmp_path):
    ws = server[1]
    eve = tmp_path / "eve.json"
    eve.write_text("".join(_eve_flow(i, 1000) for i in range(20)))
    w = subprocess.Popen(WATCH + ["--workspace", str(ws), "watch", "--eve", str(eve), "--every", "1",
                                  "--silent-after", "3600"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        page = sessions["ana"].page
        page.goto("/live")
        # a locator, not wait_for_function: the CSP forbids evaluating strings (no unsafe-eval)
        page.locator("#live-status", has_text="connected").wait_for(timeout=30_000)
        time.sleep(3)  # watch stores the first, harmless events
        with open(eve, "a") as f:
            f.write("".join(_eve_flow(i, 3_000_000) for i in range(20, 25)))  # 15 MB up: upload-heavy
        item = page.locator("#live-new li", has_text="10.1.1.5")
        item.first.wait_for(timeout=60_000)
        assert "upload_heavy" in page.locator("#live-new").inner_text()
        page.screenshot(path=str(shots / "live.png"), full_page=True)
    finally:
        w.send_signal(signal.SIGTERM)
        try:
            w.communicate(timeout=30)
        finally:
            if w.poll() is None:
                w.kill()
