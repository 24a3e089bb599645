"""The pcap reader's worker results, received on a thread while NFStream meters.

A DNS worker is done long before the meter (a fifth of its time on an ordinary mix) and then
waits, its tables unsent, until someone reads its pipe; the inspection worker too on most
captures. Received after the meter, they were tens of milliseconds of an ingest's serial end.
``Inbox`` receives every message on a thread from ``start`` on (called at NFStream's first
flow: its processes are forked by then, no thread runs while this process forks), and hands
them over in the order the workers sent them; the reader turns them into tables as before.
Without ``start`` (no flow came) the messages are received when asked for.
"""

from __future__ import annotations

import threading

#: What a worker's pipe gives when it ended without sending (died, killed).
EOF = ("eof",)


class Inbox:
    """The DNS workers' one message each and the inspection workers' messages up to "done" or
    "error" (each list stopping at the first worker that ended without, or failed: the reader
    stops there too)."""

    def __init__(self, dns: list, inspection: list):
        self._dns, self._inspection = dns, inspection
        self._got_dns: list | None = None
        self._got_inspection: list | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._dns_done = threading.Event()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="abfluss-inbox", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            try:
                self._got_dns = _receive_dns(self._dns)
            finally:
                self._dns_done.set()
            self._got_inspection = _receive_inspection(self._inspection)
        except BaseException as e:  # noqa: BLE001 - raised in the reading thread, as it was there
            self._error = e

    def dns(self) -> list:
        """One message per DNS worker, ``EOF`` for one that ended without (and none after it)."""
        if self._thread is None:
            return _receive_dns(self._dns)
        self._dns_done.wait()
        return self._result(self._got_dns)

    def inspection(self) -> list[list]:
        """Per inspection worker, its messages up to its "done" or "error" (``EOF`` counts as one)."""
        if self._thread is None:
            return _receive_inspection(self._inspection)
        self._thread.join()
        return self._result(self._got_inspection)

    def _result(self, got):
        if got is None:
            raise self._error if self._error is not None else RuntimeError("worker results not received")
        return got

    def stop(self, workers: list) -> None:
        """Before the pipes are closed: a thread still receiving (the reader stopped early) is
        ended by ending the workers, whose results nobody wants then."""
        if self._thread is not None and self._thread.is_alive():
            for _receiver, worker in workers:
                worker.kill()
            self._thread.join()


def _recv(conn):
    try:
        return conn.recv()
    except EOFError:
        return EOF


def _receive_dns(conns: list) -> list:
    got = []
    for conn in conns:
        got.append(msg := _recv(conn))
        if msg is EOF or msg[0] == "error":
            break
    return got


def _receive_inspection(conns: list) -> list[list]:
    got = []
    for conn in conns:
        got.append(msgs := [])
        while True:
            msgs.append(msg := _recv(conn))
            if msg is EOF or msg[0] in ("done", "error"):
                break
        if msg[0] != "done":
            break
    return got
