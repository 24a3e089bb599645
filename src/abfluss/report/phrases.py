"""German for the English words the report takes from elsewhere: detection titles (each
detection's ``META.title``), kinds of telemetry and reasons a check could not run (evidence),
severities and confidence labels. Whatever has no entry stays as it is (a new detection shows
its English title until it gets a line here); a test checks every registered detection has one.
"""

from __future__ import annotations

#: detection id -> German title.
TECHNIQUES_DE = {
    "bulk_outbound": "Große ausgehende Übertragung",
    "upload_heavy": "Ziel erhält weit mehr, als es zurücksendet",
    "rare_destination": "Daten an ein neues oder selten genutztes Ziel",
    "beaconing": "Beaconing: regelmäßige Meldungen an ein externes Ziel",
    "long_connection": "Langlebige Verbindung zu einem externen Ziel",
    "dns_tunnel": "Daten in DNS-Anfragenamen getunnelt",
    "icmp_tunnel": "Daten in ICMP-Echo getunnelt",
    "scan_and_lateral": "Portscan oder laterale Ausbreitung",
    "brute_force": "Passwortraten (SSH, RDP, SMTP, FTP, HTTP und andere Anmeldungen)",
    "executable_download": "Ausführbare Datei von einem internen System heruntergeladen",
    "suspicious_user_agent": "Verdächtiger HTTP-User-Agent eines internen Systems",
    "software_change": "Wechselnde SSH-Client- oder -Server-Version auf einem System",
    "tunnel_encapsulation": "Kapselungstunnel (GRE, IP-in-IP, Teredo, VXLAN) mit internem Ende",
    "threat_intel": "Verkehr zu oder Auflösung von gelisteten Bedrohungsindikatoren",
    "off_hours": "Ungewöhnliches ausgehendes Volumen außerhalb der Arbeitszeit",
    "cleartext_sensitive_data": "Sensible Kennungen im Klartext gesendet",
    "protocol_mismatch": "Protokoll passt nicht zum Port (Tunnel oder unüblicher Port)",
    "ids_alert": "IDS-Alarme (Suricata, Zeek-Notices) für ein internes System",
    "icmp_scan": "ICMP-Sweep oder Adressscan",
    "arp_scan": "ARP-Scan, Flut von Gratuitous-ARP-Paketen oder ARP über das lokale Netz hinaus",
    "mac_ip_change": "Gerät wechselt die IP-Adresse (eine MAC-Adresse, mehrere interne Adressen)",
    "tls_anomaly": "TLS-Zertifikat passt nicht zum Server, oder seltener TLS-Client",
    "direct_ip": "Verbindungen zu einer externen Adresse, die keine DNS-Antwort nannte",
    "dns_txt_entropy": "Kodierte Daten in DNS-TXT-Antworten (eingehender C2-Kanal über DNS)",
}

#: English phrase (evidence, verdict) -> German.
PHRASES_DE = {
    "full packet capture": "vollständiger Paketmitschnitt",
    "Zeek logs (flow and protocol records)": "Zeek-Logs (Fluss- und Protokolldaten)",
    "Suricata eve.json (flow and protocol records)": "Suricata eve.json (Fluss- und Protokolldaten)",
    "NetFlow/IPFIX flow records": "NetFlow/IPFIX-Flussdaten",
    "nfdump flow records (NetFlow/IPFIX/sFlow)": "nfdump-Flussdaten (NetFlow/IPFIX/sFlow)",
    "Argus bidirectional flow records": "bidirektionale Argus-Flussdaten",
    "Squid proxy log (requests; bytes received only)": "Squid-Proxy-Log (Anfragen; nur empfangene Bytes)",
    "no indicator list configured": "keine Indikatorenliste konfiguriert",
    "no flow or DNS telemetry": "keine Fluss- oder DNS-Daten",
    "no flow telemetry": "keine Flussdaten",
    "no HTTP or file records (Zeek http.log/files.log, cleartext HTTP in a capture)":
        "keine HTTP- oder Dateidaten (Zeek http.log/files.log, Klartext-HTTP im Mitschnitt)",
    "no software records (Zeek software.log, SSH banners in a capture)":
        "keine Software-Angaben (Zeek software.log, SSH-Banner im Mitschnitt)",
    "no DNS telemetry": "keine DNS-Daten",
    "no payload inspected (flow records only, or inspection off)":
        "keine Nutzdaten geprüft (nur Flussdaten oder Prüfung abgeschaltet)",
    "disabled in the configuration": "in der Konfiguration abgeschaltet",
    "no IDS alerts in the telemetry (Suricata eve alerts, Zeek notice.log)":
        "keine IDS-Alarme in den Daten (Suricata-eve-Alarme, Zeek notice.log)",
    "flows": "Flussdaten", "dns": "DNS", "payload": "Nutzdaten", "flows+dns": "Flussdaten, DNS", "alerts": "IDS-Alarme",
    "http": "HTTP- und Dateidaten", "software": "Software-Angaben",
    "unknown": "unbekannt", "allowlisted": "freigegeben", "internal": "intern", "local": "lokal", "proxy": "Proxy",
    "info": "Information", "low": "niedrig", "medium": "mittel", "high": "hoch", "critical": "kritisch",
}


#: Coverage facts of a check (``techniques[].coverage`` keys) in words.
COVERAGE_KEYS = {
    "flows": ("flows", "Flüsse"), "outbound_flows": ("outbound flows", "ausgehende Flüsse"),
    "sensors": ("sensors", "Sensoren"), "dns_queries": ("DNS queries", "DNS-Anfragen"),
    "icmp_flows": ("ICMP flows", "ICMP-Flüsse"), "indicators": ("indicators", "Indikatoren"),
    "inspected_flow_sides": ("inspected flow sides", "geprüfte Flussrichtungen"),
    "cleartext_share": ("cleartext", "Klartext"), "encrypted_share": ("encrypted", "verschlüsselt"),
    "not_inspected_share": ("not inspected", "nicht geprüft"),
    "alerts": ("alerts", "Alarme"),
    "http_requests": ("HTTP requests", "HTTP-Anfragen"), "files": ("files", "Dateien"),
    "software_records": ("software records", "Software-Angaben"),
}


def coverage_facts(cov: dict, lang: str) -> str:
    """``{"flows": 26, "cleartext_share": 0.33}`` -> 'flows: 26, cleartext: 33.3%' in ``lang``."""
    from .. import units

    out = []
    for k, v in cov.items():
        name = COVERAGE_KEYS.get(k, (k.replace("_", " "),) * 2)[lang == "de"]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            shown = str(v)
        elif k.endswith("_share"):
            shown = units.percent(v, lang)
        else:
            shown = units.number(v, lang, 0 if float(v).is_integer() else 2)
        out.append(f"{name}: {shown}")
    return ", ".join(out)


#: How evidence says a detection failed (``the detection failed: <error>``).
FAILED = "the detection failed: "


def phrase(text: str | None, lang: str) -> str:
    """``text`` in ``lang``; joined kinds ("a; b") are translated part by part."""
    if not text:
        return ""
    if lang != "de":
        return text
    if text.startswith(FAILED):  # the error message itself stays as the detection raised it
        return "die Erkennung ist mit einem Fehler abgebrochen: " + text[len(FAILED):]
    parts, out, i = text.split("; "), [], 0
    while i < len(parts):  # the longest run of parts that is one phrase ("Squid … (requests; bytes …)")
        j = next((j for j in range(len(parts), i, -1) if "; ".join(parts[i:j]) in PHRASES_DE), None)
        out.append(PHRASES_DE["; ".join(parts[i:j])] if j else parts[i])
        i = j or i + 1
    return "; ".join(out)


def technique_title(check: dict, lang: str) -> str:
    """The title of a check (an entry of ``report["techniques"]``) in ``lang``."""
    return TECHNIQUES_DE.get(check["id"], check["title"]) if lang == "de" else check["title"]
