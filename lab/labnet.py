"""Topology of the abfluss demo lab: network namespaces, veth pairs, bridges, processes.

Everything lives in network namespaces named ``abl-*``. A router namespace holds one
bridge per segment; every host namespace hangs on one bridge through a veth pair created
directly between the two namespaces (no interface ever exists in the host's namespace).
No namespace gets a default route, no NAT, nothing is bridged to a real interface: lab
traffic can reach lab addresses only.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "abl-"  # every namespace this lab creates starts with it
NETNS_ETC = Path("/etc/netns")  # `ip netns exec` bind-mounts /etc/netns/<ns>/* over /etc


@dataclass(frozen=True)
class Segment:
    name: str  # bridge in the router is "br-<name>"
    cidr: str
    gateway: str  # the router's address on it
    side: str  # "internal" or "external"


@dataclass(frozen=True)
class Host:
    name: str  # namespace is PREFIX + name
    ip: str
    segment: str
    role: str
    dns_names: tuple[str, ...] = ()


SEGMENTS = [
    Segment("lan", "10.10.0.0/24", "10.10.0.1", "internal"),
    Segment("ext1", "198.51.100.0/24", "198.51.100.1", "external"),
    Segment("ext2", "203.0.113.0/24", "203.0.113.1", "external"),
]

HOSTS = [
    Host("ws1", "10.10.0.11", "lan", "workstation"),
    Host("ws2", "10.10.0.12", "lan", "workstation"),
    Host("srv", "10.10.0.20", "lan", "DNS server (dnsmasq)", ("intranet.lab.test",)),
    Host("web1", "198.51.100.10", "ext1", "web shop (HTTP+HTTPS)", ("www.example-shop.test",)),
    Host("web2", "203.0.113.20", "ext2", "media CDN (HTTP+HTTPS)", ("cdn.example-media.test",)),
    Host("drop", "203.0.113.50", "ext2", "file-drop service (HTTP+HTTPS upload)", ("upload.files-drop.test",)),
]

ROUTER = "rtr"
CAPTURE_BRIDGE = "br-lan"  # the router's LAN-facing interface


def ns(name: str) -> str:
    return PREFIX + name


def host(name: str) -> Host:
    return next(h for h in HOSTS if h.name == name)


def segment(name: str) -> Segment:
    return next(s for s in SEGMENTS if s.name == name)


def sh(*argv: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    """Run a command in the host's namespace (only `ip`, `ethtool`, `sysctl` plumbing)."""
    cp = subprocess.run(argv, text=True, capture_output=capture)
    if check and cp.returncode != 0:
        raise RuntimeError(f"command failed ({cp.returncode}): {' '.join(argv)}\n{cp.stderr}")
    return cp


def in_ns(name: str, *argv: str, check: bool = True, timeout: float | None = 60) -> subprocess.CompletedProcess:
    """Run a command inside lab namespace ``name`` and wait for it."""
    cp = subprocess.run(["ip", "netns", "exec", ns(name), *argv], text=True, capture_output=True, timeout=timeout)
    if check and cp.returncode != 0:
        raise RuntimeError(f"[{name}] command failed ({cp.returncode}): {' '.join(argv)}\n{cp.stderr}")
    return cp


def lab_namespaces() -> list[str]:
    out = sh("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def purge_namespace(name: str) -> None:
    """Kill what runs in a lab namespace (only ever ours: the name is ours), then delete it."""
    pids = sh("ip", "netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    for _ in range(50):
        if not sh("ip", "netns", "pids", name, check=False).stdout.split():
            break
        time.sleep(0.1)
    sh("ip", "netns", "delete", name, check=False)
    shutil.rmtree(NETNS_ETC / name, ignore_errors=True)


def purge_leftovers() -> list[str]:
    """Remove namespaces and /etc/netns entries left by an aborted earlier run."""
    gone = lab_namespaces()
    for name in gone:
        purge_namespace(name)
    if NETNS_ETC.is_dir():
        for d in NETNS_ETC.glob(PREFIX + "*"):
            shutil.rmtree(d, ignore_errors=True)
            gone.append(str(d))
    return gone


def purge_scratch(work: Path, prefix: str) -> None:
    """Remove an earlier run's leftovers: namespaces, /etc/netns entries and scratch folders."""
    gone = purge_leftovers()
    for old in Path(tempfile.gettempdir()).glob(prefix + "*"):
        if old != work:
            shutil.rmtree(old, ignore_errors=True)
            gone.append(str(old))
    if gone:
        print(f"removed leftovers of an earlier run: {', '.join(gone)}")


def tear_down(lab, work: Path) -> None:
    """Remove the lab and its scratch folder (call it from a `finally`)."""
    print("tearing down the lab ...", flush=True)
    lab.teardown()
    purge_leftovers()
    shutil.rmtree(work, ignore_errors=True)


def assert_clean() -> None:
    """Fail loudly if a namespace survived the tear-down."""
    left = lab_namespaces()
    if left:
        sys.exit(f"cleanup left namespaces behind: {left}")


def exit_on_signals() -> None:
    """SIGTERM and SIGHUP raise SystemExit, so that every `finally` tears the lab down."""
    def _raise_exit(signum, _frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)


def give_to_sudo_user(*paths: Path) -> None:
    """Files written as root under sudo belong to the user who ran sudo."""
    if os.environ.get("SUDO_UID"):
        for f in paths:
            os.chown(f, int(os.environ["SUDO_UID"]), int(os.environ.get("SUDO_GID", "0")))


OFFLOADS = ("tx", "off", "tso", "off", "gso", "off", "gro", "off")


def _no_offload(name: str, dev: str) -> None:
    # without this the capture holds 64 KB GSO super-frames and bad checksums
    in_ns(name, "ethtool", "-K", dev, *OFFLOADS, check=False)


def _new_namespace(name: str) -> None:
    sh("ip", "netns", "add", ns(name))
    for key in ("all", "default"):  # no IPv6 chatter (RS/MLD) in the capture
        in_ns(name, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1")
    sh("ip", "-n", ns(name), "link", "set", "lo", "up")


@dataclass
class Lab:
    """The running lab: build with setup(), always end with teardown()."""

    workdir: Path
    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    # ---- topology -------------------------------------------------------------------
    def setup(self) -> None:
        _new_namespace(ROUTER)
        rtr = ns(ROUTER)
        in_ns(ROUTER, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for seg in SEGMENTS:
            br = f"br-{seg.name}"
            sh("ip", "-n", rtr, "link", "add", br, "type", "bridge", "forward_delay", "0", "stp_state", "0")
            sh("ip", "-n", rtr, "addr", "add", f"{seg.gateway}/{seg.cidr.split('/')[1]}", "dev", br)
            sh("ip", "-n", rtr, "link", "set", br, "up")
        for h in HOSTS:
            self._add_host(h)
        self.check_isolation()

    def _add_host(self, h: Host) -> None:
        seg = segment(h.segment)
        _new_namespace(h.name)
        port = f"v-{h.name}"
        sh("ip", "link", "add", "eth0", "netns", ns(h.name), "type", "veth", "peer", "name", port, "netns", ns(ROUTER))
        sh("ip", "-n", ns(ROUTER), "link", "set", port, "master", f"br-{seg.name}")
        sh("ip", "-n", ns(ROUTER), "link", "set", port, "up")
        _no_offload(ROUTER, port)
        sh("ip", "-n", ns(h.name), "addr", "add", f"{h.ip}/{seg.cidr.split('/')[1]}", "dev", "eth0")
        sh("ip", "-n", ns(h.name), "link", "set", "eth0", "up")
        _no_offload(h.name, "eth0")
        for other in SEGMENTS:  # explicit lab routes only, never a default route
            if other.name != seg.name:
                sh("ip", "-n", ns(h.name), "route", "add", other.cidr, "via", seg.gateway)
        # `ip netns exec` uses this resolv.conf: LAN hosts ask the lab's dnsmasq; external hosts
        # ask nobody (127.0.0.1, nothing listens), so they never query the LAN's DNS server
        resolver = host("srv").ip if seg.side == "internal" else "127.0.0.1"
        etc = NETNS_ETC / ns(h.name)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(f"nameserver {resolver}\noptions timeout:2 attempts:1\n")

    def check_isolation(self) -> None:
        """Refuse to go on if any lab namespace could route beyond the lab."""
        for name in [ROUTER] + [h.name for h in HOSTS]:
            routes = sh("ip", "-n", ns(name), "-4", "route", "show").stdout
            for line in routes.splitlines():
                dest = line.split()[0]
                if dest == "default" or not any(dest == s.cidr for s in SEGMENTS):
                    raise RuntimeError(f"lab namespace {name} has a non-lab route: {line}")

    def teardown(self) -> None:
        for label, p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=3)
        self.procs.clear()
        for name in [h.name for h in HOSTS] + [ROUTER]:
            if ns(name) in lab_namespaces():
                purge_namespace(ns(name))
            shutil.rmtree(NETNS_ETC / ns(name), ignore_errors=True)
        try:
            NETNS_ETC.rmdir()  # only if now empty
        except OSError:
            pass

    # ---- processes ------------------------------------------------------------------
    def spawn(self, name: str, argv: list[str], label: str) -> subprocess.Popen:
        """Start a long-running process in a namespace; its output goes to workdir/<label>.log."""
        log = open(self.workdir / f"{label}.log", "w")
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns(name), *argv],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
        )
        log.close()
        self.procs.append((label, p))
        return p

    def spawn_piped(self, name: str, argv: list[str], label: str) -> subprocess.Popen:
        """Like spawn(), but stdout is a pipe the caller reads (stderr to the log)."""
        log = open(self.workdir / f"{label}.log", "w")
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns(name), *argv],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True,
        )
        log.close()
        self.procs.append((label, p))
        return p

    def stop(self, p: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 5) -> int:
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=3)
        return p.returncode

    def wait_listening(self, name: str, port: int, udp: bool = False, timeout: float = 15) -> None:
        """Wait until a socket listens in the namespace (checked with ss: no probe traffic)."""
        flag = "-Hlun" if udp else "-Hltn"
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = in_ns(name, "ss", flag, check=False).stdout
            if any(line.split()[3].endswith(f":{port}") for line in out.splitlines() if len(line.split()) > 3):
                return
            time.sleep(0.2)
        raise RuntimeError(f"nothing listens on {name}:{port} after {timeout}s; see {self.workdir}")

    # ---- capture --------------------------------------------------------------------
    def start_capture(self, pcap: Path) -> subprocess.Popen:
        p = self.spawn(ROUTER, ["tcpdump", "-i", CAPTURE_BRIDGE, "-s", "0", "-n", "-U", "-Z", "root",
                                "-w", str(pcap)], "tcpdump")
        log = self.workdir / "tcpdump.log"
        deadline = time.time() + 15
        while "listening on" not in log.read_text():
            if p.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"tcpdump did not start: {log.read_text()}")
            time.sleep(0.1)
        return p

    def stop_capture(self, p: subprocess.Popen) -> str:
        time.sleep(0.5)  # let the last packets in flight reach the bridge
        self.stop(p, signal.SIGINT)
        return (self.workdir / "tcpdump.log").read_text()
