"""Payload inspection end to end (abfluss.dlp.inspect with the real scanner), its ingest, and the
leak test: nothing raw of a capture full of identifiers may reach the workspace or any output."""

from __future__ import annotations

import base64
import gzip
import json
import random
import stat
import struct
import tempfile
from pathlib import Path

import dpkt
import duckdb
import pyarrow.parquet as pq
import pytest

import abfluss
from abfluss.dlp import identifiers as ids
from abfluss.dlp.inspect import InspectionError, Settings, inspect_pcap

from conftest import data, run_cli
from test_dlp_streams import Capture, Conn

KEY = bytes(range(32))
HOST, DEST = ("10.10.0.11", 50000), ("203.0.113.50", 80)


# -- values ------------------------------------------------------------------------------

def _valid(rng: random.Random, make, ok) -> str:
    while True:
        head = make(rng)
        for d in "0123456789":
            if ok(head + d):
                return head + d


def _digits(rng, n):
    return "".join(rng.choice("0123456789") for _ in range(n))


def values(n: int, seed: int = 1) -> dict[str, list[str]]:
    """``n`` distinct valid values per category (check digits computed, not copied)."""
    rng = random.Random(seed)
    gen = {
        "kvnr": lambda: _valid(rng, lambda r: r.choice("ABCDEFGHJKLMNPRSTUVW") + _digits(r, 8), ids.is_kvnr),
        "ik": lambda: _valid(rng, lambda r: "10" + _digits(r, 6), ids.is_ik),
        "iban": lambda: _valid(rng, lambda r: "DE", lambda v: False) if False else _iban(rng),
        "idnr": lambda: _valid(rng, lambda r: r.choice("123456789") + "".join(r.sample("0123456789", 8)) + "5",
                               ids.is_idnr),
        "rvnr": lambda: _valid(rng, lambda r: f"{r.randrange(12, 80)}{r.randrange(1, 28):02d}{r.randrange(1, 13):02d}"
                               f"{r.randrange(40, 99)}{r.choice('ABCDEFGHKLMNPRSTW')}{_digits(r, 2)}", ids.is_rvnr),
        "icd10": lambda: f"{rng.choice('ABCDEFGIJKMNST')}{rng.randrange(10, 99)}.{rng.randrange(0, 9)}",
        "email": lambda: f"p{rng.randrange(10**8)}.m{rng.randrange(1000)}@praxis-{rng.randrange(10**4)}.de",
        "phone": lambda: f"+49 201 {rng.randrange(10**6, 10**7)}",
    }
    out = {}
    for cat, g in gen.items():
        seen: list[str] = []
        while len(seen) < n:
            v = g()
            if v not in seen:
                seen.append(v)
        out[cat] = seen
    return out


def _iban(rng) -> str:
    bban = _digits(rng, 18)
    check = 98 - int(bban + "131400") % 97  # D=13, E=14, check digits 00
    return f"DE{check:02d}{bban}"


def run(cap: Capture, **settings):
    """Inspection of a synthetic capture (written to a private temporary file)."""
    with tempfile.TemporaryDirectory() as tmp:
        return inspect_pcap(cap.write(Path(tmp) / "cap.pcap"), KEY, Settings(**settings))


def found(result, category: str | None = None) -> dict:
    """{(category, hmac): hits} of a result's dlp rows (masked forms may collide, hashes do not)."""
    out: dict = {}
    for r in result.dlp.to_pylist():
        if category in (None, r["category"]):
            out[(r["category"], r["hmac"])] = out.get((r["category"], r["hmac"]), 0) + r["hits"]
    return out


def masked(result) -> list[str]:
    return sorted(r["masked"] for r in result.dlp.to_pylist())


# -- TCP stream properties -----------------------------------------------------------------

def test_value_split_across_two_segments_is_found_once():
    cap = Capture()
    c = Conn(cap, HOST, ("203.0.113.50", 9000))
    c.put([(1001, b"Versichertennummer: A1234"), (1026, b"56780 Ende\n")])
    c.next[True] = 1037
    c.close()
    res = run(cap)
    assert masked(res) == ["A12******0"] and list(found(res).values()) == [1]
    assert res.dlp["anchored"].to_pylist() == [True]
    (side,) = res.inspected.to_pylist()
    assert (side["payload_bytes"], side["scanned_bytes"], side["gaps"], side["app"]) == (36, 36, 0, "raw")


def test_retransmitted_and_out_of_order_segments_count_once():
    text = b"".join(b"kvnr;%s\n" % k.encode() for k in values(20)["kvnr"])
    cap = Capture()
    c = Conn(cap, HOST, ("203.0.113.50", 9000))
    segs = c.segments(text, size=37)
    order = segs[::-1] + segs[3:9]  # all in reverse, then six sent again
    c.put(order)
    c.close()
    res = run(cap)
    assert len(found(res)) == 20 and set(found(res).values()) == {1}
    (side,) = res.inspected.to_pylist()
    assert (side["payload_bytes"], side["gaps"]) == (len(text), 0)


def test_missing_segment_is_a_gap_and_values_around_it_are_found():
    v = values(3)["kvnr"]
    cap = Capture()
    c = Conn(cap, HOST, ("203.0.113.50", 9000))
    segs = c.segments(f"KVNR {v[0]}\n{'x' * 23}\nKVNR {v[1]}\n{'y' * 40}\nKVNR {v[2]}\n".encode(), size=20)
    c.put(segs[:2] + segs[3:])  # the third segment (bytes 40-59: the second line) never arrives
    c.close()
    res = run(cap)
    (side,) = res.inspected.to_pylist()
    assert side["gaps"] == 20 and side["payload_bytes"] == sum(len(d) for _, d in segs) - 20
    assert masked(res) == sorted(f"{x[:3]}******{x[-1]}" for x in (v[0], v[2]))


def test_buffered_bytes_per_flow_are_capped():
    cap = Capture()
    c = Conn(cap, HOST, ("203.0.113.50", 9000))
    segs = c.segments(b"z" * 5000, size=100)
    c.put(segs[1:])  # the first never comes: everything after it waits
    c.close()
    res = run(cap, max_buffered_bytes=1000)
    (side,) = res.inspected.to_pylist()
    assert (side["payload_bytes"], side["gaps"]) == (4900, 100)


def test_ports_reused_for_a_new_connection_make_a_new_flow():
    v = values(2)["kvnr"]
    cap = Capture()
    for i, t0 in enumerate((1_700_000_000.0, 1_700_000_001.0)):  # same 5-tuple, new ISNs
        c = Conn(cap, HOST, ("203.0.113.50", 9000), t0=t0, isn=(1000 + 7919 * i, 5000 + 104729 * i))
        c.send(f"KVNR {v[i]}\n".encode())
        c.close()
    res = run(cap)
    assert [r["ts"].timestamp() for r in res.inspected.to_pylist()] == [1_700_000_000.001, 1_700_000_001.001]
    assert [r["hits"] for r in res.dlp.to_pylist()] == [1, 1] and len(set(res.dlp["hmac"].to_pylist())) == 2


# -- protocols -----------------------------------------------------------------------------

def test_chunked_gzip_http_post_with_a_csv():
    v = values(150)
    csv = "kvnr;ik;iban\n" + "".join(f"{k};{i};{b}\n" for k, i, b in zip(v["kvnr"], v["ik"], v["iban"]))
    body = gzip.compress(csv.encode())
    wire = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 700]), body[i:i + 700]) for i in range(0, len(body), 700))
    req = (b"POST /up HTTP/1.1\r\nHost: upload.files-drop.test\r\nTransfer-Encoding: chunked\r\n"
           b"Content-Encoding: gzip\r\nContent-Type: text/csv\r\n\r\n") + wire + b"0\r\n\r\n"
    cap = Capture()
    c = Conn(cap, HOST, DEST)
    c.send(req)
    c.close()
    res = run(cap, chunk_bytes=2048)  # many chunks: the CSV header must anchor the IKs in all of them
    counts = {cat: len(found(res, cat)) for cat in ("kvnr", "ik", "iban")}
    assert counts == {"kvnr": 150, "ik": 150, "iban": 150}
    assert all(r["anchored"] for r in res.dlp.to_pylist())
    (side,) = res.inspected.to_pylist()
    assert (side["app"], side["payload_bytes"], side["encrypted"]) == ("http", len(req), False)


def test_multipart_upload_with_base64_file_and_latin1_text():
    v = values(5)
    part = base64.encodebytes(("Versichertennummer;Name\n" + "".join(f"{k};X\n" for k in v["kvnr"])).encode())
    latin = f"Patient Müller, Steuer-ID {v['idnr'][0]}, Größe 1,80".encode("latin-1")
    body = (b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.csv\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + part + b"\r\n--B\r\n"
            b"Content-Disposition: form-data; name=\"note\"\r\n\r\n" + latin + b"\r\n--B--\r\n")
    req = b"POST /f HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: %d\r\n\r\n" % len(body)
    cap = Capture()
    c = Conn(cap, HOST, DEST)
    c.send(req + body, size=300)
    c.close()
    res = run(cap)
    assert len(found(res, "kvnr")) == 5 and len(found(res, "idnr")) == 1


def test_utf8_and_latin1_give_the_same_hash():
    v = values(1)["kvnr"][0]
    hashes = []
    for enc in ("utf-8", "latin-1"):
        cap = Capture()
        c = Conn(cap, HOST, ("203.0.113.50", 9000))
        c.send(f"Versichertennummer für Jürgen Öztürk: {v}\n".encode(enc))
        c.close()
        (row,) = run(cap).dlp.to_pylist()
        assert row["anchored"]
        hashes.append(row["hmac"])
    assert hashes[0] == hashes[1]


def test_smtp_quoted_printable_body_and_base64_attachment():
    v = values(3)
    qp = f"Versichertennummer {v['kvnr'][0][:6]}=\r\n{v['kvnr'][0][6:]} und IBAN {v['iban'][0]}".encode()
    att = base64.encodebytes(f"kvnr;rvnr\n{v['kvnr'][1]};{v['rvnr'][0]}\n".encode()).replace(b"\n", b"\r\n")
    mail = (b"From: a@praxis-a.de\r\nTo: b@kasse-b.de\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"M\"\r\n\r\n--M\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + qp + b"\r\n--M\r\n"
            b"Content-Type: text/csv\r\nContent-Transfer-Encoding: base64\r\n\r\n" + att + b"--M--\r\n")
    cap = Capture()
    c = Conn(cap, ("10.10.0.12", 41000), ("198.51.100.25", 25))
    c.send(b"220 mx\r\n", from_client=False)
    c.send(b"EHLO ws\r\nMAIL FROM:<a@praxis-a.de>\r\nRCPT TO:<b@kasse-b.de>\r\nDATA\r\n")
    c.send(b"354 go\r\n", from_client=False)
    c.send(mail + b"\r\n.\r\nQUIT\r\n", size=200)
    c.close()
    res = run(cap)
    orig = [r for r in res.dlp.to_pylist() if r["sender"] == "orig"]
    cats = sorted((r["category"], r["masked"]) for r in orig)
    assert cats == sorted([("kvnr", f"{v['kvnr'][0][:3]}******{v['kvnr'][0][-1]}"),
                           ("kvnr", f"{v['kvnr'][1][:3]}******{v['kvnr'][1][-1]}"),
                           ("iban", f"{v['iban'][0][:3]}{'*' * 18}{v['iban'][0][-1]}"),
                           ("rvnr", f"{v['rvnr'][0][:3]}********{v['rvnr'][0][-1]}"),
                           ("email", "a***@p***.de"), ("email", "b***@k***.de")])
    assert {r["app"] for r in orig} == {"smtp"}


def test_ftp_data_connection():
    v = values(4)["kvnr"]
    cap = Capture()
    ctl = Conn(cap, ("10.10.0.13", 42000), ("203.0.113.21", 21))
    ctl.send(b"220 ftp\r\n", from_client=False)
    ctl.send(b"USER u\r\nEPSV\r\n")
    ctl.send(b"229 Entering Extended Passive Mode (|||40001|)\r\n", from_client=False)
    ctl.send(b"STOR liste.csv\r\n")
    dc = Conn(cap, ("10.10.0.13", 42001), ("203.0.113.21", 40001), t0=1_700_000_002.0)
    dc.send(("kvnr\n" + "\n".join(v) + "\n").encode())
    dc.close()
    ctl.close()
    res = run(cap)
    rows = res.dlp.to_pylist()
    assert len(rows) == 4 and {(r["app"], r["resp_p"], r["sender"]) for r in rows} == {("ftp-data", 40001, "orig")}


def test_tls_looking_stream_is_not_read_but_counted_as_encrypted():
    v = values(10)["kvnr"]
    clear = "".join(f"Versichertennummer {k}\n" for k in v).encode()
    cap = Capture()
    c = Conn(cap, HOST, ("203.0.113.50", 443))
    c.send(b"\x16\x03\x01\x02\x00" + clear)
    c.send(b"\x16\x03\x03\x00\x40" + clear, from_client=False)
    c.close()
    res = run(cap)
    assert res.dlp.num_rows == 0
    assert sorted((r["sender"], r["app"], r["encrypted"], r["payload_bytes"], r["scanned_bytes"])
                  for r in res.inspected.to_pylist()) == [
        ("orig", "tls", True, len(clear) + 5, 0), ("resp", "tls", True, len(clear) + 5, 0)]


def test_with_internal_networks_only_what_internal_hosts_send_is_read():
    v = values(3)["kvnr"]
    text = "".join(f"KVNR {k}\n" for k in v).encode()
    cap = Capture()
    c = Conn(cap, ("10.10.0.11", 50000), ("203.0.113.50", 80))  # an upload and a download
    c.send(b"POST /a HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(text), text))
    c.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(text), text), from_client=False)
    c.close()
    ctl = Conn(cap, ("10.10.0.13", 42000), ("203.0.113.21", 21), t0=1_700_000_001.0)  # passive FTP upload
    ctl.send(b"227 Entering Passive Mode (203,0,113,21,156,65)\r\n", from_client=False)
    dc = Conn(cap, ("10.10.0.13", 42001), ("203.0.113.21", 156 * 256 + 65), t0=1_700_000_002.0)
    dc.send(text)
    dc.close()
    ctl.close()
    res = run(cap, internal_networks=("10.0.0.0/8",))
    rows = sorted((r["resp_p"], r["sender"], r["app"], r["scanned_bytes"] > 0) for r in res.inspected.to_pylist())
    assert rows == [(21, "resp", "ftp", False), (80, "orig", "http", True), (80, "resp", "http", False),
                    (40001, "orig", "ftp-data", True)]  # the 227 reply was parsed, not scanned
    assert sorted((r["resp_p"], r["sender"]) for r in res.dlp.to_pylist()) == [(80, "orig")] * 3 + [(40001, "orig")] * 3



def test_a_gap_on_a_side_that_is_not_read_keeps_it_unread():
    """A lost segment on a side parsed for its protocol records only (a download with internal
    networks set; every side without a key) once switched it to raw reading into the detectors:
    the download's values were scanned, and without a key the whole pass failed (TypeError), so
    ``--no-inspect`` lost the capture's HTTP records (examples/lab-big-upload.pcap)."""
    v = values(2)["kvnr"]
    cap = Capture()
    c = Conn(cap, ("10.10.0.11", 50000), ("203.0.113.50", 80))
    c.send(b"GET /a HTTP/1.1\r\nHost: example.org\r\n\r\n")
    body = ("x" * 60 + "\n" + "".join(f"KVNR {k}\n" for k in v)).encode()
    segs = c.segments(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body), False, size=40)
    c.put(segs[:1] + segs[2:], from_client=False)  # the second segment never arrives
    c.close()
    res = run(cap, internal_networks=("10.0.0.0/8",))
    resp = [r for r in res.inspected.to_pylist() if r["sender"] == "resp"]
    assert [(r["gaps"], r["scanned_bytes"]) for r in resp] == [(40, 0)] and res.dlp.num_rows == 0
    with tempfile.TemporaryDirectory() as tmp:
        plain = inspect_pcap(cap.write(Path(tmp) / "cap.pcap"), None)
    assert plain.records["http"].to_pylist()[0]["uri"] == "/a"
    lab = inspect_pcap(Path(__file__).resolve().parents[1] / "examples" / "lab-big-upload.pcap", None)
    assert lab.records["http"].num_rows == 1


# -- real captures -------------------------------------------------------------------------

def sides(rel: str):
    res = inspect_pcap(data(rel), KEY)
    return res, sorted((r["resp_p"], r["sender"], r["app"], r["payload_bytes"], r["scanned_bytes"], r["gaps"],
                        r["encrypted"]) for r in res.inspected.to_pylist())


def test_real_http_post_large():
    res, got = sides("zeek-traces/http-post-large.pcap")
    # the byte counts are NFStream's (tests/test_reader_pcap.py): reassembly loses nothing
    # (scanned: the URL-encoded form decoded, the heads without their CRs)
    assert got == [(80, "orig", "http", 61907, 60593, 0, False), (80, "resp", "http", 60478, 60476, 0, False),
                   (5000, "orig", "http", 61917, 60603, 0, False), (5000, "resp", "http", 60478, 60476, 0, False)]
    assert res.dlp.num_rows == 0  # Lorem ipsum


def test_real_multipart_form_data():
    res, got = sides("zeek-traces/multipart-form-data.pcap")
    assert got == [(8000, "orig", "http", 1429, 1421, 0, False)] and res.dlp.num_rows == 0


def test_real_smtp_session():
    res, got = sides("suricata-verify/mta-smtp/10.7.29.101_49898-178.63.41.150_25.pcap")
    assert got == [(25, "orig", "smtp", 114478, 86657, 0, False), (25, "resp", "smtp", 757, 757, 0, False)]
    assert sorted((r["sender"], r["masked"], r["hits"]) for r in res.dlp.to_pylist()) == [
        ("orig", "d***@d***.com", 1), ("orig", "m***@a***.ch", 5), ("orig", "s***@g***.com", 1),
        ("orig", "u***@g***.com", 1), ("resp", "m***@a***.ch", 1), ("resp", "s***@g***.com", 2),
        ("resp", "u***@g***.com", 1)]


def test_a_truncated_capture_is_inspected_up_to_the_cut(tmp_path):
    raw = data("zeek-traces/http-post-large.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(raw[:len(raw) * 5 // 8])  # ends inside the first 32 KB packet of the second upload
    res = inspect_pcap(cut, KEY)
    assert [(r["resp_p"], r["sender"], r["payload_bytes"]) for r in res.inspected.to_pylist()] == [
        (80, "orig", 61907), (80, "resp", 60478)]  # the first connection whole, the second had no payload yet
    with pytest.raises(InspectionError, match=r"cannot read"):
        inspect_pcap(tmp_path / "missing.pcap", KEY)


@pytest.mark.parametrize("rel", ["zeek-traces/wikipedia.pcap", "zeek-traces/bro.org.pcap",
                                 "zeek-traces/m57-long-49583-80.pcap", "zeek-traces/206_example_b.pcap",
                                 "zeek-traces/putty-upload.pcap", "zeek-traces/pe.pcap",
                                 "zeek-traces/irc-dcc-send.pcapng"])
def test_benign_captures_have_no_strong_identifiers(rel):
    res = inspect_pcap(data(rel), KEY)
    assert res.inspected.num_rows > 0
    assert {r["category"] for r in res.dlp.to_pylist()} <= {"email", "phone"}


@pytest.mark.parametrize("rel, app", [("zeek-traces/tls-1.2-stream-keylog.pcap", "tls"),
                                      ("slips/test-cc/test-cc-capture-1.pcap", "tls"),
                                      ("zeek-traces/chromium-115.0.5790.110-google-de-fragmented.pcap", "quic")])
def test_encrypted_captures_are_only_counted(rel, app):
    res = inspect_pcap(data(rel), KEY)
    rows = res.inspected.to_pylist()
    assert res.dlp.num_rows == 0 and {(r["app"], r["encrypted"], r["scanned_bytes"]) for r in rows} == {(app, True, 0)}


def test_real_ftp_data_connections_are_recognised():
    _, got = sides("zeek-traces/pe.pcap")
    assert [g[2] for g in got].count("ftp-data") == 5 and [g[2] for g in got].count("ftp") == 2


# -- ingest ----------------------------------------------------------------------------------

def test_ingest_inspects_by_default_and_can_be_turned_off(tmp_path):
    cap = data("suricata-verify/mta-smtp/10.7.29.101_49898-178.63.41.150_25.pcap")
    ws = abfluss.open_workspace(tmp_path / "on", write=True)
    res = abfluss.ingest_file(ws, cap)
    # only the internal client's side is read; the external server's replies are counted
    assert res.records == {"flows": 1} and res.derived == {"dlp": 4, "inspected": 2}
    assert ws.con.execute("SELECT sender, count(*), sum(hits) FROM dlp_raw GROUP BY ALL").fetchall() == [("orig", 4, 8)]
    assert ws.con.execute("SELECT sender, payload_bytes, scanned_bytes FROM inspected_raw ORDER BY ALL").fetchall() == [
        ("orig", 114478, 86657), ("resp", 757, 0)]
    key = tmp_path / "on" / "secret" / "dlp.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    ws.close()
    ws = abfluss.open_workspace(tmp_path / "off", write=True)
    res = abfluss.ingest_file(ws, cap, inspect=False)
    assert res.derived == {} and ws.con.execute("SELECT count(*) FROM dlp_raw").fetchall() == [(0,)]
    assert not (tmp_path / "off" / "secret").exists()
    ws.close()
    proc = run_cli("ingest", "--no-inspect", str(cap), workspace=tmp_path / "cli")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "cli" / "secret").exists() and not (tmp_path / "cli" / "data" / "dlp").exists()
    assert (tmp_path / "cli" / "data" / "flows").is_dir()


# -- the leak test ---------------------------------------------------------------------------

def leaky_capture(v: dict[str, list[str]]) -> Capture:
    """Every way this project reads payload, full of the values in ``v``."""
    cap, t = Capture(), 1_700_000_000.0
    rows = [";".join(v[c][i] for c in ("kvnr", "ik", "iban", "idnr", "rvnr", "icd10", "email", "phone"))
            for i in range(len(v["kvnr"]))]
    csv = ("kvnr;ik;iban;steuer-id;rvnr;icd;email;telefon\n" + "\n".join(rows) + "\n").encode()

    def conn(client, server, dt):
        return Conn(cap, client, server, t0=t + dt)

    c = conn(HOST, DEST, 0)  # chunked gzip CSV upload, then a URL-encoded form
    body = gzip.compress(csv)
    c.send(b"POST /u HTTP/1.1\r\nHost: upload.files-drop.test\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
           + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    form = "&".join(f"kvnr={k}&iban={b}&mail={e}" for k, b, e in zip(v["kvnr"], v["iban"], v["email"])).encode()
    c.send(b"POST /f HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s"
           % (len(form), form))
    c.close()
    fhir = json.dumps({"entry": [{"identifier": {"system": "http://fhir.de/sid/gkv/kvid-10", "value": k}}
                                 for k in v["kvnr"]]}).encode()
    c = conn(("10.10.0.11", 50001), ("203.0.113.51", 8080), 10)
    c.send(b"PUT /fhir HTTP/1.1\r\nContent-Type: application/fhir+json\r\nContent-Length: %d\r\n\r\n%s" % (len(fhir), fhir))
    c.close()
    c = conn(("198.51.100.7", 44000), ("10.20.0.5", 80), 20)  # an internal server answers a download
    c.send(b"GET /export.csv HTTP/1.1\r\n\r\n")
    c.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(csv), csv), from_client=False)
    c.close()
    c = conn(("10.10.0.12", 41000), ("198.51.100.25", 25), 30)  # mail with QP text and base64 CSV
    qp = "".join(f"Versichertennummer {k[:5]}=\r\n{k[5:]}\r\n" for k in v["kvnr"]).encode("latin-1")
    mail = (b"Content-Type: multipart/mixed; boundary=M\r\n\r\n--M\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            + qp + b"--M\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(csv) + b"--M--\r\n")
    c.send(b"EHLO ws\r\nMAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (v["email"][0].encode(), v["email"][1].encode()))
    c.send(b"354 go\r\n", from_client=False)
    c.send(mail + b"\r\n.\r\nQUIT\r\n")
    c.close()
    c = conn(("10.10.0.13", 42001), ("203.0.113.21", 20), 40)  # FTP data, raw TCP
    c.send(csv)
    c.close()
    c = conn(("fd00::13", 42002), ("2001:db8::21", 9000), 45)
    c.send(csv)
    c.close()
    for i, row in enumerate(rows):  # syslog-like UDP datagrams
        cap.udp(t + 50 + i / 100, "10.10.0.14", 5140, "203.0.113.60", 514, f"<13>export {row}".encode())
    metadata(cap, v, t + 60)
    return cap


#: A published sample IBAN: suppressed (never counted) but still never stored raw.
SAMPLE_IBAN = "DE89370400440532013000"


def metadata(cap: Capture, v: dict[str, list[str]], t: float) -> None:
    """Identifiers in DNS names (lower case, as resolvers send them), an HTTP URI, Host,
    User-Agent, Referer and Cookie, and a TLS SNI."""
    k, iban, mail = v["kvnr"][1], v["iban"][1], v["email"][1]
    for i, name in enumerate((f"{k.lower()}.{iban.lower()}.exfil.test", f"{SAMPLE_IBAN.lower()}.x.exfil.test")):
        q = dpkt.dns.DNS(id=0x1234 + i, qd=[dpkt.dns.DNS.Q(name=name, type=dpkt.dns.DNS_A)])
        cap.udp(t + i, "10.10.0.15", 53000 + i, "198.51.100.53", 53, bytes(q))
    c = Conn(cap, ("10.10.0.15", 43000), ("203.0.113.70", 80), t0=t + 2)
    c.send(f"GET /patient/{k}?iban={iban} HTTP/1.1\r\nHost: {k.lower()}.files-drop.test\r\n"
           f"User-Agent: Exporter/1.0 ({SAMPLE_IBAN}; {mail})\r\nReferer: http://intranet.test/?kvnr={k}\r\n"
           f"Cookie: session={iban}\r\n\r\n".encode())
    c.send(b"HTTP/1.1 204 No Content\r\n\r\n", from_client=False)
    c.close()
    c = Conn(cap, ("10.10.0.15", 43001), ("203.0.113.71", 443), t0=t + 4)
    c.send(client_hello(f"{k.lower()}.sni.exfil.test"))
    c.close()


def client_hello(sni: str) -> bytes:
    """A TLS 1.2 ClientHello with the server name ``sni`` (what the flow meter reads as SNI)."""
    name = sni.encode()
    ext_sni = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    body = (b"\x03\x03" + bytes(32) + b"\x00" + struct.pack("!H", 4) + b"\x00\x2f\x00\x35" + b"\x01\x00"
            + struct.pack("!H", len(ext_sni)) + ext_sni)
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def _strings(table) -> str:
    return "\n".join(str(x) for col in table.columns for x in col.to_pylist())


def test_leak_nothing_raw_reaches_the_workspace_or_any_output(tmp_path):
    v = values(60, seed=99)
    secrets = [x.encode() for vals in v.values() for x in vals] + [SAMPLE_IBAN.encode()]
    lower = [x.lower() for x in secrets if x[:1].isalpha() and x.lower() != x]  # DNS names are lower case
    cap = leaky_capture(v).write(tmp_path / "capture.pcap")
    raw = cap.read_bytes()
    assert all(s in raw for s in secrets)  # every value is on the wire (the FTP data is plain)
    assert SAMPLE_IBAN.lower().encode() in raw and v["kvnr"][1].lower().encode() in raw
    secrets += lower
    root = tmp_path / "ws"
    outputs = []
    proc = run_cli("ingest", str(cap), workspace=root)
    assert proc.returncode == 0, proc.stderr
    outputs += [proc.stdout, proc.stderr]
    ws = abfluss.open_workspace(root)
    try:
        got = {r[0]: r[1] for r in ws.con.execute(
            "SELECT category, count(DISTINCT hmac) FROM dlp_raw GROUP BY ALL").fetchall()}
        assert got == {c: 60 for c in v}  # every value was found: the test below is not vacuous
        apps = {r[0] for r in ws.con.execute("SELECT DISTINCT app FROM dlp_raw").fetchall()}
        # metadata is inspected too: the DNS names, the HTTP Host (the flow's server name) and
        # user agent, and the TLS SNI gave dlp rows of their own
        assert {"dns.query", "flows.server_name", "flows.user_agent"} <= apps, apps
    finally:
        ws.close()
    proc = run_cli("analyze", "--only", "cleartext_sensitive_data", "--format", "json", workspace=root)
    assert proc.returncode == 0, proc.stderr
    outputs += [proc.stdout, proc.stderr]
    found_ids = [f["id"] for f in json.loads(run_cli("findings", "--format", "json", workspace=root, check=True).stdout)]
    assert len(found_ids) == 10  # one per sending host and destination of the capture
    for args in [("findings", "--format", fmt) for fmt in ("table", "json", "ecs", "ocsf", "cef")] + [
            ("incidents", "--format", "json"), ("inputs", "--format", "json"), ("ledger", "--format", "json"),
            ("coverage", "--format", "json")] + [("explain", i) for i in found_ids] + [
            ("explain", i, "--format", "json") for i in found_ids]:
        p = run_cli(*args, workspace=root)
        assert p.returncode == 0, (args, p.stderr)
        outputs += [p.stdout, p.stderr]
    texts = [o.encode() for o in outputs]
    for path in root.rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes())
            if path.suffix == ".parquet":
                texts.append(_strings(pq.read_table(path)).encode())
    con = duckdb.connect(str(root / "catalog.duckdb"), read_only=True)
    for (table,) in con.execute("SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'").fetchall():
        texts.append(_strings(con.sql(f'SELECT * FROM "{table}"').to_arrow_table()).encode())
    con.close()
    leaks = [s for s in secrets if any(s in t for t in texts)]
    assert leaks == [], f"{len(leaks)} raw values found in the workspace or outputs"
    masked = b"".join(texts)
    assert b"******" in masked  # the masked forms are there instead
