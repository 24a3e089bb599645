"""The live view in a real browser while ``watch`` captures a replayed capture (issue 14).

``abfluss watch --interface`` captures one end of a veth pair in a network namespace this test
makes (test_live's fixture: never connected to the real network, removed also on failure);
``tcpreplay`` sends examples/lab-dns-tunnel.pcap (full-length packets, 180 KB exfiltrated as
DNS query names) into the other end. ``abfluss serve`` shows the same workspace; Playwright
with Debian's chromium, logged in, has ``/live`` open and must show the dns_tunnel finding of
the tunnel's client. The screenshot is kept as an artefact like the other browser tests'."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import webkit
from conftest import EXAMPLES
from test_live import _wait_for_tcpdump, netns  # noqa: F401  (the namespaces fixture)
from test_web_browser import CHROMIUM, WATCH, Session

CAPTURE = EXAMPLES / "lab-dns-tunnel.pcap"
CLIENT = "10.10.0.11"  # the tunnel's client in the capture (lab-truth.json)


def _stop(p: subprocess.Popen | None) -> str:
    """SIGTERM, then SIGKILL if it lingers; its stderr (for the assertion messages)."""
    if p is None:
        return ""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        return p.communicate(timeout=30)[1] or ""
    except subprocess.TimeoutExpired:
        p.kill()
        return p.communicate()[1] or ""


@pytest.mark.root
def test_live_view_shows_a_finding_watch_raises_from_a_replayed_capture(netns, tmp_path, pytestconfig):
    from playwright.sync_api import sync_playwright

    import abfluss

    a, b, dev = netns
    peer = "vb" + dev[2:]
    assert shutil.which("tcpreplay"), "tcpreplay is missing: make sysdeps installs it"
    assert Path(CHROMIUM).exists(), "chromium is missing: make sysdeps installs it"
    shots = Path(tempfile.mkdtemp(prefix="abfluss-web-screenshots-"))
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    (reporter.write_line if reporter else print)(f"\nscreenshot of the live view: {shots}")

    ws, tls = tmp_path / "ws", tmp_path / "tls"
    ws.mkdir()
    (ws / "abfluss.toml").write_text(webkit.TENANTS)  # the users' tenants; every detection at its defaults
    with abfluss.open_workspace(ws, write=True):
        pass
    webkit.add_users(ws)
    tls.mkdir()
    serve = watch = ping = None
    try:
        watch = subprocess.Popen(["ip", "netns", "exec", a] + WATCH + [
            "--workspace", str(ws), "watch", "--interface", dev, "--every", "2", "--silent-after", "3600",
            "--no-inspect"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        serve, base = webkit.start_serve(ws, tls, WATCH)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = Session(browser, base, "ana").page
                page.goto("/live")
                # a locator, not wait_for_function: the CSP forbids evaluating strings
                page.locator("#live-status", has_text="connected").wait_for(timeout=30_000)
                _wait_for_tcpdump(a)  # started meanwhile
                # 37 s of capture at twenty times its speed; the packets stay inside the namespaces
                rep = subprocess.run(["ip", "netns", "exec", b, "tcpreplay", "-q", "-i", peer, "--multiplier", "20",
                                      str(CAPTURE)], capture_output=True, text=True, timeout=120)
                assert rep.returncode == 0, rep.stderr
                replayed = time.monotonic()
                # tcpdump closes its newest file at the first packet after the rotation: keep a trickle
                # going (external sink -> internal host, inside the namespaces) until the finding shows
                ping = subprocess.Popen(["ip", "netns", "exec", b, "ping", "-q", "-i", "0.5", "10.99.0.1"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                item = page.locator("#live-new li", has_text=CLIENT).filter(has_text="dns_tunnel").filter(
                    has_text="exfil-tunnel.test")
                item.first.wait_for(timeout=60_000)
                print(f"live view: dns_tunnel shown {time.monotonic() - replayed:.1f} s after the replay ended")
                page.screenshot(path=str(shots / "live-replay.png"), full_page=True)
                assert watch.poll() is None, watch.communicate()[1]
            finally:
                browser.close()
    finally:
        for proc in (serve, watch, ping):  # all at once: each takes a few seconds to wind down
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        errs = {"serve": _stop(serve), "watch": _stop(watch)}
        _stop(ping)
    assert all("Traceback" not in e for e in errs.values()), errs
