"""Render the evidence report: report.json (schema.json), report.html (self-contained), report.pdf.

:func:`write_report` is the one public entry point. The HTML carries its CSS and its plot (a
hand-made SVG) inline and references nothing outside itself, so opening it sends no request;
the PDF is the same HTML through WeasyPrint. The words come from ``texts.TEXTS`` per language.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from html import escape
from pathlib import Path

from ..errors import AbflussError
from ..fsutil import replace_file
from ..store import Workspace
from .. import units
from . import deadlines, evidence, verdict
from .phrases import coverage_facts, phrase, technique_title
from .texts import LANGS, TEXTS, reason_text

SCHEMA_VERSION = 1
TEMPLATES = Path(__file__).parent / "templates"
SCHEMA_PATH = Path(__file__).parent / "schema.json"
#: Colours of the plotted hosts, in order.
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd")


def build(ws: Workspace, start: datetime | None = None, end: datetime | None = None,
          tenant: str | None = None, aware_at: datetime | None = None, lang: str = "en",
          findings=None, now: datetime | None = None) -> dict:
    """The report dict (what report.json holds), without writing anything.

    ``now`` (default: the time of writing) is the time the deadlines are counted to and, without
    ``aware_at``, the assumed awareness time (``deadlines.aware_at_source = "assumed"``).
    """
    if lang not in LANGS:
        raise AbflussError(f"--lang {lang!r}: one of {', '.join(LANGS)}")
    ev = evidence.collect(ws, start, end, tenant, findings)
    v = verdict.decide(ev)
    for item in v["would_lower"] + v["reevaluate_on"] + v["missing"]:
        item["text"] = reason_text(item, lang)
    for item in v["missing"]:
        item["fix"] = TEXTS[lang]["fix_" + item["reason"] + ("_" + item["need"] if "need" in item else "")
                                  ].format(**item)
    unexplained = v["basis"] and v["basis"][0].get("kind") == "unexplained"
    acc = ev["accounting"]
    key = "statement_unexplained" if unexplained else "statement_" + v["verdict"]
    words = TEXTS[lang].get(key, "{verdict}: {start} – {end}")
    statement = words.format(start=units.when(ev["window"]["start"], lang, seconds=True),
                             end=units.when(ev["window"]["end"], lang, seconds=True), verdict=v["verdict"],
                             period=units.period(ev["window"]["start"], ev["window"]["end"], lang),
                             bytes=units.human_bytes(acc["categories"]["unexplained"], lang), share=units.percent(acc["shares"]["unexplained"], lang),
                             destinations=acc["unexplained_destinations"],
                             missing=" ".join(m["text"] for m in v["missing"]))
    v["coverage"]["statement"] = statement  # what the notification drafts quote (drafts.apply_report)
    rid = hashlib.sha256(json.dumps([ev["window"], tenant, ev["integrity"]["config_sha256"],
                                     [i["sha256"] for i in ev["integrity"]["inputs"]]]).encode()).hexdigest()[:16]
    generated = evidence.iso(now) if now else ev["integrity"]["generated_at"]
    return {
        "schema_version": SCHEMA_VERSION, "report_id": rid, "lang": lang,
        "generated_at": generated, "aware_at": evidence.iso(aware_at),
        "deadlines": deadlines.section(aware_at, now or datetime.fromisoformat(generated.replace("Z", "+00:00"))),
        "verdict": v["verdict"], "confidence": v["confidence"], "confidence_label": v["confidence_label"],
        "coverage": v["coverage"], "exfiltration": ev.pop("exfiltration"),
        "assessment": {k: v[k] for k in ("basis", "corroborated", "missing", "weaknesses",
                                         "confidence_factors", "would_lower", "reevaluate_on")},
        "statement": statement,
        **ev,
        # every host x destination x class is ``abfluss account --format csv``; the report keeps the summary
        "accounting": {k: x for k, x in ev["accounting"].items() if k != "pairs"},
    }


def write_report(ws: Workspace, out_dir: str | Path, start: datetime | None = None, end: datetime | None = None,
                 tenant: str | None = None, aware_at: datetime | None = None, lang: str = "en",
                 extra_sections: dict | None = None, pdf: bool = True) -> dict:
    """Write report.json, report.html and report.pdf into ``out_dir``; return the report dict.

    ``extra_sections`` are added to the dict under their own keys before anything is written
    (the notification drafts go under ``notifications``); the HTML shows each as a section
    with its ``title`` and ``html`` (already escaped) when those keys are present.
    """
    rep = build(ws, start, end, tenant, aware_at, lang)
    for k, v in (extra_sections or {}).items():
        if k in rep:
            raise AbflussError(f"extra section {k!r} would overwrite a report field")
        rep[k] = v
    write_files(rep, Path(out_dir), extra_sections, pdf)
    return rep


def write_files(rep: dict, out: Path, extra_sections: dict | None = None, pdf: bool = True) -> None:
    """report.json, report.html and (unless ``pdf`` is false) report.pdf of ``rep`` into ``out``;
    each written under a new name and renamed into place (a planted symlink is replaced, never
    written through)."""
    out.mkdir(parents=True, exist_ok=True)
    html = render_html(rep, extra_sections)
    replace_file(out / "report.html", html)
    if pdf:
        replace_file(out / "report.pdf", render_pdf(html))
    replace_file(out / "report.json", json.dumps(rep, indent=1, ensure_ascii=False, default=str) + "\n")


def render_pdf(html: str) -> bytes:
    from weasyprint import HTML

    # No base URL and nothing to fetch: the document is complete in itself.
    return HTML(string=html, url_fetcher=_no_fetch).write_pdf()


def write_pdf(html: str, path: Path) -> None:
    replace_file(Path(path), render_pdf(html))


def _no_fetch(url: str, *args, **kwargs):
    raise AbflussError(f"the report must not load {url!r}")


def render_html(rep: dict, extra_sections: dict | None = None) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    lang = rep["lang"]
    # every figure through units, in the report's language (decimal commas, German dates)
    env.filters["bytes"] = lambda n: units.human_bytes(n, lang)
    env.filters["pct"] = lambda x: units.percent(x, lang)
    env.filters["num"] = lambda x, digits=0: units.number(x, lang, digits)
    env.filters["ts"] = lambda s: units.when(s, lang, seconds=True)
    env.filters["span"] = lambda s: units.duration(s, lang)
    env.filters["period"] = lambda a, b: units.period(a, b, lang)
    env.filters["count"] = lambda n, noun: units.count(n, noun, lang)
    env.filters["phrase"] = lambda text: phrase(text, lang)
    env.filters["coverage"] = lambda cov: coverage_facts(cov, lang)
    env.filters["technique"] = lambda c: technique_title(c, lang)
    env.filters["unique"] = _unique
    t = TEXTS[lang]
    extras = [v for v in (extra_sections or {}).values() if isinstance(v, dict) and "html" in v]
    return env.get_template("report.html.j2").render(
        r=rep, t=t, plot=timeline_svg(rep["timeline"], lang=lang), extras=extras,
        deadlines=deadlines.rows(rep["deadlines"], lang))


def _unique(items):
    """Items without repeats, first occurrence kept (a list in the report never says a thing twice)."""
    seen, out = set(), []
    for i in items:
        k = json.dumps(i, sort_keys=True, default=str)
        if k not in seen:
            seen.add(k)
            out.append(i)
    return out


def short_ts(s: str | None, lang: str = "en") -> str:
    """An ISO time to the second for tables (the exact times are in the integrity section)."""
    return units.when(s, lang, seconds=True)


def timeline_svg(tl: dict, width: int = 760, height: int = 240, lang: str = "en") -> str:
    """Bytes out per bucket and host as an inline SVG line chart (no library, no external refs)."""
    left, right, top, bottom = 70, 150, 12, 34
    w, h = width - left - right, height - top - bottom
    start = datetime.fromisoformat(tl["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(tl["end"].replace("Z", "+00:00"))
    b = tl["bucket_seconds"]
    n = max(1, int(-(-(end - start).total_seconds() // b)))
    series = []
    for s in tl["series"]:
        vals = [0] * n
        for t, v in s["points"]:
            i = int((datetime.fromisoformat(t.replace("Z", "+00:00")) - start).total_seconds() // b)
            vals[min(max(i, 0), n - 1)] += v
        series.append((s["host"], vals))
    peak = max((max(v) for _, v in series), default=0) or 1
    x = lambda i: left + (w * i / (n - 1) if n > 1 else w / 2)  # noqa: E731
    y = lambda v: top + h - h * v / peak  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" font-family="sans-serif" font-size="10">',
             f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/>']
    for frac in (0, 0.5, 1):
        yy = top + h - h * frac
        parts.append(f'<text x="{left - 4}" y="{yy + 3:.1f}" text-anchor="end">{units.human_bytes(peak * frac, lang)}</text>')
    for frac, label in ((0, tl["start"]), (1, tl["end"])):
        parts.append(f'<text x="{left + w * frac:.1f}" y="{height - 18}" text-anchor="{"start" if frac == 0 else "end"}">'
                     f'{escape(short_ts(label, lang))}</text>')
    for k, (host, vals) in enumerate(series):
        c = COLOURS[k % len(COLOURS)]
        pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(vals))
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{pts}"/>')
        if n == 1:
            parts.append(f'<circle cx="{x(0):.1f}" cy="{y(vals[0]):.1f}" r="3" fill="{c}"/>')
        ly = top + 12 + 14 * k
        parts.append(f'<rect x="{left + w + 10}" y="{ly - 8}" width="10" height="10" fill="{c}"/>'
                     f'<text x="{left + w + 24}" y="{ly}">{escape(host)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
