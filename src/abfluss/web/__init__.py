"""``abfluss serve``: the web console and the HTTP API, a thin shell over the library.

``create_app(workspace, auth)`` builds the ASGI app: server-rendered pages (Jinja, autoescaped),
``/api/v1`` with Bearer tokens, ``/healthz``, the live view's event stream, and static files
served from this package (plotly.js from the installed ``plotly`` package). Nothing is fetched
from the internet; no inline script or style exists, so the Content-Security-Policy forbids both.
"""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import AbflussError
from .json import CLIJSON
from .security import HEADERS, Sessions
from ..auth import Principal
from ..errors import AuthenticationError, NotFound, PermissionDenied

HERE = Path(__file__).resolve().parent


def create_app(workspace: str | Path, config: Optional[str | Path] = None,
               live_poll: float = 1.0, warm: bool = True) -> FastAPI:
    """The console and API over ``workspace`` (its users and tokens: ``abfluss users``, ``abfluss tokens``).

    ``warm``: while the app runs (its lifespan), compute what the first requests need in the
    background, at start and after each change of the workspace (``web.warm``)."""
    from . import pages, v1
    from .warm import Warmer

    warmer = Warmer(Path(workspace), config, v1.ACCOUNT_LIMIT) if warm else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if warmer is not None:
            warmer.start()
        try:
            yield
        finally:
            if warmer is not None:
                warmer.stop()

    app = FastAPI(title="abfluss", version="1", docs_url=None, redoc_url=None,
                  openapi_url="/api/v1/openapi.json", default_response_class=CLIJSON, lifespan=lifespan)
    app.state.workspace, app.state.config = Path(workspace), config
    app.state.sessions = Sessions()
    app.state.live_poll = live_poll
    app.state.stopping = threading.Event()  # set by ``abfluss serve`` when SIGTERM or Ctrl-C arrives
    app.state.warmer = warmer

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for k, v in HEADERS.items():
            response.headers.setdefault(k, v)
        if not request.url.path.startswith("/static/"):  # tenant data stays out of caches
            response.headers.setdefault("Cache-Control", "no-store")
            if warmer is not None:  # the workspace may have changed since the last check
                warmer.nudge()
        return response

    @app.exception_handler(AbflussError)
    async def library_error(request: Request, exc: AbflussError):
        code = (401 if isinstance(exc, AuthenticationError) else 403 if isinstance(exc, PermissionDenied)
                else 404 if isinstance(exc, NotFound) else 400)
        if request.url.path.startswith("/api/"):
            return CLIJSON({"detail": str(exc)}, status_code=code)
        return pages.error_page(request, code, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if request.url.path.startswith("/api/") or exc.status_code in (301, 302, 303, 307):
            if exc.status_code in (301, 302, 303, 307):
                return Response(status_code=exc.status_code, headers=exc.headers)
            return CLIJSON({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return pages.error_page(request, exc.status_code, str(exc.detail))

    @app.get("/healthz", include_in_schema=False)
    def healthz():
        return {"status": "ok"}

    app.include_router(v1.router)
    app.include_router(pages.router)
    return app


__all__ = ["Principal", "create_app"]
