"""Attack-chain tables for the detection benchmark: HTTP, TLS with certificates, logins, files,
software, tunnels and ARP, at a tenth of the flow count (HTTP, TLS) or less, each with one
planted positive so every detection has real work: an HTTP 401 series and an executable
fetched by curl from a bare address, an SMTP AUTH guesser, an SSH client changing version, a
self-signed certificate on a name it does not match, a GRE tunnel, an ARP scan.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from abfluss.schema import conform

US = pa.timestamp("us", tz="UTC")
T0 = 1_704_067_200_000_000
WEEK = 7 * 86400 * 1_000_000
UAS = np.array(["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
                "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 Version/17.2 Safari/605.1.15",
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36 Edg/120.0"])


def _hosts(rng, n: int, hosts: int = 2000) -> np.ndarray:
    k = rng.integers(0, hosts, n)
    return np.char.add("10.1.", np.char.add((k >> 8).astype(str), np.char.add(".", (k & 255).astype(str))))


def _servers(rng, n: int) -> np.ndarray:
    d = np.minimum(rng.zipf(1.3, n), 50_000)
    return np.char.add("203.", np.char.add(((d >> 8) & 255).astype(str), np.char.add(".", np.char.add((d & 255).astype(str), ".9"))))


def _ts(rng, n: int) -> pa.Array:
    return pa.array(T0 + np.sort(rng.integers(0, WEEK, n))).cast(US)


def _planted_ts(start_s: float, n: int, step_s: float) -> np.ndarray:
    return T0 + ((start_s + np.arange(n) * step_s) * 1_000_000).astype("int64")


def http(rng, n: int) -> pa.Table:
    srv = _servers(rng, n)
    status = np.where(rng.random(n) < 0.02, 404, 200).astype("int32")
    mime = np.where(rng.random(n) < 0.5, "text/html", "image/png")
    k = rng.integers(0, 2000, n)
    hosts = np.char.add("10.1.", np.char.add((k >> 8).astype(str), np.char.add(".", (k & 255).astype(str))))
    t = {"ts": _ts(rng, n), "uid": np.char.add("H", np.arange(n).astype(str)), "orig_h": hosts,
         "orig_p": rng.integers(1024, 65535, n).astype("int32"), "resp_h": srv, "resp_p": np.full(n, 80, "int32"),
         "method": np.full(n, "GET"), "host": np.char.add("www.", np.char.add(srv, ".example")),
         "uri": np.char.add("/p/", rng.integers(0, 100_000, n).astype(str)),
         "user_agent": UAS[k % len(UAS)],  # one browser per host: a host whose OS changes is a finding
         "request_body_len": np.zeros(n, "int64"), "response_body_len": rng.lognormal(9, 2, n).astype("int64"),
         "status_code": status, "resp_mime_types": pa.array([[m] for m in mime.tolist()], pa.list_(pa.string()))}
    k = 40  # a 401 series, then an ELF fetched by curl from a bare address
    ts = _planted_ts(2 * 86400, k + 1, 2.0)
    p = {"ts": pa.array(ts).cast(US), "uid": [f"HP{i}" for i in range(k + 1)], "orig_h": ["10.1.0.77"] * (k + 1),
         "orig_p": np.arange(k + 1, dtype="int32") + 40000, "resp_h": ["198.51.100.80"] * (k + 1),
         "resp_p": np.full(k + 1, 80, "int32"), "method": ["GET"] * (k + 1), "host": ["198.51.100.80"] * (k + 1),
         "uri": ["/admin/"] * k + ["/x/update.png"], "user_agent": ["curl/7.88.1"] * (k + 1),
         "request_body_len": np.zeros(k + 1, "int64"), "response_body_len": np.full(k + 1, 300, "int64"),
         "status_code": np.array([401] * k + [200], "int32"),
         "resp_mime_types": pa.array([["text/html"]] * k + [["application/x-executable"]], pa.list_(pa.string()))}
    return pa.concat_tables([conform("http", t), conform("http", p)])


def tls(rng, n: int) -> tuple[pa.Table, pa.Table]:
    srv = _servers(rng, n)
    ncert = 20_000
    fuid = np.char.add("FC", rng.integers(0, ncert, n).astype(str))
    ja4 = np.char.add("t13d1516h2_8daaf6152771_", rng.integers(0, 20, n).astype(str))
    t = {"ts": _ts(rng, n), "uid": np.char.add("T", np.arange(n).astype(str)), "orig_h": _hosts(rng, n),
         "orig_p": rng.integers(1024, 65535, n).astype("int32"), "resp_h": srv, "resp_p": np.full(n, 443, "int32"),
         "version": np.full(n, "TLSv13"), "server_name": np.char.add("www.", np.char.add(fuid, ".example")),
         "ja4": ja4, "established": np.ones(n, bool), "validation_status": np.full(n, "ok"),
         "cert_fuids": pa.array([[f] for f in fuid.tolist()], pa.list_(pa.string()))}
    names = np.char.add("www.", np.char.add(np.char.add("FC", np.arange(ncert).astype(str)), ".example"))
    c = {"ts": pa.array(np.full(ncert, T0)).cast(US), "fuid": np.char.add("FC", np.arange(ncert).astype(str)),
         "subject": np.char.add("CN=", names), "issuer": np.full(ncert, "CN=Example CA,O=Example"),
         "not_before": pa.array(np.full(ncert, T0 - 30 * 86400 * 1_000_000)).cast(US),
         "not_after": pa.array(np.full(ncert, T0 + 300 * 86400 * 1_000_000)).cast(US),
         "san_dns": pa.array([[x] for x in names.tolist()], pa.list_(pa.string())), "ca": np.zeros(ncert, bool)}
    pt = {"ts": pa.array(_planted_ts(3 * 86400, 1, 1)).cast(US), "uid": ["TP"], "orig_h": ["10.1.0.78"],
          "orig_p": pa.array([41000], pa.int32()), "resp_h": ["52.0.131.132"], "resp_p": pa.array([443], pa.int32()),
          "version": ["TLSv12"], "server_name": ["www.netflix.com"], "established": [True],
          "validation_status": ["self signed certificate"], "cert_fuids": pa.array([["FCP"]], pa.list_(pa.string()))}
    pc_ = {"ts": pa.array([T0]).cast(US), "fuid": ["FCP"], "subject": ["CN=evil.example"], "issuer": ["CN=evil.example"],
           "san_dns": pa.array([["evil.example"]], pa.list_(pa.string())), "ca": [False]}
    return (pa.concat_tables([conform("tls", t), conform("tls", pt)]),
            pa.concat_tables([conform("certs", c), conform("certs", pc_)]))


def logins(rng, n: int) -> pa.Table:
    ok = rng.random(n) < 0.97
    t = {"ts": _ts(rng, n), "uid": np.char.add("L", np.arange(n).astype(str)), "orig_h": _hosts(rng, n),
         "orig_p": rng.integers(1024, 65535, n).astype("int32"), "resp_h": np.full(n, "10.1.255.25"),
         "resp_p": np.full(n, 587, "int32"), "app": np.full(n, "smtp"),
         "user": np.char.add("user", rng.integers(0, 2000, n).astype(str)),
         "result": np.where(ok, "success", "failure"),
         "reply": np.where(ok, "235 2.7.0 Authentication successful", "535 5.7.8 Authentication credentials invalid"),
         "attempts": np.ones(n, "int64")}
    k = 30
    p = {"ts": pa.array(_planted_ts(4 * 86400, k, 1.0)).cast(US), "uid": [f"LP{i}" for i in range(k)],
         "orig_h": ["10.1.0.79"] * k, "orig_p": np.arange(k, dtype="int32") + 42000, "resp_h": ["80.75.42.226"] * k,
         "resp_p": np.full(k, 25, "int32"), "app": ["smtp"] * k, "user": ["info@example.org"] * k,
         "result": ["failure"] * k, "reply": ["535 5.7.8 Authentication credentials invalid"] * k,
         "attempts": np.ones(k, "int64")}
    return pa.concat_tables([conform("logins", t), conform("logins", p)])


def files(rng, n: int) -> pa.Table:
    exe = rng.random(n) < 0.001
    t = {"ts": _ts(rng, n), "uid": np.char.add("H", rng.integers(0, 1_000_000, n).astype(str)),
         "fuid": np.char.add("F", np.arange(n).astype(str)), "source": np.full(n, "http"), "tx_h": _servers(rng, n),
         "rx_h": _hosts(rng, n), "mime_type": np.where(exe, "application/x-dosexec", "image/png"),
         "filename": np.where(exe, "setup.exe", "logo.png"), "size": rng.lognormal(10, 2, n).astype("int64"),
         "executable": pa.array(np.where(exe, "pe", None).tolist(), pa.string())}
    return conform("files", t)


def software(rng, n: int) -> pa.Table:
    t = {"ts": _ts(rng, n), "host": _hosts(rng, n), "kind": np.full(n, "ssh-client"), "name": np.full(n, "OpenSSH"),
         "version": np.full(n, "OpenSSH_9.2p1 Debian-2+deb12u6")}
    p = {"ts": pa.array(_planted_ts(5 * 86400, 2, 30.0)).cast(US), "host": ["10.1.0.80"] * 2,
         "kind": ["ssh-client"] * 2, "name": ["OpenSSH", "libssh2"], "version": ["OpenSSH_9.2p1", "libssh2_1.10.0"]}
    return pa.concat_tables([conform("software", t), conform("software", p)])


def tunnels(rng, n: int) -> pa.Table:
    t = {"ts": _ts(rng, n), "uid": np.char.add("U", np.arange(n).astype(str)), "orig_h": _hosts(rng, n, 20),
         "resp_h": _servers(rng, n), "tunnel_type": np.full(n, "teredo"), "action": np.full(n, "discover"),
         "orig_p": np.full(n, 3544, "int32"), "resp_p": np.full(n, 3544, "int32")}
    p = {"ts": pa.array(_planted_ts(6 * 86400, 1, 1)).cast(US), "uid": ["UP"], "orig_h": ["10.1.0.81"],
         "resp_h": ["198.51.100.47"], "tunnel_type": ["gre"], "action": ["discover"]}
    return pa.concat_tables([conform("tunnels", t), conform("tunnels", p)])


def arp(rng, n: int) -> pa.Table:
    src = _hosts(rng, n, 250)
    mac = np.char.add("02:00:00:00:00:", np.char.zfill(np.char.mod("%x", rng.integers(0, 250, n)), 2))
    t = {"ts": _ts(rng, n), "op": np.full(n, "request"), "orig_h": src, "orig_mac": mac, "resp_h": np.full(n, "10.1.0.1"),
         "resp_mac": np.full(n, "00:00:00:00:00:00"), "eth_dst": np.full(n, "ff:ff:ff:ff:ff:ff"), "eth_src": mac,
         "gratuitous": np.zeros(n, bool)}
    k = 500
    p = {"ts": pa.array(_planted_ts(1 * 86400, k, 0.05)).cast(US), "op": ["request"] * k, "orig_h": ["10.1.0.82"] * k,
         "orig_mac": ["02:00:00:00:00:82"] * k, "resp_h": [f"10.1.{1 + i // 250}.{i % 250 + 1}" for i in range(k)],
         "resp_mac": ["00:00:00:00:00:00"] * k, "eth_dst": ["ff:ff:ff:ff:ff:ff"] * k, "eth_src": ["02:00:00:00:00:82"] * k,
         "gratuitous": np.zeros(k, bool)}
    return pa.concat_tables([conform("arp", t), conform("arp", p)])


def tables(rng, flows: int) -> dict[str, pa.Table]:
    """Every attack-chain table for a benchmark of ``flows`` flows."""
    tenth = max(1000, flows // 10)
    tls_t, certs = tls(rng, tenth)
    return {"http": http(rng, tenth), "tls": tls_t, "certs": certs, "logins": logins(rng, max(1000, flows // 100)),
            "files": files(rng, max(1000, flows // 200)), "software": software(rng, max(1000, flows // 500)),
            "tunnels": tunnels(rng, 100), "arp": arp(rng, max(1000, flows // 50))}
