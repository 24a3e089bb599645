"""The evidence report: "did data leave?" answered with a calibrated verdict (DOMAIN.md §4).

``write_report(ws, out_dir, start=None, end=None, tenant=None, aware_at=None, lang="en")``
writes report.json (schema: ``schema.json``), report.html and report.pdf and returns the
report dict. Modules: ``evidence`` (collects the facts), ``verdict`` (the rules),
``render`` (JSON, HTML, PDF), ``texts`` (German and English words).
"""

import importlib

# Imported on first use (PEP 562): ``import abfluss.report.case`` or the CLI must not load
# evidence, render (WeasyPrint) and the detections through this package.
_LAZY = {"collect": "evidence", "SCHEMA_PATH": "render", "build": "render", "write_report": "render",
         "VERDICTS": "verdict", "decide": "verdict"}


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


__all__ = ["SCHEMA_PATH", "VERDICTS", "build", "collect", "decide", "write_report"]
