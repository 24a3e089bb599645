"""Generators of large synthetic inputs for the benchmarks (built from real captures, shifted)."""

from __future__ import annotations

from pathlib import Path

import dpkt

#: An ordinary mix: HTTPS, HTTP, SSH, DNS look-ups.
MIXED = ("slips/test-cc/test-cc-capture-1.pcap", "zeek-traces/206_example_b.pcap",
         "zeek-traces/bro.org.pcap", "zeek-traces/wikipedia.pcap", "zeek-traces/ssh.pcap",
         "zeek-traces/m57-long-49583-80.pcap")
#: The same plus a DNS tunnel: about a third of all packets are DNS messages to decode.
DNS_HEAVY = MIXED + ("dns-tunnel/netrack-dns2tcp/dns2tcp-2018-03-23.pcap",)


def mixed_pcap(data: Path, out: Path, packets: int, sources=MIXED) -> int:
    """Write ``packets`` Ethernet packets: real captures replayed again and again, each round with
    its IPv4 addresses' third octet changed and its time shifted, so every round makes new flows."""
    pkts = []
    for rel in sources:
        with open(data / rel, "rb") as f:
            r = dpkt.pcap.Reader(f)
            if r.datalink() != dpkt.pcap.DLT_EN10MB:
                continue
            t0 = None
            for ts, buf in r:
                t0 = ts if t0 is None else t0
                pkts.append((ts - t0, buf))
    pkts.sort(key=lambda p: p[0])
    written, rnd = 0, 0
    with open(out, "wb") as f:
        w = dpkt.pcap.Writer(f, snaplen=65535)
        while written < packets:
            base = 1_700_000_000 + rnd * 700.0
            for rel_ts, buf in pkts:
                if written >= packets:
                    break
                b = bytearray(buf)
                if len(b) >= 34 and b[12:14] == b"\x08\x00":  # IPv4: vary src/dst third octet per round
                    b[28] = (b[28] + rnd) % 256
                    b[32] = (b[32] + rnd) % 256
                    b[24:26] = b"\x00\x00"  # header checksum is not checked by the meters
                w.writepkt(bytes(b), ts=base + rel_ts)
                written += 1
            rnd += 1
    return written


def conn_log(out: Path, rows: int, hosts: int = 2000, dests: int = 50_000) -> None:
    """A Zeek conn.log TSV with ``rows`` rows (numpy-generated, written in chunks)."""
    import numpy as np

    fields = ("ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto service duration orig_bytes "
              "resp_bytes conn_state local_orig local_resp missed_bytes history orig_pkts orig_ip_bytes "
              "resp_pkts resp_ip_bytes tunnel_parents").split()
    types = ("time string addr port addr port enum string interval count count string bool bool count "
             "string count count count count set[string]").split()
    rng = np.random.default_rng(7)
    with open(out, "w") as f:
        f.write("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n"
                "#open\t2024-01-01-00-00-00\n#fields\t" + "\t".join(fields) + "\n#types\t" + "\t".join(types) + "\n")
        chunk = 500_000
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            ts = 1704067200 + (start + np.arange(n)) * (86400 * 7 / rows)
            h = rng.integers(0, hosts, n)
            d = rng.integers(0, dests, n)
            ob = rng.lognormal(7, 2, n).astype(np.int64)
            rb = rng.lognormal(9, 2, n).astype(np.int64)
            dur = rng.exponential(20, n)
            lines = [
                f"{ts[i]:.6f}\tC{start + i:x}\t10.{h[i] >> 8}.{h[i] & 255}.{(h[i] * 7) & 255}\t{40000 + i % 20000}\t"
                f"{(d[i] >> 16) + 20}.{(d[i] >> 8) & 255}.{d[i] & 255}.7\t443\ttcp\tssl\t{dur[i]:.6f}\t{ob[i]}\t{rb[i]}\t"
                f"SF\tT\tF\t0\tShADadFf\t{10 + ob[i] // 1400}\t{ob[i] + 520}\t{10 + rb[i] // 1400}\t{rb[i] + 520}\t(empty)\n"
                for i in range(n)]
            f.write("".join(lines))
        f.write("#close\t2024-01-08-00-00-00\n")




#: The real Zeek TSV logs the hourly directory is built from (RITA's proxy test logs).
ZEEK_HOURLY = ("conn", "dns", "http", "ssl", "files")


def zeek_hourly_dir(data: Path, out: Path, days: int = 3, records: int = 130_390) -> int:
    """A Zeek log directory as a sensor rotates it: ``days`` day folders of hourly gzipped logs
    (conn, dns, http, ssl, files: ``days`` × 24 × 5 files, about ``records`` records in all),
    each hour the real rows of ``rita/proxy`` again with their times moved into that hour."""
    import gzip

    logs = {}
    for kind in ZEEK_HOURLY:
        lines = (data / "rita" / "proxy" / f"{kind}.log").read_text().splitlines()
        head = [x for x in lines if x.startswith("#") and not x.startswith("#close")]
        logs[kind] = (head, [x.split("\t", 1)[1] for x in lines if x and not x.startswith("#")])
    files = days * 24 * len(ZEEK_HOURLY)
    per_file, extra = max(1, records // files), max(0, records - records // files * files)
    written = index = 0
    t0 = 1_714_521_600  # 2024-05-01T00:00Z
    for hour in range(days * 24):
        start = t0 + hour * 3600
        folder = out / time_name(start, "%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        for kind, (head, rows) in logs.items():
            n = per_file + (index < extra)
            index += 1
            body = [f"{start + i * 3600 / n:.6f}\t{rows[(hour * 131 + i) % len(rows)]}" for i in range(n)]
            name = f"{kind}.{time_name(start, '%H:00:00')}-{time_name(start + 3600, '%H:00:00')}.log.gz"
            text = "\n".join(head + body + [f"#close\t{time_name(start + 3600, '%Y-%m-%d-%H-%M-%S')}"]) + "\n"
            (folder / name).write_bytes(gzip.compress(text.encode(), 6, mtime=0))
            written += n
    return written


def time_name(ts: float, fmt: str) -> str:
    import time

    return time.strftime(fmt, time.gmtime(ts))
