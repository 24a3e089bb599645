"""Hand-made lab clients whose byte counts are exact (we write every byte ourselves).

    python3 labclient.py keepalive --host NAME --port 80 [--path /status.json]
                                   [--requests-at 0,12] [--hold 30]

keepalive: resolves NAME through the namespace's resolver, opens one TCP connection with
TCP keep-alive probes on, sends a small HTTP/1.1 GET at each offset of --requests-at
(seconds after connect) and then holds the connection idle until SIGTERM or --hold
seconds. After connecting and after every exchange it prints one JSON line with the
cumulative application bytes sent and received; the last line is the final state.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import time

_stop = False


def _on_term(*_):
    global _stop
    _stop = True


def _emit(**kw) -> None:
    print(json.dumps(kw), flush=True)


def _read_response(sock: socket.socket) -> bytes:
    """Read one HTTP response with a Content-Length body; return all its bytes."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            return buf
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    while len(body) < length:
        chunk = sock.recv(min(65536, length - len(body)))
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def keepalive(a: argparse.Namespace) -> None:
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    t_lookup = time.time()
    ip = socket.getaddrinfo(a.host, a.port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, a.keepidle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, a.keepidle)
    start = time.time()
    sock.connect((ip, a.port))
    local_ip, local_port = sock.getsockname()
    state = dict(event="connected", lookup_at=t_lookup, start=start, client_ip=local_ip, client_port=local_port,
                 server_ip=ip, server_port=a.port, sent=0, received=0, requests=0)
    _emit(**state)
    offsets = sorted(float(x) for x in a.requests_at.split(",") if x.strip())
    for off in offsets:
        while not _stop and time.time() < start + off:
            time.sleep(0.1)
        if _stop:
            break
        req = (f"GET {a.path} HTTP/1.1\r\nHost: {a.host}\r\nUser-Agent: lab-agent/1.0\r\n"
               "Accept: application/json\r\nConnection: keep-alive\r\n\r\n").encode()
        sock.sendall(req)
        resp = _read_response(sock)
        state.update(event="exchange", at=time.time(), sent=state["sent"] + len(req),
                     received=state["received"] + len(resp), requests=state["requests"] + 1)
        _emit(**state)
    while not _stop and time.time() < start + a.hold:
        time.sleep(0.1)
    sock.close()
    state.update(event="closed", end=time.time())
    _emit(**state)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keepalive")
    k.add_argument("--host", required=True)
    k.add_argument("--port", type=int, default=80)
    k.add_argument("--path", default="/status.json")
    k.add_argument("--requests-at", default="0,12")
    k.add_argument("--hold", type=float, default=300)
    k.add_argument("--keepidle", type=int, default=8, help="seconds idle before TCP keep-alive probes")
    a = ap.parse_args()
    if a.cmd == "keepalive":
        keepalive(a)
    else:  # pragma: no cover
        sys.exit(f"unknown command {a.cmd}")


if __name__ == "__main__":
    main()
