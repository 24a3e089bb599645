"""The web console's test workspace: the bundled demo (two tenants, one upload each) plus uploads
to hostile SNI names from a third host of tenant A, analysed; and one user per role."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from conftest import EXAMPLES
from hostile import NAMES, T0, conn, ssl, zeek_json

TENANTS = ('[tenants.kasse_a]\nnetworks = ["10.10.0.11/32", "10.0.0.5/32"]\n'
           '[tenants.kasse_b]\nnetworks = ["10.10.0.12/32"]\n')
#: The hostile names sent to as SNI (each an upload-heavy finding of tenant A).
HOSTILE = ("html", "space", "rich_link", "ansi")
#: user name -> (role, tenant)
USERS = {"root": ("admin", None), "ana": ("analyst", None), "offa": ("officer", "kasse_a"),
         "offb": ("officer", "kasse_b")}
PASSWORD = "correct horse battery staple"
#: When the demo capture starts.
DEMO_START = datetime(2026, 11, 29, 13, 57, 35, tzinfo=timezone.utc)


def build(root: Path) -> Path:
    """Ingest and analyse; returns the workspace path."""
    import abfluss
    from abfluss import analysis, ingest

    logs = root / "zeek"
    logs.mkdir(parents=True)
    conns, ssls = [], []
    for i, key in enumerate(HOSTILE):  # in the demo's hour: one short window to analyse and report on
        uid, ip, t = f"C{i:03d}", f"203.0.113.{10 + i}", (DEMO_START - T0).total_seconds() + 5 * i
        conns.append(conn(t, uid, "10.0.0.5", ip, out=3_000_000, back=2_000))
        ssls.append(ssl(t, uid, "10.0.0.5", ip, NAMES[key]))
    zeek_json(logs / "conn.log", "conn", conns)
    zeek_json(logs / "ssl.log", "ssl", ssls)
    ws = root / "ws"
    ws.mkdir()
    # only the detections that find these uploads: every analysis (a report's too) stays cheap
    from abfluss import detections
    (ws / "abfluss.toml").write_text(TENANTS + "".join(f"[detections.{d}]\nenabled = false\n" for d in detections.MODULES
                                                       if d not in ("upload_heavy", "rare_destination")))
    with abfluss.open_workspace(ws, write=True) as w:
        ingest.ingest_file(w, EXAMPLES / "demo.pcap", "demo")
        for f in sorted(logs.iterdir()):
            ingest.ingest_file(w, f, "zeek")
        abfluss.api.refresh(w)
        analysis.analyze(w)
    return ws


def add_users(ws: Path) -> dict[str, str]:
    """One user per ``USERS`` entry (``abfluss users add``) and an API token each; name -> token."""
    import abfluss

    tokens = {}
    with abfluss.open_workspace(ws) as w:
        for name, (role, tenant) in USERS.items():
            abfluss.api.add_user(w, None, name, role, PASSWORD, tenant)
            tokens[name] = abfluss.api.create_token(w, None, name)[1]
    return tokens


def workspace_copy(tmp_path_factory) -> Path:
    """A fresh copy of the test workspace; it is built once per test run (both web test modules
    use it, and each may write reports into its own copy)."""
    import shutil

    cache = tmp_path_factory.getbasetemp() / "web-ws-cache"
    if not (cache / "ws" / "catalog.duckdb").exists():
        shutil.rmtree(cache, ignore_errors=True)
        build(cache)
    dest = tmp_path_factory.mktemp("web") / "ws"
    shutil.copytree(cache / "ws", dest, symlinks=True)
    return dest


def login(client, name: str, password: str = PASSWORD, **kw):
    """Log ``client`` in through the login form (its CSRF token and cookie); the POST's response."""
    form = client.get("/login").text
    csrf = form.split('name="csrf" value="')[1].split('"')[0]
    return client.post("/login", data={"name": name, "password": password, "csrf": csrf}, **kw)


def start_serve(ws: Path, tls: Path, command: list[str]) -> tuple["subprocess.Popen", str]:
    """``abfluss serve`` (``command`` runs abfluss) over TLS with a new self-signed certificate in
    ``tls``, on a free loopback port; returns the process and its base URL once ``/healthz``
    answers (the caller stops the process)."""
    import socket
    import subprocess
    import time

    import httpx

    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(tls / "key.pem"),
                    "-out", str(tls / "cert.pem")], check=True, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(command + ["--workspace", str(ws), "serve", "--port", str(port), "--certfile",
                                       str(tls / "cert.pem"), "--keyfile", str(tls / "key.pem")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise AssertionError(proc.communicate()[1])
        try:
            if httpx.get(base + "/healthz", verify=False, timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if time.monotonic() >= deadline:
            proc.kill()
            raise AssertionError("abfluss serve did not answer")
        time.sleep(0.2)
