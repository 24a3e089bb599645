"""``abfluss users``, ``tokens``, ``audit`` and ``case`` (issue 14): the exact command contract,
run as the real command on a real workspace (lab-beacon: kasse_b's ws2 beacons)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import abfluss
from abfluss import analysis

from conftest import EXAMPLES


def cli(ws: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("abfluss", path=str(Path(sys.executable).parent)) or "abfluss"
    return subprocess.run([exe, "--workspace", str(ws), *args], input=stdin, capture_output=True, text=True,
                          timeout=300)


def test_users_tokens_audit_and_case_commands(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "abfluss.toml").write_text('[tenants.kasse_b]\nnetworks = ["10.10.0.12/32"]\n')
    with abfluss.open_workspace(ws, write=True) as w:
        abfluss.ingest_paths(w, [EXAMPLES / "lab-beacon.pcap"], sensor="lab")
        abfluss.refresh(w)
        analysis.analyze(w)

    r = cli(ws, "users", "add", "dpo-b", "--role", "officer", "--tenant", "kasse_b", "--password-stdin",
            stdin="a long enough password\n")
    assert r.returncode == 0, r.stderr
    r = cli(ws, "users", "add", "x", "--role", "officer", "--password-stdin", stdin="a long enough password\n")
    assert (r.returncode, r.stderr.strip()) == (2, "abfluss: an officer needs exactly one --tenant")
    r = cli(ws, "users", "add", "y", "--role", "analyst")  # a password never as an argument
    assert r.returncode == 2 and "--password-stdin" in r.stderr
    users = json.loads(cli(ws, "users", "list", "--format", "json").stdout)
    assert [(u["name"], u["role"], u["tenants"]) for u in users] == [("dpo-b", "officer", ["kasse_b"])]

    r = cli(ws, "tokens", "create", "dpo-b")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token.startswith("abfluss_") and "\n" not in token  # the token alone on stdout, once
    tokens = json.loads(cli(ws, "tokens", "list", "--format", "json").stdout)
    assert len(tokens) == 1 and tokens[0]["user"] == "dpo-b" and tokens[0]["revoked_at"] is None
    assert token not in json.dumps(tokens) and tokens[0]["id"] in r.stderr
    assert cli(ws, "tokens", "revoke", tokens[0]["id"]).returncode == 0
    assert json.loads(cli(ws, "tokens", "list", "--format", "json").stdout)[0]["revoked_at"]

    inc = json.loads(cli(ws, "incidents", "--format", "json").stdout)["incidents"]
    assert [i["internal_host"] for i in inc] == ["10.10.0.12"]
    r = cli(ws, "case", "add", inc[0]["id"][:6], "--measure", "isolated ws2 from the network")
    assert r.returncode == 0, r.stderr
    case = json.loads(cli(ws, "case", "list", inc[0]["id"], "--format", "json").stdout)
    assert [(c["incident"], c["tenant"], c["what"]) for c in case] == [
        (inc[0]["id"], "kasse_b", "isolated ws2 from the network")]
    assert case[0]["who"].startswith("local:")
    assert cli(ws, "case", "add", "nope", "--measure", "x").returncode == 2

    r = cli(ws, "audit", "--format", "json", "--verify")
    assert r.returncode == 0 and "hash chain verified" in r.stderr
    rows = json.loads(r.stdout)
    assert [x["action"] for x in rows] == ["user_add", "token_create", "token_revoke", "case_add"]
    assert rows[0]["tenant"] == "kasse_b" and rows[0]["who"].startswith("local:")
    assert [x["action"] for x in json.loads(cli(ws, "audit", "--format", "json", "--tenant", "kasse_b").stdout)] == [
        "user_add", "case_add"]
    csv = cli(ws, "audit", "--format", "csv", "--from", "2000-01-01", "--to", "2000-01-02").stdout
    assert csv.strip() == "seq,time,who,action,tenant,what"
    assert cli(ws, "users", "remove", "dpo-b").returncode == 0
    assert json.loads(cli(ws, "users", "list", "--format", "json").stdout) == []
