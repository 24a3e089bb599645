"""The extra lab's hosts, services and captures (used by scenarios.py; the demo lab is unchanged).

New external hosts join labnet's topology before the lab is built, so they get a namespace,
a DNS record at the lab's dnsmasq and a SAN in the lab certificate like the demo's hosts.
Each scenario has its own tcpdump on the router's LAN bridge with a BPF filter that keeps
the other workstation out, so scenarios of ws1 and the beacon of ws2 can run at once.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import labnet
import pcapstats
from labnet import Host, Lab, host
from make_demo import LAB_DIR, PY, page

TUNNEL_ZONE = "t.exfil-tunnel.test"
C2_NAME = "c2.update-check.test"
INTAKE_NAME = "intake.data-collect.test"
MX_NAME = "mx.mail-relay.test"
FTP_NAME = "ftp.files-archive.test"

NEW_HOSTS = [
    Host("tdns", "203.0.113.53", "ext2", f"authoritative DNS for the tunnel zone {TUNNEL_ZONE} (labdns.py)",
         ("ns1.exfil-tunnel.test",)),
    Host("c2", "203.0.113.66", "ext2", "C2 server answering beacons over HTTPS (labweb)", (C2_NAME,)),
    Host("intake", "203.0.113.80", "ext2", "data intake web service, HTTP+HTTPS upload (labweb)", (INTAKE_NAME,)),
    Host("mx", "203.0.113.25", "ext2", "mail server, cleartext SMTP on 25 (labsinks.py)", (MX_NAME,)),
    Host("ftp", "203.0.113.21", "ext2", "FTP server, passive mode, data ports 30000-30099 (labsinks.py)",
         (FTP_NAME,)),
]
WEB_HOSTS = ("web1", "web2", "drop", "c2", "intake")

# BPF filters per workstation: the other workstation's packets (and its DNS) stay out
ONLY_WS1 = "not host " + "10.10.0.12"
ONLY_WS2 = "host " + "10.10.0.12"


def extend_topology() -> None:
    """Add the scenario hosts to labnet (idempotent); must run before make_cert() and Lab.setup()."""
    have = {h.name for h in labnet.HOSTS}
    labnet.HOSTS.extend(h for h in NEW_HOSTS if h.name not in have)


def add_content(work: Path, rng) -> None:
    """Pages and files beyond make_demo.make_content(): more to browse, the C2's and intake's roots."""
    def put(rel: str, data: bytes | str) -> None:
        p = work / "www" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)

    for i in range(1, 7):
        put(f"web1/category-{i}.html", page(f"Category {i}", 10 + 6 * i))
        put(f"web2/img/product-{i}.jpg", rng.randbytes(60_000 + 40_000 * i))
    put("web2/video/clip-1.mp4", rng.randbytes(1_500_000))
    put("web2/js/app.js", "function f(){return 1}\n" * 3000)
    put("c2/index.html", "<!doctype html><title>Update service</title>\n")
    put("intake/index.html", page("Data Intake", 2))


def start_services(lab: Lab, work: Path, cert: Path) -> dict[str, Path]:
    """dnsmasq (with the tunnel zone forwarded to its authoritative server), web servers, sinks."""
    srv = host("srv")
    conf = work / "dnsmasq.conf"
    lines = ["no-resolv", "no-hosts", "no-poll", "bind-interfaces", f"listen-address={srv.ip}",
             "except-interface=lo", "user=root", "local=/test/", "local-ttl=300", "log-queries",
             f"log-facility={work / 'dnsmasq-queries.log'}",
             # the more specific server= wins over local=/test/: the tunnel zone goes to its own server
             f"server=/{TUNNEL_ZONE}/{host('tdns').ip}"]
    lines += [f"host-record={n},{h.ip}" for h in labnet.HOSTS for n in h.dns_names]
    conf.write_text("\n".join(lines) + "\n")
    lab.spawn("srv", ["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}"], "dnsmasq")
    for name in WEB_HOSTS:
        lab.spawn(name, [PY, str(LAB_DIR / "labweb.py"), "--root", str(work / "www" / name), "--bind", host(name).ip,
                         "--http", "80", "--https", "443", "--cert", str(cert), "--key", str(work / "key.pem")],
                  f"labweb-{name}")
    states = {"tdns": work / "labdns-state.json", "mx": work / "smtp-state.json", "ftp": work / "ftp-state.json"}
    lab.spawn("tdns", [PY, str(LAB_DIR / "labdns.py"), "serve", "--bind", host("tdns").ip, "--zone", TUNNEL_ZONE,
                       "--state", str(states["tdns"])], "labdns")
    lab.spawn("mx", [PY, str(LAB_DIR / "labsinks.py"), "smtp-serve", "--bind", host("mx").ip,
                     "--hostname", MX_NAME, "--state", str(states["mx"])], "smtp")
    lab.spawn("ftp", [PY, str(LAB_DIR / "labsinks.py"), "ftp-serve", "--bind", host("ftp").ip,
                      "--state", str(states["ftp"])], "ftp")
    lab.wait_listening("srv", 53, udp=True)
    lab.wait_listening("tdns", 53, udp=True)
    for name in WEB_HOSTS:
        lab.wait_listening(name, 80)
        lab.wait_listening(name, 443)
    lab.wait_listening("mx", 25)
    lab.wait_listening("ftp", 21)
    return states


def stop_labelled(lab: Lab, label: str) -> None:
    """Stop one spawned service (SIGTERM) so it writes its state file."""
    for lbl, p in lab.procs:
        if lbl == label:
            lab.stop(p)


@dataclass
class Capture:
    """One tcpdump on the LAN bridge with a filter; its own log file, so several can run at once."""

    lab: Lab
    sid: str
    bpf: str
    pcap: Path = field(init=False)
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.pcap = self.lab.workdir / f"{self.sid}.full.pcap"
        label = f"tcpdump-{self.sid}"
        self.proc = self.lab.spawn(labnet.ROUTER, ["tcpdump", "-i", labnet.CAPTURE_BRIDGE, "-s", "0", "-n", "-U",
                                                   "-Z", "root", "-w", str(self.pcap), self.bpf], label)
        self.log = self.lab.workdir / f"{label}.log"
        deadline = time.time() + 15
        while "listening on" not in self.log.read_text():
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"tcpdump did not start: {self.log.read_text()}")
            time.sleep(0.1)
        self.info = {"start": time.time(), "namespace": labnet.ns(labnet.ROUTER), "interface": labnet.CAPTURE_BRIDGE,
                     "tool": "tcpdump -s 0 -U (classic pcap, real timestamps)", "bpf_filter": self.bpf}

    def stop(self) -> dict:
        self.info["end"] = time.time()
        time.sleep(0.5)  # the last packets in flight reach the bridge
        self.lab.stop(self.proc, 2)  # SIGINT: tcpdump flushes and prints its counters
        self.info["tcpdump_stats"] = [ln for ln in self.log.read_text().splitlines() if "packets" in ln]
        return self.info


def interval_stats(times: list[float]) -> dict:
    gaps = [b - a for a, b in zip(times, times[1:])]
    if not gaps:
        return {"n_intervals": 0}
    mean = statistics.fmean(gaps)
    sd = statistics.pstdev(gaps)
    return {"n_intervals": len(gaps), "mean_s": round(mean, 3), "median_s": round(statistics.median(gaps), 3),
            "stdev_s": round(sd, 3), "min_s": round(min(gaps), 3), "max_s": round(max(gaps), 3),
            "coefficient_of_variation": round(sd / mean, 4)}


def wire_of(conns: dict, records: list[dict]) -> None:
    """Attach the capture's payload counts to each recorded TCP/UDP event with a known 5-tuple."""
    for r in records:
        if r.get("client_port") is None or r.get("server_ip") is None:
            continue
        proto = pcapstats.UDP if r.get("transport") == "udp" else pcapstats.TCP
        c = conns.get((proto, r["client_ip"], r["client_port"], r["server_ip"], r["server_port"]))
        if c:
            r["wire"] = {"first_packet": c["first"], "syn": c["syn"], "last_packet": c["last"],
                         "payload_client_to_server": c["payload_c2s"], "payload_server_to_client": c["payload_s2c"],
                         "packets_client_to_server": c["pkts_c2s"], "packets_server_to_client": c["pkts_s2c"]}
