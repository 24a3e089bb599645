"""Zeek's x509.log into the ``certs`` table, and the ssl.log fields that point at it.

Zeek logs each certificate it parses once in x509.log and lets ssl.log refer to it: up to
Zeek 4.1 by file id (``id`` in x509.log, ``cert_chain_fuids`` in ssl.log), from 4.2 by the
certificate's SHA-256 (``fingerprint``, ``cert_chain_fps``) once certificate logging is
de-duplicated. Either is the join key (``certs.fuid`` = an element of ``tls.cert_fuids``),
so handshakes and certificates join the same way whatever the Zeek version.
"""

from __future__ import annotations

import pyarrow.compute as pc

from ._zeek_types import BOOL, LIST_STR, OPT_TIME, STR, TIME, to_ts

#: x509.log: (column, Zeek field, kind). The validity bounds are optional times (a missing one
#: is no reason to lose the certificate; JSON logs with ISO times write them as ISO strings).
X509 = [("ts", "ts", TIME), ("fuid", "id", STR), ("_fp", "fingerprint", STR),
        ("subject", "certificate.subject", STR), ("issuer", "certificate.issuer", STR),
        ("_before", "certificate.not_valid_before", OPT_TIME), ("_after", "certificate.not_valid_after", OPT_TIME),
        ("san_dns", "san.dns", LIST_STR), ("san_ip", "san.ip", LIST_STR), ("ca", "basic_constraints.ca", BOOL)]

#: ssl.log fields beyond the handshake's names: the server's fingerprint, Zeek's verdict on the
#: chain and the chain itself (by file id, or by fingerprint from Zeek 4.2 on).
SSL_EXTRA = [("ja3s", "ja3s", STR), ("validation_status", "validation_status", STR),
             ("cert_fuids", "cert_chain_fuids", LIST_STR), ("_fps", "cert_chain_fps", LIST_STR)]


def is_x509(cols: set) -> bool:
    """Whether a log without a path is an x509.log, by its field names."""
    return "certificate.subject" in cols or {"certificate.serial", "san.dns"} <= cols


def derive_x509(cols: dict, n: int) -> None:
    fuid, fp = cols.get("fuid"), cols.pop("_fp", None)
    if fp is not None:
        cols["fuid"] = fp if fuid is None else pc.coalesce(fuid, fp)
    for out, src in (("not_before", "_before"), ("not_after", "_after")):
        col = cols.pop(src, None)
        if col is not None:
            cols[out] = to_ts(col)


def derive_ssl(cols: dict, n: int) -> None:
    fps = cols.pop("_fps", None)
    if fps is not None:
        cols["cert_fuids"] = fps if cols.get("cert_fuids") is None else pc.coalesce(cols["cert_fuids"], fps)
