"""eve.json blocks parsed ahead on threads (``readers/_eve_ahead``) give exactly what parsing each
block only when it is wanted gives: the same tables, records, skip counts and messages in order."""

from __future__ import annotations

import gzip
import json
import random
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from abfluss.readers import _eve_ahead, _eve_fast, _zeek_source, base, suricata
from abfluss.readers.base import ReadReport

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EVE = DATA / "slips" / "test6-malicious.suricata.json"


def _mix(path: Path, gzipped: bool = False, cut: bool = False) -> Path:
    """The Slips events, then a shuffled DNS-heavy mix of them with garbage lines, lines longer
    than the (lowered) line limit, blank lines and JSON nulls (those blocks go line by line);
    the last line without its newline. ``cut``: a gzip stream cut short."""
    lines = EVE.read_text().splitlines()
    dns = [x for x in lines if json.loads(x)["event_type"] == "dns"]
    rnd = random.Random(15)
    pool = dns * 3 + rnd.sample(lines, 400)
    rnd.shuffle(pool)
    out = list(lines)
    for n, x in enumerate(pool):
        if n % 173 == 7:
            out.append("garbage {")
        if n % 389 == 11:
            out.append(json.dumps({"event_type": "fileinfo", "timestamp": "2021-06-06T15:57:37.272281+0200",
                                   "pad": "x" * 5000}))
        if n % 409 == 13:
            out.append("")
        if n % 257 == 17:
            out.append(x.replace('"rcode":', '"unused":null,"rcode":', 1))
        out.append(x)
    text = ("\n".join(out)).encode()
    if not gzipped:
        path.write_bytes(text)
        return path
    packed = gzip.compress(text)
    path.write_bytes(packed[: len(packed) * 19 // 20] if cut else packed)
    return path


def _read(path: Path) -> tuple[dict[str, pa.Table], ReadReport]:
    report = ReadReport(path=str(path))
    parts: dict[str, list[pa.Table]] = {}
    for name, table in suricata.read(path, report):
        parts.setdefault(name, []).append(table)
    return {name: pa.concat_tables(ts) for name, ts in parts.items()}, report


@pytest.mark.parametrize("block, chunk, gzipped, cut", [
    (1 << 14, 97, False, False),
    (1 << 15, 1000, False, False),
    (1 << 16, 250, True, False),
    (1 << 14, 300, True, True),
])
def test_blocks_parsed_ahead_give_what_one_at_a_time_gives(tmp_path, monkeypatch, block, chunk, gzipped, cut):
    path = _mix(tmp_path / "eve.json", gzipped, cut)
    monkeypatch.setattr(suricata, "BLOCK", block)
    monkeypatch.setattr(suricata, "CHUNK", chunk)
    monkeypatch.setattr(_zeek_source, "MAX_LINE", 3000)
    monkeypatch.setattr(base, "MAX_MESSAGES", 10**6)  # every message, to compare their order

    monkeypatch.setattr(_eve_ahead, "AHEAD", 0)  # each block parsed when wanted, on this thread
    one, one_report = _read(path)

    parse, threads, rnd = _eve_fast.parse, set(), random.Random(3)

    def slow_parse(*a):  # blocks finish out of order
        threads.add(threading.current_thread().name)
        time.sleep(rnd.random() * 0.01)
        return parse(*a)

    monkeypatch.setattr(_eve_fast, "parse", slow_parse)
    monkeypatch.setattr(_eve_ahead, "WORKERS", 3)
    monkeypatch.setattr(_eve_ahead, "AHEAD", 4)
    ahead, ahead_report = _read(path)

    assert any(t.startswith("eve-parse") for t in threads)
    assert one.keys() == ahead.keys() and one["dns"].num_rows > (200 if cut else 500)
    for name in one:
        assert one[name].equals(ahead[name]), name
    assert dict(one_report.records) == dict(ahead_report.records)
    assert (one_report.skipped, one_report.messages) == (ahead_report.skipped, ahead_report.messages)
    reasons = " ".join(one_report.messages)
    assert "invalid JSON" in reasons and "longer than 3000 bytes" in reasons
    assert ("truncated or corrupt" in reasons) == cut


def test_a_file_of_one_block_starts_no_thread(tmp_path, monkeypatch):
    path = tmp_path / "eve.json"
    path.write_bytes(EVE.read_bytes()[:100_000].rsplit(b"\n", 1)[0] + b"\n")
    before = threading.active_count()
    started = []
    monkeypatch.setattr(_eve_ahead, "ThreadPoolExecutor", lambda *a, **k: started.append(a))
    tables, _ = _read(path)
    assert tables["flows"].num_rows and not started and threading.active_count() == before
