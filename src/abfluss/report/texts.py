"""The report's words, one dict per language (``--lang de|en``); the template holds none.

Reason texts are ``str.format`` templates over the facts of a weakness (``share``, ``seconds``).
A test checks that both languages have the same keys.
"""

from __future__ import annotations

from .. import units

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Evidence report: did data leave?",
        "generated": "Generated", "tool": "Tool", "tenant": "Tenant", "all_tenants": "all tenants",
        "s_verdict": "Verdict", "s_scope": "1. Scope and window", "s_telemetry": "2. Telemetry inventory and coverage",
        "s_hosts": "3. Outbound volume per host against its own baseline", "s_payload": "4. Encrypted versus cleartext share",
        "s_checks": "5. Exfiltration techniques checked", "s_dlp": "6. Cleartext sensitive data",
        "s_integrity": "7. Integrity", "s_exfil": "Outflow per internal host and destination",
        "s_findings": "Findings", "s_verdict_detail": "8. Verdict: basis and limits",
        "s_deadlines": "Notification deadlines", "duty": "Duty", "legal_basis": "Legal basis",
        "deadline": "Deadline", "draft_version": "version",
        "aware_given": "Awareness time (given with --aware-at): {when}. The deadlines run from it.",
        "aware_assumed": "No awareness time was given (--aware-at), so it was assumed to be the time of this "
        "report: {when}. The deadlines below run from that assumption; give the actual time for binding deadlines.",
        "deadlines_if_notifiable": "These deadlines apply only once a notifiable breach is established.",
        "final_provisional": "The final report is counted from the deadline of the incident notification until "
        "its actual sending time is recorded.",
        "findings_max": "{n}, highest severity {severity}", "score": "score {n}",
        "window": "Window", "from": "from", "to": "to", "seconds": "seconds",
        "internal_networks": "Internal networks", "systems": "Systems in scope (internal hosts with outbound traffic)",
        "services": "Tagged services", "tenants": "Tenants", "none": "none",
        "sensor": "Sensor", "fidelity": "Kind", "span": "Span", "records": "Records", "gaps": "Gaps",
        "gap_minutes": "Minutes without records", "missed": "Loss", "sampled": "Sampled",
        "window_share": "Share of window", "yes": "yes", "no": "no", "unknown": "unknown",
        "host": "Host", "bytes_out": "Bytes out", "bytes_in": "Bytes in", "flows": "Flows",
        "destinations": "Destinations", "baseline": "Baseline (median/h, threshold/h)",
        "no_baseline": "no data before the window", "above": "Hours above baseline",
        "top_destinations": "Top destinations", "timeline": "Bytes out over time (bucket: {bucket})",
        "destination": "Destination", "channel": "Channel", "detections": "Detections", "severity": "Severity",
        "outbound_bytes": "Outbound payload bytes", "cleartext": "cleartext (content inspected)",
        "encrypted": "encrypted (TLS, SSH, QUIC: content not inspectable)",
        "not_inspected": "not inspected (flow records only, or not reassembled)",
        "payload_note": "Content detectors can only clear the cleartext share: {share} of the outflow.",
        "check": "Check", "result": "Result", "data_source": "Data source", "coverage": "Coverage",
        "r_finding": "finding", "r_no_finding": "no finding", "r_not_checkable": "not checkable", "r_error": "not checked: error",
        "r_disabled": "disabled",
        "category": "Category", "distinct": "Distinct values", "records_range": "Records (approx.)",
        "subjects_range": "Data subjects (approx.)", "dlp_none": "No sensitive identifiers found in cleartext "
        "outflow. This holds only for the cleartext share ({share}).",
        "input": "Input (SHA-256)", "format": "Format", "size": "Size", "config_hash": "Configuration SHA-256",
        "settings_hash": "Detection settings SHA-256", "version": "Tool version",
        "confidence": "Confidence", "rests_on": "Coverage it rests on", "would_lower": "What would lower it",
        "basis": "Findings it rests on",
        "reevaluate": "A follow-up report is due when",
        "time_share": "window time covered", "dns_queries": "DNS queries seen", "checks_run": "checks run",
        "not_checkable": "not checkable",
        "v_EXFIL_CONFIRMED": "Data outflow established",
        "v_EXFIL_INDICATED": "Data outflow indicated (suspicious, not proven)",
        "v_NO_EXFIL_EVIDENCE": "No data outflow could be established",
        "statement_NO_EXFIL_EVIDENCE": "After analysing the data sources listed in section 2, no data outflow was "
        "found in the period {start} to {end}. The statement applies only to the covered systems and periods; "
        "known gaps are listed under section 8. It does not rule out an outflow.",
        "statement_EXFIL_CONFIRMED": "Data left the network in the period {start} to {end}: see the findings "
        "and the outflow per host and destination.",
        "statement_EXFIL_INDICATED": "Findings in the period {start} to {end} indicate a possible data outflow; "
        "it is not proven by the telemetry.",
        "w_time_gap": "{share} of the window is not covered by any sensor (gaps or late start); "
        "largest gap: {largest}.",
        "w_attack_activity": "Attack activity without an outflow found ({detections}): an attacker may be inside.",
        "w_capture_loss": "The sensor reports capture loss: {share} of bytes missed.",
        "w_flow_only": "Flow records only: no payload, so no content inspection.",
        "w_sampling_unknown": "NetFlow/IPFIX whose sampling is not known: small transfers can be missed.",
        "w_encrypted": "{share} of the outflow was encrypted or not inspected: its content is unknown.",
        "w_no_dns": "No DNS telemetry: DNS tunnelling could not be checked.",
        "w_checks_failed": "A detection failed with an error, so its technique was not checked ({detections}).",
        "w_no_threat_intel": "No threat-intelligence list configured: known attacker infrastructure not matched.",
        "w_short_span": "Short observation span ({seconds}): slow exfiltration may not show.",
        "w_no_baseline": "No data before the window: hosts could not be compared with their own baseline.",
        "w_low_findings": "Low-severity findings exist: review them.",
        "w_benign_explanation": "A benign explanation of the findings (backup, update, contracted service).",
        "w_destination_authorised": "The destination turns out to be an authorised processor or own service.",
        "w_estimate_includes_overhead": "Byte estimates include protocol overhead (TLS records, encoding).",
        "w_new_iocs": "New indicators of compromise (retro-hunt over all retained telemetry).",
        "w_leak_site": "Data appearing on leak sites or offered for sale.",
        "w_unmonitored_egress": "Egress paths not covered by these sensors (VPN, 4G modems, TI gateway, "
        "partner lines).",
        "w_hosts_reimaged": "Hosts shut down or re-imaged before acquisition.",
    },
    "de": {
        "title": "Beweisbericht: Sind Daten abgeflossen?",
        "generated": "Erstellt", "tool": "Werkzeug", "tenant": "Mandant", "all_tenants": "alle Mandanten",
        "s_verdict": "Ergebnis", "s_scope": "1. Umfang und Zeitraum", "s_telemetry": "2. Datenquellen und Abdeckung",
        "s_hosts": "3. Ausgehendes Volumen je System im Vergleich zur eigenen Baseline",
        "s_payload": "4. Anteil verschlüsselt und unverschlüsselt",
        "s_checks": "5. Geprüfte Abflusstechniken", "s_dlp": "6. Sensible Daten im Klartext",
        "s_integrity": "7. Integrität", "s_exfil": "Abfluss je internem System und Ziel",
        "s_findings": "Befunde", "s_verdict_detail": "8. Ergebnis: Grundlage und Grenzen",
        "s_deadlines": "Meldefristen", "duty": "Pflicht", "legal_basis": "Rechtsgrundlage",
        "deadline": "Frist", "draft_version": "Version",
        "aware_given": "Zeitpunkt der Kenntniserlangung (mit --aware-at angegeben): {when}. Die Fristen laufen ab "
        "diesem Zeitpunkt.",
        "aware_assumed": "Es wurde kein Zeitpunkt der Kenntniserlangung angegeben (--aware-at); angenommen wurde "
        "daher der Zeitpunkt dieses Berichts: {when}. Die Fristen unten beruhen auf dieser Annahme; für verbindliche "
        "Fristen den tatsächlichen Zeitpunkt angeben.",
        "deadlines_if_notifiable": "Diese Fristen gelten nur, wenn eine meldepflichtige Verletzung festgestellt ist.",
        "final_provisional": "Die Abschlussmeldung wird ab der Frist der Vorfallmeldung gerechnet, solange deren "
        "tatsächlicher Versandzeitpunkt nicht erfasst ist.",
        "findings_max": "{n}, höchster Schweregrad {severity}", "score": "{n} Punkte",
        "window": "Zeitraum", "from": "von", "to": "bis", "seconds": "Sekunden",
        "internal_networks": "Interne Netze", "systems": "Systeme im Umfang (interne Systeme mit ausgehendem Verkehr)",
        "services": "Markierte Dienste", "tenants": "Mandanten", "none": "keine",
        "sensor": "Sensor", "fidelity": "Art", "span": "Dauer", "records": "Datensätze", "gaps": "Lücken",
        "gap_minutes": "Minuten ohne Daten", "missed": "Verlust", "sampled": "Stichprobe",
        "window_share": "Anteil am Zeitraum", "yes": "ja", "no": "nein", "unknown": "unbekannt",
        "host": "System", "bytes_out": "Bytes ausgehend", "bytes_in": "Bytes eingehend", "flows": "Verbindungen",
        "destinations": "Ziele", "baseline": "Baseline (Median/h, Schwelle/h)",
        "no_baseline": "keine Daten vor dem Zeitraum", "above": "Stunden über der Baseline",
        "top_destinations": "Größte Ziele", "timeline": "Ausgehende Bytes im Zeitverlauf (Intervall: {bucket})",
        "destination": "Ziel", "channel": "Kanal", "detections": "Erkennungen", "severity": "Schweregrad",
        "outbound_bytes": "Ausgehende Nutzdaten-Bytes", "cleartext": "Klartext (Inhalt geprüft)",
        "encrypted": "verschlüsselt (TLS, SSH, QUIC: Inhalt nicht prüfbar)",
        "not_inspected": "nicht geprüft (nur Flussdaten oder nicht zusammengesetzt)",
        "payload_note": "Inhaltsdetektoren können nur den Klartextanteil entlasten: {share} des Abflusses.",
        "check": "Prüfung", "result": "Ergebnis", "data_source": "Datenquelle", "coverage": "Abdeckung",
        "r_finding": "Befund", "r_no_finding": "kein Befund", "r_not_checkable": "nicht prüfbar", "r_error": "nicht geprüft: Fehler",
        "r_disabled": "abgeschaltet",
        "category": "Kategorie", "distinct": "Verschiedene Werte", "records_range": "Datensätze (ca.)",
        "subjects_range": "Betroffene Personen (ca.)", "dlp_none": "Keine sensiblen Kennungen im ausgehenden "
        "Klartext gefunden. Das gilt nur für den Klartextanteil ({share}).",
        "input": "Eingabe (SHA-256)", "format": "Format", "size": "Größe", "config_hash": "Konfiguration SHA-256",
        "settings_hash": "Erkennungseinstellungen SHA-256", "version": "Werkzeugversion",
        "confidence": "Konfidenz", "rests_on": "Zugrunde liegende Abdeckung", "would_lower": "Was die Aussage schwächen würde",
        "basis": "Zugrunde liegende Befunde",
        "reevaluate": "Ein Folgebericht ist fällig bei",
        "time_share": "abgedeckter Zeitanteil", "dns_queries": "gesehene DNS-Anfragen", "checks_run": "durchgeführte Prüfungen",
        "not_checkable": "nicht prüfbar",
        "v_EXFIL_CONFIRMED": "Datenabfluss festgestellt",
        "v_EXFIL_INDICATED": "Hinweise auf einen Datenabfluss (verdächtig, nicht belegt)",
        "v_NO_EXFIL_EVIDENCE": "Ein Datenabfluss konnte nicht festgestellt werden",
        "statement_NO_EXFIL_EVIDENCE": "Nach Auswertung der unter Abschnitt 2 genannten Datenquellen wurde im "
        "Zeitraum {start} bis {end} kein Datenabfluss festgestellt. Die Aussage gilt nur für die abgedeckten "
        "Systeme und Zeiträume; bekannte Lücken stehen in Abschnitt 8. Ein Abfluss ist damit nicht ausgeschlossen.",
        "statement_EXFIL_CONFIRMED": "Im Zeitraum {start} bis {end} sind Daten aus dem Netz abgeflossen: siehe "
        "Befunde und Abfluss je System und Ziel.",
        "statement_EXFIL_INDICATED": "Befunde im Zeitraum {start} bis {end} deuten auf einen möglichen "
        "Datenabfluss hin; belegt ist er durch die Daten nicht.",
        "w_time_gap": "{share} des Zeitraums sind von keinem Sensor abgedeckt (Lücken oder später Beginn); "
        "größte Lücke: {largest}.",
        "w_attack_activity": "Angriffsaktivität ohne festgestellten Abfluss ({detections}): ein Angreifer kann im Netz sein.",
        "w_capture_loss": "Der Sensor meldet Erfassungsverlust: {share} der Bytes fehlen.",
        "w_flow_only": "Nur Flussdaten: keine Nutzdaten, daher keine Inhaltsprüfung.",
        "w_sampling_unknown": "NetFlow/IPFIX mit unbekannter Stichprobenrate: kleine Übertragungen können fehlen.",
        "w_encrypted": "{share} des Abflusses waren verschlüsselt oder ungeprüft: ihr Inhalt ist unbekannt.",
        "w_no_dns": "Keine DNS-Daten: DNS-Tunnel konnten nicht geprüft werden.",
        "w_checks_failed": "Eine Erkennung ist mit einem Fehler abgebrochen, ihre Technik wurde nicht geprüft ({detections}).",
        "w_no_threat_intel": "Keine Threat-Intelligence-Liste konfiguriert: bekannte Angreifer-Infrastruktur "
        "nicht abgeglichen.",
        "w_short_span": "Kurzer Beobachtungszeitraum ({seconds}): langsamer Abfluss fällt ggf. nicht auf.",
        "w_no_baseline": "Keine Daten vor dem Zeitraum: kein Vergleich mit der eigenen Baseline der Systeme.",
        "w_low_findings": "Es gibt Befunde geringen Schweregrads: bitte prüfen.",
        "w_benign_explanation": "Eine harmlose Erklärung der Befunde (Sicherung, Update, beauftragter Dienst).",
        "w_destination_authorised": "Das Ziel erweist sich als beauftragter Auftragsverarbeiter oder eigener Dienst.",
        "w_estimate_includes_overhead": "Byte-Schätzungen enthalten Protokoll-Overhead (TLS-Records, Kodierung).",
        "w_new_iocs": "Neue Kompromittierungsindikatoren (Nachsuche über alle vorgehaltenen Daten).",
        "w_leak_site": "Daten tauchen auf Leak-Seiten auf oder werden zum Kauf angeboten.",
        "w_unmonitored_egress": "Ausgänge, die diese Sensoren nicht sehen (VPN, 4G-Modems, TI-Konnektor, "
        "Partnerleitungen).",
        "w_hosts_reimaged": "Systeme, die vor der Sicherung abgeschaltet oder neu aufgesetzt wurden.",
    },
}
LANGS = tuple(TEXTS)

from .texts_accounting import TEXTS_ACCOUNTING  # noqa: E402  the accounting words live in their own module

for _lang, _words in TEXTS_ACCOUNTING.items():
    TEXTS[_lang].update(_words)


class _Shown(str):
    """A fact already written out in the report's language: any format spec in a text
    (``{share:.1%}``) leaves it as it is, so texts cannot bring back English number formats."""

    def __format__(self, spec: str) -> str:
        return str(self)


def _shown(key: str, value, lang: str):
    if key == "detections":
        return _Shown(", ".join(value))
    if key == "share" and isinstance(value, (int, float)):
        return _Shown(units.percent(value, lang, 2 if value < 0.1 else 1))
    if key == "seconds" and isinstance(value, (int, float)):
        return _Shown(units.duration(value, lang))
    return value


def reason_text(item: dict, lang: str) -> str:
    """A weakness or re-evaluation trigger as a sentence in ``lang`` (an unknown reason: its name)."""
    facts = {k: _shown(k, v, lang) for k, v in item.items() if k != "reason"}
    gaps = item.get("gaps")
    if gaps and isinstance(gaps, list) and isinstance(gaps[0], dict) and "start" in gaps[0]:
        g = gaps[0]
        facts["largest"] = _Shown(f"{units.period(g['start'], g['end'], lang)} "
                                  f"({units.duration(60 * (g.get('minutes') or 0), lang)})")
    text = TEXTS[lang].get("w_" + item["reason"])
    if text is None:
        return item["reason"]
    try:
        return text.format(**facts)
    except (KeyError, IndexError, ValueError):
        return text
