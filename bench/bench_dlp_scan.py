"""Benchmark: DLP Scanner.scan throughput (MB/s on one core) on ~20 MB of mixed synthetic text.

Usage: python bench/bench_dlp_scan.py [--mb 20] [--chunk 65536]. The text mixes German prose (UTF-8
and Latin-1 umlauts), JSON with numbers and decimals, HTML, order lines with KVNR-shaped numbers
whose check digit is wrong, and a few real-shaped identifiers in context; it is scanned in
payload-sized chunks as the pcap inspection does. Each kind is also timed on its own, plus a dense
CSV of insured persons (the worst case: every line holds values that need context checks).
"""

from __future__ import annotations

import argparse
import random
import time  # process_time: CPU seconds of this core, not disturbed by other load

from abfluss.dlp import Scanner
from abfluss.dlp.identifiers import idnr_check_digit, kvnr_check_digit

WORDS = ("der die das und Versicherung Patient Rechnung Bestellung Datum Straße Größe Müller Köln über "
         "the and of http www html div class span value Termin Praxis Befund Überweisung").split()


def kvnr(rng: random.Random, valid: bool = True) -> str:
    body = chr(65 + rng.randrange(26)) + "".join(rng.choice("0123456789") for _ in range(8))
    check = kvnr_check_digit(body)
    return body + str(check if valid else (check + 1) % 10)


def idnr(rng: random.Random) -> str:
    while True:
        head = "".join(rng.sample("123456789", 1) + rng.sample("0123456789", 8))
        head += head[rng.randrange(9)]
        if head[8] != head[9]:
            return head + str(idnr_check_digit(head))


def prose(rng, latin1: bool) -> bytes:
    s = " ".join(rng.choice(WORDS) for _ in range(14)) + ".\n"
    return s.encode("latin-1" if latin1 else "utf-8")


def json_line(rng) -> bytes:
    return (f'{{"id": {rng.randrange(10**6)}, "price": {rng.random() * 100:.6f}, "ts": "2024-05-'
            f'{rng.randrange(1, 29):02d}T12:{rng.randrange(60):02d}:00Z", '
            f'"name": "{rng.choice(WORDS)}"}}\n').encode()


def html_line(rng) -> bytes:
    return (f'<div class="x{rng.randrange(1000)}"><a href="/p/{rng.randrange(10**8)}">'
            f'{rng.choice(WORDS)}</a></div>\n').encode()


def order_line(rng) -> bytes:
    return (f"Bestellung {kvnr(rng, valid=False)};{rng.randrange(1000)},{rng.randrange(100):02d} EUR;"
            f"ORD{rng.randrange(10**9):09d}\n").encode()


def record_line(rng) -> bytes:
    return (f"Versichertennummer: {kvnr(rng)} Steuer-ID {idnr(rng)} Tel. 0201 {rng.randrange(10**6, 10**7)} "
            f"mail p{rng.randrange(10**5)}@praxis.de\n").encode()


KINDS = {"prose-utf8": lambda r: prose(r, False), "prose-latin1": lambda r: prose(r, True),
         "json": json_line, "html": html_line, "orders": order_line, "records": record_line}
MIX = (("prose-utf8", 0.25), ("prose-latin1", 0.1), ("json", 0.3), ("html", 0.2), ("orders", 0.149),
       ("records", 0.001))


def mixed(rng, size: int) -> bytes:
    names, weights = zip(*MIX)
    parts, n = [], 0
    while n < size:
        b = KINDS[rng.choices(names, weights)[0]](rng)
        parts.append(b)
        n += len(b)
    return b"".join(parts)


def of_kind(rng, kind: str, size: int) -> bytes:
    parts, n = [], 0
    while n < size:
        b = KINDS[kind](rng)
        parts.append(b)
        n += len(b)
    return b"".join(parts)


def dense_csv(rng, size: int) -> bytes:
    lines, n = [b"kvnr;name;iban;telefon\n"], 0
    while n < size:
        b = (f"{kvnr(rng)};Müller;DE{rng.randrange(10, 99)}{rng.randrange(10**17, 10**18)};"
             f"0170 {rng.randrange(10**6, 10**7)}\n").encode()
        lines.append(b)
        n += len(b)
    return b"".join(lines)


def rate(scanner: Scanner, data: bytes, chunk: int) -> tuple[float, int]:
    t = time.process_time()
    hits = sum(len(scanner.scan(data[i:i + chunk])) for i in range(0, len(data), chunk))
    return len(data) / 1e6 / (time.process_time() - t), hits


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=20.0)
    ap.add_argument("--chunk", type=int, default=65536)
    args = ap.parse_args()
    rng = random.Random(1)
    size = int(args.mb * 1e6)
    scanner = Scanner(b"\x01" * 32)
    data = mixed(rng, size)
    mbs, hits = rate(scanner, data, args.chunk)
    print(f"mixed        {len(data) / 1e6:6.1f} MB  {mbs:7.1f} MB/s  {hits} hits")
    for kind in KINDS:
        d = of_kind(rng, kind, size // 8)
        mbs, hits = rate(scanner, d, args.chunk)
        print(f"{kind:12s} {len(d) / 1e6:6.1f} MB  {mbs:7.1f} MB/s  {hits} hits")
    d = dense_csv(rng, size // 8)
    mbs, hits = rate(scanner, d, len(d))
    print(f"dense-csv    {len(d) / 1e6:6.1f} MB  {mbs:7.1f} MB/s  {hits} hits (one payload)")


if __name__ == "__main__":
    main()
