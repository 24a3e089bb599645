"""``/api/v1`` and the console's pages through the ASGI app (httpx): every endpoint as every role,
an officer of another tenant included (401 without a token, 403 for another tenant's resource,
empty lists), security headers, cookies and CSRF, and hostile names rendered as text."""

from __future__ import annotations

import json

import pytest

import webkit
from conftest import run_cli

A_HOSTS = {"10.10.0.11", "10.0.0.5"}
B_HOSTS = {"10.10.0.12"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from fastapi.testclient import TestClient

    from abfluss.web import create_app

    ws = webkit.workspace_copy(tmp_path_factory)
    tokens = webkit.add_users(ws)
    app = create_app(ws)
    with TestClient(app) as client:
        yield ws, client, tokens


def get(site, who, path, **kw):
    _ws, client, tokens = site
    return client.get(path, headers={"Authorization": f"Bearer {tokens[who]}"} if who else {}, **kw)


def post(site, who, path, body):
    _ws, client, tokens = site
    return client.post(path, json=body, headers={"Authorization": f"Bearer {tokens[who]}"})


def tenants_of(findings):
    return {f["tenant"] for f in findings}


ENDPOINTS = ["/api/v1/findings", "/api/v1/findings/f13fd3da146edcd9", "/api/v1/incidents", "/api/v1/ledger",
             "/api/v1/account", "/api/v1/coverage", "/api/v1/reports"]


def test_health_and_openapi_without_a_token(site):
    assert get(site, None, "/healthz").json() == {"status": "ok"}
    doc = get(site, None, "/api/v1/openapi.json").json()
    assert {"/api/v1/findings", "/api/v1/findings/{finding_id}", "/api/v1/ledger", "/api/v1/account",
            "/api/v1/coverage", "/api/v1/incidents", "/api/v1/reports", "/api/v1/contain"} <= set(doc["paths"])


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_endpoint_wants_a_valid_token(site, path):
    _ws, client, _ = site
    assert get(site, None, path).status_code == 401
    r = client.get(path, headers={"Authorization": "Bearer nonsense"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert client.post("/api/v1/contain", json={"hosts": ["10.0.0.5"]}).status_code == 401


def test_findings_are_the_cli_json_scoped_per_tenant(site):
    ws = site[0]
    cli = json.loads(run_cli("findings", "--format", "json", workspace=ws, check=True).stdout)
    for who in ("root", "ana"):
        assert get(site, who, "/api/v1/findings").json() == cli
    a, b = (get(site, w, "/api/v1/findings").json() for w in ("offa", "offb"))
    assert tenants_of(a) == {"kasse_a"} and len(a) == 10
    assert tenants_of(b) == {"kasse_b"} and len(b) == 2
    assert a == [f for f in cli if f["tenant"] == "kasse_a"] and b == [f for f in cli if f["tenant"] == "kasse_b"]
    assert len(a) + len(b) == len(cli)
    # the CLI's filters are query parameters
    hi = get(site, "offa", "/api/v1/findings", params={"detection": "upload_heavy", "host": "10.10.0.11"}).json()
    assert [f["id"] for f in hi] == ["f13fd3da146edcd9"]
    assert get(site, "offb", "/api/v1/findings", params={"host": "10.10.0.11"}).json() == []
    assert get(site, "ana", "/api/v1/findings", params={"severity": "bogus"}).status_code == 400


def test_explain_403_for_another_tenant(site):
    r = get(site, "offa", "/api/v1/findings/f13fd3da146edcd9")
    assert r.status_code == 200
    body = r.json()
    assert body["finding"]["id"] == "f13fd3da146edcd9" and body["runbook"] and body["evidence_flows"]
    assert get(site, "ana", "/api/v1/findings/f13fd3da146edcd9").json() == body
    assert get(site, "offb", "/api/v1/findings/f13fd3da146edcd9").status_code == 403
    assert get(site, "offb", "/api/v1/findings/0000000000000000").status_code == 404


def test_account_lists_the_limit_largest_pairs(site):
    """``/api/v1/account`` lists the ``limit`` largest pairs (0: all); every other field is over all."""
    full = get(site, "ana", "/api/v1/account", params={"limit": 0}).json()
    top = get(site, "ana", "/api/v1/account", params={"limit": 2}).json()
    assert len(full["pairs"]) > 2 and top["pairs"] == full["pairs"][:2]
    assert {k: v for k, v in top.items() if k != "pairs"} == {k: v for k, v in full.items() if k != "pairs"}
    assert get(site, "ana", "/api/v1/account", params={"limit": -1}).status_code == 422


def test_ledger_account_incidents_coverage_per_role(site):
    rows = get(site, "ana", "/api/v1/ledger").json()
    assert {r["internal_host"] for r in rows} == A_HOSTS | B_HOSTS and rows[0]["hour"].endswith("Z")
    b_rows = get(site, "offb", "/api/v1/ledger").json()
    assert {r["internal_host"] for r in b_rows} == B_HOSTS and {r["tenant"] for r in b_rows} == {"kasse_b"}
    assert get(site, "offb", "/api/v1/ledger", params={"tenant": "kasse_a"}).status_code == 403
    assert get(site, "offb", "/api/v1/ledger", params={"host": "10.10.0.11"}).json() == []
    assert len(get(site, "ana", "/api/v1/ledger", params={"limit": 2}).json()) == 2

    acc = get(site, "offb", "/api/v1/account").json()
    assert acc["tenant"] == "kasse_b" and acc["bytes_out"] == sum(r["bytes_out"] for r in b_rows)
    assert get(site, "offb", "/api/v1/account", params={"tenant": "kasse_a"}).status_code == 403

    inc = get(site, "offb", "/api/v1/incidents").json()
    assert set(inc["hosts"]) == B_HOSTS and {i["internal_host"] for i in inc["incidents"]} == B_HOSTS
    assert set(get(site, "ana", "/api/v1/incidents").json()["hosts"]) == A_HOSTS | B_HOSTS

    for who in webkit.USERS:
        cov = get(site, who, "/api/v1/coverage").json()
        assert {s["sensor"] for s in cov["sensors"]} == {"demo", "zeek"}


def test_case_log_per_tenant(site):
    inc = get(site, "offb", "/api/v1/incidents").json()["incidents"][0]
    r = post(site, "offb", f"/api/v1/incidents/{inc['id']}/log", {"what": "<b>isolated</b> 10.10.0.12"})
    assert r.status_code == 201 and r.json()["who"] == "offb" and r.json()["tenant"] == "kasse_b"
    assert post(site, "offa", f"/api/v1/incidents/{inc['id']}/log", {"what": "x"}).status_code == 403
    assert get(site, "offa", f"/api/v1/incidents/{inc['id']}").status_code == 403
    log = get(site, "ana", f"/api/v1/incidents/{inc['id']}").json()["case_log"]
    assert [e["what"] for e in log] == ["<b>isolated</b> 10.10.0.12"]


def test_contain_is_for_analysts(site):
    r = post(site, "ana", "/api/v1/contain", {"indicators": ["upload.files-drop.test"]})
    assert r.status_code == 200
    assert {x["internal_host"] for x in r.json()["radius"]} == {"10.10.0.11", "10.10.0.12"}
    assert post(site, "offa", "/api/v1/contain", {"hosts": ["10.10.0.11"]}).status_code == 403


def test_reports_generate_list_download_per_tenant(site):
    r = post(site, "offa", "/api/v1/reports", {"tenant": None, "lang": "de"})
    assert r.status_code == 201, r.text
    rep = r.json()
    rid = rep["id"]
    assert rep["tenant"] == "kasse_a" and rep["verdict"] in ("EXFIL_INDICATED", "EXFIL_CONFIRMED")
    assert [x["id"] for x in get(site, "offa", "/api/v1/reports").json()] == [rid]
    assert rid in [x["id"] for x in get(site, "ana", "/api/v1/reports").json()]
    assert get(site, "offb", "/api/v1/reports").json() == []
    files = {"report.html": "text/html", "report.pdf": "application/pdf", "report.json": "application/json",
             "notifications/kasse_a/art33.md": "text/markdown"}
    for name, media in files.items():
        d = get(site, "offa", f"/api/v1/reports/{rid}/files/{name}")
        assert d.status_code == 200 and d.headers["content-type"].startswith(media), name
        assert d.headers["content-disposition"].startswith("attachment")
        assert get(site, "offb", f"/api/v1/reports/{rid}/files/{name}").status_code == 403
    assert get(site, "offa", f"/api/v1/reports/{rid}/files/report.pdf").content[:5] == b"%PDF-"
    assert json.loads(get(site, "offa", f"/api/v1/reports/{rid}/files/report.json").content)["lang"] == "de"
    assert get(site, "offb", f"/api/v1/reports/{rid}").status_code == 403
    for bad in ("../meta.json", "..%2Fmeta.json", "notifications/../../x"):
        assert get(site, "offa", f"/api/v1/reports/{rid}/files/{bad}").status_code == 404
    assert post(site, "offb", "/api/v1/reports", {"tenant": "kasse_a"}).status_code == 403


# -- pages -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser_b(site):
    """A logged-in browser session of tenant B's officer (its own client: its own cookie)."""
    from fastapi.testclient import TestClient

    with TestClient(site[1].app) as c:
        r = webkit.login(c, "offb", follow_redirects=False)
        assert r.status_code == 303
        yield c


PAGES = ["/", "/incidents", "/findings", "/ledger", "/coverage", "/reports", "/live", "/hosts/10.10.0.12",
         "/findings/caefcf001a248dca"]


def test_officer_b_sees_nothing_of_tenant_a_in_pages(browser_b):
    for path in PAGES:
        r = browser_b.get(path)
        assert r.status_code == 200, path
        for host in A_HOSTS:
            assert host not in r.text, (path, host)
        assert "kasse_a" not in r.text and "f13fd3da146edcd9" not in r.text, path
    assert "caefcf001a248dca" in browser_b.get("/findings").text
    for path in ("/findings/f13fd3da146edcd9", "/hosts/10.10.0.11", "/ledger?tenant=kasse_a"):
        assert browser_b.get(path).status_code == 403, path
    # the case log form: an entry recorded through the page shows, escaped, on the incident
    page = browser_b.get("/incidents").text
    iid = page.split('href="/incidents/')[1].split('"')[0]
    csrf = browser_b.get(f"/incidents/{iid}").text.split('name="csrf" value="')[1].split('"')[0]
    r = browser_b.post(f"/incidents/{iid}/log", data={"csrf": csrf, "what": "<i>blocked</i> upload.files-drop.test"})
    assert r.status_code == 200 and "&lt;i&gt;blocked&lt;/i&gt; upload.files-drop.test" in r.text
    assert browser_b.post(f"/incidents/{iid}/log", data={"what": "no token"}).status_code == 403


def test_pages_want_a_login_and_carry_the_security_headers(site, browser_b):
    _ws, client, _ = site
    for path in PAGES:
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
    for r in (client.get("/login"), client.get("/nothing-here"), browser_b.get("/"), get(site, "ana", "/api/v1/findings"),
              get(site, None, "/healthz"), client.get("/static/plotly.min.js")):
        csp = r.headers["content-security-policy"]
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp and "frame-ancestors 'none'" in csp
        assert "script-src 'self'" in csp and "style-src 'self'" in csp
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == ("public, max-age=86400" if "static" in str(r.url) else "no-store")
    html = browser_b.get("/").text
    assert "<script>" not in html and " style=" not in html and "<style" not in html  # nothing inline


def test_login_cookie_csrf_and_logout(site):
    from fastapi.testclient import TestClient

    app = site[1].app
    with TestClient(app) as c:
        # the login form has its own CSRF token (no session yet): a post from elsewhere is refused
        # before the password is looked at
        forged = c.post("/login", data={"name": "offa", "password": webkit.PASSWORD, "csrf": "x" * 43})
        assert forged.status_code == 403 and "did not come from this console" in forged.text
        assert c.post("/login", data={"name": "offa", "password": webkit.PASSWORD}).status_code == 403
        bad = webkit.login(c, "offa", "wrong")
        assert bad.status_code == 401 and "wrong user name or password" in bad.text
        r = webkit.login(c, "offa", follow_redirects=False)
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
        assert c.post("/reports", data={"tenant": "kasse_a"}).status_code == 403  # no CSRF token
        assert c.post("/reports", data={"tenant": "kasse_a", "csrf": "forged"}).status_code == 403
        assert c.post("/logout", data={}).status_code == 403
        page = c.get("/reports").text
        token = page.split('name="csrf" value="')[1].split('"')[0]
        assert c.post("/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
        assert c.get("/", follow_redirects=False).status_code == 303
    with TestClient(app, base_url="https://console.example") as c:  # TLS (or a proxy's X-Forwarded-Proto)
        form = c.get("/login")
        assert "Secure" in form.headers["set-cookie"] and "HttpOnly" in form.headers["set-cookie"]
        r = webkit.login(c, "offa", follow_redirects=False)
        assert "Secure" in r.headers["set-cookie"]


def test_hostile_names_render_as_text(site):
    from fastapi.testclient import TestClient

    from hostile import NAMES

    with TestClient(site[1].app) as c:
        webkit.login(c, "offa")
        for path in ("/findings", "/ledger", "/hosts/10.0.0.5", "/live"):
            html = c.get(path).text
            assert "<script>alert(1)" not in html, path
            assert "&lt;script&gt;alert(1)&lt;/script&gt;.example" in html, path
            assert NAMES["space"] in html and "[link=https://evil.example/x]update.example[/link]" in html


def test_a_removed_user_is_logged_out(site):
    import abfluss
    from fastapi.testclient import TestClient

    ws = site[0]
    with abfluss.open_workspace(ws) as w:
        abfluss.api.add_user(w, None, "temp", "officer", webkit.PASSWORD, "kasse_b")
    with TestClient(site[1].app) as c:
        assert webkit.login(c, "temp", follow_redirects=False).status_code == 303
        assert c.get("/findings").status_code == 200
        with abfluss.open_workspace(ws) as w:
            abfluss.api.remove_user(w, None, "temp")
        r = c.get("/findings", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert c.get("/live/events", follow_redirects=False).status_code == 303


def test_serve_refuses_half_a_tls_setup(tmp_path):
    r = run_cli("serve", "--certfile", str(tmp_path / "cert.pem"), workspace=tmp_path / "ws")
    assert r.returncode == 2 and r.stderr.strip() == "abfluss: --certfile and --keyfile go together"
