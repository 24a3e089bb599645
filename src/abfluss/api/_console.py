"""Console users, API tokens and the audit log in the service layer: logins (argon2, lock-out),
users and tokens (admins; a user its own tokens), the audit log and its hash chain (admins)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from .. import audit as _audit
from .. import auth
from ..auth import Principal, allowed, require, who_name
from ..errors import AbflussError, PermissionDenied

if TYPE_CHECKING:
    from ..store import Workspace


def login(ws: "Workspace", name: str, password: str) -> Principal:
    """Check a password (with lock-out; audited); :class:`AuthenticationError` when it fails."""
    return auth.authenticate(ws.root, name, password)


def token_principal(ws: "Workspace", token: str) -> Principal:
    """The user of an API token; :class:`AuthenticationError` for an unknown or revoked one."""
    return auth.principal_for_token(ws.root, token)


def user_principal(ws: "Workspace", name: str) -> Principal:
    """A user's current :class:`Principal` by name (a web session re-reads it on each request, so
    removing a user ends its sessions); :class:`AuthenticationError` if the user is gone."""
    return auth.principal(ws.root, name)


def _known_tenant(ws: "Workspace", tenant: str) -> None:
    known = set(getattr(ws, "config", None).tenants if getattr(ws, "config", None) else ()) | {"default"}
    if tenant not in known:
        raise AbflussError(f"--tenant {tenant!r}: not a configured tenant ({', '.join(sorted(known))})")


def add_user(ws: "Workspace", who: Principal | None, name: str, role: str, password: str,
             tenant: str | None = None) -> Principal:
    """Create a user (admins only); an officer's tenant must be configured."""
    require(who, "admin")
    if tenant is not None:
        _known_tenant(ws, tenant)
    return auth.add_user(ws.root, name, role, password, (tenant,) if tenant else (), by=who_name(who))


def users(ws: "Workspace", who: Principal | None = None) -> list[dict]:
    """Every user (admins only), without password hashes."""
    require(who, "admin")
    return auth.list_users(ws.root)


def remove_user(ws: "Workspace", who: Principal | None, name: str) -> None:
    """Delete a user and revoke its tokens (admins only)."""
    require(who, "admin")
    auth.remove_user(ws.root, name, by=who_name(who))


def create_token(ws: "Workspace", who: Principal | None, user: str) -> tuple[str, str]:
    """A new API token ``(id, token)`` for ``user``: admins for anyone, a user for itself."""
    if who is not None and who.name != user:
        require(who, "admin")
    return auth.create_token(ws.root, user, by=who_name(who))


def tokens(ws: "Workspace", who: Principal | None = None, user: str | None = None) -> list[dict]:
    """Tokens (never their secrets): all (or ``user``'s) for admins, a user's own otherwise."""
    if not allowed(who, "admin"):
        if user is not None and user != who.name:
            raise PermissionDenied("you may list only your own tokens")
        user = who.name
    return auth.list_tokens(ws.root, user)


def revoke_token(ws: "Workspace", who: Principal | None, token_or_id: str) -> str:
    """Revoke a token by id or by its value: admins any, a user its own. Returns the id."""
    if not allowed(who, "admin"):
        own = {t["id"] for t in auth.list_tokens(ws.root, who.name)}
        try:
            if token_principal(ws, token_or_id).name == who.name:
                own.add(token_or_id)
        except AbflussError:
            pass
        if token_or_id not in own:
            raise PermissionDenied("you may revoke only your own tokens")
    return auth.revoke_token(ws.root, token_or_id, by=who_name(who))


def audit_log(ws: "Workspace", who: Principal | None = None, start: datetime | None = None,
              end: datetime | None = None, user: str | None = None, tenant: str | None = None) -> list[dict]:
    """The audit log (admins only), filtered in the query."""
    require(who, "admin")
    return _audit.entries(ws.root, start, end, user, tenant)


def verify_audit(ws: "Workspace", who: Principal | None = None) -> dict:
    """Check the audit log's hash chain (admins only): ``{"rows", "ok", "first_bad"}``."""
    require(who, "admin")
    return _audit.verify(ws.root)

