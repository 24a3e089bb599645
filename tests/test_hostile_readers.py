"""Hostile log files (issue 13, item 8): every crafted file is one line naming file and position,
the other inputs of the same ingest are still stored, and ``watch --eve`` keeps running."""

from __future__ import annotations

import json
import shutil

from conftest import EXAMPLES, data, run_cli

from abfluss.ingest import ingest_paths
from abfluss.readers.base import MAX_LINE
from abfluss.watch.loop import Watcher

CONN_FIELDS = "ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto".split()


def _conn(sep: bytes, rows: list[list[bytes]], sep_decl: bytes | None = None) -> bytes:
    head = b"#separator " + (sep_decl if sep_decl is not None else b"\\x%02x" % sep[0]) + b"\n"
    head += b"#path" + sep + b"conn\n#fields" + sep + sep.join(f.encode() for f in CONN_FIELDS) + b"\n"
    return head + b"".join(sep.join(r) + b"\n" for r in rows)


def _row(i: int) -> list[bytes]:
    return [b"1700000000.%d" % i, b"C%d" % i, b"10.0.0.1", b"40000", b"198.51.100.7", b"443", b"tcp"]


def _eve(i: int) -> bytes:
    return json.dumps({"timestamp": f"2024-02-08T15:00:{i:02d}.000000+0000", "flow_id": i, "event_type": "flow",
                       "src_ip": "10.1.1.5", "src_port": 50000 + i, "dest_ip": "203.0.113.9", "dest_port": 443,
                       "proto": "TCP", "flow": {"bytes_toserver": 100, "bytes_toclient": 50,
                                                "start": "2024-02-08T15:00:00.000000+0000"}}).encode() + b"\n"


DEEP = b'{"timestamp": "2024-02-08T15:00:00Z", "event_type": "flow", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"


def _crafted(tmp_path):
    files = {
        "bad_escape.log": _conn(b"\t", [_row(1)], sep_decl=b"\\xZ"),
        "nul_sep.log": _conn(b"\x00", [_row(1)]),
        "cr_field.log": _conn(b"\t", [_row(1)[:1] + [b"C\r1"] + _row(1)[2:], _row(2)]),
        "bad_utf8_path.json": b'{"_path": "co\xffnn", "ts": 1700000000.5, "uid": "C1", "id.orig_h": "10.0.0.1", '
                              b'"id.orig_p": 1, "id.resp_h": "198.51.100.7", "id.resp_p": 443, "proto": "tcp"}\n',
        "deep_second.json": _eve(1) + DEEP,
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    return files


def test_crafted_logs_fail_alone_with_one_line_each(ws, tmp_path):
    """Before: each of these raised out of ``ingest`` (UnicodeDecodeError, ValueError,
    ArrowInvalid, RecursionError) and the good file after them was never stored."""
    src = tmp_path / "in"
    src.mkdir()
    _crafted(src)
    good = src / "zz_good.conn.log"
    shutil.copy(data("slips/port-scans/horizontal-portscan.conn.log"), good)
    res = {r.path.rsplit("/", 1)[-1]: r for r in ingest_paths(ws, [src])}
    assert res["zz_good.conn.log"].status == "stored" and res["zz_good.conn.log"].total > 0
    assert res["bad_escape.log"].status == "failed"
    assert any("line 1: unusable #separator" in m for m in res["bad_escape.log"].messages)
    assert res["nul_sep.log"].status == "failed"
    assert any("line 1: unusable #separator" in m for m in res["nul_sep.log"].messages)
    cr = res["cr_field.log"]
    assert (cr.status, cr.records, cr.skipped) == ("stored", {"flows": 1}, 1)
    assert cr.messages == [f"{src / 'cr_field.log'}: line 4: carriage return inside a field"]
    bad = res["bad_utf8_path.json"]
    assert bad.status == "failed" and "line 1: invalid JSON" in bad.messages[0]
    deep = res["deep_second.json"]
    assert (deep.status, deep.records, deep.skipped) == ("stored", {"flows": 1}, 1)
    assert deep.messages == [f"{src / 'deep_second.json'}: line 2: invalid JSON: nested too deep"]


def test_deeply_nested_first_line_is_one_line_on_the_cli(tmp_path):
    (tmp_path / "deep.json").write_bytes(DEEP)
    p = run_cli("ingest", str(tmp_path / "deep.json"), workspace=tmp_path / "ws")
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert "deep.json: byte 0: not a recognised format" in p.stderr


def test_overlong_lines_are_skipped_and_counted(ws, tmp_path):
    """A line over MAX_LINE bytes is skipped with its number; the lines after it are read."""
    long_field = b"x" * (MAX_LINE + 10)
    zeek = tmp_path / "long.conn.log"
    zeek.write_bytes(_conn(b"\t", [_row(1), _row(2)[:1] + [long_field] + _row(2)[2:], _row(3)]))
    eve = tmp_path / "long_eve.json"
    eve.write_bytes(_eve(1) + b'{"event_type": "flow", "pad": "' + long_field + b'"}\n' + _eve(3))
    squid = tmp_path / "access.log"
    good = next(x for x in (EXAMPLES / "squid" / "access.log").read_bytes().splitlines(keepends=True) if b"TCP_MISS/200" in x)
    squid.write_bytes(good + b"1700000000.000 " + long_field + b"\n" + good)
    argus = tmp_path / "long.binetflow"
    head = b"StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,Label\n"
    flow = b"2011/08/10 09:46:%02d.047277,1.0,tcp,10.0.0.1,1234,->,198.51.100.7,80,S_,0,0,2,120,60,x\n"
    argus.write_bytes(head + flow % 1 + b"2011/08/10 09:46:02," + long_field + b"\n" + flow % 3
                      + b"2011/08/10 09:46:04,1.0,tcp,10.0.0.1,1234,->,198.51.100.7,80,S_,0,0,2,120,60,\"" + b"y" * 200_000
                      + b"\"\n" + flow % 5)
    z, e, q, a = ingest_paths(ws, [zeek, eve, squid, argus])
    assert (a.status, a.records.get("flows")) == ("stored", 3)
    assert a.messages[0] == f"{argus}: line 3: longer than {MAX_LINE} bytes: skipped" and a.skipped == 2
    assert (z.status, z.records, z.skipped) == ("stored", {"flows": 2}, 1)
    assert z.messages == [f"{zeek}: line 5: longer than {MAX_LINE} bytes: skipped"]
    assert (e.status, e.records, e.skipped) == ("stored", {"flows": 2}, 1)
    assert e.messages == [f"{eve}: line 2: longer than {MAX_LINE} bytes: skipped"]
    assert (q.status, q.skipped) == ("stored", 1) and q.records.get("flows") == 2
    assert q.messages == [f"{squid}: line 2: longer than {MAX_LINE} bytes: skipped"]


def test_watch_eve_survives_hostile_lines(ws, tmp_path):
    """Before: a chunk starting with a deeply nested line raised out of ``poll`` (and, restarted,
    again at the same offset); a line longer than a poll's read waited forever."""
    eve = tmp_path / "eve.json"
    eve.write_bytes(DEEP + _eve(1))
    w = Watcher(ws)
    w.add_eve(eve)
    assert w.poll_sources() == 1
    with open(eve, "ab") as f:
        f.write(b'{"pad": "' + b"y" * (20 << 20) + b'"}\n' + _eve(2))
    assert w.poll_sources() == 1
    follower = w.sources[0].impl
    assert follower.skips and "line longer than" in follower.skips[0]
    assert ws.con.execute("SELECT count(*) FROM flows_raw").fetchall()[0][0] == 2
