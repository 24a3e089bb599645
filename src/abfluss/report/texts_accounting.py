"""The report's words for the outflow accounting and the NOT_ASSESSABLE verdict (``--lang de|en``).

Kept apart from ``texts`` (which merges them in) so each stays small. ``w_<reason>`` says what
keeps the telemetry from a statement (or what weakens one), ``fix_<reason>`` how to fix it;
both are ``str.format`` templates over the facts of the item (``abfluss.report.verdict.missing``).
"""

from __future__ import annotations

TEXTS_ACCOUNTING: dict[str, dict[str, str]] = {
    "en": {
        "v_NOT_ASSESSABLE": "Data outflow cannot be assessed with this telemetry",
        "statement_NOT_ASSESSABLE": "The telemetry of the period {start} to {end} cannot support a statement "
        "about data outflow: {missing} The extent of any outflow cannot yet be determined; this report will be "
        "completed once the missing telemetry is available (Art. 33(4) GDPR allows information in phases).",
        "s_accounting": "Outflow accounting: every byte out",
        "accounting_note": "Every byte sent from an internal to an external address in the window is counted once, "
        "in the first class that applies; the classes sum to the outflow ledger ({total}).",
        "c_allowlisted": "allowlisted (own or contracted destinations)",
        "c_local": "local (multicast, broadcast, link-local)",
        "c_baseline": "baseline (known destination, normal volume)",
        "c_flagged": "flagged (covered by a finding)",
        "c_unexplained": "unexplained",
        "class": "Class", "share": "Share", "first_seen": "First seen", "total": "Total",
        "top_unexplained": "Largest unexplained destinations ({n} in all)",
        "no_unexplained": "No unexplained outflow in the window.",
        "s_missing": "What is missing, and how to fix it",
        "fix": "Fix",
        "corroborated": "Corroborated outflow (findings agreeing on one host and destination)",
        "signals": "Signals",
        "basis_unexplained": "unexplained outflow",
        "w_no_flows": "No flow telemetry in the window (only DNS, TLS or other logs): the bytes that left "
        "cannot be counted.",
        "fix_no_flows": "Ingest the flow records of the window: a packet capture, Zeek conn.log, Suricata flow "
        "events or NetFlow/IPFIX of the egress link.",
        "w_internal_unmatched": "The internal networks ({networks}) match no address seen in the window, so no "
        "flow counts as outbound; the busiest addresses are {busiest}.",
        "fix_internal_unmatched": "Set `[networks] internal` in abfluss.toml to the organisation's own address "
        "ranges (docs/configuration.md).",
        "w_mostly_external": "{share:.0%} of the flows are between two addresses outside the internal networks; "
        "the busiest addresses are {busiest}.",
        "fix_mostly_external": "Set `[networks] internal` in abfluss.toml to cover the organisation's own "
        "address ranges (docs/configuration.md).",
        "w_no_outbound": "No flow between an internal and an external address: nothing that left could be seen.",
        "fix_no_outbound": "Check that the sensor sees the egress link (internet uplink, proxy, VPN), and that "
        "`[networks] internal` does not also cover external addresses.",
        "w_uncovered": "The sensors cover only {share:.1%} of the window in time (at least {minimum:.0%} needed).",
        "fix_uncovered": "Ingest the telemetry of the missing period, or narrow the window (--from/--to) to the "
        "period the sensors covered.",
        "w_channel_unchecked": "The {check} check could not run: {why}.",
        "fix_channel_unchecked_dns": "Ingest the window's DNS telemetry: Zeek dns.log, Suricata dns events, or a "
        "capture that includes the traffic to and from the resolvers.",
        "fix_channel_unchecked_flows": "Ingest the flow records of the window (capture, Zeek conn.log, Suricata "
        "flow events or NetFlow/IPFIX).",
        "fix_channel_unchecked_enable": "Enable the {check} detection in abfluss.toml "
        "(`[detections.{check}] enabled = true`).",
        "statement_unexplained": "In the period {start} to {end}, {bytes} ({share} of the outflow) went to "
        "{destinations} destination(s) that are not allowlisted, not known at their normal volume and not "
        "covered by a finding (see the outflow accounting): a possible data outflow, not proven by the telemetry.",
        "w_unexplained": "{share:.1%} of the outflow ({bytes} bytes) is unexplained: not allowlisted, not to a "
        "known destination at its normal volume, and not covered by a finding.",
    },
    "de": {
        "v_NOT_ASSESSABLE": "Ein Datenabfluss ist mit diesen Daten nicht beurteilbar",
        "statement_NOT_ASSESSABLE": "Die Daten des Zeitraums {start} bis {end} tragen keine Aussage über einen "
        "Datenabfluss: {missing} Der Umfang eines Abflusses kann noch nicht festgestellt werden; dieser Bericht "
        "wird ergänzt, sobald die fehlenden Daten vorliegen (Art. 33 Abs. 4 DSGVO erlaubt die schrittweise "
        "Bereitstellung).",
        "s_accounting": "Abflussbilanz: jedes ausgehende Byte",
        "accounting_note": "Jedes Byte, das im Zeitraum von einer internen an eine externe Adresse ging, zählt "
        "genau einmal, in der ersten zutreffenden Klasse; die Klassen ergeben zusammen das Abflussjournal ({total}).",
        "c_allowlisted": "freigegeben (eigene oder beauftragte Ziele)",
        "c_local": "lokal (Multicast, Broadcast, Link-local)",
        "c_baseline": "Baseline (bekanntes Ziel, übliches Volumen)",
        "c_flagged": "mit Befund (von einem Befund erfasst)",
        "c_unexplained": "ungeklärt",
        "class": "Klasse", "share": "Anteil", "first_seen": "Erstmals gesehen", "total": "Summe",
        "top_unexplained": "Größte ungeklärte Ziele ({n} insgesamt)",
        "no_unexplained": "Kein ungeklärter Abfluss im Zeitraum.",
        "s_missing": "Was fehlt und wie es zu beheben ist",
        "fix": "Abhilfe",
        "corroborated": "Bestätigter Abfluss (übereinstimmende Befunde zu einem System und Ziel)",
        "signals": "Merkmale",
        "basis_unexplained": "ungeklärter Abfluss",
        "w_no_flows": "Keine Flussdaten im Zeitraum (nur DNS-, TLS- oder andere Protokolle): die abgeflossenen "
        "Bytes lassen sich nicht zählen.",
        "fix_no_flows": "Die Flussdaten des Zeitraums einlesen: Paketmitschnitt, Zeek conn.log, Suricata-Flow-"
        "Ereignisse oder NetFlow/IPFIX der Ausgangsleitung.",
        "w_internal_unmatched": "Die internen Netze ({networks}) passen auf keine Adresse im Zeitraum, daher "
        "zählt keine Verbindung als ausgehend; die häufigsten Adressen sind {busiest}.",
        "fix_internal_unmatched": "`[networks] internal` in abfluss.toml auf die eigenen Adressbereiche der "
        "Organisation setzen (docs/configuration.md).",
        "w_mostly_external": "{share:.0%} der Verbindungen laufen zwischen zwei Adressen außerhalb der internen "
        "Netze; die häufigsten Adressen sind {busiest}.",
        "fix_mostly_external": "`[networks] internal` in abfluss.toml so setzen, dass es die eigenen "
        "Adressbereiche abdeckt (docs/configuration.md).",
        "w_no_outbound": "Keine Verbindung zwischen einer internen und einer externen Adresse: ein Abfluss war "
        "nicht sichtbar.",
        "fix_no_outbound": "Prüfen, dass der Sensor die Ausgangsleitung sieht (Internetanbindung, Proxy, VPN) und "
        "dass `[networks] internal` nicht auch externe Adressen umfasst.",
        "w_uncovered": "Die Sensoren decken nur {share:.1%} des Zeitraums ab (mindestens {minimum:.0%} nötig).",
        "fix_uncovered": "Die Daten des fehlenden Zeitraums einlesen oder den Zeitraum (--from/--to) auf den "
        "abgedeckten Teil begrenzen.",
        "w_channel_unchecked": "Die Prüfung {check} konnte nicht laufen: {why}.",
        "fix_channel_unchecked_dns": "Die DNS-Daten des Zeitraums einlesen: Zeek dns.log, Suricata-DNS-Ereignisse "
        "oder einen Mitschnitt, der den Verkehr zu und von den Resolvern enthält.",
        "fix_channel_unchecked_flows": "Die Flussdaten des Zeitraums einlesen (Mitschnitt, Zeek conn.log, "
        "Suricata-Flow-Ereignisse oder NetFlow/IPFIX).",
        "fix_channel_unchecked_enable": "Die Erkennung {check} in abfluss.toml einschalten "
        "(`[detections.{check}] enabled = true`).",
        "statement_unexplained": "Im Zeitraum {start} bis {end} gingen {bytes} ({share} des Abflusses) an "
        "{destinations} Ziel(e), die weder freigegeben noch in üblichem Umfang bekannt noch von einem Befund erfasst "
        "sind (siehe Abflussbilanz): ein möglicher Datenabfluss, durch die Daten nicht belegt.",
        "w_unexplained": "{share:.1%} des Abflusses ({bytes} Bytes) sind ungeklärt: nicht freigegeben, nicht an ein "
        "bekanntes Ziel in üblichem Umfang und von keinem Befund erfasst.",
    },
}
