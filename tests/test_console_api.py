"""Issue 14, the service layer: users, roles, tokens, lock-out, audit and case logs, and tenant
isolation in the queries, on a real two-tenant workspace (lab-dlp + lab-beacon: kasse_a's ws1
sent the insured-person CSV, kasse_b's ws2 beaconed)."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

import abfluss
from abfluss import analysis, api, auth
from abfluss.errors import AbflussError, AuthenticationError, NotFound, PermissionDenied
from abfluss.ledger import LedgerQuery
from abfluss.report.drafts import drafts_from_findings

from conftest import EXAMPLES

TENANTS = ('[tenants.kasse_a]\nnetworks = ["10.10.0.11/32"]\n'
           '[tenants.kasse_b]\nnetworks = ["10.10.0.12/32"]\n')
PW = "correct horse battery"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("console") / "ws"
    root.mkdir()
    (root / "abfluss.toml").write_text(TENANTS)
    with abfluss.open_workspace(root, write=True) as ws:
        abfluss.ingest_paths(ws, [EXAMPLES / "lab-dlp.pcap", EXAMPLES / "lab-beacon.pcap"], sensor="lab")
        abfluss.refresh(ws)
        analysis.analyze(ws)
    with abfluss.open_workspace(root) as ws:
        api.add_user(ws, None, "root", "admin", PW)
        api.add_user(ws, None, "ana", "analyst", PW)
        api.add_user(ws, None, "bea", "officer", PW, tenant="kasse_b")
        api.add_user(ws, None, "abe", "officer", PW, tenant="kasse_a")
    return root


@pytest.fixture
def ws(root):
    w = abfluss.open_workspace(root)
    yield w
    w.close()


def test_roles_are_checked_when_users_are_added(ws):
    with pytest.raises(AbflussError, match="exactly one"):
        api.add_user(ws, None, "x", "officer", PW)
    with pytest.raises(AbflussError, match="no --tenant"):
        api.add_user(ws, None, "x", "analyst", PW, tenant="kasse_a")
    with pytest.raises(AbflussError, match="not a configured tenant"):
        api.add_user(ws, None, "x", "officer", PW, tenant="kasse_zz")
    with pytest.raises(AbflussError, match="too short"):
        api.add_user(ws, None, "x", "admin", "short")
    with pytest.raises(PermissionDenied):
        api.add_user(ws, api.login(ws, "ana", PW), "x", "admin", PW)
    names = {u["name"]: u for u in api.users(ws)}
    assert names["bea"]["tenants"] == ["kasse_b"] and "password_hash" not in names["bea"]


def test_an_officer_sees_only_its_tenant_through_every_function(ws):
    bea = api.login(ws, "bea", PW)
    assert bea == auth.Principal("bea", "officer", frozenset({"kasse_b"}))
    everything = api.findings(ws)
    a_ids = [f.id for f in everything if f.tenant == "kasse_a"]
    assert a_ids and any(f.tenant == "kasse_b" for f in everything)
    own = api.findings(ws, bea)
    assert own and {f.tenant for f in own} == {"kasse_b"}
    assert api.findings(ws, bea, host="10.10.0.11") == []
    with pytest.raises(PermissionDenied):
        api.findings(ws, bea, tenant="kasse_a")
    with pytest.raises(PermissionDenied):
        api.explain(ws, bea, a_ids[0])
    with pytest.raises(PermissionDenied):
        api.finding(ws, bea, a_ids[0])
    with pytest.raises(NotFound):
        api.explain(ws, bea, "ffffffffffffffff")
    assert api.explain(ws, bea, own[0].id)["finding"]["tenant"] == "kasse_b"
    rows, tot = api.ledger(ws, bea)
    assert rows and {r["tenant"] for r in rows} == {"kasse_b"}
    assert tot["bytes_out"] < api.ledger(ws, None)[1]["bytes_out"]
    with pytest.raises(PermissionDenied):
        api.ledger(ws, bea, LedgerQuery(tenant="kasse_a"))
    assert api.ledger(ws, bea, LedgerQuery(host="10.10.0.11"))[0] == []
    assert api.account(ws, bea)["tenant"] == "kasse_b"
    with pytest.raises(PermissionDenied):
        api.account(ws, bea, tenant="kasse_a")
    inc = api.incidents(ws, bea)
    assert inc["incidents"] and {i["internal_host"] for i in inc["incidents"]} == {"10.10.0.12"}
    assert set(inc["hosts"]) == {"10.10.0.12"}
    a_inc = [i for i in api.incidents(ws)["incidents"] if i["internal_host"] == "10.10.0.11"][0]
    with pytest.raises(PermissionDenied):
        api.incident(ws, bea, a_inc["id"])
    with pytest.raises(PermissionDenied):
        api.add_case_entry(ws, bea, a_inc["id"], "isolated ws1")
    with pytest.raises(PermissionDenied):
        api.host_outflow(ws, bea, "10.10.0.11")
    assert api.host_outflow(ws, bea, "10.10.0.12")["tenant"] == "kasse_b"
    since = datetime(2000, 1, 1, tzinfo=timezone.utc)
    assert {f.tenant for f in api.findings_since(ws, bea, since)[0]} == {"kasse_b"}
    cov = api.coverage(ws, bea)
    assert cov["payload"]["outbound_bytes"] < api.coverage(ws)["payload"]["outbound_bytes"]
    with pytest.raises(PermissionDenied):
        api.contain(ws, bea, hosts=["10.10.0.11"])
    with pytest.raises(PermissionDenied):
        api.analyze(ws, bea)
    with pytest.raises(PermissionDenied):
        api.audit_log(ws, bea)
    with pytest.raises(PermissionDenied):
        api.users(ws, bea)
    # an analyst sees both tenants
    ana = api.login(ws, "ana", PW)
    assert {f.tenant for f in api.findings(ws, ana)} == {"kasse_a", "kasse_b"}
    assert api.contain(ws, ana, hosts=["10.10.0.11"])["hosts"] == ["10.10.0.11"]


def test_reports_are_scoped_and_drafts_take_the_case_log(ws, tmp_path):
    bea, abe = api.login(ws, "bea", PW), api.login(ws, "abe", PW)
    b_inc = api.incidents(ws, bea)["incidents"][0]["id"]
    # empty log: the drafts leave "measures taken" open, as they did before the case log
    fs = analysis.load(ws)
    aware = datetime(2026, 11, 29, 15, tzinfo=timezone.utc)
    assert {i.tenant: i.measures_taken for i in drafts_from_findings(ws, aware, findings=fs)} == {
        "kasse_a": (), "kasse_b": ()}
    entry = api.add_case_entry(ws, bea, b_inc, "blocked the beacon destination at the proxy")
    assert (entry["who"], entry["tenant"]) == ("bea", "kasse_b")
    assert [e["what"] for e in api.case_entries(ws, bea, b_inc)] == ["blocked the beacon destination at the proxy"]
    assert api.case_entries(ws, abe) == []
    taken = {i.tenant: i.measures_taken for i in drafts_from_findings(ws, aware, findings=fs)}
    assert taken["kasse_a"] == () and len(taken["kasse_b"]) == 1
    assert taken["kasse_b"][0].endswith("UTC, bea: blocked the beacon destination at the proxy")
    rep = api.generate_report(ws, bea, pdf=False)
    assert list(rep["notifications"]["tenants"]) == ["kasse_b"]
    art33 = rep["notifications"]["tenants"]["kasse_b"]["drafts"]["art33"]["text"]
    assert "bea: blocked the beacon destination at the proxy" in art33
    assert [r["id"] for r in api.reports(ws, bea)][:1] == [rep["report_id"]]
    assert api.reports(ws, abe) == []
    with pytest.raises(PermissionDenied):
        api.report(ws, abe, rep["report_id"])
    with pytest.raises(PermissionDenied):
        api.report_file(ws, abe, rep["report_id"], "report.json")
    assert api.report_file(ws, bea, rep["report_id"], "report.json").name == "report.json"
    with pytest.raises(NotFound):
        api.report_file(ws, bea, rep["report_id"], "../../catalog.duckdb")
    with pytest.raises(PermissionDenied):
        api.generate_report(ws, bea, tenant="kasse_a", pdf=False)
    assert "10.10.0.11" not in (ws.root / "reports" / rep["report_id"] / "report.json").read_text()


def test_lock_out_after_repeated_failures(ws):
    api.add_user(ws, None, "mallory", "analyst", PW)
    for _ in range(auth.LOCKOUT_FAILURES):
        with pytest.raises(AuthenticationError, match="wrong"):
            api.login(ws, "mallory", "guess-guess-guess")
    with pytest.raises(AuthenticationError, match="locked"):
        api.login(ws, "mallory", PW)  # even the right password, while locked
    later = datetime.now(timezone.utc) + timedelta(minutes=auth.LOCKOUT_MINUTES, seconds=1)
    assert auth.authenticate(ws.root, "mallory", PW, now=later).role == "analyst"
    with pytest.raises(AuthenticationError, match="wrong"):
        api.login(ws, "nobody", PW)
    rows = api.audit_log(ws, user="mallory")
    assert [r["action"] for r in rows] == ["login_failed"] * 5 + ["login_locked", "login"]


def test_tokens_are_stored_hashed_and_revocable(ws):
    tid, token = api.create_token(ws, None, "bea")
    assert token.startswith(auth.TOKEN_PREFIX) and len(token) > 40
    stored = b"".join(p.read_bytes() for p in ws.root.glob("console.sqlite*"))
    assert stored and token.encode() not in stored and auth._token_hash(token).encode() in stored
    assert api.token_principal(ws, token).name == "bea"
    bea = api.token_principal(ws, token)
    with pytest.raises(PermissionDenied):
        api.create_token(ws, bea, "ana")
    assert [t["id"] for t in api.tokens(ws, bea)] == [tid]
    assert api.revoke_token(ws, bea, token) == tid
    with pytest.raises(AuthenticationError, match="revoked"):
        api.token_principal(ws, token)
    with pytest.raises(AuthenticationError, match="unknown"):
        api.token_principal(ws, token + "x")
    assert api.user_principal(ws, "abe").tenants == {"kasse_a"}
    api.remove_user(ws, None, "abe")
    with pytest.raises(AuthenticationError):
        api.login(ws, "abe", PW)
    with pytest.raises(AuthenticationError):
        api.user_principal(ws, "abe")  # a session of a removed user ends


def test_every_service_function_is_documented():
    for name in api.__all__:
        assert getattr(api, name).__doc__, name


def test_the_audit_log_records_views_and_is_tamper_evident(ws):
    bea = api.login(ws, "bea", PW)
    api.findings(ws, bea, severity="low")
    rows = api.audit_log(ws, user="bea")
    assert rows[-1]["action"] == "view" and rows[-1]["tenant"] == "kasse_b"
    assert "findings severity=low" in rows[-1]["what"]
    denied = [r["what"] for r in api.audit_log(ws, user="bea") if r["action"] == "denied"]
    assert "explain: finding" in " ".join(denied) and "contain:" in " ".join(denied)
    assert [r["what"] for r in api.audit_log(ws, user="abe") if r["action"] == "denied"] == [
        f"report: report {rid} belongs to another tenant" for rid in [api.reports(ws)[0]["id"]]] + [
        f"report_file: report {api.reports(ws)[0]['id']} belongs to another tenant"]
    assert api.audit_log(ws, tenant="kasse_b") and all(r["tenant"] == "kasse_b" for r in api.audit_log(ws, tenant="kasse_b"))
    assert api.verify_audit(ws)["ok"]
    con = sqlite3.connect(ws.root / "console.sqlite")
    seq = con.execute("SELECT min(seq) FROM audit WHERE who = 'bea'").fetchone()[0]
    for change in ("UPDATE audit SET who = 'someone' WHERE seq = ?", "DELETE FROM audit WHERE seq = ?"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):  # the store refuses it
            con.execute(change, [seq])
    # whoever owns the files can drop the triggers: the hash chain still shows the change
    con.execute("DROP TRIGGER audit_no_update")
    con.execute("UPDATE audit SET who = 'someone' WHERE seq = ?", [seq])
    con.commit()
    con.close()
    v = api.verify_audit(ws)
    assert (v["ok"], v["first_bad"]) == (False, seq)


def test_a_measure_stays_with_its_incident_when_the_incident_gets_a_new_id(ws):
    """An incident's id names its host and first moment; a finding that starts earlier (data
    ingested late) gives it another id. A measure recorded under the old id, for the same host and
    time, is still the incident's."""
    from abfluss import caselog

    bea = api.login(ws, "bea", PW)
    inc = api.incidents(ws, bea)["incidents"][0]
    span = (inc["start"], inc["end"])
    caselog.add(ws.root, "incident-before-a-later-finding", "kasse_b", inc["internal_host"], span, "bea", "old id")
    caselog.add(ws.root, "incident-of-another-host", "kasse_b", "10.10.0.99", span, "bea", "another host")
    caselog.add(ws.root, "incident-of-another-tenant", "kasse_a", inc["internal_host"], span, "abe", "other tenant")
    before = {e["what"] for e in caselog.entries(ws.root, incident=inc["id"])}  # other tests' entries
    assert {e["what"] for e in api.case_entries(ws, bea, inc["id"])} == before | {"old id"}
    assert {e["what"] for e in api.incident(ws, bea, inc["id"])["case_log"]} == before | {"old id"}
