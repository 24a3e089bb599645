"""JSON as the CLI writes it with ``--format json``: times in ISO 8601, UTC, with ``Z``."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

from fastapi.responses import JSONResponse


def json_default(o):
    if isinstance(o, datetime):
        return (o if o.tzinfo else o.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).isoformat().replace(
            "+00:00", "Z")
    if isinstance(o, date):
        return o.isoformat()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(type(o))


class CLIJSON(JSONResponse):
    """A response whose body is exactly what ``abfluss … --format json`` prints (field names are a contract)."""

    def render(self, content) -> bytes:
        return json.dumps(content, default=json_default, ensure_ascii=False).encode()
