"""Cleartext mail and file sinks for the lab, and the clients that feed them, with exact byte counts.

    python3 labsinks.py smtp-serve --bind IP --state FILE          # minimal SMTP receiver, port 25
    python3 labsinks.py ftp-serve  --bind IP --state FILE          # minimal FTP server, port 21, PASV
    python3 labsinks.py smtp-send  --host NAME --file CSV ...      # smtplib, CSV as base64 attachment
    python3 labsinks.py ftp-put    --host NAME --file CSV          # ftplib, passive STOR

The servers implement only what smtplib/ftplib send (no TLS, no auth check: any login is
accepted), keep each received message/file in memory and, on SIGTERM, write per session the
peer, the bytes read and written on each connection and the SHA-256 of what was stored to
--state as JSON. The clients print one JSON line with their own socket's address and the
bytes they wrote. Standard library only.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import hashlib
import json
import signal
import socket
import socketserver
import sys
import threading
import time
from email.message import EmailMessage
from pathlib import Path

SESSIONS: list[dict] = []
PASV_PORTS = range(30000, 30100)  # passive-mode data ports of the FTP server


class _Conn:
    """Line I/O on a socket that counts every byte in and out."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buf, self.rx, self.tx = sock, b"", 0, 0

    def send(self, line: str) -> None:
        data = (line + "\r\n").encode()
        self.sock.sendall(data)
        self.tx += len(data)

    def readline(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                line, self.buf = self.buf, b""
                return line
            self.rx += len(chunk)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"


def _message_record(body: bytes) -> dict:
    """Size and hash of a received message and of each decoded attachment (the CSV comes back intact)."""
    msg = email.message_from_bytes(body, policy=email.policy.default)
    atts = [{"filename": p.get_filename(), "cte": p.get("Content-Transfer-Encoding"),
             "bytes": len(p.get_payload(decode=True)), "sha256": hashlib.sha256(p.get_payload(decode=True)).hexdigest()}
            for p in msg.iter_attachments()]
    return {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(), "attachments": atts}


class SMTPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        c = _Conn(self.request)
        s = {"proto": "smtp", "peer": list(self.client_address), "start": time.time(), "rcpt": [], "messages": []}
        SESSIONS.append(s)
        me = self.server.hostname
        c.send(f"220 {me} ESMTP labsinks")
        while (line := c.readline()):
            verb = line[:4].decode("ascii", "replace").upper()
            if verb in ("EHLO", "HELO"):
                c.send(f"250-{me}\r\n250-8BITMIME\r\n250 SIZE 20000000" if verb == "EHLO" else f"250 {me}")
            elif verb == "MAIL":
                s["mail_from"] = line[10:].decode(errors="replace").strip()
                c.send("250 OK")
            elif verb == "RCPT":
                s["rcpt"].append(line[8:].decode(errors="replace").strip())
                c.send("250 OK")
            elif verb == "DATA":
                c.send("354 End data with <CR><LF>.<CR><LF>")
                body = b""
                while (dl := c.readline()) not in (b".\r\n", b""):
                    body += dl[1:] if dl.startswith(b"..") else dl  # dot-unstuffing
                s["messages"].append(_message_record(body))
                c.send("250 OK queued")
            elif verb == "QUIT":
                c.send("221 Bye")
                break
            elif verb in ("RSET", "NOOP"):
                c.send("250 OK")
            else:
                c.send("502 Command not implemented")
        s.update(end=time.time(), bytes_from_client=c.rx, bytes_to_client=c.tx)


class FTPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        c = _Conn(self.request)
        s = {"proto": "ftp", "peer": list(self.client_address), "start": time.time(), "files": []}
        SESSIONS.append(s)
        pasv: socket.socket | None = None
        c.send("220 labsinks FTP")
        while (line := c.readline()):
            verb, _, arg = line.decode("utf-8", "replace").strip().partition(" ")
            verb = verb.upper()
            if verb == "USER":
                s["user"] = arg
                c.send("331 Password required")
            elif verb == "PASS":
                c.send("230 Logged in")
            elif verb in ("TYPE", "MODE", "STRU"):
                c.send("200 OK")
            elif verb == "SYST":
                c.send("215 UNIX Type: L8")
            elif verb == "PWD":
                c.send('257 "/" is the current directory')
            elif verb == "PASV":
                pasv = self._listen()
                ip, port = pasv.getsockname()
                c.send(f"227 Entering Passive Mode ({ip.replace('.', ',')},{port >> 8},{port & 255})")
            elif verb == "STOR" and pasv is not None:
                c.send("150 Opening BINARY mode data connection")
                s["files"].append(self._receive(pasv, arg))
                pasv = None
                c.send("226 Transfer complete")
            elif verb == "QUIT":
                c.send("221 Goodbye")
                break
            else:
                c.send("502 Command not implemented")
        s.update(end=time.time(), bytes_from_client=c.rx, bytes_to_client=c.tx)

    def _listen(self) -> socket.socket:
        ip = self.request.getsockname()[0]
        for port in PASV_PORTS:
            lst = socket.socket()
            try:
                lst.bind((ip, port))
            except OSError:
                lst.close()
                continue
            lst.listen(1)
            lst.settimeout(15)
            return lst
        raise RuntimeError("no free passive port")

    @staticmethod
    def _receive(lst: socket.socket, name: str) -> dict:
        data_sock, peer = lst.accept()
        lst_port = lst.getsockname()[1]
        lst.close()
        blob = b""
        while chunk := data_sock.recv(65536):
            blob += chunk
        data_sock.close()
        return {"name": name, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
                "data_peer": list(peer), "data_server_port": lst_port}


def serve(a: argparse.Namespace, handler, port: int) -> None:
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    srv = socketserver.ThreadingTCPServer((a.bind, port), handler)
    srv.daemon_threads = True
    srv.hostname = a.hostname  # the name the SMTP greeting announces
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    print(f"labsinks {handler.__name__} on {a.bind}:{port}", file=sys.stderr, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    srv.shutdown()
    Path(a.state).write_text(json.dumps(SESSIONS))


# ---- clients ----------------------------------------------------------------------------------


def smtp_send(a: argparse.Namespace) -> None:
    import smtplib

    class Counting(smtplib.SMTP):
        sent = 0

        def send(self, s):  # every command and the DATA body pass through here
            Counting.sent += len(s.encode("ascii") if isinstance(s, str) else s)
            super().send(s)

    data = Path(a.file).read_bytes()
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = a.sender, a.rcpt, a.subject
    msg.set_content("Hallo,\n\nanbei der Export wie besprochen.\n\nGruss\n")
    maintype, _, subtype = a.type.partition("/")
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=Path(a.file).name, cte="base64")
    raw = msg.as_bytes()
    start = time.time()
    with Counting(a.host, 25, local_hostname="ws1.lab.test", timeout=30) as smtp:
        local = smtp.sock.getsockname()
        remote = smtp.sock.getpeername()
        smtp.send_message(msg)
    print(json.dumps({"client_ip": local[0], "client_port": local[1], "server_ip": remote[0],
                      "server_port": remote[1], "start": start, "end": time.time(),
                      "message_bytes": len(raw), "attachment_bytes": len(data),
                      "client_sent_total": Counting.sent}), flush=True)


def ftp_put(a: argparse.Namespace) -> None:
    import ftplib

    class Counting(ftplib.FTP):
        sent = 0

        def putline(self, line):
            Counting.sent += len(line) + 2
            super().putline(line)

        def ntransfercmd(self, cmd, rest=None):
            conn, size = super().ntransfercmd(cmd, rest)
            Counting.data = conn.getsockname() + conn.getpeername()
            return conn, size

    data = Path(a.file).read_bytes()
    start = time.time()
    with Counting(a.host, timeout=30) as ftp:
        local, remote = ftp.sock.getsockname(), ftp.sock.getpeername()
        ftp.login(a.user, a.password)
        with open(a.file, "rb") as f:
            ftp.storbinary(f"STOR {Path(a.file).name}", f)
        ftp.quit()
    d = Counting.data
    print(json.dumps({"client_ip": local[0], "client_port": local[1], "server_ip": remote[0],
                      "server_port": remote[1], "start": start, "end": time.time(),
                      "control_client_sent": Counting.sent, "file_bytes": len(data),
                      "data_client_port": d[1], "data_server_port": d[3]}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("smtp-serve", "ftp-serve"):
        p = sub.add_parser(name)
        p.add_argument("--bind", required=True)
        p.add_argument("--state", required=True)
        p.add_argument("--hostname", default="localhost", help="name in the SMTP greeting")
    p = sub.add_parser("smtp-send")
    p.add_argument("--host", required=True)
    p.add_argument("--file", required=True)
    p.add_argument("--sender", default="j.doe@lab.test")
    p.add_argument("--rcpt", default="drop@mail-relay.test")
    p.add_argument("--subject", default="Export")
    p.add_argument("--type", default="text/csv", help="content type of the attachment")
    p = sub.add_parser("ftp-put")
    p.add_argument("--host", required=True)
    p.add_argument("--file", required=True)
    p.add_argument("--user", default="upload")
    p.add_argument("--password", default="upload")
    a = ap.parse_args()
    if a.cmd == "smtp-serve":
        serve(a, SMTPHandler, 25)
    elif a.cmd == "ftp-serve":
        serve(a, FTPHandler, 21)
    elif a.cmd == "smtp-send":
        smtp_send(a)
    else:
        ftp_put(a)


if __name__ == "__main__":
    main()
