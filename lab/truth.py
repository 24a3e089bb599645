"""Ground-truth recorder for a lab capture: topology, capture window, scenarios, DNS log."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import labnet

SCHEMA_VERSION = 1

FIELD_DOC = {
    "start/end": "epoch seconds (float) taken by the orchestrator around the tool run; end is null "
                 "for a flow still open when the capture stopped",
    "client_sent/client_received": "application bytes as reported by the tool itself. curl: request_header = "
                                   "%{size_request}, body = %{size_upload}; response header = %{size_header}, "
                                   "body = %{size_download}. For HTTPS these are plaintext HTTP bytes (TLS "
                                   "framing and handshake not included). labclient/dig: bytes it wrote/read",
    "open_at_capture_end": "the connection was still established when tcpdump stopped",
    "tags": "labels for evaluation: 'outbound_bulk' marks flows that move data out of the LAN",
}


@dataclass
class Truth:
    scenarios: list[dict] = field(default_factory=list)
    capture: dict = field(default_factory=dict)
    dns_server_log: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, **record) -> dict:
        record.setdefault("open_at_capture_end", False)
        record.setdefault("tags", [])
        self.scenarios.append(record)
        print(f"  [{record['id']}] {record.get('client')} -> {record.get('server_name') or record.get('server_ip')}"
              f":{record.get('server_port')} sent={record.get('client_sent', {}).get('total')} "
              f"recv={record.get('client_received', {}).get('total')}", flush=True)
        return record

    def read_dnsmasq_log(self, path: Path) -> None:
        """Keep the queries dnsmasq saw: (syslog-style time, client, qtype, name)."""
        pat = re.compile(r"^(\w{3} +\d+ [\d:]+) dnsmasq\[\d+\]: (?:\d+ )?(?:[\d.]+/\d+ )?query\[(\w+)\] (\S+) from (\S+)")
        if not path.exists():
            return
        for line in path.read_text().splitlines():
            m = pat.match(line)
            if m:
                self.dns_server_log.append({"time": m.group(1), "qtype": m.group(2), "name": m.group(3),
                                            "client": m.group(4)})

    def topology(self) -> dict:
        return {
            "segments": [
                {"name": s.name, "cidr": s.cidr, "gateway": s.gateway, "side": s.side} for s in labnet.SEGMENTS
            ],
            "internal_networks": [s.cidr for s in labnet.SEGMENTS if s.side == "internal"],
            "external_networks": [s.cidr for s in labnet.SEGMENTS if s.side == "external"],
            "hosts": [
                {"name": h.name, "namespace": labnet.ns(h.name), "ip": h.ip, "segment": h.segment,
                 "side": labnet.segment(h.segment).side, "role": h.role, "dns_names": list(h.dns_names)}
                for h in labnet.HOSTS
            ],
            "router": {"namespace": labnet.ns(labnet.ROUTER),
                       "addresses": [s.gateway for s in labnet.SEGMENTS], "default_route": None},
            "dns": {"server": labnet.host("srv").ip, "software": "dnsmasq", "upstream": None,
                    "records": {n: h.ip for h in labnet.HOSTS for n in h.dns_names},
                    "authoritative_zone": "test (unknown names answer NXDOMAIN)"},
        }

    def write(self, path: Path, pcap_name: str) -> None:
        doc = {
            "schema_version": SCHEMA_VERSION,
            "generated_by": "lab/make_demo.py",
            "generated_at": time.time(),
            "pcap": pcap_name,
            "capture": self.capture,
            "topology": self.topology(),
            "scenarios": self.scenarios,
            "dns_names_looked_up": sorted({n for s in self.scenarios for n in s.get("dns_names", [])}),
            "dns_server_log": self.dns_server_log,
            "field_notes": FIELD_DOC,
            "notes": self.notes,
        }
        path.write_text(json.dumps(doc, indent=2) + "\n")
