"""Arrow schemas of the common tables every reader emits.

Readers normalise once into these tables; detections, the ledger and reports never
know which sensor a row came from. Columns a source cannot fill stay null.
Times are UTC microseconds; byte counts are int64.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

#: Columns holding an IP address (what enrichment classifies), whichever table has them.
ADDRESS_COLUMNS = frozenset({"orig_h", "resp_h", "tx_h", "rx_h", "host"})

#: Columns the store adds to every row; readers leave them out.
STORE_COLUMNS = ("sensor", "input_id")

FLOWS = pa.schema(
    [
        pa.field("ts", TS, nullable=False),  # first packet
        pa.field("ts_end", TS),  # last packet seen (ts + duration)
        pa.field("duration", pa.float64()),  # seconds
        pa.field("proto", pa.string()),  # tcp, udp, icmp, icmp6, or the IP protocol number as text
        pa.field("orig_h", pa.string()),  # originator: the side that opened the connection
        pa.field("orig_p", pa.int32()),
        pa.field("resp_h", pa.string()),
        pa.field("resp_p", pa.int32()),
        pa.field("orig_bytes", pa.int64()),  # application payload bytes sent by the originator
        pa.field("resp_bytes", pa.int64()),
        pa.field("orig_ip_bytes", pa.int64()),  # IP-level bytes (headers included)
        pa.field("resp_ip_bytes", pa.int64()),
        pa.field("orig_pkts", pa.int64()),
        pa.field("resp_pkts", pa.int64()),
        pa.field("service", pa.string()),  # nDPI / Zeek / Suricata application name, lower case
        pa.field("server_name", pa.string()),  # TLS SNI or HTTP Host
        pa.field("user_agent", pa.string()),
        pa.field("conn_state", pa.string()),  # Zeek conn_state vocabulary where known
        pa.field("history", pa.string()),
        pa.field("missed_bytes", pa.int64()),  # capture loss reported by the sensor
        pa.field("open", pa.bool_()),  # still running when exported: an interim record
        pa.field("community_id", pa.string()),  # Community ID v1
        pa.field("uid", pa.string()),  # the sensor's own flow id
        # link-layer (MAC) addresses of the originator's and responder's frames, lower case, where
        # the sensor saw Ethernet (pcap, Zeek's orig_l2_addr/resp_l2_addr, Suricata's ether): the
        # router's for an address behind a router; null where unknown
        pa.field("orig_mac", pa.string()),
        pa.field("resp_mac", pa.string()),
        pa.field("sensor", pa.string()),
        pa.field("input_id", pa.string()),
    ]
)

DNS = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field("uid", pa.string()),
        pa.field("orig_h", pa.string()),  # client
        pa.field("orig_p", pa.int32()),
        pa.field("resp_h", pa.string()),  # server
        pa.field("resp_p", pa.int32()),
        pa.field("proto", pa.string()),
        pa.field("trans_id", pa.int32()),
        pa.field("query", pa.string()),
        pa.field("qtype", pa.string()),  # name: A, AAAA, TXT, NULL, ...
        pa.field("rcode", pa.string()),  # name: NOERROR, NXDOMAIN, ...
        pa.field("answers", pa.list_(pa.string())),
        # the record type of each answer (A, AAAA, CNAME, TXT ...), parallel to ``answers``; null
        # where the sensor does not say (Zeek's dns.log): only A/AAAA answers are ever addresses
        pa.field("answer_types", pa.list_(pa.string())),
        pa.field("ttls", pa.list_(pa.float64())),
        pa.field("query_bytes", pa.int64()),  # size of the query message where known
        pa.field("answer_bytes", pa.int64()),  # size of the response message where known
        pa.field("sensor", pa.string()),
        pa.field("input_id", pa.string()),
    ]
)

HTTP = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field("uid", pa.string()),
        pa.field("orig_h", pa.string()),
        pa.field("orig_p", pa.int32()),
        pa.field("resp_h", pa.string()),
        pa.field("resp_p", pa.int32()),
        pa.field("method", pa.string()),
        pa.field("host", pa.string()),
        pa.field("uri", pa.string()),
        pa.field("user_agent", pa.string()),
        pa.field("request_body_len", pa.int64()),
        pa.field("response_body_len", pa.int64()),
        pa.field("status_code", pa.int32()),
        # what the response body is (Zeek's MIME sniffing, or PE/ELF magic bytes from a capture)
        pa.field("resp_mime_types", pa.list_(pa.string())),
        pa.field("sensor", pa.string()),
        pa.field("input_id", pa.string()),
    ]
)

TLS = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field("uid", pa.string()),
        pa.field("orig_h", pa.string()),
        pa.field("orig_p", pa.int32()),
        pa.field("resp_h", pa.string()),
        pa.field("resp_p", pa.int32()),
        pa.field("version", pa.string()),
        pa.field("server_name", pa.string()),
        pa.field("ja3", pa.string()),  # client fingerprint (MD5 hex)
        pa.field("ja4", pa.string()),  # client fingerprint (FoxIO JA4)
        pa.field("ja3s", pa.string()),  # server fingerprint (MD5 hex)
        pa.field("subject", pa.string()),  # the server certificate's, where the sensor puts it inline
        pa.field("issuer", pa.string()),
        pa.field("established", pa.bool_()),
        # the sensor's verdict on the server's chain (Zeek: "ok", "self signed certificate", ...)
        pa.field("validation_status", pa.string()),
        # the sensor's file ids of the certificates the server sent, its own (the leaf) first:
        # they join the ``certs`` table (Zeek x509.log) and ``files`` (their hashes)
        pa.field("cert_fuids", pa.list_(pa.string())),
        # the leaf certificate's SHA-1 (hex) and validity, where the sensor puts them inline (Suricata)
        pa.field("cert_sha1", pa.string()),
        pa.field("not_before", TS),
        pa.field("not_after", TS),
        pa.field("sensor", pa.string()),
        pa.field("input_id", pa.string()),
    ]
)

ALERTS = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field("uid", pa.string()),
        pa.field("orig_h", pa.string()),
        pa.field("orig_p", pa.int32()),
        pa.field("resp_h", pa.string()),
        pa.field("resp_p", pa.int32()),
        pa.field("proto", pa.string()),
        pa.field("signature", pa.string()),
        pa.field("signature_id", pa.int64()),
        pa.field("category", pa.string()),
        pa.field("severity", pa.int32()),
        pa.field("community_id", pa.string()),
        pa.field("sensor", pa.string()),
        pa.field("input_id", pa.string()),
    ]
)

#: Sensitive values found in cleartext payload: one row per flow, sending side, category and
#: distinct value. Only a keyed hash (HMAC-SHA256 with the workspace key) and a masked form
#: are kept; the value itself and the payload never reach the store.
DLP = pa.schema(
    [
        pa.field("ts", TS, nullable=False),  # start of the flow (ms, like NFStream), not of the hit
        pa.field("community_id", pa.string()),  # joins the flow (pcap flows carry it too)
        pa.field("orig_h", pa.string()),
        pa.field("orig_p", pa.int32()),
        pa.field("resp_h", pa.string()),
        pa.field("resp_p", pa.int32()),
        pa.field("proto", pa.string()),
        pa.field("sender", pa.string()),  # orig or resp: which side sent the bytes
        pa.field("app", pa.string()),  # http, smtp, ftp-data, raw ...
        pa.field("category", pa.string()),  # kvnr, ik, iban, idnr, rvnr, icd10, email, phone
        pa.field("hmac", pa.string()),  # hex HMAC-SHA256(workspace key, category:value)
        pa.field("masked", pa.string()),  # e.g. A12******0
        pa.field("anchored", pa.bool_()),  # a context anchor (field name, FHIR system) was near
        pa.field("hits", pa.int64()),  # occurrences of this value in this flow side
        pa.field("sensor", pa.string()),
        pa.field("input_id", pa.string()),
    ]
)

#: What payload inspection looked at: per flow and sending side, bytes scanned or the reason
#: they were not (encrypted), so a report can say how much of the outflow content was checked.
INSPECTED = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field("community_id", pa.string()),
        pa.field("orig_h", pa.string()),
        pa.field("orig_p", pa.int32()),
        pa.field("resp_h", pa.string()),
        pa.field("resp_p", pa.int32()),
        pa.field("proto", pa.string()),
        pa.field("sender", pa.string()),
        pa.field("app", pa.string()),
        pa.field("payload_bytes", pa.int64()),  # reassembled payload bytes of this side
        pa.field("scanned_bytes", pa.int64()),  # bytes (after decoding) the detectors saw
        pa.field("encrypted", pa.bool_()),  # TLS, SSH, ... : not inspectable
        pa.field("gaps", pa.int64()),  # bytes missing from the reassembled stream
        pa.field("sensor", pa.string()),
        pa.field("input_id", pa.string()),
    ]
)

#: ARP frames from packet captures (a light pass beside the flow meter: NFStream ignores ARP).
ARP = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field("op", pa.string()),  # request, reply, or the opcode as text
        pa.field("orig_h", pa.string()),  # sender protocol address
        pa.field("orig_mac", pa.string()),  # sender hardware address
        pa.field("resp_h", pa.string()),  # target protocol address (asked for, or answered to)
        pa.field("resp_mac", pa.string()),  # target hardware address (00:00:... in a request)
        pa.field("eth_dst", pa.string()),  # Ethernet destination (ff:ff:ff:ff:ff:ff: broadcast)
        pa.field("eth_src", pa.string()),  # Ethernet source: the ARP sender's own, unless forged
        pa.field("gratuitous", pa.bool_()),  # sender and target address the same (announcement)
        pa.field("sensor", pa.string()),
        pa.field("input_id", pa.string()),
    ]
)

#: Authentication exchanges seen on the wire: one row per attempt (or per Zeek record standing
#: for ``attempts`` of them) with its outcome where the server said it. Mail and FTP records
#: without an authentication outcome are kept with ``result`` null (nothing read is dropped).
LOGINS = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field("uid", pa.string()),
        pa.field("orig_h", pa.string()),  # client
        pa.field("orig_p", pa.int32()),
        pa.field("resp_h", pa.string()),  # server
        pa.field("resp_p", pa.int32()),
        pa.field("app", pa.string()),  # smtp, ftp, ssh, ...
        pa.field("user", pa.string()),  # the user name tried, where the protocol shows it
        pa.field("result", pa.string()),  # success, failure, or null: no outcome seen
        pa.field("reply", pa.string()),  # the server's reply (code and text), at most 200 characters
        pa.field("attempts", pa.int64()),  # attempts this row stands for (1 unless the sensor counted)
        pa.field("sensor", pa.string()),
        pa.field("input_id", pa.string()),
    ]
)

#: Files carried by a connection (Zeek files.log and pe.log; PE/ELF bodies found in a capture).
#: A file may have several rows (files.log and pe.log): ``fuid`` ties them together.
FILES = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field("uid", pa.string()),  # the connection that carried it
        pa.field("fuid", pa.string()),  # the sensor's file id
        pa.field("source", pa.string()),  # http, ftp, smtp, smb, ... (lower case)
        pa.field("tx_h", pa.string()),  # the host that sent the file (the server of a download)
        pa.field("rx_h", pa.string()),  # the host that received it
        pa.field("mime_type", pa.string()),
        pa.field("filename", pa.string()),
        pa.field("size", pa.int64()),  # bytes seen
        pa.field("md5", pa.string()),
        pa.field("sha1", pa.string()),
        pa.field("sha256", pa.string()),
        pa.field("executable", pa.string()),  # pe, elf, macho (by magic bytes or MIME), else null
        pa.field("sensor", pa.string()),
        pa.field("input_id", pa.string()),
    ]
)

#: MIME types of executables (Zeek's file magic, web servers' Content-Type), by the format
#: ``files.executable`` names.
EXECUTABLE_MIME = {
    "application/x-dosexec": "pe", "application/x-msdownload": "pe", "application/x-msdos-program": "pe",
    "application/vnd.microsoft.portable-executable": "pe", "application/x-ms-installer": "pe",
    "application/x-executable": "elf", "application/x-elf": "elf", "application/x-sharedlib": "elf",
    "application/x-pie-executable": "elf", "application/x-mach-binary": "macho",
}
#: Software a host announced (Zeek software.log; SSH banners in captures).
SOFTWARE = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field("host", pa.string()),
        pa.field("host_p", pa.int32()),  # the port of a server, null for a client
        pa.field("kind", pa.string()),  # ssh-client, ssh-server, http-browser, http-server, ...
        pa.field("name", pa.string()),  # OpenSSH, Firefox, ...
        pa.field("version", pa.string()),  # as announced (OpenSSH_8.1)
        pa.field("sensor", pa.string()),
        pa.field("input_id", pa.string()),
    ]
)

#: Encapsulation seen: GRE, IP-in-IP, Teredo, VXLAN ... (Zeek tunnel.log; outer headers in captures).
TUNNELS = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field("uid", pa.string()),
        pa.field("orig_h", pa.string()),  # outer source
        pa.field("orig_p", pa.int32()),
        pa.field("resp_h", pa.string()),  # outer destination
        pa.field("resp_p", pa.int32()),
        pa.field("tunnel_type", pa.string()),  # gre, ip-in-ip, teredo, vxlan, ayiya, gtpv1, geneve
        pa.field("action", pa.string()),  # discover, close, expire (Zeek); seen (a capture)
        pa.field("packets", pa.int64()),  # encapsulated packets, where counted
        pa.field("sensor", pa.string()),
        pa.field("input_id", pa.string()),
    ]
)

#: Certificates the sensor parsed (Zeek x509.log), one row per certificate file id (``fuid``),
#: joined to a handshake through ``tls.cert_fuids``.
CERTS = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field("fuid", pa.string()),
        pa.field("subject", pa.string()),
        pa.field("issuer", pa.string()),
        pa.field("not_before", TS),
        pa.field("not_after", TS),
        pa.field("san_dns", pa.list_(pa.string())),  # subjectAltName DNS names
        pa.field("san_ip", pa.list_(pa.string())),  # subjectAltName addresses
        pa.field("ca", pa.bool_()),  # basicConstraints CA: an issuer, not a server's own certificate
        pa.field("sha1", pa.string()),  # hex, where the sensor hashes certificates
        pa.field("sensor", pa.string()),
        pa.field("input_id", pa.string()),
    ]
)

#: Every row table, by name. ``inputs`` and the files list live in the DuckDB catalog.
TABLES: dict[str, pa.Schema] = {
    "flows": FLOWS,
    "dns": DNS,
    "http": HTTP,
    "tls": TLS,
    "alerts": ALERTS,
    "dlp": DLP,
    "inspected": INSPECTED,
    "arp": ARP,
    "logins": LOGINS,
    "files": FILES,
    "software": SOFTWARE,
    "tunnels": TUNNELS,
    "certs": CERTS,
}


def reader_schema(table: str) -> pa.Schema:
    """The schema a reader emits for ``table``: the table's columns without the store's."""
    schema = TABLES[table]
    return pa.schema([f for f in schema if f.name not in STORE_COLUMNS])


def conform(table: str, data: pa.Table | pa.RecordBatch | dict) -> pa.Table:
    """Return ``data`` as a table of the reader schema: missing columns become nulls,
    extra columns are dropped, types are cast (safely: a value that does not fit raises)."""
    schema = reader_schema(table)
    if isinstance(data, dict):
        n = max((len(v) for v in data.values()), default=0)
        cols = {k: v for k, v in data.items()}
    else:
        n = data.num_rows
        cols = {name: data.column(name) for name in data.schema.names}
    arrays = []
    for field in schema:
        if field.name in cols:
            col = cols[field.name]
            if not isinstance(col, (pa.Array, pa.ChunkedArray)):
                col = pa.array(col, type=field.type)
            elif col.type != field.type:
                col = col.cast(field.type)
            arrays.append(col)
        else:
            arrays.append(pa.nulls(n, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)
