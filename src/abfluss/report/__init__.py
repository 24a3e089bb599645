"""The evidence report: "did data leave?" answered with a calibrated verdict (DOMAIN.md §4).

``write_report(ws, out_dir, start=None, end=None, tenant=None, aware_at=None, lang="en")``
writes report.json (schema: ``schema.json``), report.html and report.pdf and returns the
report dict. Modules: ``evidence`` (collects the facts), ``verdict`` (the rules),
``render`` (JSON, HTML, PDF), ``texts`` (German and English words).
"""

from .evidence import collect
from .render import SCHEMA_PATH, build, write_report
from .verdict import VERDICTS, decide

__all__ = ["SCHEMA_PATH", "VERDICTS", "build", "collect", "decide", "write_report"]
