"""The pcap reader's worker results are received on a thread while NFStream meters
(``readers/_inbox.py``): the tables, counts and messages are the ones receiving them after the
meter gave, also when a worker fails or dies, and a reader stopped early leaves nothing running."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

import pytest

from abfluss.errors import InputError
from abfluss.readers import _inbox, pcap
from abfluss.readers.base import ReadReport
from conftest import EXAMPLES

CAPTURE = EXAMPLES / "lab-dlp-exports.pcap"  # flows, DNS, HTTP and identifiers found by inspection
KEY = bytes(range(32))


def read_all(path=CAPTURE):
    report = ReadReport(str(path))
    out = [(name, t.to_pylist()) for name, t in pcap.read(path, report, inspect_key=KEY)]
    return out, report


def test_received_during_the_meter_as_after_it(monkeypatch):
    threads = []
    run = _inbox.Inbox._run
    monkeypatch.setattr(_inbox.Inbox, "_run", lambda self: threads.append(threading.current_thread().name) or run(self))
    during, report = read_all()
    assert threads == ["abfluss-inbox"]
    monkeypatch.setattr(_inbox.Inbox, "start", lambda self: None)  # received when asked for, after the meter
    after, again = read_all()
    assert {name for name, _ in during} >= {"flows", "dns", "http", "dlp", "inspected"}
    assert during == after
    assert list(report.records.items()) == list(again.records.items())
    assert (report.skipped, report.messages) == (again.skipped, again.messages)


def test_an_inspection_worker_that_dies_leaves_the_flows(monkeypatch):
    monkeypatch.setattr(pcap, "_inspect_worker", lambda *args: os._exit(3))
    tables, report = read_all()
    names = {name for name, _ in tables}
    assert "flows" in names and "dns" in names and not names & {"http", "dlp", "inspected"}
    assert any("payload inspection: failed (stopped)" in m for m in report.messages)


def test_an_inspection_failure_is_reported_by_its_type(monkeypatch):
    import abfluss.dlp.inspect as inspect

    monkeypatch.setattr(inspect, "inspect_pcap", lambda *args, **kw: 1 / 0)
    tables, report = read_all()
    assert "flows" in {name for name, _ in tables}
    assert any("payload inspection: failed (ZeroDivisionError)" in m for m in report.messages)


def test_a_dns_worker_that_dies_fails_the_input(monkeypatch):
    monkeypatch.setattr(pcap, "_scan_worker", lambda *args: os._exit(3))
    with pytest.raises(InputError, match="no packet could be read"):
        read_all()


def test_a_reader_stopped_early_ends_its_workers_at_once(monkeypatch):
    """Stopped while the inbox still waits for an inspection worker: the worker is ended, not
    waited for, and no process or thread of the reader is left. The workers run at a lower
    priority than NFStream's meter (``WORKER_NICE``)."""
    monkeypatch.setattr(pcap, "_inspect_worker", lambda *args: time.sleep(60))
    report = ReadReport(str(CAPTURE))
    reader = pcap.read(CAPTURE, report, inspect_key=KEY)
    next(reader)  # the first table comes once the meter has ended
    waiting = multiprocessing.active_children()
    lowered = min(19, os.getpriority(os.PRIO_PROCESS, 0) + pcap.WORKER_NICE)
    assert waiting and [os.getpriority(os.PRIO_PROCESS, w.pid) for w in waiting] == [lowered] * len(waiting)
    started = time.monotonic()
    reader.close()
    assert time.monotonic() - started < 4
    assert multiprocessing.active_children() == []
    assert not any(t.name == "abfluss-inbox" for t in threading.enumerate())
