"""Telemetry variants of a capture for make eval: what a worse sensor would have recorded.

- ``without_dns``: every UDP/TCP port-53 packet removed (a sensor that does not see DNS);
- ``lossy``: a seeded share of packets dropped at random (a sensor that loses packets and does not
  say so: a pcap holds no loss counter, so the pipeline cannot measure it);
- ``netflow_view``: the capture as a NetFlow v9 exporter with 1-in-N packet sampling sends it.
  softflowd (Debian) reads the capture (``-r``, ``-s N``) and exports to 127.0.0.1 inside a network
  namespace of its own, where tcpdump keeps the export datagrams: a capture of the exporter's stream,
  which abfluss reads like any NetFlow export (it renormalises by the sampling interval softflowd
  announces in its options template). The namespace is removed again, also on failure.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import dpkt

NETFLOW_PORT = 2055


def _rewrite(src: Path, dst: Path, keep) -> tuple[int, int]:
    """Copy the packets ``keep(ts, buf)`` accepts; (packets read, packets kept)."""
    n = kept = 0
    with open(src, "rb") as f, open(dst, "wb") as g:
        r = dpkt.pcap.Reader(f)
        w = dpkt.pcap.Writer(g, snaplen=r.snaplen, linktype=r.datalink())
        for ts, buf in r:
            n += 1
            if keep(ts, buf):
                kept += 1
                w.writepkt(buf, ts)
    return n, kept


def without_dns(src: Path, dst: Path) -> None:
    """The capture with every UDP/TCP port-53 packet removed."""
    def keep(_ts, buf) -> bool:
        try:
            l4 = dpkt.ethernet.Ethernet(buf).data.data
            return not (isinstance(l4, (dpkt.udp.UDP, dpkt.tcp.TCP)) and 53 in (l4.sport, l4.dport))
        except Exception:  # not Ethernet/IP: keep it as it is
            return True
    _rewrite(src, dst, keep)


def lossy(src: Path, dst: Path, share: float, seed: int = 11) -> tuple[int, int]:
    """The capture with each packet dropped with probability ``share`` (seeded: the same every run)."""
    rng = random.Random(seed)
    return _rewrite(src, dst, lambda _ts, _buf: rng.random() >= share)


#: What ``netflow_view`` needs: CAP_SYS_ADMIN to build the namespace (``ip netns add``), CAP_NET_RAW
#: for tcpdump inside it. Root has both, unless a container or ``setpriv`` took them away.
NETNS_CAPS = {"CAP_SYS_ADMIN": 21, "CAP_NET_RAW": 13}


def netns_missing() -> list[str]:
    """The capabilities ``netflow_view`` needs that this process lacks (empty: it can run)."""
    try:
        status = Path("/proc/self/status").read_text()
        eff = int(re.search(r"^CapEff:\s*([0-9a-f]+)", status, re.M).group(1), 16)
    except (OSError, AttributeError):
        return list(NETNS_CAPS)
    return [name for name, bit in NETNS_CAPS.items() if not eff >> bit & 1]


def _ns(*argv: str, ns: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, **kw)


def netflow_view(src: Path, dst: Path, sampling: int) -> dict:
    """``dst``: the NetFlow v9 export stream softflowd sends for ``src`` with 1-in-``sampling`` packets.
    Returns softflowd's counters (packets processed and not sampled, flows exported). Needs root."""
    ns = f"abfluss-eval-{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="abfluss-nfview-"))
    os.chmod(work, 0o755)  # tcpdump drops to its own user before writing
    # softflowd keeps only 16 characters of the -r path (an interface name's length) and reads it
    # after changing to /: a short absolute path (16 characters)
    short = Path(f"/tmp/abe{os.getpid() % 10000:04d}.pcap")
    procs: list[subprocess.Popen] = []
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True, capture_output=True)
        cap_log = open(work / "tcpdump.log", "w")
        procs.append(subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "-i", "lo", "-s", "0", "-n", "-U",
                                       "-w", str(work / "nf.pcap"), f"udp port {NETFLOW_PORT}"],
                                      stdout=cap_log, stderr=cap_log))
        _wait(lambda: "listening on" in (work / "tcpdump.log").read_text(), "tcpdump did not start")
        shutil.copyfile(src, short)
        ctl = work / "sf.ctl"
        sf_log = open(work / "softflowd.log", "w")
        procs.append(subprocess.Popen(["ip", "netns", "exec", ns, "softflowd", "-d", "-r", str(short),
                                       "-n", f"127.0.0.1:{NETFLOW_PORT}", "-v", "9", "-s", str(sampling),
                                       "-p", str(work / "sf.pid"), "-c", str(ctl)], stdout=sf_log, stderr=sf_log))
        _wait(ctl.exists, "softflowd did not start")
        # softflowd 1.1.0 reads the file in its event loop; it exits when done with some files and
        # waits forever with others: ask for statistics until it is gone or the packet count stops
        # growing, then shut it down (every flow is expired and exported)
        seen, stats = -1, ""
        for _ in range(120):
            time.sleep(0.3)
            if procs[1].poll() is not None:
                break
            out = _ns("softflowctl", "-c", str(ctl), "statistics", ns=ns).stdout
            m = re.search(r"Packets processed: (\d+)", out)
            count = int(m.group(1)) if m else -1
            stats = out if m else stats
            if count > 0 and count == seen:
                break
            seen = count
        if procs[1].poll() is None:
            _ns("softflowctl", "-c", str(ctl), "shutdown", ns=ns)
        procs[1].wait(timeout=20)
        time.sleep(1.5)  # tcpdump writes what it has received before it stops
        procs[0].send_signal(signal.SIGINT)
        procs[0].wait(timeout=10)
        log = (work / "softflowd.log").read_text(errors="replace")
        exported = re.search(r"Flows exported: (\d+)", log)
        if not exported or exported.group(1) == "0":
            raise RuntimeError(f"softflowd exported nothing:\n{log[-1500:]}")
        shutil.copyfile(work / "nf.pcap", dst)
        final = log if "Packets processed" in log else stats  # its summary at exit, else the last query
        num = lambda pat: int(m.group(1)) if (m := re.search(pat, final)) else None  # noqa: E731
        return {"sampling": sampling, "packets_sampled": num(r"Packets processed: (\d+)"),
                "packets_not_sampled": num(r"Packets non-sampled: (\d+)"), "flows_exported": int(exported.group(1))}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        short.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)


def _wait(cond, what: str, timeout: float = 20) -> None:
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise RuntimeError(what)
        time.sleep(0.1)
