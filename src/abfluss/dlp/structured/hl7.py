"""HL7 v2 messages: one record per segment, the identifier fields labelled."""

from __future__ import annotations

import re
from collections.abc import Iterator


#: Field labels (anchor words) of HL7 v2 fields that carry the identifiers of DOMAIN.md §2.
HL7_LABELS = {
    "PID-2": "patient id", "PID-3": "patient identifier list", "PID-4": "alternate patient id",
    "PID-19": "svnr", "PID-13": "telefon", "PID-14": "telefon",
    "IN1-3": "IK", "IN1-36": "versichertennummer", "IN1-49": "versichertennummer",
    "IN2-1": "versichertennummer", "IN2-8": "svnr",
    "DG1-3": "diagnose", "DG1-4": "diagnose", "PRB-3": "diagnose",
    "GT1-12": "svnr", "NK1-5": "telefon",
}
#: Coded fields (CE/CWE: code^text^coding system^alternate code^text^system): the coding
#: systems' names ("I10", "ICD10GM") are left out, they are not diagnoses.
HL7_CODED = {"DG1-3", "PRB-3"}
_CODED_KEEP = (0, 1, 3, 4)
_HL7_ESC = {"F": "|", "S": "^", "T": "&", "R": "~", "E": "\\"}


def hl7(text: str) -> Iterator[str]:
    """One record per segment: each field as ``SEG-n label=component\\tcomponent…``."""
    text = text.replace("\x0b", "").replace("\x1c", "\n")
    fs, comp, rep, esc, sub = "|", "^", "~", "\\", "&"
    split = str.maketrans({comp: "\t", rep: "\t", sub: "\t", "\t": " "})
    for seg in re.split(r"\r\n|\r|\n", text):
        if len(seg) < 4:
            if not seg.strip():
                yield "\n"
            continue
        name = seg[:3]
        if name == "MSH" and len(seg) >= 8:
            fs = seg[3]
            comp, rep, esc, sub = (seg[4:8] + "^~\\&"[len(seg[4:8]):])[:4]
            split = str.maketrans({comp: "\t", rep: "\t", sub: "\t", "\t": " "})
        fields = seg.split(fs)
        out = [name]
        for i, f in enumerate(fields[1:], 1):
            if not f or (name == "MSH" and i == 1):
                continue
            field = f"{name}-{i + 1 if name == 'MSH' else i}"  # MSH-1 is the separator itself
            if field in HL7_CODED:
                parts = []
                for r in f.split(rep):
                    comps = r.split(comp)
                    parts += [comps[j] for j in _CODED_KEEP if j < len(comps) and comps[j]]
                value = "\t".join(parts)
            else:
                value = f.translate(split)  # components, repetitions, subcomponents: separate fields
                if "\t\t" in value:
                    value = "\t".join(p for p in value.split("\t") if p)
            if esc in value:
                value = _hl7_unescape(value, esc)
            label = HL7_LABELS.get(field)
            out.append(f"{field} {label}={value}" if label else f"{field}={value}")
        yield "\t".join(out).replace("\r", " ").replace("\n", " ") + "\n"


def _hl7_unescape(v: str, esc: str) -> str:
    if esc not in v:
        return v
    return re.sub(re.escape(esc) + r"([FSTRE])" + re.escape(esc), lambda m: _HL7_ESC[m.group(1)], v)
