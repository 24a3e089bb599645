#!/usr/bin/env python3
"""Real tunnel tools in the lab: iodine, dns2tcp and ptunnel-ng, captured with exact truth.

    sudo python3 lab/tunnels.py --out examples/tunnels/             # every run, a few minutes
    sudo python3 lab/tunnels.py --out /tmp/t --only iodine-txt-raw  # some runs (comma list)
    sudo python3 lab/tunnels.py --cleanup-only

Each run builds nothing new: one lab (namespaces ``abt-*``, labnet's topology plus two tunnel
servers) serves all runs; per run the tunnel server and client start, the client moves a known
number of seeded random bytes through the tunnel over TCP to a sink behind the tunnel server,
the sink confirms the count, and tcpdump on the router's LAN bridge writes ``<run>.pcap``.
``tunnels-truth.json`` says, per run, the tool and its version, the exact command lines, how
it went (resolver or straight to the server, the encodings and record types the tool chose,
from its own log), the bytes sent and received through the tunnel, and the capture.

A DoH run puts iodine (defaults) behind DNS over HTTPS: ``dnss`` on the client is the stub
iodine asks, it sends each query as an RFC 8484 request to ``https://doh.tunlab.test/dns-query``
where ``dnsdist`` (self-signed certificate) answers it from iodined on its loopback.

The tools run with their defaults and with every encoding they offer: iodine's downstream
encodings (-O Base32, Base64, Base64u, Base128, Raw) and record types (-T NULL, PRIVATE, TXT,
SRV, MX, CNAME, A), its raw UDP mode (the default when the server is reachable straight), its
upstream encoding autodetected (Base128 where the path is 8-bit clean); dns2tcp with TXT and
KEY; ptunnel-ng over ICMP. "resolver" runs go through the LAN's dnsmasq, which forwards the
tunnel zone; a firewall rule in the router then drops the client's own port-53 traffic to the
outside, as a company network does, so iodine's raw-mode probe fails and it stays in DNS.
The lab never reaches beyond its namespaces (see labnet.py); everything is removed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True  # run as root: leave no root-owned __pycache__ in lab/

import labnet  # noqa: E402

labnet.PREFIX = "abt-"  # namespaces of their own: the demo lab may run at the same time
from labnet import Host, Lab, host, in_ns  # noqa: E402

LAB_DIR = Path(__file__).resolve().parent
PY = sys.executable
WORK_PREFIX = "abfluss-tunlab-"
TRUTH_FILE = "tunnels-truth.json"
IODINE_ZONE = "t.tunlab.test"
DNS2TCP_ZONE = "d.tunlab.test"
PASSWORD = "labsecret"
IODINE_NET = ("10.53.0.1", 27)  # the tunnel's own addresses (server side .1)
SINK_PORT = 5001
DOH_NAME = "doh.tunlab.test"
DOH_BACKEND_PORT = 5300  # iodined behind dnsdist, on the DoH host's loopback
#: What abfluss cannot (yet) do with the DoH run: the tunnel is one TLS connection.
DOH_NOTE = ("no DNS name is visible: the DNS messages travel inside one TLS connection to a server that is no "
            "known DoH resolver; dns_tunnel finds the session by its shape (doh_tunnel: DNS-sized, paired, busy "
            "requests that send as much as they get back)")

TUNNEL_HOSTS = [
    Host("tun", "203.0.113.53", "ext2", "iodined and ptunnel-ng server", ("ns.tunlab.test",)),
    Host("d2t", "203.0.113.54", "ext2", "dns2tcpd", ("ns2.tunlab.test",)),
    Host("doh", "203.0.113.55", "ext2", "dnsdist DoH frontend before iodined", (DOH_NAME,)),
]
TOOLS = {"iodine": "iodine", "iodined": "iodine", "dns2tcpc": "dns2tcp", "dns2tcpd": "dns2tcp",
         "ptunnel-ng": "ptunnel-ng", "dnsmasq": "dnsmasq-base", "tcpdump": "tcpdump", "nft": "nftables",
         "ip": "iproute2", "ss": "iproute2", "ethtool": "ethtool", "softflowd": "softflowd",
         "softflowctl": "softflowd", "dnss": "dnss", "dnsdist": "dnsdist", "openssl": "openssl"}
#: Runs also exported as NetFlow v9 by softflowd (what a NetFlow-only sensor would see of them).
NETFLOW_RUNS = ("iodine-default-resolver", "iodine-default-direct", "dns2tcp-default-resolver")

# Runs: (id, tool, path, options). path "direct": the client asks the tunnel server itself.
RUNS = [
    ("iodine-default-direct", "iodine", "direct", []),  # raw UDP mode: no DNS names at all
    ("iodine-default-resolver", "iodine", "resolver", []),
    ("iodine-null-direct", "iodine", "direct", ["-r"]),
    ("iodine-private-direct", "iodine", "direct", ["-r", "-T", "PRIVATE"]),
    ("iodine-txt-raw", "iodine", "direct", ["-r", "-T", "TXT", "-O", "Raw"]),
    ("iodine-txt-base32", "iodine", "resolver", ["-T", "TXT", "-O", "Base32"]),
    ("iodine-srv-base64", "iodine", "direct", ["-r", "-T", "SRV", "-O", "Base64"]),
    ("iodine-mx-base64u", "iodine", "resolver", ["-T", "MX", "-O", "Base64u"]),
    ("iodine-cname-base128", "iodine", "direct", ["-r", "-T", "CNAME", "-O", "Base128"]),
    ("iodine-a-base32", "iodine", "resolver", ["-T", "A", "-O", "Base32"]),
    ("dns2tcp-default-resolver", "dns2tcp", "resolver", []),
    ("dns2tcp-default-direct", "dns2tcp", "direct", []),
    ("dns2tcp-key-direct", "dns2tcp", "direct", ["-T", "KEY"]),
    ("ptunnel-ng-default", "ptunnel-ng", "direct", []),
    # iodine (defaults) -> dnss (DoH client stub on ws1) -> HTTPS -> dnsdist (DoH frontend) -> iodined
    ("iodine-doh", "iodine", "doh", []),
    # iodine picks its upstream encoding from what the path lets through (no option sets it): a
    # DNS filter (dnsdist on ws1, before the LAN resolver) refusing some names leaves it another
    ("iodine-up-base32", "iodine", "filter", ["-r"]),
    ("iodine-up-base64", "iodine", "filter", ["-r"]),
    ("iodine-up-base64u", "iodine", "filter", ["-r"]),
]
#: The filter runs: bytes (a Lua pattern over the query name in wire form) dnsdist refuses. Upper
#: case letters: the path is not case-preserving (Base32); bytes above 127: not 8-bit clean
#: (Base64, iodine's next choice); those and "+" (Base64u). Filters like these are what DNS
#: firewalls enforcing host-name syntax do.
FILTERS = {"iodine-up-base32": "[A-Z]", "iodine-up-base64": "[\\128-\\255]",
           "iodine-up-base64u": "[\\128-\\255+]"}


# ---- sink and sender (run inside the namespaces as `tunnels.py sink|send`) ----------------------

def sink(bind: str, port: int) -> None:
    """Accept connections; read an 8-byte length, then that many bytes; reply with the count and
    SHA-256; print a JSON line. (A length rather than a half-close: dns2tcp and ptunnel-ng end the
    whole session when the client shuts its sending side.)"""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((bind, port))
    srv.listen(4)
    print(f"sink listening on {bind}:{port}", flush=True)
    while True:
        conn, peer = srv.accept()
        h, n, want, head = hashlib.sha256(), 0, None, b""
        while want is None or n < want:
            chunk = conn.recv(65536)
            if not chunk:
                break
            if want is None:
                head += chunk
                if len(head) < 8:
                    continue
                want, chunk = struct.unpack(">Q", head[:8])[0], head[8:]
            h.update(chunk)
            n += len(chunk)
        conn.sendall(f"{n} {h.hexdigest()}\n".encode())
        conn.close()
        print(json.dumps({"peer": list(peer), "bytes": n, "sha256": h.hexdigest()}), flush=True)


def send(to: str, port: int, n: int, seed: int, timeout: float) -> None:
    data = random.Random(seed).randbytes(n)
    t0 = time.time()
    s = socket.create_connection((to, port), timeout=timeout)
    s.settimeout(timeout)
    s.sendall(struct.pack(">Q", n) + data)
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        reply += chunk
    s.close()
    got, digest = reply.decode().split()
    print(json.dumps({"sent": n, "sha256": hashlib.sha256(data).hexdigest(), "received": int(got),
                      "received_sha256": digest, "framing_bytes": 8, "start": t0, "end": time.time()}),
          flush=True)


# ---- the lab -------------------------------------------------------------------------------------

def ensure_tools() -> None:
    if os.geteuid() != 0:
        sys.exit("tunnels.py needs root (network namespaces, tcpdump): run it with sudo")
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if missing:
        if shutil.which("apt-get") is None:
            sys.exit(f"missing Debian packages: {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env,
                       check=False)
        still = [t for t in TOOLS if shutil.which(t) is None]
        if still:
            sys.exit(f"could not install: {', '.join(still)}")
    if not Path("/dev/net/tun").exists():
        sys.exit("iodine needs /dev/net/tun")


def version(tool: str) -> str:
    argv = {"iodine": ["iodine", "-v"], "dns2tcp": ["dns2tcpc"], "ptunnel-ng": ["ptunnel-ng", "-h"]}[tool]
    out = subprocess.run(argv, capture_output=True, text=True).stdout + subprocess.run(
        argv, capture_output=True, text=True).stderr
    m = re.search(r"(?:version: |dns2tcp v|ptunnel-ng )(\S+)", out)
    pkg = {"iodine": "iodine", "dns2tcp": "dns2tcp", "ptunnel-ng": "ptunnel-ng"}[tool]
    deb = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True).stdout
    return f"{m.group(1) if m else '?'} (Debian {deb or '?'})"


def start_resolver(lab: Lab, work: Path) -> None:
    srv = host("srv")
    conf = work / "dnsmasq.conf"
    lines = ["no-resolv", "no-hosts", "no-poll", "bind-interfaces", f"listen-address={srv.ip}",
             "except-interface=lo", "user=root", "local=/test/", "cache-size=0", "log-queries", f"log-facility={work / 'dnsmasq-queries.log'}",
             f"server=/{IODINE_ZONE}/{host('tun').ip}", f"server=/{DNS2TCP_ZONE}/{host('d2t').ip}"]
    lines += [f"host-record={n},{h.ip}" for h in labnet.HOSTS for n in h.dns_names]
    conf.write_text("\n".join(lines) + "\n")
    lab.spawn("srv", ["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}"], "dnsmasq")
    lab.wait_listening("srv", 53, udp=True)


def firewall(block: bool) -> None:
    """Resolver runs: the router drops the client's own DNS to the outside (company policy)."""
    in_ns(labnet.ROUTER, "nft", "delete", "table", "inet", "labfw", check=False)
    if block:
        ws, lan = host("ws1").ip, labnet.segment("lan").cidr
        # only traffic leaving the LAN (bridged LAN traffic may pass this hook too: br_netfilter)
        rules = (f"table inet labfw {{\n chain block53 {{\n  type filter hook forward priority 0;\n"
                 f"  ip saddr {ws} ip daddr != {lan} udp dport 53 drop\n"
                 f"  ip saddr {ws} ip daddr != {lan} tcp dport 53 drop\n }}\n}}\n")
        subprocess.run(["ip", "netns", "exec", labnet.ns(labnet.ROUTER), "nft", "-f", "-"], input=rules,
                       text=True, check=True)


def wait_log(path: Path, pattern: str, proc, timeout: float) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if re.search(pattern, text):
            return text
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"{path.name}: no {pattern!r} within {timeout}s:\n{path.read_text(errors='replace')[-2000:]}")


def start_capture(lab: Lab, work: Path, rid: str):
    pcap = work / f"{rid}.pcap"
    label = f"tcpdump-{rid}"
    p = lab.spawn(labnet.ROUTER, ["tcpdump", "-i", labnet.CAPTURE_BRIDGE, "-s", "0", "-n", "-U", "-Z", "root",
                                  "-w", str(pcap)], label)
    wait_log(work / f"{label}.log", "listening on", p, 15)
    return p, pcap, work / f"{label}.log"


def stop(lab: Lab, p, sig=2) -> None:
    lab.stop(p, sig)


def send_through(lab: Lab, to: str, port: int, n: int, seed: int, timeout: float) -> dict:
    cp = in_ns("ws1", PY, str(Path(__file__).resolve()), "send", "--to", to, "--port", str(port),
               "--bytes", str(n), "--seed", str(seed), "--timeout", str(timeout), timeout=timeout * 3)
    return json.loads(cp.stdout.strip().splitlines()[-1])


def start_sink(lab: Lab, work: Path, rid: str, where: str, bind: str):
    """The sink behind the tunnel server (namespace ``where``), listening on ``bind``:SINK_PORT."""
    sk = lab.spawn(where, [PY, str(Path(__file__).resolve()), "sink", "--bind", bind, "--port", str(SINK_PORT)],
                   f"sink-{rid}")
    wait_log(work / f"sink-{rid}.log", "listening", sk, 10)
    return sk


def relay_through(lab: Lab, client_argv: list[str], label: str, local: int, servers, n: int, seed: int,
                  timeout: float) -> dict:
    """A TCP relay client on ws1 (dns2tcpc, ptunnel-ng) listening on ``local``: send the bytes
    through it, then stop it and ``servers``."""
    cl = lab.spawn("ws1", client_argv, label)
    lab.wait_listening("ws1", local)
    moved = send_through(lab, "127.0.0.1", local, n, seed, timeout)
    time.sleep(1)
    for p in (cl, *servers):
        stop(lab, p, 15)
    return moved


def tun_tx_bytes() -> int:
    """Bytes the client's tunnel interface sent: the IP packets iodine carried, retransmissions included."""
    out = in_ns("ws1", "ip", "-s", "-j", "link", "show", "dns0").stdout
    return int(json.loads(out)[0]["stats64"]["tx"]["bytes"])


def run_iodine(lab: Lab, work: Path, rid: str, path: str, opts: list[str], n: int, seed: int) -> dict:
    where = "doh" if path == "doh" else "tun"
    tun = host(where)
    # behind DoH, iodined listens on the DoH host's loopback, where dnsdist forwards to it
    listen = ["-l", "127.0.0.1", "-p", str(DOH_BACKEND_PORT)] if path == "doh" else ["-l", tun.ip]
    server_argv = ["iodined", "-f", "-c", "-P", PASSWORD, *listen, f"{IODINE_NET[0]}/{IODINE_NET[1]}",
                   IODINE_ZONE]
    srv = lab.spawn(where, server_argv, f"iodined-{rid}")
    wait_log(work / f"iodined-{rid}.log", "Listening to dns", srv, 15)
    sk = start_sink(lab, work, rid, where, IODINE_NET[0])
    starts = {"doh": start_doh, "filter": start_filter}
    extra_procs, extra = starts[path](lab, work, rid) if path in starts else ([], {})
    nameserver = {"direct": tun.ip, "resolver": host("srv").ip, "doh": "127.0.0.1", "filter": "127.0.0.1"}[path]
    client_argv = ["iodine", "-f", "-P", PASSWORD, *opts, nameserver, IODINE_ZONE]
    cl = lab.spawn("ws1", client_argv, f"iodine-{rid}")
    log = wait_log(work / f"iodine-{rid}.log", "Connection setup complete", cl, 90)
    time.sleep(1)
    before = tun_tx_bytes()
    moved = send_through(lab, IODINE_NET[0], SINK_PORT, n, seed, 120)
    time.sleep(1)
    moved["tunnel_interface_tx_bytes"] = tun_tx_bytes() - before
    stop(lab, cl, 15)
    log = (work / f"iodine-{rid}.log").read_text(errors="replace")
    for p in (*extra_procs, sk, srv):
        stop(lab, p, 15)

    def last(pattern: str):
        found = re.findall(pattern, log)
        return found[-1] if found else None

    return {"server_argv": server_argv, "client_argv": client_argv, "moved": moved, **extra, "tool_log": {
        "upstream_encoding": last(r"[Ss]witching upstream to codec (\S+)") or "Base32 (initial)",
        "downstream_encoding": last(r"[Ss]witching downstream to codec (\S+)"),
        "record_type": last(r"[Uu]sing DNS type (\S+) queries"),
        "raw_udp_mode": "raw traffic directly" in log,
        "fragment_size": last(r"[Ss]etting downstream fragment size to max (\d+)"),
    }}


def _doh_cert(work: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the DoH name (the client stub is given it as its CA)."""
    cert, key = work / "doh-cert.pem", work / "doh-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "7", "-subj", f"/CN={DOH_NAME}",
                    "-addext", f"subjectAltName=DNS:{DOH_NAME}"], check=True, capture_output=True)
    return cert, key


def start_doh(lab: Lab, work: Path, rid: str) -> tuple[list, dict]:
    """DNS over HTTPS between ws1 and the DoH host: dnss on ws1 (127.0.0.1:53, the stub iodine asks)
    sends each query as an RFC 8484 request to https://doh.tunlab.test/dns-query; dnsdist there
    answers it from iodined on its loopback. dnss looks the DoH name up at the LAN resolver."""
    doh = host("doh")
    cert, key = _doh_cert(work)
    conf = work / f"dnsdist-{rid}.conf"
    conf.write_text(f"setLocal('127.0.0.1:5399')\n"
                    f"addDOHLocal('{doh.ip}:443', '{cert}', '{key}', '/dns-query')\n"
                    f"newServer({{address='127.0.0.1:{DOH_BACKEND_PORT}', checkInterval=3600}})\n"
                    # iodined answers only its zone: no health-check query, the backend is up
                    f"getServer(0):setUp()\n")
    server_argv = ["dnsdist", "--supervised", "--disable-syslog", "-C", str(conf)]
    dd = lab.spawn("doh", server_argv, f"dnsdist-{rid}")
    lab.wait_listening("doh", 443)
    stub_argv = ["dnss", "-enable_dns_to_https", "-dns_listen_addr", "127.0.0.1:53",
                 "-https_upstream", f"https://{DOH_NAME}/dns-query", "-https_client_cafile", str(cert),
                 "-fallback_upstream", f"{host('srv').ip}:53", "-enable_cache=false", "-alsologtostderr"]
    st = lab.spawn("ws1", stub_argv, f"dnss-{rid}")
    lab.wait_listening("ws1", 53, udp=True)
    return [st, dd], {"doh_server_argv": server_argv, "doh_server_config": conf.read_text(),
                      "doh_stub_argv": stub_argv, "doh_url": f"https://{DOH_NAME}/dns-query",
                      "doh_server": doh.ip}


def start_filter(lab: Lab, work: Path, rid: str) -> tuple[list, dict]:
    """dnsdist on ws1 (127.0.0.1:53, the server iodine asks) forwarding to the LAN resolver and
    refusing the query names that hold a byte of ``FILTERS[rid]``."""
    conf = work / f"dnsdist-{rid}.conf"
    conf.write_text(f"setLocal('127.0.0.1:53')\n"
                    f"newServer({{address='{host('srv').ip}:53'}})\n"
                    "function refuse(dq)\n"
                    f"  if string.find(dq.qname:toDNSString(), '{FILTERS[rid]}') then\n"
                    "    return DNSAction.Refused, ''\n"
                    "  end\n"
                    "  return DNSAction.None, ''\n"
                    "end\n"
                    "addAction(AllRule(), LuaAction(refuse))\n")
    argv = ["dnsdist", "--supervised", "--disable-syslog", "-C", str(conf)]
    dd = lab.spawn("ws1", argv, f"dnsdist-{rid}")
    lab.wait_listening("ws1", 53, udp=True)
    return [dd], {"filter_argv": argv, "filter_config": conf.read_text(), "filter_refuses": FILTERS[rid]}


def run_dns2tcp(lab: Lab, work: Path, rid: str, path: str, opts: list[str], n: int, seed: int) -> dict:
    d2t = host("d2t")
    chroot = work / f"dns2tcp-chroot-{rid}"
    chroot.mkdir()
    conf = work / f"dns2tcpd-{rid}.conf"
    conf.write_text(f"listen = {d2t.ip}\nport = 53\nuser = root\nchroot = {chroot}\n"
                    f"domain = {DNS2TCP_ZONE}\nresources = sink:127.0.0.1:{SINK_PORT}\n")
    server_argv = ["dns2tcpd", "-F", "-d", "1", "-f", str(conf)]
    srv = lab.spawn("d2t", server_argv, f"dns2tcpd-{rid}")
    lab.wait_listening("d2t", 53, udp=True)
    sk = start_sink(lab, work, rid, "d2t", "127.0.0.1")
    nameserver = d2t.ip if path == "direct" else host("srv").ip
    local = 5004
    client_argv = ["dns2tcpc", "-z", DNS2TCP_ZONE, "-r", "sink", "-l", str(local), *opts, nameserver]
    moved = relay_through(lab, client_argv, f"dns2tcpc-{rid}", local, (sk, srv), n, seed, 180)
    return {"server_argv": server_argv, "client_argv": client_argv, "moved": moved,
            "tool_log": {"record_type": opts[1] if opts else "TXT (default)", "encoding": "base64 (dns2tcp's only)"}}


def run_ptunnel(lab: Lab, work: Path, rid: str, path: str, opts: list[str], n: int, seed: int) -> dict:
    tun = host("tun")
    in_ns("tun", "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1")  # ptunnel answers, not the kernel
    server_argv = ["ptunnel-ng", "-r127.0.0.1", f"-R{SINK_PORT}", "-v", "1"]
    srv = lab.spawn("tun", server_argv, f"ptunneld-{rid}")
    sk = start_sink(lab, work, rid, "tun", "127.0.0.1")
    time.sleep(1)
    local = 5005
    client_argv = ["ptunnel-ng", f"-p{tun.ip}", f"-l{local}", "-r127.0.0.1", f"-R{SINK_PORT}", "-v", "1", *opts]
    moved = relay_through(lab, client_argv, f"ptunnel-{rid}", local, (sk, srv), n, seed, 120)
    in_ns("tun", "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=0")
    return {"server_argv": server_argv, "client_argv": client_argv, "moved": moved,
            "tool_log": {"transport": "ICMP echo"}}


def netflow_view(lab: Lab, work: Path, out: Path, rid: str, pcap: Path) -> dict:
    """softflowd reads the run's capture and exports NetFlow v9 to loopback in the router's namespace;
    tcpdump keeps the export datagrams: ``<run>.netflow.pcap``, a capture of the exporter's stream."""
    nf = work / f"{rid}.netflow.pcap"
    label = f"tcpdump-nf-{rid}"
    cap = lab.spawn(labnet.ROUTER, ["tcpdump", "-i", "lo", "-s", "0", "-n", "-U", "-Z", "root", "-w", str(nf),
                                    "udp port 2055"], label)
    wait_log(work / f"{label}.log", "listening on", cap, 15)
    # softflowd keeps only 16 characters of the -r path (an interface name's length) and reads it
    # after changing to /: a short absolute path, removed again below. (-a, replaying the
    # capture's own clock, reads nothing in 1.1.0; the records carry the export's time.)
    short = Path(f"/tmp/abt{os.getpid() % 1000:03d}.pcap")
    shutil.copyfile(pcap, short)
    argv = ["softflowd", "-d", "-r", str(short), "-n", "127.0.0.1:2055", "-v", "9",
            "-p", str(work / f"softflowd-{rid}.pid"), "-c", str(work / f"softflowd-{rid}.ctl")]
    sf = lab.spawn(labnet.ROUTER, argv, f"softflowd-{rid}")
    ctl = work / f"softflowd-{rid}.ctl"
    deadline = time.time() + 20
    while not ctl.exists() and time.time() < deadline:
        time.sleep(0.2)
    # softflowd 1.1.0 reads the file in its event loop only when something wakes it, and never
    # exits on its own: ask for statistics until the packet count stops growing, then shut it
    # down (all flows expire and are exported)
    seen = -1
    for _ in range(60):
        time.sleep(0.5)
        stats = in_ns(labnet.ROUTER, "softflowctl", "-c", str(ctl), "statistics", check=False).stdout
        m = re.search(r"Packets processed: (\d+)", stats)
        count = int(m.group(1)) if m else -1
        if count > 0 and count == seen:
            break
        seen = count
    in_ns(labnet.ROUTER, "softflowctl", "-c", str(ctl), "shutdown", check=False)
    sf.wait(timeout=20)
    short.unlink()
    time.sleep(0.5)
    stop(lab, cap, 2)
    log = (work / f"softflowd-{rid}.log").read_text(errors="replace")
    if "Flows exported: 0" in log or not re.search(r"Flows exported: \d+", log):
        raise RuntimeError(f"softflowd exported nothing:\n{log[-1500:]}")
    shutil.copyfile(nf, out / nf.name)
    os.chmod(out / nf.name, 0o644)
    return {"pcap": nf.name, "exporter": "softflowd " + subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "softflowd"], capture_output=True, text=True).stdout,
            "argv": argv, "version": 9}


RUNNERS = {"iodine": run_iodine, "dns2tcp": run_dns2tcp, "ptunnel-ng": run_ptunnel}


def one_run(lab: Lab, work: Path, out: Path, spec, n: int, seed: int) -> dict:
    rid, tool, path, opts = spec
    print(f"[{rid}] {tool} {path} {' '.join(opts)}", flush=True)
    firewall(path in ("resolver", "doh", "filter"))  # DoH: only HTTPS leaves the LAN
    cap, pcap, caplog = start_capture(lab, work, rid)
    t0 = time.time()
    try:
        rec = RUNNERS[tool](lab, work, rid, path, opts, n, seed)
    finally:
        time.sleep(0.5)
        stop(lab, cap, 2)
        firewall(False)
    moved = rec["moved"]
    if moved["received"] != moved["sent"] or moved["received_sha256"] != moved["sha256"]:
        raise RuntimeError(f"[{rid}] the sink got {moved['received']} of {moved['sent']} bytes")
    shutil.copyfile(pcap, out / pcap.name)
    os.chmod(out / pcap.name, 0o644)
    if rid in NETFLOW_RUNS:
        rec["netflow"] = netflow_view(lab, work, out, rid, pcap)
    rec.update(id=rid, tool=tool, version=version(tool), path=path, options=opts, pcap=pcap.name,
               pcap_bytes=pcap.stat().st_size, client=host("ws1").ip,
               resolver=host("srv").ip if path in ("resolver", "filter") else None,
               server=host("d2t" if tool == "dns2tcp" else "doh" if path == "doh" else "tun").ip,
               zone=None if tool == "ptunnel-ng" else (DNS2TCP_ZONE if tool == "dns2tcp" else IODINE_ZONE),
               registered_domain=None if tool == "ptunnel-ng" else "tunlab.test",
               bytes_through_tunnel=moved["sent"],
               bytes_into_tunnel=moved.get("tunnel_interface_tx_bytes", moved["sent"] + moved["framing_bytes"]),
               capture={
                   "start": t0, "end": time.time(), "interface": labnet.CAPTURE_BRIDGE,
                   "tcpdump_stats": [ln for ln in caplog.read_text().splitlines() if "packets" in ln]},
               expected_detection="icmp_tunnel" if tool == "ptunnel-ng" else "dns_tunnel")
    if path == "doh":
        rec["detection_note"] = DOH_NOTE
    print(f"[{rid}] moved {moved['sent']} bytes; {rec['pcap_bytes']} bytes captured; {rec['tool_log']}",
          flush=True)
    return rec


def run(out: Path, only: list[str], n: int, seed: int) -> None:
    have = {h.name for h in labnet.HOSTS}
    labnet.HOSTS.extend(h for h in TUNNEL_HOSTS if h.name not in have)
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX))
    os.chmod(work, 0o755)
    lab = Lab(work)
    out.mkdir(parents=True, exist_ok=True)
    truth_path = out / TRUTH_FILE
    doc = json.loads(truth_path.read_text()) if truth_path.exists() else {"runs": {}}
    try:
        labnet.purge_scratch(work, WORK_PREFIX)
        print("building lab namespaces ...", flush=True)
        lab.setup()
        start_resolver(lab, work)
        for i, spec in enumerate(RUNS):
            if only and spec[0] not in only:
                continue
            doc["runs"][spec[0]] = one_run(lab, work, out, spec, n, seed + i)
    finally:
        labnet.tear_down(lab, work)
    labnet.assert_clean()
    doc.update(generated_by="lab/tunnels.py", generated_at=time.time(), seed=seed, field_notes={
        "bytes_through_tunnel": "application bytes the client sent through the tunnel in one TCP connection "
                                "(seeded random, incompressible), confirmed by the sink's count and SHA-256; "
                                "an 8-byte length before them (moved.framing_bytes) is not counted",
        "bytes_into_tunnel": "what entered the tunnel at the client: for iodine (an IP tunnel) the bytes its "
                             "tun interface sent (IP packets: TCP/IP headers and retransmissions included), "
                             "for dns2tcp and ptunnel-ng (TCP relays) the TCP stream with its 8-byte length",
        "tool_log": "what the tool itself reported choosing (iodine autodetects its upstream encoding)",
        "path": "resolver: through the LAN's dnsmasq, the client's own port-53 traffic to the outside "
                "dropped at the router; direct: the client asks the tunnel server itself"})
    doc["runs"] = dict(sorted(doc["runs"].items()))
    truth_path.write_text(json.dumps(doc, indent=1) + "\n")
    os.chmod(truth_path, 0o644)
    labnet.give_to_sudo_user(truth_path, *(out / r["pcap"] for r in doc["runs"].values()),
                             *(out / r["netflow"]["pcap"] for r in doc["runs"].values() if "netflow" in r))
    print(f"wrote {truth_path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd")
    s = sub.add_parser("sink")
    s.add_argument("--bind", required=True)
    s.add_argument("--port", type=int, required=True)
    c = sub.add_parser("send")
    c.add_argument("--to", required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--bytes", type=int, required=True)
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--out", type=Path, default=LAB_DIR.parent / "examples" / "tunnels")
    ap.add_argument("--only", default="", help="comma list of run ids")
    ap.add_argument("--bytes", type=int, default=40_000, help="bytes moved through each tunnel")
    ap.add_argument("--seed", type=int, default=20261206)
    ap.add_argument("--cleanup-only", action="store_true")
    a = ap.parse_args()
    if a.cmd == "sink":
        return sink(a.bind, a.port)
    if a.cmd == "send":
        return send(a.to, a.port, a.bytes, a.seed, a.timeout)
    labnet.exit_on_signals()
    ensure_tools()
    if a.cleanup_only:
        print("removed:", labnet.purge_leftovers() or "nothing")
        return
    only = [x for x in a.only.split(",") if x]
    unknown = set(only) - {r[0] for r in RUNS}
    if unknown:
        sys.exit(f"unknown runs: {', '.join(sorted(unknown))}")
    run(a.out.resolve(), only, a.bytes, a.seed)


if __name__ == "__main__":
    main()
