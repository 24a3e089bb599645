"""Users, roles, API tokens, and the one permission check every service function calls.

Roles:

``admin``    everything, users and the audit log included; all tenants
``analyst``  all tenants: read, analyse, contain, report, write case logs
``officer``  exactly one tenant (a data controller's data-protection officer): read its findings,
             ledger, accounting, incidents and reports, write its case log, generate its report
             and drafts

Passwords are stored as argon2id hashes (argon2-cffi's defaults), API tokens only as the SHA-256
of the secret (a 256-bit random secret needs no slow hash). After ``LOCKOUT_FAILURES`` failed
logins in a row a user is locked out for ``LOCKOUT_MINUTES``; a locked user's password is not
even checked. Every login, failed or not, is written to the audit log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from . import audit, console_db
from .errors import AbflussError, AuthenticationError, NotFound, PermissionDenied

ROLES = ("admin", "analyst", "officer")
#: Failed logins in a row after which a user is locked out.
LOCKOUT_FAILURES = 5
#: Minutes a locked-out user must wait before the next attempt is checked.
LOCKOUT_MINUTES = 15
#: Shortest password ``users add`` accepts.
MIN_PASSWORD_LENGTH = 12
#: Prefix of every API token (lets secret scanners recognise a leaked one).
TOKEN_PREFIX = "abfluss_"
#: Random bytes in a token's secret.
TOKEN_BYTES = 32
#: What a user name may consist of (it appears in the audit log, URLs and file names).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")

#: Which roles may do what. ``read``: findings, explain, ledger, accounting, coverage, incidents,
#: reports list and download; ``report``: generate a report and its drafts; ``case``: write a case
#: log entry; ``analyze`` and ``contain``: run the detections, compute a blast radius and block
#: lists; ``admin``: users, tokens of other users, the audit log.
PERMISSIONS = {
    "read": {"admin", "analyst", "officer"},
    "report": {"admin", "analyst", "officer"},
    "case": {"admin", "analyst", "officer"},
    "analyze": {"admin", "analyst"},
    "contain": {"admin", "analyst"},
    "admin": {"admin"},
}


@dataclass(frozen=True)
class Principal:
    """Who is asking: a user name, a role, and for an officer the tenants it may see."""

    name: str
    role: str
    tenants: frozenset[str] = field(default_factory=frozenset)

    @property
    def scope(self) -> frozenset[str] | None:
        """The tenants this principal may see; ``None`` means all (admin, analyst)."""
        return None if self.role in ("admin", "analyst") else self.tenants


def scope_of(who: Principal | None) -> frozenset[str] | None:
    """The tenant set a caller may see: ``None`` (all) for the local operator and all-tenant roles."""
    return None if who is None else who.scope


def who_name(who: Principal | None) -> str:
    """The name written to audit and case logs: the user, or ``local:<os user>`` for the CLI."""
    if who is not None:
        return who.name
    import getpass
    try:
        return f"local:{getpass.getuser()}"
    except Exception:  # no passwd entry (a container's arbitrary uid)
        return "local:?"


def allowed(who: Principal | None, action: str, tenant: str | None = None) -> bool:
    """Whether ``who`` may do ``action`` (a key of ``PERMISSIONS``) on ``tenant``'s data
    (``None``: on whatever its scope covers). ``None`` as caller is the local operator: allowed."""
    if action not in PERMISSIONS:
        raise ValueError(f"unknown action {action!r}")
    if who is None:
        return True
    if who.role not in PERMISSIONS[action]:
        return False
    scope = who.scope
    return scope is None or tenant is None or tenant in scope


def require(who: Principal | None, action: str, tenant: str | None = None) -> None:
    """Raise :class:`PermissionDenied` unless :func:`allowed`."""
    if not allowed(who, action, tenant):
        what = f" for tenant {tenant!r}" if tenant is not None else ""
        raise PermissionDenied(f"{who.name} ({who.role}) may not {action}{what}")


# -- users -------------------------------------------------------------------------------------
def _hasher():
    from argon2 import PasswordHasher
    return PasswordHasher()


def _check_user(name: str, role: str, tenants: tuple[str, ...]) -> None:
    if not NAME_RE.match(name or ""):
        raise AbflussError(f"user name {name!r}: 1-64 letters, digits, '.', '_', '@', '-' (not first)")
    if role not in ROLES:
        raise AbflussError(f"--role {role!r}: one of {', '.join(ROLES)}")
    if role == "officer" and len(tenants) != 1:
        raise AbflussError("an officer needs exactly one --tenant")
    if role != "officer" and tenants:
        raise AbflussError(f"an {role} sees every tenant: give no --tenant")


def add_user(root: Path | str, name: str, role: str, password: str, tenants: tuple[str, ...] = (),
             by: str = "") -> Principal:
    """Create a user (the password is stored only as an argon2 hash)."""
    tenants = tuple(tenants)
    _check_user(name, role, tenants)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AbflussError(f"password too short: at least {MIN_PASSWORD_LENGTH} characters")
    digest = _hasher().hash(password)
    with console_db.connect(root) as con:
        if con.execute("SELECT 1 FROM users WHERE name = ?", [name]).fetchone():
            raise AbflussError(f"user {name!r} exists already (abfluss users remove {name} first)")
        con.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?, 0, NULL)",
                    [name, role, json.dumps(list(tenants)), digest, console_db.now()])
        audit.record(root, by, "user_add", tenants[0] if tenants else None, f"{name} ({role})", con)
    return Principal(name, role, frozenset(tenants))


def list_users(root: Path | str) -> list[dict]:
    """Every user: name, role, tenants, created_at, failures, locked_until (never the hash)."""
    with console_db.connect(root) as con:
        return console_db.rows(con, "SELECT name, role, tenants, created_at, failures, locked_until FROM users "
                                    "ORDER BY name")


def remove_user(root: Path | str, name: str, by: str = "") -> None:
    """Delete a user and revoke its tokens."""
    with console_db.connect(root) as con:
        if not con.execute("SELECT 1 FROM users WHERE name = ?", [name]).fetchone():
            raise NotFound(f"no user {name!r}")
        con.execute("UPDATE tokens SET revoked_at = ? WHERE user_name = ? AND revoked_at IS NULL",
                    [console_db.now(), name])
        con.execute("DELETE FROM users WHERE name = ?", [name])
        audit.record(root, by, "user_remove", None, name, con)


def _principal(row) -> Principal:
    name, role, tenants = row[:3]
    return Principal(name, role, frozenset(json.loads(tenants or "[]")))


def authenticate(root: Path | str, name: str, password: str, now: datetime | None = None) -> Principal:
    """The user ``name`` if ``password`` is theirs; else :class:`AuthenticationError` (one message
    for an unknown user and a wrong password). Applies and counts the lock-out; audits every try."""
    from argon2.exceptions import InvalidHashError, VerificationError

    now = now or datetime.now(timezone.utc)
    ph = _hasher()
    # Hashing takes a noticeable fraction of a second: it runs outside the store's write lock,
    # and the failure count is raised in the store (not read, raised and written back), so
    # parallel guesses are all counted.
    with console_db.connect(root) as con:
        row = con.execute("SELECT name, role, tenants, password_hash, failures, locked_until FROM users "
                          "WHERE name = ?", [name]).fetchone()
    if row is None:
        try:  # spend the same time as for a real user, so timing does not tell who exists
            ph.verify(_dummy_hash(), password)
        except VerificationError:
            pass
        audit.record(root, name, "login_failed", None, "unknown user")
        raise AuthenticationError("wrong user name or password")
    tenant = next(iter(json.loads(row[2])), None)
    locked_until = datetime.fromisoformat(row[5]) if row[5] else None
    if locked_until is not None and locked_until > now:
        audit.record(root, name, "login_locked", tenant, f"locked until {row[5]}")
        raise AuthenticationError(f"too many failed logins: locked until {locked_until:%Y-%m-%d %H:%M} UTC")
    try:
        ok = ph.verify(row[3], password)
    except (VerificationError, InvalidHashError):
        ok = False
    rehashed = ph.hash(password) if ok and ph.check_needs_rehash(row[3]) else None
    with console_db.connect(root) as con:
        if not ok:
            con.execute("UPDATE users SET failures = failures + 1 WHERE name = ?", [name])
            failures = (con.execute("SELECT failures FROM users WHERE name = ?", [name]).fetchone() or [0])[0]
            locked = failures >= LOCKOUT_FAILURES
            if locked:
                con.execute("UPDATE users SET failures = 0, locked_until = ? WHERE name = ?",
                            [console_db.stamp(now + timedelta(minutes=LOCKOUT_MINUTES)), name])
            audit.record(root, name, "login_failed", tenant,
                         "wrong password" + (f"; locked out for {LOCKOUT_MINUTES} min" if locked else ""), con)
        else:
            if rehashed:
                con.execute("UPDATE users SET password_hash = ? WHERE name = ?", [rehashed, name])
            con.execute("UPDATE users SET failures = 0, locked_until = NULL WHERE name = ?", [name])
            audit.record(root, name, "login", tenant, "password", con)
    if not ok:
        raise AuthenticationError("wrong user name or password")
    return _principal(row)


def principal(root: Path | str, name: str) -> Principal:
    """The current role and tenants of user ``name`` (for a session: a removed user, or a changed
    role, takes effect at the next request); :class:`AuthenticationError` if it is gone."""
    with console_db.connect(root) as con:
        row = con.execute("SELECT name, role, tenants FROM users WHERE name = ?", [name]).fetchone()
    if row is None:
        raise AuthenticationError(f"no user {name!r}")
    return _principal(row)


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(_hasher().hash(secrets.token_hex(16)))
    return _DUMMY[0]


# -- tokens ------------------------------------------------------------------------------------
def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(root: Path | str, user: str, by: str = "") -> tuple[str, str]:
    """A new API token for ``user``: returns ``(id, token)``; the token is shown only now."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    tid = secrets.token_hex(6)
    with console_db.connect(root) as con:
        if not con.execute("SELECT 1 FROM users WHERE name = ?", [user]).fetchone():
            raise NotFound(f"no user {user!r} (abfluss users add {user} ... first)")
        con.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, NULL, NULL)",
                    [tid, user, _token_hash(token), console_db.now()])
        audit.record(root, by, "token_create", None, f"token {tid} for {user}", con)
    return tid, token


def list_tokens(root: Path | str, user: str | None = None) -> list[dict]:
    """Tokens (id, user, created_at, last_used, revoked_at), never their secrets."""
    with console_db.connect(root) as con:
        return console_db.rows(con, "SELECT id, user_name AS user, created_at, last_used, revoked_at FROM tokens "
                                    "WHERE ? IS NULL OR user_name = ? ORDER BY created_at, id", [user, user])


def revoke_token(root: Path | str, token_or_id: str, by: str = "") -> str:
    """Revoke a token named by its id (from ``tokens list``) or by the token itself; returns the id."""
    with console_db.connect(root) as con:
        row = con.execute("SELECT id, user_name FROM tokens WHERE id = ? OR token_hash = ?",
                          [token_or_id, _token_hash(token_or_id)]).fetchone()
        if row is None:
            raise NotFound("no such token (abfluss tokens list shows their ids)")
        con.execute("UPDATE tokens SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?", [console_db.now(), row[0]])
        audit.record(root, by, "token_revoke", None, f"token {row[0]} of {row[1]}", con)
        return row[0]


def principal_for_token(root: Path | str, token: str) -> Principal:
    """The user an API token belongs to; :class:`AuthenticationError` if unknown or revoked."""
    with console_db.connect(root) as con:
        row = con.execute("SELECT u.name, u.role, u.tenants, t.id, t.revoked_at, t.token_hash FROM tokens t "
                          "JOIN users u ON u.name = t.user_name WHERE t.token_hash = ?", [_token_hash(token)]).fetchone()
        if row is not None and row[4] is None:
            con.execute("UPDATE tokens SET last_used = ? WHERE id = ?", [console_db.now(), row[3]])
    if row is None or not hmac.compare_digest(row[5], _token_hash(token)):
        raise AuthenticationError("unknown API token")
    if row[4] is not None:
        audit.record(root, row[0], "login_failed", None, f"revoked token {row[3]}")
        raise AuthenticationError("this API token was revoked")
    return _principal(row)
