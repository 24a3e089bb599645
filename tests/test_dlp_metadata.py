"""Metadata inspected like payload (dlp/metadata.py): identifiers in stored text columns are
masked in place and counted as dlp rows; the end-to-end leak test is in test_dlp_inspect.py."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from abfluss import schema
from abfluss.dlp import identifiers as ids
from abfluss.dlp.keys import value_hash
from abfluss.dlp.metadata import Scrubber

KEY = b"k" * 32
TS = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def _same_mask_kvnrs() -> list[str]:
    """Two valid KVNRs with one masked form (A12******0)."""
    out = []
    for n in range(100000, 999999):
        body = f"A12{n:06d}"
        if ids.kvnr_check_digit(body) == 0:
            out.append(body + "0")
            if len(out) == 2:
                return out
    raise AssertionError


def test_dns_names_are_masked_and_each_value_counted_by_its_own_hash():
    k1, k2 = _same_mask_kvnrs()
    t = schema.conform("dns", pa.table({
        "ts": [TS, TS, TS], "orig_h": ["10.0.0.1"] * 3, "orig_p": [1, 2, 3], "resp_h": ["198.51.100.53"] * 3,
        "resp_p": [53] * 3, "proto": ["udp"] * 3,
        "query": [f"{k1.lower()}.x.test", f"{k2.lower()}.y.test", "www.example.test"],
        "answers": [[f"{k1}.cdn.test"], None, ["192.0.2.1"]]}))
    keys = []
    out, rows = Scrubber(lambda: keys.append(1) or KEY).scrub("dns", t)
    assert out.column("query").to_pylist() == ["A12******0.x.test", "A12******0.y.test", "www.example.test"]
    assert out.column("answers").to_pylist() == [["A12******0.cdn.test"], None, ["192.0.2.1"]]
    got = sorted((r["app"], r["orig_p"], r["hmac"]) for r in rows)
    assert got == sorted([("dns.query", 1, value_hash(KEY, "kvnr", k1)), ("dns.query", 2, value_hash(KEY, "kvnr", k2)),
                          ("dns.answers", 1, value_hash(KEY, "kvnr", k1))])
    assert all(r["community_id"] for r in rows) and keys  # the key was fetched: something was found


def test_nothing_found_needs_no_key_and_changes_nothing():
    t = schema.conform("http", pa.table({"ts": [TS], "host": ["tux319.loginserver.ch"], "uri": ["/a/b?x=123"],
                                         "user_agent": ["Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"]}))

    def no_key():
        raise AssertionError("the key is fetched only when a value holds an identifier")

    out, rows = Scrubber(no_key).scrub("http", t)
    assert rows == [] and out.equals(t)


def test_software_banners_are_masked_too():
    """An SSH banner is text the sender chooses (``SSH-2.0-<anything>``): scanned like a URI."""
    k1, _ = _same_mask_kvnrs()
    t = schema.conform("software", pa.table({
        "ts": [TS, TS], "host": ["10.0.0.1", "10.0.0.2"], "kind": ["ssh-client"] * 2,
        "name": [f"Tool-{k1}", "OpenSSH"], "version": [f"OpenSSH_9.6 {k1}", "OpenSSH_9.6"]}))
    out, rows = Scrubber(lambda: KEY).scrub("software", t)
    assert out.column("name").to_pylist() == ["Tool-A12******0", "OpenSSH"]
    assert out.column("version").to_pylist() == ["OpenSSH_9.6 A12******0", "OpenSSH_9.6"]
    assert {(r["app"], r["category"], r["hmac"]) for r in rows} == {
        ("software.name", "kvnr", value_hash(KEY, "kvnr", k1)), ("software.version", "kvnr", value_hash(KEY, "kvnr", k1))}
