"""Each input is hashed once (issue 15): the SHA-256 it is stored under is computed while the
reader reads it; a file is hashed before reading only when the catalog holds an input of its
length (a possible duplicate), so a file already stored is still never read or stored twice.
Until the hash is known the rows carry a provisional id, replaced in the Parquet files."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest

import pyarrow.parquet as pq

from abfluss import ingest
from abfluss.ingest import ingest_file, ingest_paths
from abfluss.readers import base, suricata
from conftest import data

EVE = "slips/test6-malicious.suricata.json"


def _counting(monkeypatch) -> list:
    """Calls of the hash before reading, and of the eve reader."""
    calls: list = []
    hashed, read = ingest.sha256_file, suricata.read
    monkeypatch.setattr(ingest, "sha256_file", lambda p: calls.append("hash") or hashed(p))
    monkeypatch.setattr(suricata, "read", lambda p, r: calls.append("read") or read(p, r))
    return calls


def test_new_input_is_hashed_while_read_and_its_rows_carry_the_hash(ws, tmp_path, monkeypatch):
    src = tmp_path / "eve.json"
    shutil.copy(data(EVE), src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    calls = _counting(monkeypatch)
    r = ingest_file(ws, src, inspect=False)
    assert r.status == "stored" and r.input_id == digest and calls == ["read"]  # no hash before reading
    assert r.records == {"flows": 3512, "alerts": 745, "dns": 340, "http": 56, "tls": 1}
    files = ws.con.execute("SELECT path FROM files ORDER BY path").fetchall()
    assert files and all(p.rsplit("/", 1)[1].startswith(digest[:16] + "-") for (p,) in files)
    for (p,) in files:  # every row of every file, read back by Parquet and by DuckDB
        assert set(pq.read_table(ws.root / p, columns=["input_id"]).column(0).to_pylist()) == {digest}
    for table in r.records:
        assert ws.con.execute(f"SELECT list(DISTINCT input_id) FROM {table}_raw").fetchall()[0][0] == [digest]
    assert ws.con.execute("SELECT input_id, size FROM inputs").fetchall() == [(digest, src.stat().st_size)]

    # the same content again (another name): its length is known, so it is hashed first and not read
    again = tmp_path / "again.json"
    shutil.copy(src, again)
    calls.clear()
    assert ingest_file(ws, again, inspect=False).status == "duplicate" and calls == ["hash"]

    # other content of the same length: hashed before reading (it could have been a duplicate), stored
    other = tmp_path / "other.json"
    other.write_bytes(src.read_bytes().replace(b'"flow_id":', b'"flow_id" :', 1)[:-1])
    assert other.stat().st_size == src.stat().st_size
    calls.clear()
    r2 = ingest_file(ws, other, inspect=False)
    assert r2.status == "stored" and calls == ["hash", "read"]
    assert r2.input_id == hashlib.sha256(other.read_bytes()).hexdigest() != digest


def test_a_directory_hashes_only_same_length_files_first(ws, tmp_path, monkeypatch):
    """In one call: the second copy of a content (same length as one staged before it) is
    hashed before reading, and stored once; the parallel path gives the same results."""
    folder = tmp_path / "logs"
    folder.mkdir()
    text = data(EVE).read_bytes()
    (folder / "a.json").write_bytes(text)
    (folder / "b.json").write_bytes(text[: len(text) // 2].rsplit(b"\n", 1)[0] + b"\n")
    (folder / "c.json").write_bytes(text)
    calls = _counting(monkeypatch)
    results = ingest_paths(ws, [folder], jobs=1, inspect=False)
    assert [r.status for r in results] == ["stored", "stored", "duplicate"]
    assert calls.count("hash") == 1 and results[0].input_id == results[2].input_id
    assert ws.con.execute("SELECT count(*) FROM inputs").fetchall()[0][0] == 2


def test_a_capture_is_hashed_beside_the_meter(ws, monkeypatch):
    """NFStream reads a capture itself: its hash is computed on a thread while the meter runs
    (``Content.hash_aside``), not after it, and is the hash of the file."""
    used = []
    result = base._Aside.result
    monkeypatch.setattr(base._Aside, "result", lambda self: used.append(result(self)) or used[-1])
    src = data("slips/test8-malicious.pcap")
    r = ingest_file(ws, src, inspect=False)
    assert r.status == "stored" and r.input_id == hashlib.sha256(src.read_bytes()).hexdigest()
    assert len(used) == 1 and used[0] is not None and 0 < used[0][1] <= src.stat().st_size


@pytest.mark.parametrize("change", ["append", "rewrite"])
def test_what_is_hashed_aside_counts_only_for_an_unchanged_file(tmp_path, change):
    """A file changed after the thread hashed it (grown, or rewritten in place at the same length)
    is hashed again by ``finish``: the hash is that of the file as it is then, as without the thread."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 3_000_000)
    content = base.Content(path)
    content.hash_aside()
    content._aside.join()
    if change == "append":
        with open(path, "ab") as f:
            f.write(b"b")
    else:
        path.write_bytes(b"c" * 3_000_000)
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    digest, size, grew = content.finish()
    assert (digest, size, grew) == (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size, False)
    unchanged = base.Content(path)
    unchanged.hash_aside()
    assert unchanged.finish()[:2] == (digest, size)
    hashed_before = base.Content(path, aside=False)  # the file was hashed before reading: no thread
    hashed_before.hash_aside()
    assert hashed_before._aside is None and hashed_before.finish()[:2] == (digest, size)
