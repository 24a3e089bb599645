"""What the detectors get to read: application decoding of reassembled streams (abfluss.dlp.decode).

The packets are synthetic captures (built with dpkt in the test), run through the real
Inspector with a detector that records the text it is given, so each test asserts the exact
decoded text and byte counts of one protocol feature.
"""

from __future__ import annotations

import base64
import gzip
import zlib

import pytest

from abfluss.dlp import decode
from abfluss.dlp.inspect import Inspector, Settings

from test_dlp_streams import Capture, Conn

KVNR = b"A123456780"
CLIENT, WEB = ("10.0.0.5", 40000), ("203.0.113.9", 80)


def run(cap: Capture, **settings):
    """(text the detectors read, inspected rows by sender) for a capture; the pieces given to
    the detectors one by one are separated by a record separator (0x1E) in the text."""
    seen: list[bytes] = []

    def scan(data: bytes) -> list:
        seen.append(data)
        return []

    insp = Inspector(scan, Settings(context_bytes=0, **settings))
    for ts, buf in cap.packets:
        insp.packet(ts, buf)
    result = insp.finish()
    assert result.dlp.num_rows == 0
    rows = {r["sender"]: r for r in result.inspected.to_pylist()}
    return b"\x1e".join(seen), rows


def chunked(body: bytes, size: int) -> bytes:
    return b"".join(b"%x;ext=1\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
                    for i in range(0, len(body), size)) + b"0\r\nX-Trailer: t\r\n\r\n"


# -- sniffing ----------------------------------------------------------------------------

@pytest.mark.parametrize("head, port, udp, app", [
    (b"\x16\x03\x01\x02\x00\x01\x00\x01", 443, False, "tls"),
    (b"\x17\x03\x03\x00\x20abc", 8080, False, "tls"),  # application data mid-connection
    (b"\x16\xfe\xfd\x00\x00\x00\x00\x00", 4433, True, "dtls"),
    (b"SSH-2.0-OpenSSH_9.6\r\n", 2222, False, "ssh"),
    (b"\xc3\x00\x00\x00\x01\x08abcdefgh", 443, True, "quic"),
    (b"POST /x HTTP/1.1\r\n", 8000, False, "http"),
    (b"HTTP/1.1 200 OK\r\n", 8000, False, "http"),
    (b"EHLO mail.example\r\n", 2526, False, "smtp"),
    (b"220 mx ESMTP\r\n", 25, False, "smtp"),
    (b"220 ftp ready\r\n", 21, False, "ftp"),
    (b"just some text", 9999, False, "raw"),
    # DNS queries (id, flags RD, one question) whose first bytes look like SSL 2 or a TLS record
    # on TCP: datagrams are never TLS, so a DNS tunnel's payload is scanned like any other
    (b"\x80\x00\x01\x00\x00\x01\x00\x00", 53, True, "raw"),
    (b"\xab\xcd\x01\x00\x00\x01\x00\x00", 5353, True, "raw"),
    (b"\x16\x03\x01\x00\x00\x01\x00\x00", 53, True, "raw"),
    (b"\x80\x2e\x01\x03\x01\x00\x15", 443, False, "tls"),  # a real SSL 2 ClientHello on TCP
])
def test_sniff(head, port, udp, app):
    assert decode.sniff(head, port, udp) == app


def test_sniff_waits_for_enough_bytes():
    assert decode.sniff(b"PO", 8000, False) is None
    assert decode.sniff(b"PO", 8000, False, final=True) == "raw"


# -- HTTP --------------------------------------------------------------------------------

def test_http_chunked_gzip_post_body_is_decoded():
    body = b"kvnr;name\n" + b"".join(b"%s;Name %d\n" % (KVNR, i) for i in range(200))
    wire = gzip.compress(body)
    req = (b"POST /upload?case=1%2F2+x HTTP/1.1\r\nHost: files.test\r\nTransfer-Encoding: chunked\r\n"
           b"Content-Encoding: gzip\r\nContent-Type: text/csv\r\n\r\n") + chunked(wire, 100)
    cap = Capture()
    c = Conn(cap, CLIENT, WEB)
    c.send(req, size=333)
    c.send(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", from_client=False)
    c.close()
    text, rows = run(cap)
    assert b"POST /upload?case=1/2 x HTTP/1.1\n" in text  # request line URL-decoded
    # the CSV as records: the header's anchor word before each value of its column
    assert b"kvnr\tname\nkvnr=%s\tName 0\n" % KVNR in text and text.count(KVNR) == 200
    assert (rows["orig"]["payload_bytes"], rows["orig"]["app"], rows["orig"]["encrypted"]) == (len(req), "http", False)
    assert rows["resp"]["payload_bytes"] == 45


def test_http_deflate_raw_and_zlib_and_keep_alive_pipelining():
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    body1 = b"first %s\n" % KVNR
    wire1 = raw.compress(body1) + raw.flush()
    body2 = b"second body\n"
    wire2 = zlib.compress(body2)
    req = b"".join(b"PUT /%d HTTP/1.1\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n%s" % (i, len(w), w)
                   for i, w in ((1, wire1), (2, wire2)))
    cap = Capture()
    c = Conn(cap, CLIENT, WEB)
    c.send(req)  # both requests in one segment
    c.close()
    text, _ = run(cap)
    assert body1 in text and body2 in text and b"PUT /2 HTTP/1.1" in text


def test_http_multipart_form_with_base64_part_and_url_encoded_form():
    boundary = b"----b0undary"
    parts = (b"--%s\r\nContent-Disposition: form-data; name=\"kvnr\"\r\n\r\n%s\r\n"
             b"--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.csv\"\r\n"
             b"Content-Type: text/csv\r\nContent-Transfer-Encoding: base64\r\n\r\n%s\r\n--%s--\r\n") % (
        boundary, KVNR, boundary, base64.encodebytes(b"kvnr\nM987654323\n"), boundary)
    form = b"name=M%C3%BCller&kvnr=X110411675&note=a+b"
    req = (b"POST /a HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=%s\r\nContent-Length: %d\r\n\r\n%s"
           b"POST /b HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s") % (
        boundary, len(parts), parts, len(form), form)
    cap = Capture()
    c = Conn(cap, CLIENT, WEB)
    c.send(req, size=50)
    c.close()
    text, _ = run(cap)
    assert b'Content-Disposition: form-data; name="kvnr"\n' in text and KVNR in text
    assert b"kvnr\nM987654323\n" in text  # the base64 part decoded
    assert b"name=M\xc3\xbcller\nkvnr=X110411675\nnote=a b" in text


def test_http_json_escapes_and_head_and_interim_responses():
    doc = b'{"system":"http:\\/\\/fhir.de\\/sid\\/gkv\\/kvid-10","value":"A123456780"}'
    req = (b"POST /fhir HTTP/1.1\r\nExpect: 100-continue\r\nContent-Type: application/fhir+json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(doc), doc)) + b"HEAD /x HTTP/1.1\r\n\r\n"
    resp = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine"
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")  # HEAD: the length announces no body
    cap = Capture()
    c = Conn(cap, CLIENT, WEB)
    c.send(req, size=17)
    c.send(resp, from_client=False, size=9)
    c.close()
    text, rows = run(cap)
    assert b"\n\nhttp://fhir.de/sid/gkv/kvid-10\tA123456780\n" in text  # JSON parsed: system and value on one line
    assert b"fine" in text and rows["resp"]["payload_bytes"] == len(resp)


def test_http_connect_tunnel_with_tls_is_counted_as_encrypted():
    hello = b"\x16\x03\x01\x00\x40" + b"\x01" + b"A123456780 " * 5
    cap = Capture()
    c = Conn(cap, CLIENT, ("203.0.113.9", 3128))
    c.send(b"CONNECT bank.test:443 HTTP/1.1\r\nHost: bank.test:443\r\n\r\n")
    c.send(b"HTTP/1.1 200 Connection established\r\n\r\n", from_client=False)
    c.send(hello)
    c.close()
    text, rows = run(cap)
    assert b"CONNECT bank.test:443" in text and KVNR not in text
    assert (rows["orig"]["app"], rows["orig"]["encrypted"]) == ("tls", True)


# -- SMTP --------------------------------------------------------------------------------

def mail_capture(message: bytes, refused_first: bool = False) -> Capture:
    cap = Capture()
    c = Conn(cap, ("10.0.0.7", 41000), ("198.51.100.25", 25))
    c.send(b"220 mx.test ESMTP\r\n", from_client=False)
    c.send(b"EHLO ws7\r\n")
    if refused_first:
        c.send(b"MAIL FROM:<x@nowhere.test>\r\nRCPT TO:<a@b.test>\r\nDATA\r\n")
        c.send(b"553 no\r\n503 no\r\n", from_client=False)
        c.send(b"RSET\r\n")
    c.send(b"MAIL FROM:<praxis@mail.test>\r\nRCPT TO:<kasse@mail.test>\r\nDATA\r\n")
    c.send(b"250 ok\r\n250 ok\r\n354 go\r\n", from_client=False)
    c.send(message + b"\r\n.\r\nQUIT\r\n", size=500)
    c.close()
    return cap


MAIL = (b"From: =?iso-8859-1?q?Dr=2E_M=FCller?= <praxis@mail.test>\r\nTo: kasse@mail.test\r\n"
        b"Subject: Liste\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n"
        b"--XX\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Versichertennummer des Patienten M=FCller: A12345678=\r\n0, bitte pr=FCfen.\r\n"
        b"..leading dot line\r\n"
        b"--XX\r\nContent-Type: text/csv; name=\"liste.csv\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(b"kvnr;iban\nX110411675;DE89370400440532013000\n").replace(b"\n", b"\r\n")
        + b"--XX--\r\n")


def test_smtp_mail_parts_are_decoded():
    text, rows = run(mail_capture(MAIL))
    assert b"From: Dr. M\xc3\xbcller <praxis@mail.test>\n" in text  # encoded word decoded
    assert b"Versichertennummer des Patienten M\xfcller: A123456780, bitte pr\xfcfen." in text  # QP, Latin-1
    assert b"\n.leading dot line" in text  # dot-stuffing undone
    assert b"kvnr\tiban\nkvnr=X110411675\tiban=DE89370400440532013000\n" in text  # base64 CSV attachment
    assert b"MAIL FROM:<praxis@mail.test>" in text
    assert rows["orig"]["app"] == rows["resp"]["app"] == "smtp"


def test_smtp_refused_data_goes_back_to_commands():
    text, _ = run(mail_capture(MAIL, refused_first=True))
    assert b"RSET\r\n" in text and b"kvnr=X110411675\tiban=DE89370400440532013000" in text


def test_smtp_mail_larger_than_the_buffer_is_read_raw():
    big = MAIL.replace(b"..leading dot line\r\n", b"filler line\r\n" * 2000)
    text, _ = run(mail_capture(big), max_buffered_bytes=4096)
    assert b"A12345678=\r\n0" in text  # raw: quoted-printable not undone ...
    assert b"filler line" in text and b"QUIT" in text  # ... but read, and the commands go on after


def test_smtp_starttls_stops_reading():
    cap = Capture()
    c = Conn(cap, ("10.0.0.7", 41000), ("198.51.100.25", 587))
    c.send(b"220 mx\r\n", from_client=False)
    c.send(b"EHLO ws7\r\nSTARTTLS\r\n")
    c.send(b"220 go ahead\r\n", from_client=False)
    c.send(b"\x16\x03\x01\x00\x30" + b"X110411675 " * 20)
    c.close()
    text, rows = run(cap)
    assert b"EHLO ws7" in text and b"X110411675" not in text
    assert rows["orig"]["encrypted"] and rows["orig"]["app"] == "tls"


# -- FTP, raw, UDP ------------------------------------------------------------------------

def test_ftp_passive_data_connection_is_labelled_and_read():
    cap = Capture()
    ctl = Conn(cap, ("10.0.0.8", 42000), ("203.0.113.21", 21))
    ctl.send(b"220 ftp\r\n", from_client=False)
    ctl.send(b"USER anonymous\r\nPASV\r\n")
    ctl.send(b"227 Entering Passive Mode (192,168,1,2,195,80)\r\n", from_client=False)  # NATed address
    ctl.send(b"STOR list.csv\r\n")
    data = Conn(cap, ("10.0.0.8", 42001), ("203.0.113.21", 195 * 256 + 80), t0=1_700_000_001.0)
    data.send(b"GET-looking first line\nM987654323;x\n")
    data.close()
    ctl.close()
    text, _ = run(cap)
    assert b"M987654323;x" in text and b"STOR list.csv" in text

    seen = []
    insp = Inspector(lambda b: seen.append(b) or [], Settings(context_bytes=0))
    for ts, buf in cap.packets:
        insp.packet(ts, buf)
    rows = insp.finish().inspected.to_pylist()
    assert sorted((r["resp_p"], r["sender"], r["app"]) for r in rows) == [
        (21, "orig", "ftp"), (21, "resp", "ftp"), (50000, "orig", "ftp-data")]


def test_udp_datagrams_are_read_one_by_one_and_quic_is_encrypted():
    cap = Capture()
    cap.udp(1.0, "10.0.0.9", 5000, "203.0.113.5", 9999, b"A12345")
    cap.udp(1.1, "10.0.0.9", 5000, "203.0.113.5", 9999, b"6780 next datagram")
    cap.udp(1.2, "10.0.0.9", 5001, "203.0.113.5", 443, b"\xc3\x00\x00\x00\x01" + KVNR)
    text, _ = run(cap)
    assert b"A12345\n6780 next datagram\n" in text and KVNR not in text  # never joined, never decrypted


def test_garbage_after_a_valid_start_falls_back_to_raw():
    cap = Capture()
    c = Conn(cap, CLIENT, WEB)
    c.send(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz-not-hex\r\nkvnr A123456780\r\n")
    c.close()
    text, rows = run(cap)
    assert rows["orig"]["payload_bytes"] == 77  # no exception escaped; the side was read ...
    assert b"POST /x" in text and b"kvnr A123456780" in text  # ... raw from the bad chunk on


def test_tls_after_out_of_order_cleartext_counts_every_byte_once():
    # STARTTLS whose ClientHello overtakes the last command segment: the switch to counting
    # happens while segments wait; each byte is counted once, nothing after it is read.
    cap = Capture()
    c = Conn(cap, ("10.0.0.7", 41000), ("198.51.100.25", 587))
    c.send(b"220 mx\r\n", from_client=False)
    first = c.segments(b"EHLO ws7\r\n")
    tail = c.segments(b"STARTTLS\r\n")
    hello = c.segments(b"\x16\x03\x01\x00\x30" + b"X110411675 " * 20)
    more = c.segments(b"\x17\x03\x03\x00\x10" + b"A123456780 " * 10)
    c.put(first + hello + tail + more)
    c.close()
    text, rows = run(cap)
    assert b"EHLO ws7" in text and b"X110411675" not in text and KVNR not in text
    assert rows["orig"]["encrypted"] and rows["orig"]["payload_bytes"] == 10 + 10 + 225 + 115
