"""Fuzz targets: every reader, the DNS decoder, TCP reassembly and the payload decoders.

Each target takes arbitrary bytes and must end in records, counted skips or ``InputError``
(a reader's "nothing readable here"): any other exception is a defect. Seeds come from the real
data in ``../shared/data`` (read at run time, cut to ``SEED_BYTES``; never committed) plus a
few small inputs written here. ``run.py`` drives them with atheris (libFuzzer); the test suite
runs every seed and a short fuzzing run (``tests/test_fuzz.py``), ``make fuzz`` a long one.
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
#: Bytes of a seed file used (a capture cut here is a truncated capture: valid input too).
SEED_BYTES = 16 << 10
#: Working folder (corpus, the input file of targets that read files): ``$ABFLUSS_FUZZ_WORK``, which
#: whoever starts the run removes afterwards, else a new folder (on a RAM disk when there is one).
WORK: Path | None = None


def work() -> Path:
    global WORK
    if WORK is None:
        WORK = Path(os.environ.get("ABFLUSS_FUZZ_WORK") or tempfile.mkdtemp(
            prefix="abfluss-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    (WORK / "scratch").mkdir(parents=True, exist_ok=True)
    return WORK


KEY = b"k" * 32

_ZEEK_NAMES = ("conn.log", "dns.log", "http.log", "ssl.log", "open_conn.log", "files.log")


def _file(data: bytes, name: str) -> Path:
    p = work() / "scratch" / name
    p.write_bytes(data)
    return p


def _drain(read, path: Path) -> int:
    from abfluss.errors import InputError
    from abfluss.readers.base import ReadReport

    report = ReadReport(str(path))
    try:
        return sum(t.num_rows for _name, t in read(path, report))
    except InputError:
        return 0


# -- readers -------------------------------------------------------------------------------------

def zeek(data: bytes) -> None:
    """Zeek TSV and JSON logs; the first byte picks the file name (the log type may come from it)."""
    from abfluss.readers import zeek as z

    name = _ZEEK_NAMES[data[0] % len(_ZEEK_NAMES)] if data else "conn.log"
    _drain(z.read, _file(data[1:], name))


def eve(data: bytes) -> None:
    from abfluss.readers import suricata

    _drain(suricata.read, _file(data, "eve.json"))


def netflow(data: bytes) -> None:
    from abfluss.readers import netflow as nf

    _drain(nf.read, _file(data, "export.pcap"))


def pcap(data: bytes) -> None:
    """The whole pcap reader: NFStream's meter, the DNS scan and payload inspection."""
    import functools

    from abfluss.dlp.inspect import Settings
    from abfluss.readers import pcap as p

    _drain(functools.partial(p.read, inspect_key=KEY, inspect_settings=Settings()), _file(data, "capture.pcap"))


def detect(data: bytes) -> None:
    """Format detection (every reader's sniffer) on any file."""
    from abfluss import readers
    from abfluss.errors import InputError

    try:
        readers.detect(_file(data, "input"))
    except InputError:
        pass


# -- DNS -----------------------------------------------------------------------------------------

def dns_scan(data: bytes) -> None:
    """The per-query DNS pass over a capture (dpkt)."""
    from abfluss.readers import _dns_packets
    from abfluss.readers.base import ReadReport

    _dns_packets.scan(_file(data, "dns.pcap"), ReadReport("dns.pcap"))


def dns_message(data: bytes) -> None:
    """One DNS message through the byte-level parser, alone and as DNS over TCP (length-prefixed,
    cut into segments that arrive out of order and twice)."""
    from abfluss.readers import _dns_wire as wire

    def parse(buf: bytes) -> None:
        try:
            m = wire.parse(buf)
        except wire.WireError:
            return
        for name in (m.query or "", *(a for a in m.answers if isinstance(a, str))):
            assert wire.label_bytes(name) >= 0
            wire.unescape(name)

    parse(data)
    framed = len(data).to_bytes(2, "big") + data + len(data[:40]).to_bytes(2, "big") + data[:40]
    step = 1 + (data[0] % 13 if data else 0)
    cuts = [(i, framed[i:i + step]) for i in range(0, len(framed), step)]
    streams = wire.TcpStreams()
    streams.add(("c", "s"), 999, 0x02, b"")
    for i, seg in cuts[1::2] + cuts[::2] + cuts[:2]:  # odd segments first, then the rest, then repeats
        msgs, _lost = streams.add(("c", "s"), 1000 + i, 0x18, seg)
        for m in msgs:
            parse(m)


# -- payload inspection --------------------------------------------------------------------------

def tcp_reassembly(data: bytes) -> None:
    """Segments (seq offset, length, flags) in any order into one side: what comes out is each
    byte once, in order, with the holes as gaps, and the counters add up."""
    from abfluss.dlp.streams import SEQ_MOD, Side

    class Out:
        def __init__(self):
            self.bytes = self.gaps = 0

        def data(self, d: bytes) -> None:
            self.bytes += len(d)

        def gap(self, n: int) -> None:
            assert n >= 0, n
            self.gaps += n

    out = Out()
    side = Side(out, cap=256)
    base = struct.unpack(">I", data[:4])[0] if len(data) >= 4 else 0
    if data[4:5] and data[4] & 1:
        side.syn(base)
    pos = 5
    while pos + 4 <= len(data):
        off, size, missing = struct.unpack(">HBB", data[pos:pos + 4])
        pos += 4
        payload = data[pos:pos + size]
        pos += size
        side.segment((base + off) % SEQ_MOD, payload, missing % 4)
    side.finish()
    assert out.bytes == side.delivered and out.gaps == side.gaps, (out.bytes, side.delivered, out.gaps, side.gaps)


def _inspect_frames(datalink: int, frames) -> None:
    from abfluss.dlp.inspect import Inspector, Settings
    from abfluss.dlp.scanner import Scanner

    insp = Inspector(Scanner(KEY).scan, Settings(max_buffered_bytes=4096, chunk_bytes=512), datalink)
    for ts, buf in frames:
        insp.packets += 1
        insp.packet(ts, buf)
    insp.finish()


def inspect(data: bytes) -> None:
    """Payload inspection of a capture: packet slicing, reassembly, sniffing, decoders, scanner;
    a classic Ethernet pcap also through ``inspect_pcap``, whose C loop walks and slices it."""
    import dpkt

    from abfluss.dlp.inspect import Settings, inspect_pcap
    from abfluss.dlp.streams import packets

    path = _file(data, "inspect.pcap")
    if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
        inspect_pcap(path, KEY, Settings(max_buffered_bytes=4096, chunk_bytes=512))  # InspectionError: a finding
    with open(path, "rb") as f:
        try:
            datalink, frames = packets(f)
        except (ValueError, dpkt.dpkt.Error):
            return
        it = iter(frames)

        def safe():
            while True:
                try:
                    yield next(it)
                except StopIteration:
                    return
                except (dpkt.dpkt.NeedData, dpkt.dpkt.UnpackError, ValueError):
                    return  # what inspect_pcap also stops at: a cut pcapng block

        _inspect_frames(datalink, safe())


_PORTS = (80, 25, 21, 8080, 587, 443, 20, 5000)


def payload(data: bytes) -> None:
    """A TCP connection whose client (or server) sends the input, cut into segments: the HTTP,
    SMTP and FTP decoders, multipart/form/JSON/gzip bodies and the scanner behind them."""
    import dpkt

    if len(data) < 2:
        return
    port, from_server, cuts = _PORTS[data[0] % len(_PORTS)], data[0] & 0x80, data[1] | 1
    body = data[2:]
    c, s = (b"\x0a\x00\x00\x01", 40000), (b"\xc6\x33\x64\x07", port)
    src, dst = (s, c) if from_server else (c, s)

    def frame(a, b, seq, flags, payload=b""):
        tcp = dpkt.tcp.TCP(sport=a[1], dport=b[1], seq=seq, flags=flags, data=payload)
        ip = dpkt.ip.IP(src=a[0], dst=b[0], p=6, data=tcp)
        ip.len = len(bytes(ip))
        return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=ip))

    frames = [(0.0, frame(c, s, 999, dpkt.tcp.TH_SYN)), (0.1, frame(s, c, 4999, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK))]
    seq, step, t = 5000 if from_server else 1000, max(1, len(body) // cuts), 0.2
    for i in range(0, len(body), step):
        frames.append((t, frame(src, dst, seq + i, dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, body[i:i + step])))
        t += 0.01
    frames.append((t, frame(src, dst, seq + len(body), dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK)))
    _inspect_frames(dpkt.pcap.DLT_EN10MB, frames)


class _Sink:
    def __init__(self):
        self.bytes = 0

    def write(self, data: bytes) -> None:
        assert isinstance(data, (bytes, bytearray)), type(data)
        self.bytes += len(data)

    def boundary(self) -> None:
        pass


def structured(data: bytes) -> None:
    """One decoded unit (an HTTP body, a mail part, a file) through the structured decoders:
    delimited, fixed width, JSON, XML/FHIR, HTML, HL7, SQL dumps, base64, UTF-16, containers
    (gzip/zip/tar/bzip2/xz) and office files, with their bomb limits."""
    from abfluss.dlp import structured as st
    from abfluss.dlp.inspect import Settings

    st.render(data, _Sink(), Settings(max_decoded_bytes=1 << 20))


def binetflow(data: bytes) -> None:
    from abfluss.readers import binetflow as b

    _drain(b.read, _file(data, "flows.binetflow"))


def squid(data: bytes) -> None:
    from abfluss.readers import squid as sq

    _drain(sq.read, _file(data, "access.log"))


def nfdump(data: bytes) -> None:
    """nfdump files (read through the ``nfdump`` program, whose JSON output is parsed here)."""
    from abfluss.readers import nfdump as nf

    _drain(nf.read, _file(data, "nfcapd.current"))


TARGETS = {f.__name__: f for f in (zeek, eve, netflow, pcap, nfdump, binetflow, squid, detect, dns_scan,
                                   dns_message, tcp_reassembly, inspect, payload, structured)}
#: Targets run together (the first input byte chooses one) in the short run; pcap forks NFStream's
#: meter per input and nfdump runs the nfdump program (a few inputs a second): runs of their own.
SLOW = ("pcap", "nfdump")
FAST = tuple(n for n in TARGETS if n not in SLOW)


# -- seeds ---------------------------------------------------------------------------------------

def _shared(*patterns: str) -> list[bytes]:
    assert DATA.is_dir(), f"shared test data not found at {DATA}: the fuzz seeds come from it"
    out = []
    for pattern in patterns:
        found = sorted(p for p in DATA.glob(pattern) if p.is_file())
        assert found, f"no seed file matches {DATA / pattern}"
        for p in found[:6]:
            with open(p, "rb") as f:
                out.append(f.read(SEED_BYTES))
    return out


def _dns_messages() -> list[bytes]:
    import dpkt

    q = dpkt.dns.DNS(id=7, qd=[dpkt.dns.DNS.Q(name="files.drop.example", type=dpkt.dns.DNS_A)])
    r = dpkt.dns.DNS(id=7, qr=1, qd=q.qd, an=[
        dpkt.dns.DNS.RR(name="files.drop.example", type=dpkt.dns.DNS_A, ip=b"\xcb\x00\x71\x42", ttl=60),
        dpkt.dns.DNS.RR(name="files.drop.example", type=dpkt.dns.DNS_TXT, text=[b"v=spf1 -all"], ttl=60)])
    return [bytes(q), bytes(r), b"\x00" * 12]


_EVE = b"\n".join([
    b'{"timestamp":"2024-02-08T15:00:00.000000+0000","flow_id":1,"event_type":"dns","src_ip":"10.0.0.1",'
    b'"src_port":40000,"dest_ip":"10.0.0.53","dest_port":53,"proto":"UDP","dns":{"type":"query","id":7,'
    b'"rrname":"files.drop.example","rrtype":"A"}}',
    b'{"timestamp":"2024-02-08T15:00:00.100000+0000","flow_id":1,"event_type":"dns","src_ip":"10.0.0.53",'
    b'"src_port":53,"dest_ip":"10.0.0.1","dest_port":40000,"proto":"UDP","dns":{"version":2,"type":"answer",'
    b'"id":7,"rrname":"files.drop.example","rrtype":"A","rcode":"NOERROR","answers":[{"rrname":'
    b'"files.drop.example","rrtype":"A","ttl":60,"rdata":"203.0.113.66"}]}}',
    b'{"timestamp":"2024-02-08T15:00:01+0000","flow_id":2,"event_type":"http","src_ip":"10.0.0.1",'
    b'"src_port":40001,"dest_ip":"203.0.113.66","dest_port":80,"http":{"hostname":"files.drop.example",'
    b'"url":"/up","http_method":"POST","status":200,"length":12}}',
    b'{"timestamp":"2024-02-08T15:00:02+0000","flow_id":3,"event_type":"tls","src_ip":"10.0.0.1",'
    b'"src_port":40002,"dest_ip":"203.0.113.66","dest_port":443,"tls":{"sni":"files.drop.example",'
    b'"version":"TLS 1.3","ja3":{"hash":"abc"}}}',
    b'{"timestamp":"2024-02-08T15:00:03+0000","flow_id":4,"event_type":"alert","src_ip":"10.0.0.1",'
    b'"src_port":40003,"dest_ip":"203.0.113.66","dest_port":443,"proto":"TCP","alert":{"signature":"x",'
    b'"signature_id":1,"severity":2}}', b""])


def _structured_seeds() -> list[bytes]:
    import gzip
    import io
    import zipfile

    csv = b"Name;KVNR;IBAN\nMuster;A123456780;DE89370400440532013000\nBeispiel;X110411675;\n"
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("export.csv", csv)
    return [csv, gzip.compress(csv), z.getvalue(), b'[{"kvnr": "A123456780", "name": "x"}]',
            b"MSH|^~\\&|A|B\rPID|1||A123456780^^^KV||Muster^Max\r",
            b"INSERT INTO p (kvnr, name) VALUES ('A123456780', 'x');",
            b"<Patient><identifier><value>A123456780</value></identifier></Patient>",
            "KVNR;Name\nA123456780;Müller\n".encode("utf-16"), b"QTEyMzQ1Njc4MCxYMTEwNDExNjc1LE05ODc2NTQzMjM="]


def seeds(target: str) -> list[bytes]:
    """Seed inputs of ``target`` (real data first)."""
    pcaps = _shared("slips/test-cc/*.pcap", "zeek-traces/http-post-large.pcap", "zeek-traces/bro.org.pcap",
                    "dns-tunnel/*/*.pcap", "zeek-traces/irc-dcc-send.pcapng")
    if target == "zeek":
        logs = _shared("slips/test9-mixed-zeek/conn.log", "slips/test9-mixed-zeek/dns.log",
                       "slips/test9-mixed-zeek/http.log", "slips/test9-mixed-zeek/ssl.log",
                       "rita/json_with_all_fields/*conn*", "slips/port-scans/*.log")
        return [bytes([i % len(_ZEEK_NAMES)]) + s for i, s in enumerate(logs)] + [
            b"\x00#separator \\x09\n#path\tconn\n#fields\tts\tuid\n1.0\tC1\n"]
    if target == "eve":
        return _shared("slips/test6-malicious.suricata.json") + [_EVE]
    if target == "netflow":
        return _shared("netflow-akvorado/*.pcap", "netflow-pmacct/*/*.pcap")
    if target in ("pcap", "dns_scan", "inspect"):
        return pcaps
    if target == "detect":
        return pcaps[:2] + seeds("zeek")[:2] + seeds("eve")[:1] + seeds("netflow")[:2]
    if target == "dns_message":
        return _dns_messages()
    if target == "binetflow":
        return _shared("slips/binetflow/*.binetflow")
    if target == "nfdump":
        return _shared("slips/test1-malicious.nfdump")
    if target == "squid":
        return [p.read_bytes()[:SEED_BYTES] for p in sorted((ROOT / "examples" / "squid").iterdir()) if p.is_file()]
    if target == "structured":
        return _structured_seeds()
    if target == "tcp_reassembly":
        return [b"\x00\x00\x10\x00\x01" + b"\x00\x00\x05\x00hello\x00\x0a\x05\x00world\x00\x05\x05\x00 big ",
                b"\xff\xff\xff\xf0\x00" + b"\x00\x20\x03\x02abc\x00\x00\x10\x00" + b"x" * 16]
    if target == "payload":
        return [b"\x00\x04POST /up HTTP/1.1\r\nHost: files.drop.example\r\nContent-Type: application/json\r\n"
                b"Content-Length: 40\r\n\r\n{\"kvnr\": \"A123456780\", \"iban\": \"DE89\"}\r\n",
                b"\x01\x03EHLO ws1\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
                b"Subject: x\r\n\r\nKVNR A123456780\r\n.\r\nQUIT\r\n",
                b"\x02\x02USER anonymous\r\nPASS x\r\nPASV\r\nSTOR list.csv\r\n",
                b"\x80\x05HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"]
    raise KeyError(target)
