"""German and English text of the notification drafts (Markdown), one renderer per draft.

Every phrase is written as a pair ``_(lang, english, german)`` next to its twin, so the two
languages cannot drift apart. Only counts of sensitive values appear, never a value.
"""

from __future__ import annotations

import re

from .. import units

_DSA_EN = "competent data-protection supervisory authority (BfDI or state authority) [verify per tenant]"
_DSA_DE = "zuständige Datenschutzaufsichtsbehörde (BfDI oder Landesbehörde) [je Mandant prüfen]"
_CSIRT_EN, _CSIRT_DE = "BSI/BBK joint reporting office", "gemeinsame Meldestelle von BSI und BBK"

#: kind -> lang -> (title, legal basis, recipient, when due)
HEADS = {
    "art33": {
        "en": ("Notification of a personal data breach", "GDPR Art. 33(1), (3), (4)", _DSA_EN,
               "without undue delay, at the latest 72 h after awareness"),
        "de": ("Meldung einer Verletzung des Schutzes personenbezogener Daten", "Art. 33 Abs. 1, 3, 4 DSGVO",
               _DSA_DE, "unverzüglich, spätestens 72 Stunden nach Kenntniserlangung")},
    "art34": {
        "en": ("Risk assessment and communication to data subjects", "GDPR Art. 34", "data subjects",
               "without undue delay if the risk is high"),
        "de": ("Risikobewertung und Benachrichtigung der betroffenen Personen", "Art. 34 DSGVO",
               "betroffene Personen", "unverzüglich bei voraussichtlich hohem Risiko")},
    "sgb10_83a": {
        "en": ("Notification to the legal or technical supervisory authority", "§ 83a SGB X",
               "Rechts-/Fachaufsicht (BAS for federal insurers, else the state ministry) [verify per tenant]",
               "together with the notification to the data-protection authority (72 h)"),
        "de": ("Meldung an die Rechts- bzw. Fachaufsichtsbehörde", "§ 83a SGB X",
               "Rechts-/Fachaufsicht (BAS bei bundesunmittelbaren Kassen, sonst Landesministerium) "
               "[je Mandant prüfen]", "zusammen mit der Meldung an die Datenschutzaufsicht (72 Stunden)")},
    "sgb5_329": {
        "en": ("Report of a significant disruption of telematics services", "§ 329(2) SGB V", "gematik GmbH",
               "without undue delay"),
        "de": ("Meldung einer erheblichen Störung von TI-Diensten", "§ 329 Abs. 2 SGB V", "gematik GmbH",
               "unverzüglich")},
    "nis2_early": {
        "en": ("Early warning", "NIS2 Art. 23(4)(a); § 32(1) no. 1 BSIG", _CSIRT_EN,
               "without undue delay, at the latest 24 h after awareness"),
        "de": ("Frühe Erstmeldung", "Art. 23 Abs. 4 lit. a NIS2-RL; § 32 Abs. 1 Nr. 1 BSIG", _CSIRT_DE,
               "unverzüglich, spätestens 24 Stunden nach Kenntniserlangung")},
    "nis2_notification": {
        "en": ("Incident notification", "NIS2 Art. 23(4)(b); § 32(1) no. 2 BSIG", _CSIRT_EN,
               "at the latest 72 h after awareness"),
        "de": ("Meldung (Vorfallmeldung)", "Art. 23 Abs. 4 lit. b NIS2-RL; § 32 Abs. 1 Nr. 2 BSIG", _CSIRT_DE,
               "spätestens 72 Stunden nach Kenntniserlangung")},
    "nis2_final": {
        "en": ("Final report", "NIS2 Art. 23(4)(d), (e); § 32(1) no. 4, (2) BSIG", _CSIRT_EN,
               "at the latest one month after the incident notification"),
        "de": ("Abschlussmeldung", "Art. 23 Abs. 4 lit. d, e NIS2-RL; § 32 Abs. 1 Nr. 4, Abs. 2 BSIG", _CSIRT_DE,
               "spätestens einen Monat nach der Meldung nach Nr. 2")},
    "register": {
        "en": ("Internal breach register entry", "GDPR Art. 33(5)", "internal (on request of the authority)",
               "always"),
        "de": ("Eintrag im internen Verzeichnis von Datenschutzverletzungen", "Art. 33 Abs. 5 DSGVO",
               "intern (auf Anforderung der Aufsichtsbehörde)", "stets")},
}

CATEGORY = {
    "kvnr": ("health insurance numbers (KVNR)", "Krankenversichertennummern (KVNR)"),
    "ik": ("institution codes (IK)", "Institutionskennzeichen (IK)"),
    "iban": ("bank accounts (IBAN)", "Bankverbindungen (IBAN)"),
    "idnr": ("tax IDs (IdNr)", "Steuer-Identifikationsnummern"),
    "rvnr": ("pension insurance numbers (RVNR)", "Rentenversicherungsnummern"),
    "icd10": ("diagnoses (ICD-10 codes)", "Diagnosen (ICD-10-Codes)"),
    "email": ("e-mail addresses", "E-Mail-Adressen"),
    "phone": ("phone numbers", "Telefonnummern"),
}
TODO = ("[to be completed]", "[zu ergänzen]")
#: What a follow-up's list of changes calls each compared item.
CHANGED = {"verdict": ("verdict", "Ergebnis"), "confidence": ("confidence", "Konfidenz"),
           "records": ("records", "Datensätze"), "subjects": ("data subjects", "betroffene Personen"),
           "hosts": ("hosts", "Systeme"), "ti_services": ("telematics services", "TI-Dienste"),
           "indicators": ("indicators", "Indikatoren"), "transfers": ("transfers", "Übertragungen")}


def _(lang: str, en: str, de: str) -> str:
    return de if lang == "de" else en


#: Characters that could turn a quoted value into Markdown structure (code, emphasis, links,
#: tags, table cells, entities); escaped in every value the drafts quote from traffic or
#: configuration (a DNS name is chosen by whoever runs the destination). Values never start a
#: line, so line-start markers (#, -, +) need no escape.
_MD_SPECIAL = re.compile(r"([\\`*\[\]<|&])")


def md(value) -> str:
    """A quoted value as literal Markdown text: one line, structure characters backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def num(n: int, lang: str) -> str:
    return units.number(n, lang)


def rng(lo_hi, lang: str) -> str:
    lo, hi = lo_hi
    return num(lo, lang) if lo == hi else f"{num(lo, lang)}–{num(hi, lang)}"


def when(t, lang: str) -> str:
    return units.when(t, lang) if t else _(lang, "unknown", "unbekannt")


#: Confidence labels and severities in words.
LABELS = {"high": ("high", "hoch"), "medium": ("medium", "mittel"), "low": ("low", "niedrig"),
          "critical": ("critical", "kritisch"), "info": ("info", "Information")}


def label(x, lang: str) -> str:
    """A label ('high') in ``lang``; a number (a confidence from the evidence report) formatted."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return units.number(x, lang, 2)
    return LABELS.get(x, (str(x), str(x)))[lang == "de"]


def _head(inp, ctx, d, lang) -> list[str]:
    stage = {"initial": _(lang, "initial", "Erstmeldung"), "follow-up": _(lang, "follow-up", "Folgemeldung")}
    due = units.deadline_status(d["deadline"], ctx["now"], lang) if d["deadline"] else d["due"]
    aware = when(inp.aware_at, lang)
    if getattr(inp, "aware_at_assumed", False):
        aware += _(lang, " (assumed: no awareness time was given, so the time of this report is used; "
                         "correct it and the deadlines with the actual time)",
                   " (angenommen: kein Zeitpunkt der Kenntniserlangung angegeben, daher gilt der Zeitpunkt "
                   "dieses Berichts; mit dem tatsächlichen Zeitpunkt berichtigen, auch die Fristen)")
    return [f"# {d['title']}: {md(inp.tenant)}", "",
            f"**{_(lang, 'Draft, to be checked and completed before sending', 'Entwurf, vor dem Versand prüfen und ergänzen')}.**",
            "", f"- {_(lang, 'Legal basis', 'Rechtsgrundlage')}: {d['legal_basis']}",
            f"- {_(lang, 'Recipient', 'Empfänger')}: {d['recipient']}",
            f"- {_(lang, 'Version', 'Version')}: {ctx['version']} ({stage[ctx['stage']]})",
            f"- {_(lang, 'Controller (tenant)', 'Verantwortlicher (Mandant)')}: {md(inp.tenant)}",
            f"- {_(lang, 'Awareness', 'Kenntniserlangung')}: {aware}",
            f"- {_(lang, 'Deadline', 'Frist')}: {due}", ""]


def verdict(inp, lang: str) -> str:
    """The verdict as a sentence. An unknown verdict name (a newer report) is quoted as it is and
    read as "extent not yet determinable", the cautious reading under Art. 33(4)."""
    w = units.period(inp.window[0], inp.window[1], lang)
    gaps = "; ".join(md(g) for g in inp.gaps) or _(lang, "see the evidence report", "siehe Beweisbericht")
    cov = f" ({md(inp.coverage)})" if inp.coverage else ""
    conf = _(lang, f"Confidence: {label(inp.confidence, lang)}.", f"Konfidenz: {label(inp.confidence, lang)}.")
    if inp.verdict == "EXFIL_CONFIRMED":
        return _(lang, f"**Data outflow established** (EXFIL_CONFIRMED) in the period {w}{cov}. {conf}",
                 f"**Ein Datenabfluss wurde festgestellt** (EXFIL_CONFIRMED) im Zeitraum {w}{cov}. {conf}")
    if inp.verdict == "EXFIL_INDICATED":
        return _(lang, f"**Data outflow indicated, not proven** (EXFIL_INDICATED) in the period {w}{cov}. {conf}",
                 f"**Es liegen Hinweise auf einen Datenabfluss vor; er ist nicht nachgewiesen** (EXFIL_INDICATED) "
                 f"im Zeitraum {w}{cov}. {conf}")
    if inp.verdict == "NO_EXFIL_EVIDENCE":
        return _(lang, f"After analysing the data sources listed in the evidence report, no data outflow was found "
                       f"in the period {w}{cov}. The statement applies only to the covered systems and periods; "
                       f"known gaps: {gaps}. {conf}",
                 f"Nach Auswertung der im Beweisbericht genannten Datenquellen wurde im Zeitraum {w}{cov} kein "
                 f"Datenabfluss festgestellt. Die Aussage gilt nur für die abgedeckten Systeme und Zeiträume; "
                 f"bekannte Lücken: {gaps}. {conf}")
    v = md(inp.verdict)
    return _(lang, f"**The extent of a data outflow cannot yet be determined** ({v}) for the period {w}{cov}; "
                   f"known gaps: {gaps}. Further information follows in phases (Art. 33(4) GDPR). {conf}",
             f"**Der Umfang eines Datenabflusses kann noch nicht bestimmt werden** ({v}) für den Zeitraum {w}{cov}; "
             f"bekannte Lücken: {gaps}. Weitere Informationen folgen schrittweise (Art. 33 Abs. 4 DSGVO). {conf}")


def systems(inp, lang: str) -> list[str]:
    if not inp.hosts:
        return [_(lang, "No affected systems identified.", "Keine betroffenen Systeme ermittelt.")]
    out = [f"| {_(lang, 'System', 'System')} | {_(lang, 'Asset tags', 'Asset-Tags')} | "
           f"{_(lang, 'Bytes out (largest transfer)', 'Bytes ausgehend (größte Übertragung)')} |", "|---|---|---:|"]
    out += [f"| {md(h.ip)} | {', '.join(md(t) for t in h.tags) or '–'} | {num(h.bytes_out, lang)} |" for h in inp.hosts]
    return out


def transfers(inp, lang: str) -> list[str]:
    if not inp.transfers:
        return [_(lang, "No outbound transfer was measured.", "Es wurde keine ausgehende Übertragung gemessen.")]
    out = [f"| {_(lang, 'From', 'Von')} | {_(lang, 'To', 'An')} | {_(lang, 'Channel', 'Kanal')} | Bytes |",
           "|---|---|---|---:|"]
    out += [f"| {md(t.host)} | {md(t.destination)}{f' ({md(t.name)})' if t.name and t.name != t.destination else ''} "
            f"| {md(t.channel) if t.channel else '–'} | {num(t.bytes_out, lang)} |" for t in inp.transfers]
    return out


def categories(inp, lang: str) -> list[str]:
    if not inp.counts:
        return [_(lang, "No sensitive identifiers were found in the inspected cleartext share. Content sent "
                        "over encrypted channels cannot be inspected: categories and numbers are unknown.",
                  "Im geprüften Klartextanteil wurden keine sensiblen Kennungen gefunden. Inhalte verschlüsselter "
                  "Kanäle sind nicht prüfbar: Kategorien und Anzahl sind unbekannt.")]
    out = [f"| {_(lang, 'Category', 'Kategorie')} | {_(lang, 'Distinct values (approx.)', 'Verschiedene Werte (ca.)')} |",
           "|---|---:|"]
    out += [f"| {CATEGORY[c][lang == 'de']} | {rng(v, lang)} |" for c, v in inp.counts.items()]
    return out + ["", _(lang, f"Approximate number of data subjects: {rng(inp.subjects, lang)}; approximate number "
                              f"of records: {rng(inp.records, lang)} (a range runs from the distinct values of the "
                              f"strongest person identifier to every person identifier standing for another person).",
                        f"Ungefähre Zahl betroffener Personen: {rng(inp.subjects, lang)}; ungefähre Zahl der "
                        f"Datensätze: {rng(inp.records, lang)} (Spannen reichen von den verschiedenen Werten der "
                        f"stärksten Personenkennung bis zu jeder Personenkennung als eigener Person).")]


def consequences(inp, lang: str) -> str:
    c = set(inp.counts)
    parts = []
    if c & {"icd10", "kvnr"}:
        parts.append(_(lang, "disclosure of health data (special category, Art. 9 GDPR)",
                       "Offenlegung von Gesundheitsdaten (besondere Kategorie, Art. 9 DSGVO)"))
    if c & {"kvnr", "rvnr", "idnr"}:
        parts.append(_(lang, "misuse of unchangeable insurance or tax numbers (identity theft)",
                       "Missbrauch unveränderlicher Versicherungs- oder Steuernummern (Identitätsdiebstahl)"))
    if "iban" in c:
        parts.append(_(lang, "fraud using bank details", "Betrug mit Bankverbindungen"))
    if c & {"email", "phone"}:
        parts.append(_(lang, "targeted phishing", "gezieltes Phishing"))
    if not parts:
        parts.append(_(lang, "possible disclosure of the data processed on the affected systems; extent under "
                             "investigation", "mögliche Offenlegung der auf den betroffenen Systemen verarbeiteten "
                             "Daten; Umfang wird untersucht"))
    return "; ".join(parts) + "."


#: The measures abfluss proposes itself (drafts.input_for, case._measures), in both languages;
#: measures typed in by people are quoted as they are.
MEASURES = (
    (re.compile(r"isolate (.+)", re.S), "isolate {0}", "{0} isolieren"),
    (re.compile(r"block (.+)", re.S), "block {0}", "{0} sperren"),
    (re.compile(r"check (.+): it also contacted the indicators", re.S), "check {0}: it also contacted the indicators",
     "{0} prüfen: hat die Indikatoren ebenfalls kontaktiert"),
)


def measure(m: str, lang: str) -> str:
    for pattern, en, de in MEASURES:
        if hit := pattern.fullmatch(m):
            return _(lang, en, de).format(*(md(g) for g in hit.groups()))
    return md(m)


def measures(inp, lang: str) -> list[str]:
    # blank lines around each list: a line after a list would otherwise run into its last item
    taken = [f"- {measure(m, lang)}" for m in dict.fromkeys(inp.measures_taken)] or [f"- {TODO[lang == 'de']}"]
    planned = [f"- {measure(m, lang)}" for m in dict.fromkeys(inp.measures_proposed)] or [f"- {TODO[lang == 'de']}"]
    return [f"{_(lang, 'Taken', 'Ergriffen')}:", "", *taken, "", f"{_(lang, 'Proposed', 'Vorgeschlagen')}:", "",
            *planned, ""]


def changes(ctx, lang: str) -> list[str]:
    ch = ctx["changes"]
    if ch is None:
        return []
    out = [f"## {_(lang, 'Changes since version', 'Änderungen seit Version')} {ctx['version'] - 1} "
           f"({_(lang, 'Art. 33(4) GDPR', 'Art. 33 Abs. 4 DSGVO')})", ""]
    if not ch:
        return out + [_(lang, "No change in the evidence.", "Keine Änderung der Befunde."), ""]
    for k in ("verdict", "confidence"):
        if k in ch:
            out.append(f"- {CHANGED[k][lang == 'de']}: {label(ch[k][0], lang)} → {label(ch[k][1], lang)}")
    for k in ("records", "subjects"):
        if k in ch:
            out.append(f"- {CHANGED[k][lang == 'de']}: {rng(ch[k][0], lang)} → {rng(ch[k][1], lang)}")
    for c, (a, b) in ch.get("counts", {}).items():
        out.append(f"- {CATEGORY[c][lang == 'de']}: {rng(a, lang)} → {rng(b, lang)}")
    for k in ("hosts", "ti_services", "indicators", "transfers"):
        for what in ("added", "removed"):
            for v in ch.get(k, {}).get(what, []):
                out.append(f"- {CHANGED[k][lang == 'de']} {_(lang, what, {'added': 'neu', 'removed': 'entfallen'}[what])}: "
                           f"{md(v)}")
    for v, (a, b) in ch.get("transfers", {}).get("changed", {}).items():
        out.append(f"- {md(v)}: {num(a, lang)} → {num(b, lang)} {_(lang, 'bytes', 'Bytes')}")
    return out + [""]


def _art33_body(inp, ctx, lang) -> list[str]:
    contact = inp.contact or _(lang, "[to be completed: name and contact details of the DPO]",
                               "[zu ergänzen: Name und Kontaktdaten des/der Datenschutzbeauftragten]")
    span = units.period(inp.first_evidence, inp.last_evidence, lang) if inp.first_evidence else when(None, lang)
    return [f"## (a) {_(lang, 'Nature of the breach', 'Art der Verletzung')}", "",
            _(lang, "Breach of confidentiality: data sent from internal systems to external destinations.",
              "Verletzung der Vertraulichkeit: Übermittlung von Daten aus internen Systemen an externe Ziele."),
            "", verdict(inp, lang), "",
            _(lang, f"First and last evidence: {span}.", f"Erster und letzter Befund: {span}."),
            "", f"### {_(lang, 'Categories and approximate numbers', 'Kategorien und ungefähre Anzahl')}", "",
            *categories(inp, lang), "", f"### {_(lang, 'Affected systems', 'Betroffene Systeme')}", "",
            *systems(inp, lang), "", f"### {_(lang, 'Outbound volumes', 'Ausgehende Datenmengen')}", "",
            *transfers(inp, lang), "", f"## (b) {_(lang, 'Contact point', 'Kontaktstelle')}", "", contact, "",
            f"## (c) {_(lang, 'Likely consequences', 'Wahrscheinliche Folgen')}", "", consequences(inp, lang), "",
            f"## (d) {_(lang, 'Measures taken or proposed', 'Ergriffene oder vorgeschlagene Maßnahmen')}", "",
            *measures(inp, lang), ""]


def _art33(inp, ctx, d, lang) -> list[str]:
    out = _art33_body(inp, ctx, lang)
    if d["time_left"] is not None and d["time_left"] < 0:
        out += [f"## {_(lang, 'Reasons for the delay (Art. 33(1))', 'Gründe für die Verzögerung (Art. 33 Abs. 1)')}",
                "", TODO[lang == "de"], ""]
    return out


def _art34(inp, ctx, d, lang) -> list[str]:
    risk = ctx["high_risk"]
    said = {True: _(lang, "**High risk**: health, insurance, tax or bank identifiers left the organisation; "
                          "the data subjects must be informed.",
                    "**Hohes Risiko**: Gesundheits-, Versicherungs-, Steuer- oder Bankkennungen sind abgeflossen; "
                    "die betroffenen Personen sind zu benachrichtigen."),
            None: _(lang, "**Risk not yet determinable**: outflow is indicated but its content is unknown. Where the "
                          "affected systems hold health data, treat it as high risk.",
                    "**Risiko noch nicht bestimmbar**: ein Abfluss ist angezeigt, sein Inhalt unbekannt. Verarbeiten "
                    "die betroffenen Systeme Gesundheitsdaten, ist von hohem Risiko auszugehen."),
            False: _(lang, "No high risk established.", "Kein hohes Risiko festgestellt.")}[risk]
    ex_a = (_(lang, "not applicable: the data left unencrypted.", "nicht anwendbar: die Daten flossen unverschlüsselt ab.")
            if inp.cleartext else _(lang, "to be checked: were the data encrypted with keys that were not compromised?",
                                    "zu prüfen: waren die Daten mit nicht kompromittierten Schlüsseln verschlüsselt?"))
    out = [f"## {_(lang, 'Assessment', 'Bewertung')}", "", said, "", f"- Art. 34(3)(a): {ex_a}",
           f"- Art. 34(3)(b): {TODO[lang == 'de']}", f"- Art. 34(3)(c): {TODO[lang == 'de']}", ""]
    if risk is False:
        return out
    contact = inp.contact or TODO[lang == "de"]
    return out + [f"## {_(lang, 'Message to the data subjects (plain language)', 'Nachricht an die Betroffenen (einfache Sprache)')}",
                  "", _(lang, f"We have found that data about you may have been sent from our systems to third "
                              f"parties between {when(inp.first_evidence, lang)} and {when(inp.last_evidence, lang)}.",
                        f"Wir haben festgestellt, dass Daten über Sie zwischen {when(inp.first_evidence, lang)} und "
                        f"{when(inp.last_evidence, lang)} aus unseren Systemen an Dritte gelangt sein können."),
                  "", f"{_(lang, 'Possible consequences', 'Mögliche Folgen')}: {consequences(inp, lang)}", "",
                  f"{_(lang, 'What we do', 'Was wir tun')}:", "", *measures(inp, lang), "",
                  f"{_(lang, 'Contact', 'Kontakt')}: {contact}", ""]


def _sgb10(inp, ctx, d, lang) -> list[str]:
    return [_(lang, "Copy of the notification to the data-protection authority (Art. 33 GDPR) for the supervisory "
                    "authority of the insurer (§ 83a SGB X, social data).",
              "Abschrift der Meldung an die Datenschutzaufsicht (Art. 33 DSGVO) für die Aufsichtsbehörde der "
              "Kasse (§ 83a SGB X, Sozialdaten)."), "", *_art33_body(inp, ctx, lang)]


def _sgb5(inp, ctx, d, lang) -> list[str]:
    conf = {"EXFIL_CONFIRMED": _(lang, "confirmed", "festgestellt")}.get(inp.verdict, _(lang, "suspected", "vermutet"))
    return [f"- {_(lang, 'Affected telematics services', 'Betroffene TI-Dienste')}: {', '.join(inp.ti_services)}",
            f"- {_(lang, 'Confidentiality impact', 'Beeinträchtigung der Vertraulichkeit')}: {conf}",
            f"- {_(lang, 'Availability, integrity, authenticity impact', 'Beeinträchtigung von Verfügbarkeit, Integrität, Authentizität')}: "
            f"{_(lang, 'not assessable from network evidence', 'aus Netzdaten nicht bewertbar')} {TODO[lang == 'de']}",
            "", verdict(inp, lang), "", *systems(inp, lang), ""]


def seen(n: int, lang: str) -> str:
    if n == 1:
        return _(lang, "seen once", "einmal gesehen")
    return _(lang, f"seen {num(n, lang)} times", f"{num(n, lang)}-mal gesehen")


def _indicators(inp, lang) -> list[str]:
    if not inp.indicators:
        return [_(lang, "No indicators of compromise.", "Keine Kompromittierungsindikatoren.")]
    n = len(inp.indicators)
    return [f"- {md(i.value)} ({i.kind}; {seen(i.count, lang)}, {when(i.first_seen, lang)} – "
            f"{when(i.last_seen, lang)})"
            for i in inp.indicators] + ["", _(lang, f"Attached: STIX 2.1 bundle with {units.count(n, 'indicator', lang)}.",
                                              f"Anlage: STIX-2.1-Bündel mit {units.count(n, 'indicator', lang)}.")]


def _malicious(inp, lang) -> list[str]:
    mal = {True: _(lang, "yes (suspected)", "ja (Verdacht)"), False: _(lang, "no", "nein"),
           None: _(lang, "unknown", "unbekannt")}
    dests = ", ".join(md(d) for d in sorted({t.destination for t in inp.transfers} | {i.value for i in inp.indicators})) or "–"
    return [f"- {_(lang, 'Unlawful or malicious act suspected', 'Verdacht auf rechtswidrige oder böswillige Handlung')}: "
            f"{mal[inp.suspected_malicious]} ({', '.join(inp.detections) or '–'})",
            f"- {_(lang, 'Cross-border impact possible', 'Grenzüberschreitende Auswirkungen möglich')}: "
            f"{mal[inp.cross_border]}; {_(lang, 'destinations to locate', 'zu verortende Ziele')}: {dests}"]


def _nis2_early(inp, ctx, d, lang) -> list[str]:
    return [f"## {_(lang, 'Suspected cause and impact', 'Vermutete Ursache und Auswirkungen')}", "",
            *_malicious(inp, lang), "", verdict(inp, lang), ""]


def _assessment(inp, lang) -> list[str]:
    svc = ", ".join(inp.ti_services) or "–"
    return [f"- {_(lang, 'Severity', 'Schweregrad')}: {label(inp.severity, lang)}",
            f"- {_(lang, 'Impact', 'Auswirkungen')}: {_(lang, 'confidentiality', 'Vertraulichkeit')}; "
            f"{units.count(len(inp.hosts), 'host', lang)}; {_(lang, 'telematics services', 'TI-Dienste')}: {svc}",
            "", *transfers(inp, lang)]


def _nis2_notification(inp, ctx, d, lang) -> list[str]:
    return [f"## {_(lang, 'Update of the early warning', 'Aktualisierung der Erstmeldung')}", "", *_malicious(inp, lang),
            "", verdict(inp, lang), "", f"## {_(lang, 'Initial assessment', 'Erste Bewertung')}", "",
            *_assessment(inp, lang), "", f"## {_(lang, 'Indicators of compromise', 'Kompromittierungsindikatoren')}",
            "", *_indicators(inp, lang), ""]


def _nis2_final(inp, ctx, d, lang) -> list[str]:
    basis = (_(lang, "one month after the incident notification, counted from its deadline until its actual "
                     "submission time is recorded", "einen Monat nach der Meldung, gerechnet ab deren Frist, "
                     "solange der tatsächliche Versandzeitpunkt nicht erfasst ist")
             if inp.notified_at is None else _(lang, "one month after the incident notification",
                                                                     "einen Monat nach der Meldung"))
    out = [_(lang, f"Deadline basis: {basis}.", f"Fristberechnung: {basis}."), ""]
    if inp.ongoing:
        out += [_(lang, "If the incident is still ongoing at the deadline, send a progress report instead; the final "
                        "report is then due one month after the incident has been handled (§ 32(2) BSIG).",
                  "Dauert der Vorfall zur Frist noch an, ist stattdessen eine Fortschrittsmeldung abzugeben; die "
                  "Abschlussmeldung folgt einen Monat nach Abschluss der Bearbeitung (§ 32 Abs. 2 BSIG)."), ""]
    return out + [f"## (i) {_(lang, 'Detailed description, severity and impact', 'Ausführliche Beschreibung, Schweregrad und Auswirkungen')}",
                  "", verdict(inp, lang), "", *_assessment(inp, lang), "", *categories(inp, lang), "",
                  f"## (ii) {_(lang, 'Type of threat or root cause', 'Art der Bedrohung oder zugrunde liegende Ursache')}", "",
                  f"{_(lang, 'Detections', 'Erkennungen')}: {', '.join(inp.detections) or '–'}; "
                  f"MITRE ATT&CK: {', '.join(inp.attack) or '–'}. {TODO[lang == 'de']}", "",
                  f"## (iii) {_(lang, 'Mitigation measures applied and ongoing', 'Getroffene und laufende Abhilfemaßnahmen')}",
                  "", *measures(inp, lang), "", f"## (iv) {_(lang, 'Cross-border impact', 'Grenzüberschreitende Auswirkungen')}",
                  "", *_malicious(inp, lang)[1:], "", f"## {_(lang, 'Indicators of compromise', 'Kompromittierungsindikatoren')}",
                  "", *_indicators(inp, lang), ""]


def _register(inp, ctx, d, lang) -> list[str]:
    facts = [f"## {_(lang, 'Facts', 'Sachverhalt')}", "", verdict(inp, lang), "", *categories(inp, lang), "",
             *systems(inp, lang), ""]
    if inp.verdict == "NO_EXFIL_EVIDENCE":
        return facts + [f"## {_(lang, 'Decision', 'Entscheidung')}", "",
                        _(lang, "Not notified: no evidence of outflow is attributed to this controller's systems in the "
                                "window. This is not a statement that no data left; re-evaluate on new indicators, "
                                "leaked data or closed telemetry gaps (Art. 33(4)).",
                          "Keine Meldung: den Systemen dieses Verantwortlichen ist im Zeitraum kein Hinweis auf einen "
                          "Abfluss zuzuordnen. Das ist keine Aussage, dass keine Daten abgeflossen sind; neu bewerten "
                          "bei neuen Indikatoren, aufgetauchten Daten oder geschlossenen Telemetrielücken (Art. 33 Abs. 4)."), ""]
    return facts + [f"## {_(lang, 'Effects', 'Auswirkungen')}", "", consequences(inp, lang), "",
                    f"## {_(lang, 'Remedial action', 'Abhilfemaßnahmen')}", "", *measures(inp, lang), "",
                    f"## {_(lang, 'Decision', 'Entscheidung')}", "",
                    _(lang, "Notified (see the drafts of this version).", "Gemeldet (siehe Entwürfe dieser Version)."), ""]


_RENDER = {"art33": _art33, "art34": _art34, "sgb10_83a": _sgb10, "sgb5_329": _sgb5, "nis2_early": _nis2_early,
           "nis2_notification": _nis2_notification, "nis2_final": _nis2_final, "register": _register}


def render(kind: str, inp, ctx: dict, d: dict, lang: str) -> str:
    """The Markdown text of draft ``kind`` (``d``: its title, deadline and time left)."""
    return "\n".join(_head(inp, ctx, d, lang) + changes(ctx, lang) + _RENDER[kind](inp, ctx, d, lang)).rstrip() + "\n"
