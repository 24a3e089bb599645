"""DNS names in Zeek's escaped form (``\\xNN`` for every byte that is not printable ASCII, see
``readers._dns_wire``): the text helpers the readers and the DNS detections share. A module of its
own so that a detection does not import the readers (pyarrow's readers, dpkt) to read a name."""

from __future__ import annotations

import re

ESCAPE_RE = re.compile(r"\\x[0-9a-fA-F]{2}")


def label_bytes(text: str) -> int:
    """The bytes an escaped name's labels hold (dots between labels not counted)."""
    return len(ESCAPE_RE.sub("_", text)) - text.count(".")


def unescape(text: str) -> str:
    """The escaped text with each ``\\xNN`` back as the one character of that code point."""
    if "\\x" not in text:
        return text
    return ESCAPE_RE.sub(lambda m: chr(int(m.group(0)[2:], 16)), text)
