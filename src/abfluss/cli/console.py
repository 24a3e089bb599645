"""Console administration and records: ``users``, ``tokens``, ``audit`` and ``case``.

Thin shells over ``abfluss.api``; run locally on the sensor host they act as the operator
(``local:<os user>`` in the audit log).
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..errors import AbflussError
from .app import Fmt, _dump_csv, _dump_json, _json_default, _open, app, out, parse_time

users_app = typer.Typer(no_args_is_help=True, help="Console users: admin, analyst, officer (one tenant).")
tokens_app = typer.Typer(no_args_is_help=True, help="API tokens (Bearer) for the console's /api/v1.")
case_app = typer.Typer(no_args_is_help=True, help="The case log: measures taken per incident.")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.add_typer(case_app, name="case")


def _t(v) -> str:
    return _json_default(v)[:19].replace("T", " ") if v is not None else "-"


def _rows_out(rows: list[dict], format: Fmt, title: str, columns: tuple[str, ...]) -> None:
    if format is Fmt.json:
        _dump_json(rows)
    elif format is Fmt.csv:
        _dump_csv(rows, columns)
    else:
        t = Table(title=title)
        for c in columns:
            t.add_column(c)
        for r in rows:
            t.add_row(*[_t(r[c]) if c in _TIMES else ", ".join(r[c]) if isinstance(r[c], list)
                        else "-" if r[c] is None else str(r[c]) for c in columns])
        out.print(t)


_TIMES = {"created_at", "locked_until", "last_used", "revoked_at", "time", "incident_start", "incident_end"}


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, . _ @ -).")],
    role: Annotated[str, typer.Option(help="admin, analyst or officer.")],
    tenant: Annotated[Optional[str], typer.Option(help="The officer's tenant (exactly one; none for admin and analyst).")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from the first line of standard input.")] = False,
) -> None:
    """Add a console user; the password is stored only as an argon2 hash.

    Example: printf '%s\\n' "$PW" | abfluss users add dpo-nord --role officer --tenant kasse_nord --password-stdin
    """
    from .. import api
    if not password_stdin:
        raise AbflussError("give the password on standard input with --password-stdin (never as an argument)")
    password = sys.stdin.readline().rstrip("\r\n")
    with _open() as ws:
        api.add_user(ws, None, name, role, password, tenant)
    out.print(f"added {role} {name}" + (f" (tenant {tenant})" if tenant else ""), markup=False)


@users_app.command("list")
def users_list(format: Annotated[Fmt, typer.Option("--format", help="table, json or csv.")] = Fmt.table) -> None:
    """Every user: role, tenant, failed logins, lock-out.

    Example: abfluss users list --format json
    """
    from .. import api
    with _open() as ws:
        rows = api.users(ws)
    _rows_out(rows, format, "users", ("name", "role", "tenants", "created_at", "failures", "locked_until"))


@users_app.command("remove")
def users_remove(name: Annotated[str, typer.Argument(help="The user to delete (its tokens are revoked).")]) -> None:
    """Delete a user and revoke its API tokens.

    Example: abfluss users remove dpo-nord
    """
    from .. import api
    with _open() as ws:
        api.remove_user(ws, None, name)
    out.print(f"removed {name}", markup=False)


@tokens_app.command("create")
def tokens_create(name: Annotated[str, typer.Argument(help="The user the token acts as.")]) -> None:
    """Create an API token for a user and print it once (only its hash is kept).

    Example: abfluss tokens create siem
    """
    from .. import api
    with _open() as ws:
        tid, token = api.create_token(ws, None, name)
    sys.stdout.write(token + "\n")
    sys.stdout.flush()
    print(f"token id {tid} for {name}: store the token now, it is not shown again "
          f"(revoke with: abfluss tokens revoke {tid})", file=sys.stderr)


@tokens_app.command("list")
def tokens_list(
    user: Annotated[Optional[str], typer.Option(help="Only this user's tokens.")] = None,
    format: Annotated[Fmt, typer.Option("--format", help="table, json or csv.")] = Fmt.table,
) -> None:
    """API tokens: id, user, created, last used, revoked (never the secret).

    Example: abfluss tokens list --user siem
    """
    from .. import api
    with _open() as ws:
        rows = api.tokens(ws, None, user)
    _rows_out(rows, format, "API tokens", ("id", "user", "created_at", "last_used", "revoked_at"))


@tokens_app.command("revoke")
def tokens_revoke(token: Annotated[str, typer.Argument(help="The token's id (from tokens list), or the token itself.")]) -> None:
    """Revoke an API token; requests with it are refused from now on.

    Example: abfluss tokens revoke 3f9c2a61d0b4
    """
    from .. import api
    with _open() as ws:
        tid = api.revoke_token(ws, None, token)
    out.print(f"revoked token {tid}", markup=False)


@app.command(name="audit")
def audit_command(
    start: Annotated[Optional[str], typer.Option("--from", help="From (ISO 8601, inclusive).")] = None,
    end: Annotated[Optional[str], typer.Option("--to", help="To (ISO 8601, exclusive).")] = None,
    user: Annotated[Optional[str], typer.Option(help="Only this user's actions.")] = None,
    tenant: Annotated[Optional[str], typer.Option(help="Only actions on this tenant's data.")] = None,
    format: Annotated[Fmt, typer.Option("--format", help="table, json or csv.")] = Fmt.table,
    verify: Annotated[bool, typer.Option("--verify", help="Check the hash chain of the whole log; exit 1 if a row was changed, removed or reordered.")] = False,
) -> None:
    """The audit log: every login, view of a tenant's data, export and report, append-only and hash-chained.

    Example: abfluss audit --from 2026-12-01 --tenant kasse_nord --format csv
    """
    from .. import api
    with _open() as ws:
        if verify:
            v = api.verify_audit(ws)
        rows = api.audit_log(ws, None, parse_time(start, "--from"), parse_time(end, "--to"), user, tenant)
    _rows_out(rows, format, "audit log", ("seq", "time", "who", "action", "tenant", "what"))
    if verify:
        if v["ok"]:
            print(f"audit log intact: {v['rows']} rows, hash chain verified", file=sys.stderr)
        else:
            print(f"abfluss: audit log tampered with: row {v['first_bad']} does not match the hash chain",
                  file=sys.stderr)
            raise typer.Exit(1)


@case_app.command("add")
def case_add(
    incident: Annotated[str, typer.Argument(help="Incident id (or a unique prefix; see abfluss incidents).")],
    measure: Annotated[str, typer.Option("--measure", help="What was done, e.g. 'isolated 10.10.0.11 from the network'.")],
) -> None:
    """Record a measure taken for an incident (time and author are added); the drafts list it.

    Example: abfluss case add 5e2f --measure "blocked files-drop.test at the proxy"
    """
    from .. import api
    with _open() as ws:
        e = api.add_case_entry(ws, None, incident, measure)
    out.print(f"recorded for incident {e['incident']} (tenant {e['tenant']}) at {_t(e['time'])}", markup=False)


@case_app.command("list")
def case_list(
    incident: Annotated[Optional[str], typer.Argument(help="Only this incident (id or unique prefix).")] = None,
    format: Annotated[Fmt, typer.Option("--format", help="table, json or csv.")] = Fmt.table,
) -> None:
    """Case log entries, oldest first.

    Example: abfluss case list 5e2f --format json
    """
    from .. import api
    with _open() as ws:
        rows = api.case_entries(ws, None, incident)
    _rows_out(rows, format, "case log", ("time", "incident", "tenant", "host", "who", "what"))
