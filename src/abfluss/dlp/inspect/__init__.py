"""Payload inspection of a capture: sensitive values per flow side, and what could be read.

The public entry is ``inspect_pcap(path, key, Settings(...))`` -> ``Inspection`` (two Arrow
tables); ``Inspector`` takes packets one by one (tests, fuzzing).

One pass over the packets (sliced to L4 without full decoding, in C) rebuilds each TCP
direction in order (``streams``), names and decodes its application (``decode``) and runs the
detectors (``scanner``) over the decoded text. Only counts, keyed hashes and masked forms
leave this package: the ``dlp`` table has one row per flow side, category and distinct value
(its HMAC) with the number of hits, timed at the flow's start so it falls in the same analysis
window as the flow; ``inspected`` has one row per flow side with the payload
bytes, the bytes the detectors read, the gaps, and whether the side was encrypted (TLS, SSH,
QUIC: counted, never read). Rows carry the flow's Community ID, so they join with ``flows``.
The same pass writes the protocol records (``sessions``: HTTP requests and responses, SMTP
and FTP logins, executables, SSH banners) into the tables Zeek's logs fill; it runs for them
alone (nothing scanned, no ``dlp``/``inspected`` rows) when a capture is read without inspection.

Nothing here may put payload into a message: decoder errors are swallowed (the side is then
read raw), and the caller reports failures by exception type only.

Modules: ``settings`` (the limits), ``capture`` (reading a capture file: the entry),
``inspector`` (packets to flows, sweeps), ``_loop.c`` (the per-packet loop in C, the module
``_abfluss_inspect``: records, slicing, packets that continue an open flow), ``flows`` (a flow's
sides: reassembly, sniffing, decoding, tallies), ``rows`` (the output tables).
"""

from .capture import InspectionError, inspect_pcap
from .inspector import Inspection, Inspector
from .settings import Settings

__all__ = ["Inspection", "InspectionError", "Inspector", "Settings", "inspect_pcap"]
