"""A lab web server: static files over HTTP and HTTPS, plus an upload sink.

GET/HEAD serve files from --root (HTTP/1.1, keep-alive). POST and PUT read the whole
body (Content-Length or chunked), discard it, and answer a small JSON receipt. Every
request is logged to stderr with the number of body bytes received.

    python3 labweb.py --root DIR --bind IP [--http 80] [--https 443 --cert C --key K]
"""

from __future__ import annotations

import argparse
import json
import signal
import ssl
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


class Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a client can hold one connection open
    server_version = "labweb/1.0"
    sys_version = ""

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()  # deferred from accept(), see main()
        super().setup()

    def _read_body(self) -> int:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return total
                total += self._discard(size)
                self.rfile.readline()  # CRLF after the chunk
        return self._discard(int(self.headers.get("Content-Length", "0") or 0))

    def _discard(self, n: int) -> int:
        got = 0
        while got < n:
            chunk = self.rfile.read(min(65536, n - got))
            if not chunk:
                break
            got += len(chunk)
        return got

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        received = self._read_body()
        body = json.dumps({"status": "stored", "received": received, "path": self.path}).encode() + b"\n"
        self.send_response(201 if self.command == "PUT" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.log_message('"%s %s" body=%d', self.command, self.path, received)

    do_PUT = do_POST

    def log_request(self, code="-", size="-") -> None:
        if self.command not in ("POST", "PUT"):
            super().log_request(code, size)


def serve(server: ThreadingHTTPServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--http", type=int, default=80)
    ap.add_argument("--https", type=int, default=0)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    a = ap.parse_args()

    handler = partial(Handler, directory=a.root)
    servers = []
    if a.http:
        servers.append(ThreadingHTTPServer((a.bind, a.http), handler))
    if a.https:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        tls = ThreadingHTTPServer((a.bind, a.https), handler)
        # handshake in the handler thread, not in accept(): a slow client blocks no one
        tls.socket = ctx.wrap_socket(tls.socket, server_side=True, do_handshake_on_connect=False)
        servers.append(tls)
    for s in servers:
        s.daemon_threads = True
        serve(s)
    print(f"labweb serving {a.root} on {a.bind} http={a.http} https={a.https}", file=sys.stderr, flush=True)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    for s in servers:
        s.shutdown()
        s.server_close()


if __name__ == "__main__":
    main()
