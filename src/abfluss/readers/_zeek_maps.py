"""Which Zeek log fills which table, field by field, and what is derived on the way.

Which Zeek field fills which column of the common tables is data (``MAPS``); ``finish`` turns
the parsed columns of one log into a table of the reader schema, whatever format (TSV, JSON)
they came from. Derived columns (a login's outcome from the server's reply, whether a file is
an executable, the tunnel type's short name) are computed here, once, so detections never ask
which sensor wrote a row.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import schema
from ..schema import EXECUTABLE_MIME
from ._zeek_x509 import SSL_EXTRA, X509, derive_ssl, derive_x509, is_x509
from ._zeek_types import (_JSON_TYPE, ADDR, BOOL, COUNT, FLOAT, INT32, LIST_FLOAT, LIST_STR, OPT_TIME, STR, TIME,
                          to_ts)

_IDS = [("uid", "uid", STR), ("orig_h", "id.orig_h", ADDR), ("orig_p", "id.orig_p", INT32),
        ("resp_h", "id.resp_h", ADDR), ("resp_p", "id.resp_p", INT32)]

#: Per Zeek log type: (table, [(column, Zeek field, kind)]). Columns starting with ``_`` are
#: inputs of ``finish`` that the table does not keep.
_FLOWS = [("ts", "ts", TIME), *_IDS, ("proto", "proto", STR), ("service", "service", STR),
          ("duration", "duration", FLOAT), ("orig_bytes", "orig_bytes", COUNT),
          ("resp_bytes", "resp_bytes", COUNT), ("conn_state", "conn_state", STR),
          ("missed_bytes", "missed_bytes", COUNT), ("history", "history", STR),
          ("orig_pkts", "orig_pkts", COUNT), ("orig_ip_bytes", "orig_ip_bytes", COUNT),
          ("resp_pkts", "resp_pkts", COUNT), ("resp_ip_bytes", "resp_ip_bytes", COUNT),
          ("community_id", "community_id", STR),
          # Zeek's mac-logging policy script (conn.log orig_l2_addr/resp_l2_addr)
          ("orig_mac", "orig_l2_addr", STR), ("resp_mac", "resp_l2_addr", STR)]
_DNS = [("ts", "ts", TIME), *_IDS, ("proto", "proto", STR), ("trans_id", "trans_id", INT32),
        ("query", "query", STR), ("qtype", "qtype_name", STR), ("rcode", "rcode_name", STR),
        ("answers", "answers", LIST_STR), ("ttls", "TTLs", LIST_FLOAT)]
_HTTP = [("ts", "ts", TIME), *_IDS, ("method", "method", STR), ("host", "host", STR),
         ("uri", "uri", STR), ("user_agent", "user_agent", STR),
         ("request_body_len", "request_body_len", COUNT),
         ("response_body_len", "response_body_len", COUNT), ("status_code", "status_code", INT32),
         ("resp_mime_types", "resp_mime_types", LIST_STR)]
_TLS = [("ts", "ts", TIME), *_IDS, ("version", "version", STR),
        ("server_name", "server_name", STR), ("ja3", "ja3", STR), ("ja4", "ja4", STR),
        ("subject", "subject", STR), ("issuer", "issuer", STR), ("established", "established", BOOL),
        *SSL_EXTRA]
#: notice.log: the notice type is the alert's signature and its message the category; Zeek gives
#: no severity. ``src``/``dst``/``p`` stand in where a notice has no connection (scans).
_NOTICE = [("ts", "ts", TIME), *_IDS, ("proto", "proto", STR), ("signature", "note", STR),
           ("category", "msg", STR), ("_src", "src", ADDR), ("_dst", "dst", ADDR), ("_p", "p", INT32)]
#: smtp.log: one record per mail transaction; its last reply says whether authentication failed.
_SMTP = [("ts", "ts", TIME), *_IDS, ("reply", "last_reply", STR)]
#: ftp.log: one record per command with the server's reply (PASS answered 230 or 530).
_FTP = [("ts", "ts", TIME), *_IDS, ("user", "user", STR), ("_command", "command", STR),
        ("_code", "reply_code", INT32), ("_msg", "reply_msg", STR)]
#: ssh.log: one record per connection; Zeek's heuristics say whether authentication succeeded
#: and how many attempts it saw.
_SSH = [("ts", "ts", TIME), *_IDS, ("_success", "auth_success", BOOL), ("attempts", "auth_attempts", COUNT)]
_FILES = [("ts", "ts", TIME), ("fuid", "fuid", STR), ("_uids", "conn_uids", LIST_STR),
          ("source", "source", STR), ("_tx", "tx_hosts", LIST_STR), ("_rx", "rx_hosts", LIST_STR),
          ("mime_type", "mime_type", STR), ("filename", "filename", STR), ("size", "seen_bytes", COUNT),
          ("md5", "md5", STR), ("sha1", "sha1", STR), ("sha256", "sha256", STR)]
#: pe.log: one record per Windows executable Zeek parsed; ``id`` is the file's fuid.
_PE = [("ts", "ts", TIME), ("fuid", "id", STR), ("_is_exe", "is_exe", BOOL)]
_SOFTWARE = [("ts", "ts", TIME), ("host", "host", ADDR), ("host_p", "host_p", INT32),
             ("kind", "software_type", STR), ("name", "name", STR), ("version", "unparsed_version", STR)]
_TUNNEL = [("ts", "ts", TIME), *_IDS, ("tunnel_type", "tunnel_type", STR), ("action", "action", STR)]
#: arp.log (the ARP policy script Slips and others load): Ethernet and ARP header addresses.
_ARP = [("ts", "ts", TIME), ("op", "operation", STR), ("orig_h", "orig_h", ADDR), ("orig_mac", "orig_hw", STR),
        ("resp_h", "resp_h", ADDR), ("resp_mac", "resp_hw", STR), ("eth_dst", "dst_mac", STR),
        ("eth_src", "src_mac", STR)]
MAPS: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "conn": ("flows", _FLOWS), "open_conn": ("flows", _FLOWS),
    "dns": ("dns", _DNS),
    "http": ("http", _HTTP), "open_http": ("http", _HTTP),
    "ssl": ("tls", _TLS), "open_ssl": ("tls", _TLS),
    "notice": ("alerts", _NOTICE),
    "smtp": ("logins", _SMTP), "ftp": ("logins", _FTP), "ssh": ("logins", _SSH),
    "files": ("files", _FILES), "pe": ("files", _PE),
    "software": ("software", _SOFTWARE),
    "tunnel": ("tunnels", _TUNNEL),
    "arp": ("arp", _ARP),
    "x509": ("certs", X509),
}

#: Field lists of Zeek's default logs, for TSV files whose header was cut off; keyed by (path, fields).
_CONN20 = ("ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto service duration orig_bytes resp_bytes "
           "conn_state local_orig local_resp missed_bytes history orig_pkts orig_ip_bytes resp_pkts "
           "resp_ip_bytes").split()
_DNS24 = ("ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto trans_id rtt query qclass qclass_name "
          "qtype qtype_name rcode rcode_name AA TC RD RA Z answers TTLs rejected").split()
DEFAULT_FIELDS = {("conn", 20): _CONN20, ("conn", 21): [*_CONN20, "tunnel_parents"], ("dns", 24): _DNS24}

_LOGS = "open_conn|open_http|open_ssl|conn|dns|http|ssl|notice(?!_alarm)|smtp|ftp|ssh|files|pe|software|tunnel|arp|x509"
_NAME = re.compile(rf"(?:^|[^a-z])({_LOGS})(?![a-z])")
#: A ``#path``/``_path`` value naming a mapped log (``conn``, ``open_conn``, ``conn_red`` ...).
TARGET = re.compile(r"(open_)?(conn|dns|http|ssl)(?![a-z])|notice(?![a-z_])"
                    r"|(smtp|ftp|ssh|files|pe|software|tunnel|arp|x509)(?![a-z])")

#: An SMTP reply that is an authentication outcome: 235 accepted; 535/534/454 refused, and
#: any permanent error that says so (``554 5.7.1 bad smtp-auth user``). ``530 Client was not
#: authenticated`` is a mail sent without logging in, not a failed login.
SMTP_OK = re.compile(r"^235\b")
SMTP_FAIL = re.compile(r"^(?:53[45]|454)\b|^5\d\d\b.*(?:bad \S*auth|auth\S*\s+(?:fail|invalid|incorrect|"
                        r"unsuccessful|credentials|user)|(?:fail|invalid|incorrect)\S*\s+(?:\S+\s+)?auth|password)",
                        re.IGNORECASE)
#: Zeek's tunnel types (``Tunnel::IP`` is IP-in-IP, 4in4 and 6in4 alike).
_TUNNEL_NAMES = {"ip": "ip-in-ip"}
_REPLY_MAX = 200


def fields_for(log: str) -> list[tuple[str, str, str]]:
    return MAPS[log][1]


def json_schema(iso_ts: bool) -> pa.Schema:
    """What pyarrow.json parses: ``_path`` and every mapped field of every log type."""
    fields = {"_path": pa.string()}
    for _, spec in MAPS.values():
        for _, src, kind in spec:
            fields[src] = schema.TS if kind in (TIME, OPT_TIME) and iso_ts else _JSON_TYPE[kind]
    return pa.schema(list(fields.items()))


def log_from_name(name: str) -> str | None:
    m = _NAME.search(name.lower())
    return m.group(1) if m else None


def log_from_path(value: str) -> str | None:
    m = TARGET.match(value)
    return m.group(0) if m else None


def log_from_columns(cols) -> str | None:
    """The log type a set of field names belongs to, for logs that name no path."""
    cols = set(cols)
    if "conn_state" in cols or {"orig_bytes", "history"} <= cols:
        return "conn"
    if "query" in cols and ("qtype_name" in cols or "trans_id" in cols):
        return "dns"
    if {"method", "host"} <= cols:
        return "http"
    if "cipher" in cols or "established" in cols:
        return "ssl"
    if {"note", "msg"} <= cols:
        return "notice"
    if "last_reply" in cols and ("helo" in cols or "mailfrom" in cols):
        return "smtp"
    if {"command", "reply_code"} <= cols:
        return "ftp"
    if "auth_success" in cols or ("client" in cols and "host_key" in cols):
        return "ssh"
    if "fuid" in cols and ("tx_hosts" in cols or "seen_bytes" in cols):
        return "files"
    if {"machine", "is_exe"} <= cols:
        return "pe"
    if {"software_type", "unparsed_version"} <= cols:
        return "software"
    if "tunnel_type" in cols:
        return "tunnel"
    if "operation" in cols and ("orig_hw" in cols or "src_mac" in cols):
        return "arp"
    if is_x509(cols):
        return "x509"
    return None


def finish(log: str, cols: dict[str, pa.Array], n: int, open_: bool) -> pa.Table:
    """Columns (named as in the table, already of their kind's type) as a reader-schema table."""
    table = MAPS[log][0]
    cols["ts"] = to_ts(cols["ts"])
    if table == "flows":
        dur = cols.get("duration")
        ts_us = cols["ts"].cast(pa.int64())
        if dur is not None:
            dur_us = pc.round(pc.multiply(pc.fill_null(dur, 0.0), 1e6)).cast(pa.int64())
            ts_us = pc.add(ts_us, dur_us)
        cols["ts_end"] = ts_us.cast(schema.TS)
        cols["open"] = pa.array(np.full(n, open_), pa.bool_())
        # Zeek runs its protocol detection on every connection: no service means none was
        # identified (""), which is not the same as a sensor that does not look (NetFlow: null).
        if "service" in cols:
            cols["service"] = pc.fill_null(cols["service"], "")
        else:
            cols["service"] = pa.array([""] * n, pa.string())
        for mac in ("orig_mac", "resp_mac"):
            if mac in cols:
                cols[mac] = pc.utf8_lower(cols[mac])
    elif table == "alerts":
        for col, alt in (("orig_h", "_src"), ("resp_h", "_dst"), ("resp_p", "_p")):
            if alt in cols:
                cols[col] = pc.coalesce(cols[col], cols.pop(alt)) if col in cols else cols.pop(alt)
    elif log in _DERIVE:
        _DERIVE[log](cols, n)
    return schema.conform(table, cols)


def _const(value, n: int) -> pa.Array:
    return pa.array([value] * n, pa.string())


def _col(cols: dict, name: str, n: int, type_=pa.string()) -> pa.Array:
    col = cols.get(name)
    if col is None:
        return pa.nulls(n, type_)
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _smtp(cols: dict, n: int) -> None:
    reply = _col(cols, "reply", n)
    cols["reply"] = pc.utf8_slice_codeunits(reply, 0, _REPLY_MAX)
    ok = pc.match_substring_regex(reply, SMTP_OK.pattern)
    fail = pc.match_substring_regex(reply, SMTP_FAIL.pattern, ignore_case=True)
    cols["result"] = pc.if_else(pc.fill_null(ok, False), "success",
                                pc.if_else(pc.fill_null(fail, False), "failure", pa.scalar(None, pa.string())))
    cols["app"] = _const("smtp", n)
    cols["attempts"] = pa.array(np.ones(n, np.int64))


def _ftp(cols: dict, n: int) -> None:
    command = pc.utf8_upper(_col(cols, "_command", n))
    code = _col(cols, "_code", n, pa.int64())
    msg = _col(cols, "_msg", n)
    text = pc.binary_join_element_wise(code.cast(pa.string()), msg, " ", null_handling="skip")
    cols["reply"] = pc.utf8_slice_codeunits(text, 0, _REPLY_MAX)
    is_pass = pc.fill_null(pc.equal(command, "PASS"), False)
    is_login = pc.fill_null(pc.or_(is_pass, pc.equal(command, "USER")), False)
    ok = pc.and_(is_pass, pc.fill_null(pc.equal(code, 230), False))
    fail = pc.and_(is_login, pc.fill_null(pc.equal(code, 530), False))
    cols["result"] = pc.if_else(ok, "success", pc.if_else(fail, "failure", pa.scalar(None, pa.string())))
    cols["app"] = _const("ftp", n)
    cols["attempts"] = pa.array(np.where(is_pass.to_numpy(zero_copy_only=False), 1, 0), pa.int64())


def _ssh(cols: dict, n: int) -> None:
    ok = _col(cols, "_success", n, pa.bool_())
    cols["result"] = pc.if_else(ok, "success", "failure")  # null where Zeek could not tell
    cols["app"] = _const("ssh", n)
    cols["attempts"] = pc.fill_null(_col(cols, "attempts", n, pa.int64()), 1)


def _first(col: pa.Array) -> pa.Array:
    """The first element of each list (null for an empty or null list)."""
    return pc.list_element(pc.if_else(pc.greater(pc.list_value_length(col), 0), col, pa.scalar(None, col.type)), 0)


def executable_of(mime: pa.Array) -> pa.Array:
    """``pe``/``elf``/``macho`` for executable MIME types, else null."""
    lower = pc.utf8_lower(mime)
    keys = pa.array(list(EXECUTABLE_MIME))
    idx = pc.index_in(lower, value_set=keys)
    return pc.take(pa.array(list(EXECUTABLE_MIME.values())), idx)


def _files(cols: dict, n: int) -> None:
    for out, src in (("uid", "_uids"), ("tx_h", "_tx"), ("rx_h", "_rx")):
        lists = _col(cols, src, n, pa.list_(pa.string()))
        cols[out] = _first(lists)
    cols["source"] = pc.utf8_lower(_col(cols, "source", n))
    cols["executable"] = executable_of(_col(cols, "mime_type", n))


def _pe(cols: dict, n: int) -> None:
    # pe.log only lists files Zeek parsed as PE; is_exe false is a DLL, still executable code
    cols["executable"] = _const("pe", n)
    cols["mime_type"] = _const("application/x-dosexec", n)


def _software(cols: dict, n: int) -> None:
    kind = pc.utf8_lower(_col(cols, "kind", n))
    cols["kind"] = pc.replace_substring(pc.replace_substring(kind, "::", "-"), "_", "-")


def _tunnel(cols: dict, n: int) -> None:
    for name in ("tunnel_type", "action"):
        v = pc.utf8_lower(pc.replace_substring_regex(_col(cols, name, n), r"^Tunnel::", ""))
        cols[name] = v
    t = cols["tunnel_type"]
    for old, new in _TUNNEL_NAMES.items():
        t = pc.if_else(pc.fill_null(pc.equal(t, old), False), new, t)
    cols["tunnel_type"] = t


def _arp(cols: dict, n: int) -> None:
    cols["op"] = pc.utf8_lower(_col(cols, "op", n))
    cols["gratuitous"] = pc.equal(_col(cols, "orig_h", n), _col(cols, "resp_h", n))


_DERIVE = {"smtp": _smtp, "ftp": _ftp, "ssh": _ssh, "files": _files, "pe": _pe, "software": _software,
           "tunnel": _tunnel, "arp": _arp, "x509": derive_x509, "ssl": derive_ssl, "open_ssl": derive_ssl}
