"""Who is asking: the session cookie of a logged-in browser or an API Bearer token, CSRF tokens,
and the security headers every response carries.

Passwords and tokens are checked by the service layer (``abfluss.api.login``,
``abfluss.api.token_principal``: argon2, lock-out, audit); the web layer only keeps browser
sessions. A session lives in this process's memory: a restart logs everybody out,
which for a console on the sensor host is the safe direction.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

from fastapi import Depends, HTTPException, Request

from .. import api
from ..auth import Principal
from ..errors import AuthenticationError
from ..store import Workspace
from .deps import workspace

#: Name of the session cookie; ``__Host-`` would forbid it over plain HTTP on localhost.
COOKIE = "abfluss_session"
#: The login form's CSRF cookie: the form carries the same random value (double submit), and a
#: cross-site post carries no SameSite=Strict cookie, so no other site can log a browser in.
LOGIN_COOKIE = "abfluss_login"
#: Idle time after which a browser session ends (s).
SESSION_IDLE = 8 * 3600
#: The Content-Security-Policy of every response: only this origin's scripts and styles, no
#: inline code, no framing, no plugins, forms post only here.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


@dataclass
class _Session:
    principal: Principal
    csrf: str
    seen: float = field(default_factory=time.monotonic)


class Sessions:
    """Browser sessions: random ids, each with its own CSRF token."""

    def __init__(self) -> None:
        self._by_id: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def start(self, p: Principal) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._by_id[sid] = _Session(p, secrets.token_urlsafe(32))
        return sid

    def get(self, sid: Optional[str]) -> Optional[_Session]:
        if not sid:
            return None
        with self._lock:
            s = self._by_id.get(sid)
            if s is None:
                return None
            if time.monotonic() - s.seen > SESSION_IDLE:
                del self._by_id[sid]
                return None
            s.seen = time.monotonic()
            return s

    def end(self, sid: Optional[str]) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)


def secure_request(request: Request) -> bool:
    """TLS to the client: uvicorn's own TLS, or X-Forwarded-Proto from a trusted proxy."""
    return request.url.scheme == "https"


def set_session_cookie(response, request: Request, sid: str) -> None:
    response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", secure=secure_request(request),
                        path="/", max_age=SESSION_IDLE)


def session_of(request: Request) -> Optional[_Session]:
    return request.app.state.sessions.get(request.cookies.get(COOKIE))


def current_user(request: Request, ws: Workspace) -> Principal:
    """The logged-in browser user as the workspace knows it now (a removed user's session ends,
    a changed role applies at once); otherwise a redirect to the login page."""
    s = session_of(request)
    if s is not None:
        try:
            p = api.user_principal(ws, s.principal.name)
        except AuthenticationError:
            request.app.state.sessions.end(request.cookies.get(COOKIE))
            s = None
    if s is None:
        raise HTTPException(303, headers={"Location": "/login"})
    request.state.csrf = s.csrf
    return p


def page_principal(request: Request, ws: Workspace = Depends(workspace)) -> Principal:
    """``current_user`` with the request's workspace (opened once, shared with the page)."""
    return current_user(request, ws)


def api_principal(request: Request, ws: Workspace = Depends(workspace)) -> Principal:
    """The owner of the Bearer token; 401 without a valid one. The request's workspace (opened
    once, shared with the endpoint) holds the tokens."""
    head = request.headers.get("authorization", "")
    scheme, _, token = head.partition(" ")
    why = "a valid API token is required (Authorization: Bearer TOKEN)"
    if scheme.lower() == "bearer" and token.strip():
        try:
            return api.token_principal(ws, token.strip())
        except AuthenticationError as e:
            why = str(e)
    raise HTTPException(401, why, headers={"WWW-Authenticate": "Bearer"})


def login_token(request: Request) -> str:
    """The login form's CSRF token: the browser's, else a new one (``set_login_cookie``)."""
    token = request.cookies.get(LOGIN_COOKIE, "")
    return token if 32 <= len(token) <= 64 else secrets.token_urlsafe(32)


def set_login_cookie(response, request: Request, token: str) -> None:
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=secure_request(request),
                        path="/login", max_age=SESSION_IDLE)


def login_csrf_ok(request: Request, submitted: Optional[str]) -> bool:
    """The login form came from this console: its token is the browser's login cookie."""
    token = request.cookies.get(LOGIN_COOKIE)
    return bool(token and submitted) and hmac.compare_digest(token, submitted)


def check_csrf(request: Request, submitted: Optional[str]) -> None:
    """Every form posts the session's CSRF token; SameSite=Strict is the second line."""
    s = session_of(request)
    if s is None or not submitted or not hmac.compare_digest(s.csrf, submitted):
        raise HTTPException(403, "the form has expired or did not come from this console: reload and try again")
