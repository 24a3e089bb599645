"""nfdump flow files (``nfcapd.*``, written by nfcapd/nfpcapd/sfcapd), read through Debian's ``nfdump``.

The file format is nfdump's own (compressed blocks, versioned records), so the reader does not parse it:
it runs ``nfdump -r FILE -o json`` with ``TZ=UTC`` and reads the records from the pipe as they come, a
batch of :data:`CHUNK` at a time, so a file of any size is streamed, never loaded whole. Recognised by its
magic number (``0xA50C``, layout version 1 or 2), never by name.

One ``flows`` row per record. NetFlow records are one direction of a connection each, so the
originator is decided per record: a TCP record with SYN and without ACK is the opening side; one
with SYN and ACK is the answer; otherwise (no SYN seen, UDP) a record from a service port (below
1024) to a higher port is the answer. An answer's source is ``resp_h`` and its ``in_bytes``/
``in_packets`` are ``resp_ip_bytes``/``resp_pkts`` — so a server's replies are not taken for the
server opening connections to its clients' ports (a "scan"). Otherwise source = orig and
``in_bytes``/``in_packets`` = ``orig_ip_bytes``/``orig_pkts`` (IP-level); ``out_bytes``/``out_packets``
(bidirectional NSEL/IPFIX biflows) are the other side's, else null. ``first``/``last`` are start and end (milliseconds). ``uid`` is
``<file name>:<record number>``. What ``nfdump`` reports on stderr (a corrupt block) is one skipped entry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from abfluss.errors import InputError
from abfluss.readers.base import ReadReport, flush_table

FORMAT = "nfdump"
CHUNK = 100_000
MAGIC = b"\x0c\xa5"  # 0xA50C little-endian
PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6", 47: "gre", 50: "esp"}
_COLUMNS = ("ts", "ts_end", "duration", "proto", "orig_h", "orig_p", "resp_h", "resp_p", "orig_ip_bytes",
            "resp_ip_bytes", "orig_pkts", "resp_pkts", "history", "open", "uid")


def sniff(head: bytes, path: Path | None = None) -> bool:
    """nfdump's file header: magic 0xA50C, then layout version 1 or 2."""
    return len(head) >= 4 and head[:2] == MAGIC and int.from_bytes(head[2:4], "little") in (1, 2)


class _Bad(ValueError):
    pass


def _time(value) -> datetime:
    if not isinstance(value, str):
        raise _Bad(f"bad time {value!r}")
    try:
        return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)
    except ValueError:
        raise _Bad(f"bad time {value[:40]!r}") from None


def _count(value) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise _Bad(f"bad count {value!r}")
    return value


def _port(value) -> int | None:
    return value if isinstance(value, int) and 0 <= value <= 0xFFFF else None


def _row(rec: dict, uid: str, out: dict) -> None:
    ts, end = _time(rec.get("first")), _time(rec.get("last"))
    if end < ts:
        end = ts
    orig = rec.get("src4_addr") or rec.get("src6_addr")
    resp = rec.get("dst4_addr") or rec.get("dst6_addr")
    if not isinstance(orig, str) or not isinstance(resp, str):
        raise _Bad("record without source and destination address")
    proto = rec.get("proto")
    flags = rec.get("tcp_flags") if isinstance(rec.get("tcp_flags"), str) else None
    sport, dport = _port(rec.get("src_port")), _port(rec.get("dst_port"))
    sent = (_count(rec.get("in_bytes")), _count(rec.get("in_packets")))
    back = (_count(rec.get("out_bytes")), _count(rec.get("out_packets")))
    if _is_answer(proto, flags, sport, dport):
        orig, resp, sport, dport, sent, back = resp, orig, dport, sport, back, sent
    row = {
        "ts": ts, "ts_end": end, "duration": (end - ts).total_seconds(),
        "proto": PROTO_NAMES.get(proto, str(proto)) if isinstance(proto, int) else None,
        "orig_h": orig, "orig_p": sport, "resp_h": resp, "resp_p": dport,
        "orig_ip_bytes": sent[0], "resp_ip_bytes": back[0], "orig_pkts": sent[1], "resp_pkts": back[1],
        "history": flags, "open": False, "uid": uid,
    }
    for k, v in row.items():
        out[k].append(v)


def _is_answer(proto, flags: str | None, sport: int | None, dport: int | None) -> bool:
    """Whether a one-direction record is the answering side of its connection (see the module doc)."""
    if proto == 6 and flags and "S" in flags:
        return "A" in flags
    if proto in (6, 17) and sport is not None and dport is not None:
        return sport < 1024 <= dport
    return False


def read(path: Path, report: ReadReport) -> Iterator[tuple[str, pa.Table]]:
    """Yield ``flows`` tables from an nfdump file, streamed from ``nfdump -o json``."""
    report.format = FORMAT
    exe = shutil.which("nfdump")
    if exe is None:
        raise InputError(f"{path}: reading nfdump files needs the nfdump program "
                         "(Debian package 'nfdump': apt-get install nfdump)")
    path = Path(path)
    env = dict(os.environ, TZ="UTC")
    errors = tempfile.TemporaryFile()  # a file, not a pipe: a chatty nfdump cannot block on it
    proc = subprocess.Popen([exe, "-r", str(path), "-o", "json"], stdout=subprocess.PIPE,
                            stderr=errors, env=env, stdin=subprocess.DEVNULL)
    out: dict[str, list] = {c: [] for c in _COLUMNS}
    n = 0
    try:
        for text in _records(proc.stdout):
            n += 1
            try:
                rec = json.loads(text)
                if not isinstance(rec, dict):
                    raise _Bad("not a JSON object")
                if rec.get("type", "FLOW") != "FLOW":
                    continue  # nfdump's statistics/exporter records
                _row(rec, f"{path.name}:{n}", out)
            except (ValueError, RecursionError, _Bad) as e:
                report.skip(f"record {n}", str(e) if isinstance(e, _Bad) else "nfdump printed invalid JSON")
                continue
            if len(out["ts"]) >= CHUNK:
                yield "flows", flush_table("flows", out, report)
        code = proc.wait()
        errors.seek(0)
        err = errors.read(1 << 16).decode("utf-8", "replace").strip()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        errors.close()
    if out["ts"]:
        yield "flows", flush_table("flows", out, report)
    if code != 0 or err:
        lines = [l for l in err.splitlines() if l.strip()]
        reason = f"nfdump: {lines[-1][:200]}" if lines else f"nfdump exited with status {code}"
        if report.total == 0:
            raise InputError(f"{path}: record {n + 1}: {reason}")
        report.skip(f"record {n + 1}", reason)


def _records(stream) -> Iterator[str]:
    """The text of each top-level JSON object nfdump prints (one key per line, ``{``/``}`` alone)."""
    buf: list[bytes] = []
    for line in stream:
        s = line.strip().lstrip(b"[")
        if s == b"{":
            buf = [s]
        elif buf:
            if s[:1] == b"}":  # "}", "}," or the last one's "}]"
                buf.append(b"}")
                yield b"".join(buf).decode("utf-8", "replace")
                buf = []
            else:
                buf.append(s)
