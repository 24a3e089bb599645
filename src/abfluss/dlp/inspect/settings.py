"""Limits of payload inspection (``Settings``), documented field by field."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Settings:
    max_buffered_bytes: int = field(default=4 << 20, metadata={
        "help": "Per flow side: bytes of out-of-order segments held while waiting for a missing "
                "one, and the largest mail or multipart body decoded whole (larger: scanned raw)."})
    max_decoded_bytes: int = field(default=64 << 20, metadata={
        "help": "Per unit (an HTTP body, a mail part, a file): decompressed bytes read at most, "
                "all archive members and nesting levels together (a bomb stops here)."})
    max_ratio: float = field(default=100.0, metadata={
        "help": "A compressed member or body beyond 1 MiB may expand at most this many times its "
                "compressed size (real exports compress 5-20x; a bomb 1000x); the rest is not read."})
    max_depth: int = field(default=4, metadata={
        "help": "Containers opened inside each other at most (zip in tar.gz in base64 …)."})
    chunk_bytes: int = field(default=64 << 10, metadata={
        "help": "Decoded text is scanned in chunks of about this size per flow side."})
    context_bytes: int = field(default=128, metadata={
        "help": "Bytes of the neighbouring chunks scanned with a chunk, for anchors near a value "
                "(the detectors look 64 bytes around a value)."})
    binary_share: float = field(default=0.10, metadata={
        "help": "A write (a packet's payload, a decoded part or body piece) with more than this "
                "share of control bytes (sampled at its start and middle) is binary (image, "
                "archive, ciphertext) and not scanned."})
    idle_timeout: float = field(default=120.0, metadata={
        "help": "Seconds without a packet after which a flow is complete (as the flow meter's)."})
    close_linger: float = field(default=10.0, metadata={
        "help": "Seconds a flow is kept after FIN or RST for late retransmissions."})
    internal_networks: tuple = field(default=(), metadata={
        "help": "CIDRs of the organisation (ingest passes networks.internal). A flow side sent by "
                "an external address to an internal one (a download, an inbound request) is then "
                "counted but not read: it cannot be an outflow, and reading less is data "
                "minimisation. Empty: every side is read."})
