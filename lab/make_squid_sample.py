"""Make the Squid access.log samples in examples/squid/ with a real Squid on loopback.

    sudo python3 lab/make_squid_sample.py --out examples/squid/     # about 25 s

Squid (Debian package ``squid``) listens on 127.0.0.1 and writes the same requests in its three
built-in formats at once: ``access.log`` (native ``squid``), ``access-common.log`` and
``access-combined.log``. Every name resolves through a private hosts file to a loopback address,
so nothing leaves the machine: www.example-shop.test -> 127.0.0.2 (Python http.server),
beacon.c2-example.test -> 127.0.0.3 (a plain TCP echo service reached with CONNECT). Requests
(curl through the proxy, client 127.0.0.1):

* 3 page views of www.example-shop.test and one 200 kB POST to it;
* 8 CONNECT check-ins to beacon.c2-example.test:8443 every 2 s (an HTTP request inside the tunnel);
* one request to a name that does not resolve (no server address: ``HIER_NONE``);
* one request Squid denies (``TCP_DENIED/403``).

Needs root (Squid drops to the ``proxy`` user), ``squid`` and ``curl``. Standard library only.
"""

from __future__ import annotations

import argparse
import http.server
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SHOP, BEACON = ("www.example-shop.test", "127.0.0.2"), ("beacon.c2-example.test", "127.0.0.3")
SQUID_PORT, SHOP_PORT, BEACON_PORT = 3129, 8080, 8443

CONF = """http_port 127.0.0.1:{port}
pid_filename {d}/squid.pid
cache_log {d}/cache.log
access_log stdio:{d}/access.log squid
access_log stdio:{d}/access-common.log common
access_log stdio:{d}/access-combined.log combined
coredump_dir {d}
cache deny all
hosts_file {d}/hosts
dns_nameservers 127.0.0.1
netdb_filename none
logfile_rotate 0
shutdown_lifetime 1 seconds
cache_effective_user proxy
acl localnet src 127.0.0.0/8
acl blocked dstdomain blocked.example.test
http_access deny blocked
http_access allow localnet
http_access deny all
"""


class _Shop(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        body = b"<html><body>" + b"shop " * 400 + b"</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(201)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def _beacon_server(stop: threading.Event) -> None:
    """Answers one HTTP request per connection (what the tunnelled check-in sends)."""
    srv = socket.create_server((BEACON[1], BEACON_PORT))
    srv.settimeout(0.5)
    while not stop.is_set():
        try:
            conn, _ = srv.accept()
        except TimeoutError:
            continue
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nno tasks yet")
    srv.close()


def curl(*args: str) -> None:
    subprocess.run(["curl", "-s", "-o", "/dev/null", "-x", f"http://127.0.0.1:{SQUID_PORT}",
                    "-A", "lab-client/1.0", "--max-time", "10", *args], check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("examples/squid"))
    args = ap.parse_args()
    for tool in ("squid", "curl"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install {tool}")
    d = Path(tempfile.mkdtemp(prefix="abfluss-squid-"))
    os.chmod(d, 0o777)  # squid writes its logs as the proxy user
    (d / "hosts").write_text(f"{SHOP[1]} {SHOP[0]}\n{BEACON[1]} {BEACON[0]}\n")
    (d / "squid.conf").write_text(CONF.format(port=SQUID_PORT, d=d))
    stop = threading.Event()
    shop = http.server.ThreadingHTTPServer((SHOP[1], SHOP_PORT), _Shop)
    threads = [threading.Thread(target=shop.serve_forever, daemon=True),
               threading.Thread(target=_beacon_server, args=(stop,), daemon=True)]
    for t in threads:
        t.start()
    squid = subprocess.Popen(["squid", "-N", "-f", str(d / "squid.conf")])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", SQUID_PORT), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        for page in ("/", "/catalogue", "/basket"):
            curl(f"http://{SHOP[0]}:{SHOP_PORT}{page}")
        body = d / "upload.bin"
        body.write_bytes(os.urandom(200_000))
        curl("-X", "POST", "--data-binary", f"@{body}", f"http://{SHOP[0]}:{SHOP_PORT}/upload")
        for _ in range(8):
            curl("--proxytunnel", f"http://{BEACON[0]}:{BEACON_PORT}/checkin")
            time.sleep(2)
        curl("http://no-such-host.example.test/")
        curl("http://blocked.example.test/")
    finally:
        squid.terminate()
        squid.wait(timeout=30)
        stop.set()
        shop.shutdown()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("access.log", "access-common.log", "access-combined.log"):
        shutil.copy(d / name, args.out / name)
        print(f"{args.out / name}: {len((d / name).read_text().splitlines())} lines")
    shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
