"""The console computes each per-workspace-state result once: two concurrent first requests share
one computation (``statecache``), and ``abfluss serve``'s warm-up (``web.warm``) computes what
the first requests need at start and again after the workspace changes, so those requests
compute nothing. Over the web test workspace (the demo, two tenants), through the ASGI app."""

from __future__ import annotations

import importlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import webkit
from conftest import run_cli

accounting = importlib.import_module("abfluss.accounting")
coverage_mod = importlib.import_module("abfluss.coverage")  # ``abfluss.coverage`` names the function


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    ws = webkit.workspace_copy(tmp_path_factory)
    return ws, webkit.add_users(ws)


@pytest.fixture
def counted(monkeypatch):
    """How often the real accounting and coverage computations run; each takes 0.2 s longer, so
    a second request surely arrives while the first computes."""
    from abfluss import statecache

    statecache.clear_all()
    runs = {"account": [], "coverage": [], "payload": []}

    def count(name, real):
        def run(ws, *a, **kw):
            runs[name].append(a[2] if len(a) > 2 else None)  # an accounting's tenant
            time.sleep(0.2)
            return real(ws, *a, **kw)
        return run

    monkeypatch.setattr(accounting, "_account", count("account", accounting._account))
    monkeypatch.setattr(coverage_mod, "_coverage", count("coverage", coverage_mod._coverage))
    monkeypatch.setattr(coverage_mod, "_payload_sums", count("payload", coverage_mod._payload_sums))
    yield runs
    statecache.clear_all()


def client_for(ws, warm):
    from fastapi.testclient import TestClient

    from abfluss.web import create_app
    return TestClient(create_app(ws, warm=warm))


def test_two_concurrent_first_requests_compute_once(site, counted):
    ws, tokens = site
    with client_for(ws, warm=False) as client:
        def get(who, path):
            return client.get(path, headers={"Authorization": f"Bearer {tokens[who]}"})

        calls = [("ana", "/api/v1/account"), ("root", "/api/v1/account"), ("offa", "/api/v1/account"),
                 ("offa", "/api/v1/coverage"), ("offa", "/api/v1/coverage"), ("offb", "/api/v1/coverage")]
        with ThreadPoolExecutor(len(calls)) as pool:
            got = list(pool.map(lambda c: get(*c), calls))
        assert [r.status_code for r in got] == [200] * len(calls)
        ana, root, offa = (r.json() for r in got[:3])
        # one accounting of all tenants for the analyst and the admin, one of tenant A's
        assert ana == root and ana["tenant"] is None and offa["tenant"] == "kasse_a"
        assert sorted(map(str, counted["account"])) == ["None", "kasse_a"]
        # the sensors' coverage and every tenant's payload sums once for all
        assert len(counted["coverage"]) == 1 and len(counted["payload"]) == 1
        assert got[3].json() == got[4].json() and got[3].json()["sensors"] == got[5].json()["sensors"]
        # and later requests compute nothing
        assert get("ana", "/api/v1/account").json() == ana
        assert len(counted["account"]) == 2


def test_the_warm_up_computes_ahead_and_after_a_change(site, counted):
    ws, tokens = site
    with client_for(ws, warm=True) as client:
        warmer = client.app.state.warmer
        assert warmer.wait(60) and warmer.runs == 1
        labels = [label for label, _ in warmer.last["tasks"]]
        day = "2026-11-29"  # the demo's newest record
        assert labels == ["coverage", "payload coverage", f"account {day} all tenants", f"account {day} kasse_a",
                          f"account {day} kasse_b"]
        before = {k: len(v) for k, v in counted.items()}
        assert before == {"account": 3, "coverage": 1, "payload": 1}

        def get(who, path):
            r = client.get(path, headers={"Authorization": f"Bearer {tokens[who]}"})
            assert r.status_code == 200, r.text
            return r.json()

        window = f"?from={day}T00:00Z&to=2026-11-30T00:00Z"
        accs = {who: get(who, "/api/v1/account" + window) for who in ("ana", "offa", "offb")}
        assert {w: a["tenant"] for w, a in accs.items()} == {"ana": None, "offa": "kasse_a", "offb": "kasse_b"}
        assert accs["offa"]["bytes_out"] + accs["offb"]["bytes_out"] <= accs["ana"]["bytes_out"]
        pay = {who: get(who, "/api/v1/coverage")["payload"]["outbound_bytes"] for who in ("ana", "offa", "offb")}
        assert pay["offa"] == accs["offa"]["bytes_out"] and pay["offb"] == accs["offb"]["bytes_out"]
        assert client.get("/login").status_code == 200
        assert {k: len(v) for k, v in counted.items()} == before  # all answered from the warm-up

        # a new analysis (another process) is a new state: the next request's nudge warms it
        run_cli("analyze", workspace=ws, check=True)
        get("ana", "/api/v1/findings")
        deadline = time.monotonic() + 60
        while warmer.runs < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert warmer.runs == 2
        after = {k: len(v) for k, v in counted.items()}
        # the accountings again (stored findings changed); the records did not, so neither did coverage
        assert after == {"account": 6, "coverage": 1, "payload": 1}
        assert get("offb", "/api/v1/account" + window)["tenant"] == "kasse_b"
        assert {k: len(v) for k, v in counted.items()} == after


def test_a_request_during_the_warm_up_waits_for_it(site, counted, monkeypatch):
    """The first overview arrives while the warm-up computes the sensors' coverage: it waits for
    that computation instead of running a second one."""
    ws, tokens = site
    started = threading.Event()
    real = coverage_mod._coverage

    def slow(w):
        started.set()
        return real(w)

    monkeypatch.setattr(coverage_mod, "_coverage", slow)
    with client_for(ws, warm=True) as client:
        assert started.wait(30)
        r = client.get("/api/v1/coverage", headers={"Authorization": f"Bearer {tokens['ana']}"})
        assert r.status_code == 200 and r.json()["sensors"]
        assert client.app.state.warmer.wait(60)
    assert len(counted["coverage"]) == 1


def test_payload_sums_from_the_stored_ledger_equal_the_flows(site):
    """Over all data the bytes out per tenant come from the stored hourly ledger: the same sums."""
    import abfluss

    with abfluss.open_workspace(site[0]) as ws:
        from abfluss import ledger_store
        assert ledger_store.current(ws)
        stored, flows = coverage_mod._payload_sums(ws, stored=True), coverage_mod._payload_sums(ws, stored=False)
        assert stored == flows and set(stored) >= {"kasse_a", "kasse_b"} and stored["kasse_a"][0] > 0


def test_the_warm_up_restarts_with_the_app(site):
    """An app's lifespan may run twice (two test clients, a server restarted in one process)."""
    from abfluss import statecache

    from abfluss.web import create_app
    from fastapi.testclient import TestClient

    app = create_app(site[0])
    for _ in range(2):
        statecache.clear_all()
        app.state.warmer.state = None  # forget what the first run warmed
        with TestClient(app):
            assert app.state.warmer.wait(60)
        assert not app.state.warmer._thread.is_alive()
    assert app.state.warmer.runs == 2


def test_stop_interrupts_a_warm_up_query(site, monkeypatch, caplog):
    """``abfluss serve`` stops its warm-up on SIGTERM (the app's lifespan ends): a query of the
    warm-up in progress is interrupted, so a stop does not wait for it (before: up to seconds)."""
    from abfluss.web import warm

    def slow(ws):  # a real query on the warm-up's own connection, far longer than the test
        ws.con.execute("SELECT sum(hash(i)) FROM range(50000000000) t(i)").fetchall()

    monkeypatch.setattr(warm.api, "warm_tasks", lambda ws, limit: [("slow", slow)])
    w = warm.Warmer(site[0], None, None)
    w.start()
    deadline = time.monotonic() + 60
    while w._busy is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert w._busy is not None, "the slow task never started"
    time.sleep(0.3)
    t = time.monotonic()
    w.stop()
    assert time.monotonic() - t < 2 and not w._thread.is_alive()
    assert w.runs == 0 and "warm-up" not in caplog.text  # interrupted, not a failure to report
