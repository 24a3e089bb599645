"""``abfluss serve``: the web console and the HTTP API (``abfluss.web``) under uvicorn.

The web stack (FastAPI, uvicorn, plotly) loads only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import AbflussError
from .app import app, err, out, state


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (default: loopback only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    certfile: Annotated[Optional[Path], typer.Option(help="TLS certificate (PEM): serve HTTPS; cookies get Secure.")] = None,
    keyfile: Annotated[Optional[Path], typer.Option(help="TLS private key (PEM) for --certfile.")] = None,
    forwarded_allow_ips: Annotated[str, typer.Option(help="Reverse proxies whose X-Forwarded-For/-Proto headers are trusted (comma-separated, '*' for any).")] = "127.0.0.1",
    warm: Annotated[bool, typer.Option("--warm/--no-warm", help="Compute what the first requests need in the background, at start and after each change of the workspace.")] = True,
) -> None:
    """Serve the web console and the /api/v1 HTTP API over this workspace (users: abfluss users add).

    Example: abfluss serve --host 0.0.0.0 --port 8443 --certfile cert.pem --keyfile key.pem
    """
    if bool(certfile) != bool(keyfile):
        raise AbflussError("--certfile and --keyfile go together")
    for f in (certfile, keyfile):
        if f and not f.is_file():
            raise AbflussError(f"{f}: no such file")
    import uvicorn

    from .. import api
    from ..web import create_app
    root = api.workspace_path(state.workspace)
    api.open_workspace(root, state.config).close()  # a bad workspace or config fails here, in one line
    web = create_app(root, config=state.config, warm=warm)
    scheme = "https" if certfile else "http"
    if not certfile and host not in ("127.0.0.1", "::1", "localhost"):
        err.print(f"abfluss: serving plain HTTP on {host}: passwords and session cookies cross the network "
                  "in clear unless a TLS proxy is in front (docs/console.md)", markup=False, highlight=False)
    out.print(f"abfluss console on {scheme}://{host}:{port}/ (API: /api/v1, OpenAPI: /api/v1/openapi.json)",
              markup=False, highlight=False)
    config = uvicorn.Config(web, host=host, port=port, ssl_certfile=str(certfile) if certfile else None,
                            ssl_keyfile=str(keyfile) if keyfile else None, proxy_headers=True,
                            forwarded_allow_ips=forwarded_allow_ips, log_level="warning", server_header=False,
                            timeout_graceful_shutdown=STOP_GRACE)
    try:
        _stopping_server(config).run()  # a port in use: uvicorn says so in one line, exit code 3
    except KeyboardInterrupt:  # Ctrl-C: stopped as asked (uvicorn re-raises it once it has stopped)
        pass


#: Seconds a stop (SIGTERM, Ctrl-C) waits for requests still running before it cancels them.
STOP_GRACE = 3


def _stopping_server(config):
    """uvicorn's server, telling the app when a stop begins: the live view's event streams
    (``/live/events``) end then, instead of keeping the server up until each browser leaves."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            config.app.state.stopping.set()
            super().handle_exit(sig, frame)

    return Server(config)
