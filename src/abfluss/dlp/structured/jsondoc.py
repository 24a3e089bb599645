"""JSON and NDJSON: each object a record of its scalar members, keys as anchors."""

from __future__ import annotations

import json
from collections.abc import Iterator

from .records import chain, clean, prefix


def json_text(text: str) -> Iterator[str] | None:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        lines = [ln for ln in text.split("\n") if ln.strip()]
        docs = []
        for ln in lines:
            try:
                docs.append(json.loads(ln))
            except (ValueError, RecursionError):
                return None  # not JSON: read as text
        return chain(*(json_records(d) for d in docs))
    return json_records(doc)


def json_records(doc) -> Iterator[str]:
    """Each object as a record of its scalar members (``key=value`` where the key anchors),
    written after the key it hangs from; nested objects and arrays are records of their own."""
    stack = [("", doc)]
    while stack:
        key, v = stack.pop()
        if isinstance(v, dict):
            fields = [clean(key)] if key else []
            nested = []
            for k, x in v.items():
                if isinstance(x, (dict, list)):
                    nested.append((k, x))
                else:
                    fields.append(prefix(k) + _scalar(x))
            yield "\t".join(fields) + "\n"
            stack.extend(reversed(nested))
        elif isinstance(v, list):
            scalars = [_scalar(x) for x in v if not isinstance(x, (dict, list))]
            if scalars:
                p = prefix(key)
                yield "\t".join([clean(key)] + [p + s for s in scalars]) + "\n"
            stack.extend(reversed([(key, x) for x in v if isinstance(x, (dict, list))]))
        else:
            yield prefix(key) + _scalar(v) + "\n"


def _scalar(x) -> str:
    if x is None or isinstance(x, bool):
        return ""
    return clean(x if isinstance(x, str) else str(x))
