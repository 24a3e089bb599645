#!/usr/bin/env python3
"""Login guessing, executable downloads and SSH banners by real tools, captured with their truth.

    sudo python3 lab/protocols.py --out examples/protocols/

Two network namespaces (``abp-ws``: a workstation 10.77.0.10, ``abp-srv``: a server
198.51.100.25, documentation range, i.e. external), joined by one veth pair created between
them: no interface in the host's namespace, no route anywhere else. tcpdump on the server's
end writes one capture per run:

``smtp-auth``  aiosmtpd (AUTH without TLS) and curl sending mail with wrong passwords, then
               the right one: SMTP ``535`` refusals and a ``235``;
``ftp-login``  pyftpdlib and curl listing a directory with wrong passwords, then the right
               one: FTP ``530`` and ``230``;
``http``       Python's http.server behind Basic authentication answering curl's guesses
               ``401``, then serving an ELF program (``/bin/true``) as ``/dl/update`` and a
               Windows PE (pip's ``w64.exe`` launcher) named ``/dl/invoice.pdf``;
``ssh``        dropbear, and two clients from the workstation: OpenSSH's ``ssh`` and curl's
               libssh2 (``sftp://``), both refused: two SSH client versions on one host.

``protocols-truth.json`` says what each tool did: attempts and their outcome, the files'
sizes and SHA-256, the version strings. Needs root, ``tcpdump``, ``curl``, ``ssh``,
``dropbear`` (Debian ``dropbear-bin``) and the ``lab`` extra (aiosmtpd, pyftpdlib).
Everything (namespaces, processes, temporary files) is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True

WS, SRV = "abp-ws", "abp-srv"
WS_IP, SRV_IP = "10.77.0.10", "198.51.100.25"
USER, PASSWORD = "alice", "correct-horse"
WRONG = [f"guess{i}" for i in range(1, 31)]
PY = sys.executable
#: Programs the runs need, by the Debian package that has them (installed when missing).
TOOLS = {"tcpdump": "tcpdump", "curl": "curl", "ssh": "openssh-client", "dropbear": "dropbear-bin",
         "dropbearkey": "dropbear-bin", "ethtool": "ethtool", "ip": "iproute2"}


def requirements() -> None:
    if os.geteuid() != 0:
        sys.exit("protocols.py needs root (network namespaces, tcpdump): run it with sudo")
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if missing:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env, check=False)
        if still := [t for t in TOOLS if shutil.which(t) is None]:
            sys.exit(f"could not install: {', '.join(still)}")
    try:
        import aiosmtpd  # noqa: F401
        import pyftpdlib  # noqa: F401
    except ImportError:
        sys.exit("needs the lab extra: pip install -e '.[lab]'")


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def ns(name: str, *argv: str, check: bool = False, timeout: float = 30, stdin: str | None = None
       ) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", name, *argv], check=check, capture_output=True, text=True,
                          timeout=timeout, input=stdin)


def up() -> None:
    down()
    for n in (WS, SRV):
        sh("ip", "netns", "add", n)
        ns(n, "ip", "link", "set", "lo", "up", check=True)
    sh("ip", "link", "add", "v-ws", "netns", WS, "type", "veth", "peer", "name", "v-srv", "netns", SRV)
    for n, dev, ip, peer in ((WS, "v-ws", WS_IP, SRV_IP), (SRV, "v-srv", SRV_IP, WS_IP)):
        ns(n, "ip", "addr", "add", f"{ip}/32", "dev", dev, check=True)
        ns(n, "ip", "link", "set", dev, "up", check=True)
        ns(n, "ip", "route", "add", f"{peer}/32", "dev", dev, check=True)
        ns(n, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off")  # real segment sizes


def down() -> None:
    for n in (WS, SRV):
        if n in sh("ip", "netns", "list").stdout:
            pids = sh("ip", "netns", "pids", n, check=False).stdout.split()
            for pid in pids:
                subprocess.run(["kill", "-9", pid], check=False)
            sh("ip", "netns", "del", n, check=False)


class Capture:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.proc = subprocess.Popen(["ip", "netns", "exec", SRV, "tcpdump", "-i", "v-srv", "-s", "0", "-U", "-w",
                                      str(self.path), "not", "arp", "and", "not", "ip6"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        return self

    def __exit__(self, *exc):
        time.sleep(1.0)
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)


def server(*argv: str) -> subprocess.Popen:
    p = subprocess.Popen(["ip", "netns", "exec", SRV, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2.0)
    return p


SMTP_SERVER = f"""
import asyncio
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
class H:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"
def auth(server, session, envelope, mechanism, data):
    return AuthResult(success=data.login == b"{USER}" and data.password == b"{PASSWORD}", handled=False)
c = Controller(H(), hostname="{SRV_IP}", port=25, authenticator=auth, auth_require_tls=False)
c.start()
import time
time.sleep(3600)
"""

FTP_SERVER = f"""
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer
import tempfile
a = DummyAuthorizer()
a.add_user("{USER}", "{PASSWORD}", tempfile.mkdtemp(), perm="elr")
FTPHandler.authorizer = a
FTPHandler.auth_failed_timeout = 0
FTPServer(("{SRV_IP}", 21), FTPHandler).serve_forever()
"""

HTTP_SERVER = f"""
import base64, http.server, sys
GOOD = "Basic " + base64.b64encode(b"{USER}:{PASSWORD}").decode()
FILES = {{"/dl/update": sys.argv[1], "/dl/invoice.pdf": sys.argv[2]}}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path in FILES:
            body = open(FILES[self.path], "rb").read()
            ctype = "application/pdf" if self.path.endswith(".pdf") else "application/octet-stream"
            self.send_response(200)
        elif self.headers.get("Authorization") == GOOD:
            body, ctype = b"<html>welcome</html>", "text/html"
            self.send_response(200)
        else:
            body, ctype = b"<html>401 Unauthorized</html>", "text/html"
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="admin"')
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("{SRV_IP}", 80), H).serve_forever()
"""


def run_smtp(work: Path, out: Path) -> dict:
    srv = server(PY, "-c", SMTP_SERVER)
    attempts = []
    try:
        with Capture(out / "smtp-auth.pcap"):
            for pw in [*WRONG[:6], PASSWORD]:
                r = ns(WS, "curl", "-s", "-S", "--max-time", "10", f"smtp://{SRV_IP}/lab.test", "--user",
                       f"{USER}:{pw}", "--login-options", "AUTH=LOGIN", "--mail-from", f"{USER}@lab.test",
                       "--mail-rcpt", "bob@example.org", "-T", "-", stdin="Subject: lab\r\n\r\nhello\r\n")
                attempts.append({"password_right": pw == PASSWORD, "curl_exit": r.returncode})
    finally:
        srv.kill()
    return {"server": "aiosmtpd", "client": first_line("curl", "-V"), "user": USER, "mechanism": "LOGIN",
            "attempts": attempts, "refused": sum(not a["password_right"] for a in attempts),
            "accepted": sum(a["password_right"] for a in attempts)}


def run_ftp(work: Path, out: Path) -> dict:
    srv = server(PY, "-c", FTP_SERVER)
    attempts = []
    try:
        with Capture(out / "ftp-login.pcap"):
            for pw in [*WRONG[:5], PASSWORD]:
                r = ns(WS, "curl", "-s", "-S", "--max-time", "10", f"ftp://{SRV_IP}/", "--user", f"{USER}:{pw}")
                attempts.append({"password_right": pw == PASSWORD, "curl_exit": r.returncode})
    finally:
        srv.kill()
    return {"server": "pyftpdlib", "client": first_line("curl", "-V"), "user": USER, "attempts": attempts,
            "refused": sum(not a["password_right"] for a in attempts),
            "accepted": sum(a["password_right"] for a in attempts)}


def run_http(work: Path, out: Path) -> dict:
    elf = work / "update"
    shutil.copy("/bin/true", elf)
    pe = Path(next(p for p in sys.path if (Path(p) / "pip/_vendor/distlib/w64.exe").exists())) / \
        "pip/_vendor/distlib/w64.exe"
    srv = server(PY, "-c", HTTP_SERVER, str(elf), str(pe))
    codes = []
    try:
        with Capture(out / "http.pcap"):
            for pw in WRONG[:25]:
                r = ns(WS, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--user", f"admin:{pw}",
                       f"http://{SRV_IP}/admin/")
                codes.append(int(r.stdout or 0))
            for path in ("/dl/update", "/dl/invoice.pdf"):
                ns(WS, "curl", "-s", "-o", "/dev/null", f"http://{SRV_IP}{path}")
    finally:
        srv.kill()
    files = {"/dl/update": _file(elf, "elf"), "/dl/invoice.pdf": _file(pe, "pe")}
    return {"server": "python http.server", "client": first_line("curl", "-V"), "guesses": len(codes),
            "status_codes": sorted(set(codes)), "denied": codes.count(401), "downloads": files}


def _file(p: Path, kind: str) -> dict:
    data = p.read_bytes()
    return {"format": kind, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "sha1": hashlib.sha1(data).hexdigest()}


def run_ssh(work: Path, out: Path) -> dict:
    key = work / "dropbear_ed25519"
    sh("dropbearkey", "-t", "ed25519", "-f", str(key))
    srv = server("dropbear", "-F", "-E", "-s", "-p", f"{SRV_IP}:22", "-r", str(key))
    try:
        with Capture(out / "ssh.pcap"):
            ns(WS, "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "ConnectTimeout=5", f"{USER}@{SRV_IP}", "true")
            time.sleep(1)
            ns(WS, "curl", "-s", "--max-time", "10", "--insecure", "--user", f"{USER}:{WRONG[0]}", f"sftp://{SRV_IP}/")
    finally:
        srv.kill()
    return {"server": first_line("dropbear", "-V", stderr=True), "clients": [
        first_line("ssh", "-V", stderr=True), first_line("curl", "-V")]}


def first_line(*argv: str, stderr: bool = False) -> str:
    r = subprocess.run(argv, capture_output=True, text=True)
    return ((r.stderr if stderr else r.stdout) or r.stdout or r.stderr).splitlines()[0].strip()


RUNS = {"smtp-auth": run_smtp, "ftp-login": run_ftp, "http": run_http, "ssh": run_ssh}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--only", default="", help="comma list of runs")
    a = ap.parse_args()
    requirements()
    a.out.mkdir(parents=True, exist_ok=True)
    truth_file = a.out / "protocols-truth.json"
    truth = json.loads(truth_file.read_text()) if truth_file.exists() else {}
    truth.update(workstation=WS_IP, server=SRV_IP)
    runs = truth.setdefault("runs", {})
    work = Path(tempfile.mkdtemp(prefix="abfluss-protolab-"))
    try:
        up()
        for name, fn in RUNS.items():
            if a.only and name not in a.only.split(","):
                continue
            runs[name] = dict(fn(work, a.out), capture=f"{name}.pcap")
            print(name, json.dumps(runs[name])[:200])
    finally:
        down()
        shutil.rmtree(work, ignore_errors=True)
    truth_file.write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
