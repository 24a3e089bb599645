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
    """One DNS message as a query and as a response, over UDP and TCP framing."""
    from abfluss.readers import _dns_packets

    pending: dict = {}
    rows: list = []
    _dns_packets._dns(1.0, ("udp", "10.0.0.1", "10.0.0.53", 40000, 53, data), pending, rows)
    _dns_packets._dns(1.5, ("udp", "10.0.0.53", "10.0.0.1", 53, 40000, data), pending, rows)
    _dns_packets._dns(2.0, ("tcp", "10.0.0.53", "10.0.0.1", 53, 40001, data), pending, rows)


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
    """Payload inspection of a capture: packet slicing, reassembly, sniffing, decoders, scanner."""
    import dpkt

    from abfluss.dlp.streams import packets

    with open(_file(data, "inspect.pcap"), "rb") as f:
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


TARGETS = {f.__name__: f for f in (zeek, eve, netflow, pcap, detect, dns_scan, dns_message, tcp_reassembly,
                                   inspect, payload)}
#: Targets run together (the first input byte chooses one) in the short run; pcap forks NFStream's
#: meter per input (a few inputs a second) and gets its own run.
FAST = tuple(n for n in TARGETS if n != "pcap")


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
