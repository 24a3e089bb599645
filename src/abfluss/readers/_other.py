"""Files that are clearly not telemetry: what a data folder holds beside its captures and logs.

A README, a licence, expected-output JSON, a test's YAML or IDS rules are reported ``ignored``
with the reason, not as failed inputs. Judged by content only (never the name), after every
reader has declined, and only for clear cases: text that merely fails to parse (a text file
passed as a capture) stays an error.
"""

from __future__ import annotations

import json
import re

_LICENCE = re.compile(r"(?i)\b(licen[cs]e[ds]?|copyright|permission is hereby granted)\b")
_LICENCE_TERMS = re.compile(r"(?i)\b(warrant(y|ies)|redistribut|free software|all rights reserved|"
                            r"creative commons|without restriction)")
_MARKDOWN = re.compile(r"(?m)^#{1,6} \S|^\s*[-*] \S.*$|^\|.*\|\s*$|\[[^\]]+\]\([^)]+\)|`[^`\n]+`")
_YAML_KEY = re.compile(r"^[A-Za-z_][\w-]*:(\s|$)")
_RULE = re.compile(r"^(alert|drop|pass|reject|rejectsrc|rejectdst|rejectboth)\s+[a-z0-9-]+\s+\S+\s+\S+\s+"
                   r"(->|<>)\s+\S+\s+\S+\s+\(")


def _text(head: bytes) -> str | None:
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:  # the head may end inside a character
        if e.start < len(head) - 4:
            return None
        text = head[: e.start].decode("utf-8")
    printable = sum(c.isprintable() or c in "\t\r\n" for c in text)
    return text if text and printable >= 0.98 * len(text) else None


def reason(head: bytes) -> str | None:
    """Why ``head`` (the start of a file no reader claimed) is clearly not telemetry, else None."""
    text = _text(head)
    if text is None:
        return None
    lines = [l for l in text.splitlines() if l.strip()]
    if not lines:
        return None
    if len(_LICENCE.findall(text)) >= 2 and _LICENCE_TERMS.search(text):
        return "a licence text, not telemetry"
    if len(_MARKDOWN.findall(text)) >= 2 and len(lines) >= 3:
        return "a Markdown document, not telemetry"
    json_keys = _json_keys(lines)
    if json_keys is not None:
        shown = ", ".join(sorted(json_keys)[:6]) + (", ..." if len(json_keys) > 6 else "")
        return f"JSON without the fields of a telemetry format abfluss reads (keys: {shown})"
    rules = [l for l in lines if not l.lstrip().startswith("#")]
    if rules and all(_RULE.match(l) for l in rules[:20]):
        return "IDS rules, not telemetry"
    body = [l for l in lines if not l.lstrip().startswith("#") and l.strip() != "---"]
    if len(body) >= 2 and _YAML_KEY.match(body[0]) and all(
            _YAML_KEY.match(l) or l[:1] in " \t-" for l in body[:40]):
        return "a YAML document, not telemetry"
    return None


def _json_keys(lines: list[str]) -> set[str] | None:
    """The keys of a JSON document or JSON lines made of objects; None if it is no such JSON."""
    first = lines[0].lstrip("\ufeff ")
    if not first.startswith(("{", "[")):
        return None
    keys: set[str] = set()
    for line in lines[:20]:
        try:
            obj = json.loads(line)
        except RecursionError:  # nested deeper than any real document
            return None
        except ValueError:
            try:  # one document over several lines
                obj = json.loads("\n".join(lines))
            except (ValueError, RecursionError):
                return None
            objs = obj if isinstance(obj, list) else [obj]
            keys = {k for o in objs[:20] if isinstance(o, dict) for k in o}
            return keys or None
        for o in obj if isinstance(obj, list) else [obj]:
            if isinstance(o, dict):
                keys.update(o)
    return keys or None
