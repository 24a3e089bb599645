#!/usr/bin/env python3
"""Build the abfluss demo lab, run the scenarios, capture them, write pcap + ground truth.

    sudo python3 lab/make_demo.py --out examples/

Writes <out>/demo.pcap (classic pcap, full snaplen, captured on the router's LAN bridge)
and <out>/demo-truth.json. The lab lives only in network namespaces named abl-*, with no
route to anything outside the lab; everything is removed at the end, also on failure.
See lab/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

sys.dont_write_bytecode = True  # run as root: leave no root-owned __pycache__ in lab/

import labnet  # noqa: E402
from labnet import Lab, host, in_ns  # noqa: E402
from truth import Truth  # noqa: E402

LAB_DIR = Path(__file__).resolve().parent
PY = sys.executable  # the same interpreter runs the helpers inside the namespaces

# tool -> Debian package providing it
TOOLS = {"ip": "iproute2", "ss": "iproute2", "tcpdump": "tcpdump", "dnsmasq": "dnsmasq-base",
         "openssl": "openssl", "curl": "curl", "dig": "dnsutils", "ethtool": "ethtool", "sysctl": "procps",
         "sqlite3": "sqlite3", "zip": "zip"}  # the last two write the exports of scenarios.py dlp-exports

BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

WORK_PREFIX = "abfluss-lab-"  # scratch folder in /tmp: cert, document roots, logs, pcap

KB = 1000
MB = 1000 * 1000


@dataclass
class Ctx:
    lab: Lab
    truth: Truth
    work: Path
    cert: Path


# ---- preparation ---------------------------------------------------------------------------


def ensure_tools() -> None:
    if os.geteuid() != 0:
        sys.exit("make_demo.py needs root (network namespaces, tcpdump): run it with sudo")
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    if shutil.which("apt-get") is None:
        sys.exit(f"missing tools and no apt-get to install them: {', '.join(missing)}")
    print(f"installing {' '.join(missing)} ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    cp = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)
    still = [t for t in TOOLS if shutil.which(t) is None]
    if cp.returncode != 0 or still:
        sys.exit(f"could not install the lab tools (still missing: {', '.join(still)}); "
                 f"install the Debian packages {' '.join(missing)} by hand")


def make_cert(work: Path) -> Path:
    names = [n for h in labnet.HOSTS if h.segment != "lan" for n in h.dns_names]
    cert, key = work / "cert.pem", work / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "7", "-subj", "/CN=abfluss lab",
                    "-addext", "subjectAltName=" + ",".join(f"DNS:{n}" for n in names)],
                   check=True, capture_output=True)
    return cert


def page(title: str, paragraphs: int) -> str:
    body = "\n".join(f"<p>{title}: paragraph {i}. " + "Lorem ipsum dolor sit amet. " * 12 + "</p>"
                     for i in range(paragraphs))
    return f"<!doctype html>\n<html><head><title>{title}</title></head><body><h1>{title}</h1>\n{body}\n</body></html>\n"


def make_content(work: Path) -> None:
    """Document roots of the external web hosts, and the files the clients upload."""
    def put(rel: str, data: str | bytes) -> None:
        p = work / "www" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)

    put("web1/index.html", page("Example Shop", 20))
    put("web1/products.html", page("Products", 60))
    put("web1/about.html", page("About us", 8))
    put("web1/files/catalog.pdf", os.urandom(300 * KB))
    put("web2/index.html", page("Example Media CDN", 4))
    put("web2/css/site.css", "body { font-family: sans-serif; }\n" * 200)
    put("web2/img/banner.jpg", os.urandom(200 * KB))
    put("web2/status.json", json.dumps({"status": "ok", "messages": 0}) + "\n")
    put("drop/index.html", page("Files Drop", 3))
    (work / "upload").mkdir()
    (work / "upload" / "quarterly-report.zip").write_bytes(os.urandom(2 * MB))
    (work / "upload" / "sync-blob.bin").write_bytes(os.urandom(1 * MB))


def start_services(ctx: Ctx) -> None:
    lab, work = ctx.lab, ctx.work
    srv = host("srv")
    conf = work / "dnsmasq.conf"
    lines = ["no-resolv", "no-hosts", "no-poll", "bind-interfaces", f"listen-address={srv.ip}",
             "except-interface=lo", "user=root", "local=/test/", "local-ttl=300", "log-queries",
             f"log-facility={work / 'dnsmasq-queries.log'}"]
    # host-record, not address=/name/ip: AAAA then answers NOERROR without data (address= gives
    # NXDOMAIN under local=/test/) and PTR works. A wildcard for a whole zone still wants address=.
    lines += [f"host-record={n},{h.ip}" for h in labnet.HOSTS for n in h.dns_names]
    conf.write_text("\n".join(lines) + "\n")
    lab.spawn("srv", ["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}"], "dnsmasq")
    for name in ("web1", "web2", "drop"):
        lab.spawn(name, [PY, str(LAB_DIR / "labweb.py"), "--root", str(work / "www" / name),
                         "--bind", host(name).ip, "--http", "80", "--https", "443",
                         "--cert", str(ctx.cert), "--key", str(work / "key.pem")], f"labweb-{name}")
    lab.wait_listening("srv", 53, udp=True)
    for name in ("web1", "web2", "drop"):
        lab.wait_listening(name, 80)
        lab.wait_listening(name, 443)


# ---- tools run inside the namespaces ----------------------------------------------------


def curl(ctx: Ctx, sid: str, client: str, url: str, *, kind: str, extra: tuple[str, ...] = (),
         ua: str | None = BROWSER_UA, tags: tuple[str, ...] = (), note: str = "", **more) -> dict:
    """One curl transfer = one TCP connection; recorded with curl's own byte counts."""
    argv = ["curl", "-sS", "--max-time", "30", "--cacert", str(ctx.cert), "-o", "/dev/null",
            "-w", "%{json}", *(("-A", ua) if ua else ()), *extra, url]
    start = time.time()
    cp = in_ns(client, *argv)
    end = time.time()
    w = json.loads(cp.stdout.strip().splitlines()[-1])
    if w.get("num_connects") != 1:
        raise RuntimeError(f"{sid}: expected one new connection, curl reports {w.get('num_connects')}")
    name = urlsplit(url).hostname
    return ctx.truth.add(
        id=sid, kind=kind, tool="curl", client=client, client_ip=w["local_ip"], client_port=w["local_port"],
        server_name=name, server_ip=w["remote_ip"], server_port=w["remote_port"], transport="tcp",
        protocol=w.get("scheme", urlsplit(url).scheme).lower(), method=w.get("method"), url=url,
        http_code=w.get("http_code"), start=start, end=end,
        client_sent={"request_header": w["size_request"], "body": w["size_upload"],
                     "total": w["size_request"] + w["size_upload"]},
        client_received={"response_header": w["size_header"], "body": w["size_download"],
                         "total": w["size_header"] + w["size_download"]},
        curl_times={k: w.get(k) for k in ("time_namelookup", "time_connect", "time_appconnect",
                                          "time_starttransfer", "time_total")},
        dns_names=[name], tags=list(tags), note=note, **more)


def dig(ctx: Ctx, sid: str, client: str, name: str, qtype: str = "A") -> dict:
    """A DNS look-up with the namespace's resolver (/etc/netns/<ns>/resolv.conf)."""
    port = random.randint(32768, 60999)  # pinned, so the truth knows the exact 5-tuple
    start = time.time()
    out = in_ns(client, "dig", "-b", f"{host(client).ip}#{port}", "+qr", "+tries=1", "+time=3", name, qtype).stdout
    end = time.time()
    status = re.search(r"status: (\w+)", out.split(";; Got answer:")[-1])
    server = re.search(r"SERVER: ([\d.]+)#(\d+)", out)
    qsize = re.search(r"QUERY SIZE: (\d+)", out)
    rsize = re.search(r"MSG SIZE\s+rcvd: (\d+)", out)
    answer = out.split(";; ANSWER SECTION:")[1].split("\n\n")[0] if ";; ANSWER SECTION:" in out else ""
    return ctx.truth.add(
        id=sid, kind="dns_lookup", tool="dig", client=client, client_ip=host(client).ip, client_port=port,
        server_name=None, server_ip=server.group(1) if server else None,
        server_port=int(server.group(2)) if server else 53, transport="udp", protocol="dns",
        query=name, qtype=qtype, rcode=status.group(1) if status else None,
        answers=[line.split()[-1] for line in answer.strip().splitlines()],
        start=start, end=end,
        client_sent={"total": int(qsize.group(1)) if qsize else None},
        client_received={"total": int(rsize.group(1)) if rsize else None},
        dns_names=[name])


# ---- scenarios: one function each -------------------------------------------------------------


def scenario_dns_lookups(ctx: Ctx) -> None:
    dig(ctx, "dns-1", "ws1", "www.example-shop.test")
    dig(ctx, "dns-2", "ws1", "cdn.example-media.test")
    dig(ctx, "dns-3", "ws2", "intranet.lab.test")
    dig(ctx, "dns-4", "ws2", "nothere.example-shop.test")  # NXDOMAIN


def scenario_browsing(ctx: Ctx) -> None:
    pages = [
        ("ws1", "http://www.example-shop.test/"),
        ("ws1", "http://www.example-shop.test/products.html"),
        ("ws1", "https://www.example-shop.test/about.html"),
        ("ws2", "http://cdn.example-media.test/css/site.css"),
        ("ws2", "https://cdn.example-media.test/"),
        ("ws1", "https://www.example-shop.test/"),
    ]
    for i, (client, url) in enumerate(pages, 1):
        curl(ctx, f"web-{i}", client, url, kind="http_get")
        time.sleep(0.4)


def scenario_downloads(ctx: Ctx) -> None:
    curl(ctx, "download-1", "ws2", "https://www.example-shop.test/files/catalog.pdf", kind="download",
         note="300 kB file over HTTPS")
    time.sleep(0.5)
    curl(ctx, "download-2", "ws1", "https://cdn.example-media.test/img/banner.jpg", kind="download",
         note="200 kB image over HTTPS")


def scenario_https_upload(ctx: Ctx) -> None:
    f = ctx.work / "upload" / "quarterly-report.zip"
    curl(ctx, "upload-https", "ws2", "https://upload.files-drop.test/upload", kind="upload", ua=None,
         extra=("-F", f"file=@{f}",), tags=("outbound_bulk",), file_bytes=f.stat().st_size,
         note="2 MB of random bytes as multipart/form-data over HTTPS (body includes multipart framing)")


def scenario_http_post(ctx: Ctx) -> None:
    f = ctx.work / "upload" / "sync-blob.bin"
    curl(ctx, "post-http", "ws1", "http://upload.files-drop.test/submit", kind="upload", ua=None,
         extra=("--data-binary", f"@{f}", "-H", "Content-Type: application/octet-stream"),
         tags=("outbound_bulk",), file_bytes=f.stat().st_size, note="1 MB cleartext HTTP POST")


class KeepAlive:
    """An idle HTTP keep-alive connection from ws1 that outlives the capture."""

    def __init__(self, ctx: Ctx, client: str = "ws1", name: str = "cdn.example-media.test"):
        self.ctx, self.client, self.name = ctx, client, name
        self.p = ctx.lab.spawn_piped(client, [PY, str(LAB_DIR / "labclient.py"), "keepalive", "--host", name,
                                              "--port", "80", "--requests-at", "0,12", "--keepidle", "6"], "keepalive")
        first = self.p.stdout.readline()
        if not first:
            raise RuntimeError(f"keep-alive client failed: see {ctx.work / 'keepalive.log'}")
        self.connected = json.loads(first)

    def finish(self, capture_end: float) -> dict:
        self.ctx.lab.stop(self.p)
        states = [json.loads(line) for line in self.p.stdout.read().splitlines() if line.strip()]
        seen = [s for s in [self.connected, *states] if s.get("at", s["start"]) <= capture_end and s["event"] != "closed"]
        last = seen[-1]
        closed = next((s["end"] for s in states if s["event"] == "closed"), None)
        return self.ctx.truth.add(
            id="keepalive-idle", kind="idle_keepalive", tool="labclient.py", client=self.client,
            client_ip=last["client_ip"], client_port=last["client_port"], server_name=self.name,
            server_ip=last["server_ip"], server_port=last["server_port"], transport="tcp", protocol="http",
            method="GET", url=f"http://{self.name}/status.json", start=last["start"], end=None,
            last_request_at=last.get("at"), closed_at_after_capture=closed, requests=last["requests"],
            client_sent={"total": last["sent"]}, client_received={"total": last["received"]},
            dns_names=[self.name], open_at_capture_end=True,
            note="HTTP/1.1 keep-alive; GETs at +0 s and +12 s, then idle with TCP keep-alive probes "
                 "every 6 s; closed only after the capture stopped")


# ---- orchestration ---------------------------------------------------------------------------


def run(out: Path, hold: float) -> None:
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX))
    os.chmod(work, 0o755)
    lab, truth = Lab(work), Truth()
    try:
        labnet.purge_scratch(work, WORK_PREFIX)
        make_content(work)
        ctx = Ctx(lab, truth, work, make_cert(work))
        print("building lab namespaces ...", flush=True)
        lab.setup()
        start_services(ctx)
        pcap_tmp = work / "demo.pcap"
        tcpdump = lab.start_capture(pcap_tmp)
        truth.capture = {"start": time.time(), "namespace": labnet.ns(labnet.ROUTER),
                         "interface": labnet.CAPTURE_BRIDGE, "tool": "tcpdump -s 0 (classic pcap)",
                         "sees": "everything on the LAN bridge: LAN<->LAN (DNS) and LAN<->external"}
        print("capture running; scenarios:", flush=True)
        time.sleep(1)
        scenario_dns_lookups(ctx)
        keep = KeepAlive(ctx)
        time.sleep(1)
        scenario_browsing(ctx)
        scenario_downloads(ctx)
        time.sleep(1)
        scenario_https_upload(ctx)
        time.sleep(1)
        scenario_http_post(ctx)
        while time.time() < keep.connected["start"] + hold:  # let the keep-alive idle a while
            time.sleep(0.2)
        truth.capture["end"] = time.time()
        stats = lab.stop_capture(tcpdump)
        truth.capture["tcpdump_stats"] = [ln for ln in stats.splitlines() if "packets" in ln]
        keep.finish(truth.capture["end"])
        truth.read_dnsmasq_log(work / "dnsmasq-queries.log")
        truth.notes += [
            "HTTP (port 80) flows: curl's counts equal the TCP payload bytes on the wire exactly.",
            "HTTPS flows: the wire payload is larger than curl's counts by the TLS handshake and record "
            "overhead (here about 0.65 kB client->server and 1.4-1.8 kB server->client per connection).",
            "Each curl scenario is one TCP connection (curl's num_connects == 1), preceded by the client's "
            "own A and AAAA look-ups of server_name at the lab resolver (AAAA answers NOERROR, no data).",
            "The capture starts about 1 s before the first scenario; ARP is in it, IPv6 is off in the lab.",
        ]
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pcap_tmp, out / "demo.pcap")
        truth.write(out / "demo-truth.json", "demo.pcap")
        for f in (out / "demo.pcap", out / "demo-truth.json"):
            os.chmod(f, 0o644)
        labnet.give_to_sudo_user(out / "demo.pcap", out / "demo-truth.json")
        print(f"wrote {out / 'demo.pcap'} ({(out / 'demo.pcap').stat().st_size} bytes) and {out / 'demo-truth.json'}")
    finally:
        labnet.tear_down(lab, work)
    labnet.assert_clean()


def main() -> None:
    ap = argparse.ArgumentParser(description="Generate the abfluss demo capture in a namespace lab.")
    ap.add_argument("--out", type=Path, default=LAB_DIR.parent / "examples", help="output folder")
    ap.add_argument("--hold", type=float, default=28.0,
                    help="seconds the idle keep-alive connection is open before the capture stops")
    ap.add_argument("--cleanup-only", action="store_true", help="remove lab leftovers and exit")
    a = ap.parse_args()
    labnet.exit_on_signals()
    ensure_tools()
    if a.cleanup_only:
        print("removed:", labnet.purge_leftovers() or "nothing")
        return
    run(a.out.resolve(), a.hold)


if __name__ == "__main__":
    main()
