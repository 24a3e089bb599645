"""The report as a data-protection officer sends it: drafts as documents (not Markdown in a
<pre>), German fully German, the awareness time given or assumed (and said so), deadlines that
have passed said in words, no repeated items, counts in the right grammar. Real reports of the
demo capture (examples/demo.pcap) in both languages, at a fixed ``now``, HTML and PDF text."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import jsonschema
import pytest

import abfluss
from abfluss import analysis, units
from abfluss.detections import MODULES
from abfluss.report import SCHEMA_PATH
from abfluss.report import drafts
from abfluss.report.case import write_case
from abfluss.report.drafts import DraftInput, Host, Indicator, Transfer
from abfluss.report.deadlines import section as deadline_section
from abfluss.report.drafts_html import notifications_html
from abfluss.report.phrases import TECHNIQUES_DE
from abfluss.report.render import render_html
from conftest import EXAMPLES

UTC = timezone.utc
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)        # two days after the demo capture
AWARE = datetime(2026, 11, 29, 14, 0, tzinfo=UTC)     # early warning passed, 72 h deadline 26 h ahead
TENANTS = '[tenants.kasse_a]\nnetworks = ["10.10.0.11/32"]\n[tenants.kasse_b]\nnetworks = ["10.10.0.12/32"]\n'
CASES = {"de-given": ("de", AWARE), "en-given": ("en", AWARE), "de-assumed": ("de", None)}


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """Each case: (report dict, HTML, PDF text or None, folder). The PDF is rendered for the 'given' cases."""
    root = tmp_path_factory.mktemp("lang")
    (root / "ws").mkdir()
    (root / "ws" / "abfluss.toml").write_text(TENANTS)
    ws = abfluss.open_workspace(root / "ws", write=True)
    out = {}
    try:
        assert abfluss.ingest_file(ws, EXAMPLES / "demo.pcap").status == "stored"
        findings = analysis.analyze(ws, store=False).findings  # one run of the detections for all cases
        for name, (lang, aware) in CASES.items():
            pdf = name.endswith("given")
            rep = write_case(ws, root / name, aware_at=aware, lang=lang, now=NOW, pdf=pdf, findings=findings)
            text = subprocess.run(["pdftotext", "-layout", str(root / name / "report.pdf"), "-"], capture_output=True,
                                  text=True, check=True).stdout if pdf else None
            out[name] = (rep, (root / name / "report.html").read_text(), text, root / name)
    finally:
        ws.close()
    return out


class _Text(HTMLParser):
    """Visible text of an HTML page, and the tags used (to find <pre>, <a>, <script>)."""

    def __init__(self):
        super().__init__()
        self.parts, self.tags, self._skip = [], [], 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._skip += tag in ("style", "svg")

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "svg")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def visible(html: str) -> tuple[str, list[str]]:
    p = _Text()
    p.feed(html)
    return " ".join(" ".join(p.parts).split()), p.tags


def drafts_part(html: str) -> str:
    return html[html.index('<article class="draft"'):]


# -- the drafts as documents --------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CASES))
def test_drafts_are_documents_not_markdown_in_pre(cases, name):
    rep, html, _, out = cases[name]
    text, tags = visible(html)
    assert "pre" not in tags and "<pre" not in html
    n = sum(len(t["drafts"]) for t in rep["notifications"]["tenants"].values())
    assert html.count('<article class="draft"') == n and n >= 2
    part = drafts_part(html)
    for tag in ("<h4>", "<h5>", "<table>", "<th", "<td", "<strong>", "<ul>", "<li>"):
        assert tag in part, tag
    dtext, _ = visible(part)
    for raw in ("|---", "| ---", "**", "## ", "# ", "\\"):
        assert raw not in dtext, raw
    # the .md files stay for editing, with the Markdown in them
    md = (out / "notifications" / "kasse_a" / "art33.md").read_text()
    assert md.startswith("# ") and "|---|" in md and "**" in md


def test_each_draft_title_is_said_once(cases):
    rep, html, _, _ = cases["en-given"]
    for t in rep["notifications"]["tenants"].values():
        for d in t["drafts"].values():
            assert html.count(f"<h4>{d['title']}: {t['tenant']}</h4>") == 1, d["title"]
    # the verdict sentence names the window once, and the coverage instead of the report's statement
    art33 = rep["notifications"]["tenants"]["kasse_a"]["drafts"]["art33"]["text"]
    sentence = next(line for line in art33.splitlines() if "in the period" in line)
    assert sentence.count("2026-11-29") == 1 and "coverage: 100.0% of the window" in sentence


def test_report_lists_have_no_repeated_items(cases):
    for name in CASES:
        _, html, _, _ = cases[name]
        for ul in re.findall(r"<ul>(.*?)</ul>", html, re.S):
            items = [re.sub(r"\s+", " ", i).strip() for i in re.findall(r"<li>(.*?)</li>", ul, re.S)]
            assert len(items) == len(set(items)), (name, items)


def test_hostile_names_are_escaped_text_never_markup():
    t0 = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
    evil = "<script>alert(1)</script>[click](javascript:alert(1))|x|**bold**<img src=x onerror=alert(1)>&amp;"
    inp = DraftInput(tenant="kasse <b>nord</b>", window=(t0, t0 + timedelta(hours=2)), aware_at=t0,
                     verdict="EXFIL_INDICATED", confidence="medium", hosts=(Host("10.10.0.11", ("epa",), 5000),),
                     transfers=(Transfer("10.10.0.11", "203.0.113.9", evil, 5000, "https"),),
                     indicators=(Indicator(evil, "domain-name", t0, t0, 2),),
                     measures_proposed=(f"block {evil}", "call\nthe <i>vendor</i>"))
    notif = drafts.build_all([inp], t0 + timedelta(hours=1), "en")
    html = notifications_html(notif, "en")
    _, tags = visible(html)
    assert not {"script", "img", "a", "b", "i", "pre", "code"} & set(tags)
    assert "<script" not in html and "javascript:" not in re.sub(r"&[a-z]+;", "", "".join(
        re.findall(r'(?:href|src)="[^"]*"', html)))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&amp;amp;" in html
    # the name stays in its table cell: every row of the transfers table has four cells
    table = next(t for t in re.findall(r"<table>.*?</table>", html, re.S) if "<th>Channel</th>" in t)
    assert {r.count("<td") for r in re.findall(r"<tr>.*?</tr>", table, re.S) if "<td" in r} == {4}


# -- German fully German --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["de-given", "de-assumed"])
def test_german_numbers_dates_and_words(cases, name):
    rep, html, _, _ = cases[name]
    text, _ = visible(html[:html.index("<h2>7.")] + drafts_part(html))  # section 7 quotes exact ISO times
    out_b = rep["payload"]["outbound_bytes"]
    assert units.human_bytes(out_b, "de") in text and "," in units.human_bytes(out_b, "de")
    assert re.search(r"\b\d+,\d %", text)                           # 33,3 %
    assert not re.search(r"\d\.\d (?:KB|MB|GB)|\d\.\d%", text)       # no English decimals
    assert re.search(r"\b\d{1,3}(?:\.\d{3})+\b", text)               # 1.000.158 (thousands)
    assert "29.11.2026" in text and not re.search(r"\b2026-\d\d-\d\d\b", text)
    assert f"Konfidenz: {units.number(rep['confidence'], 'de', 2)}" in text
    for english in (" left", "OVERDUE", "time left", "Notification drafts", "due ", "isolate ", "block ",
                    " version ", "Deadline", "connection(s)"):
        assert english not in text.replace("Eingabe", ""), english
    assert "Zeitraum: 29.11.2026 13:57:35 – 13:57:47 UTC (12 s)" in text   # the window in human units


def test_english_report_keeps_english_forms(cases):
    rep, html, _, _ = cases["en-given"]
    text, _ = visible(html)
    assert units.human_bytes(rep["payload"]["outbound_bytes"], "en") in text and re.search(r"\b\d+\.\d%", text)
    assert "Window: 2026-11-29 13:57:35 – 13:57:47 UTC (12 s)" in text and "29.11.2026" not in text


# -- awareness time and deadlines -----------------------------------------------------------------

def test_aware_at_source_given_and_assumed(cases):
    schema = json.loads(SCHEMA_PATH.read_text())
    for name, (lang, aware) in CASES.items():
        rep, html, _, out = cases[name]
        on_disk = json.loads((out / "report.json").read_text())
        jsonschema.validate(on_disk, schema)
        dl = on_disk["deadlines"]
        assert dl["aware_at_source"] == ("given" if aware else "assumed")
        assert dl["aware_at"] == drafts.iso(aware or NOW) and dl["as_of"] == "2026-12-01T12:00:00Z"
        assert [d["duty"] for d in dl["due"]] == ["nis2_early", "art33", "nis2_notification", "nis2_final"]
        for t in on_disk["notifications"]["tenants"].values():
            assert t["aware_at_source"] == dl["aware_at_source"]
        text, _ = visible(html)
        said = {"en": "No awareness time was given (--aware-at), so it was assumed to be the time of this report: "
                      "2026-12-01 12:00:00 UTC.",
                "de": "Es wurde kein Zeitpunkt der Kenntniserlangung angegeben (--aware-at); angenommen wurde "
                      "daher der Zeitpunkt dieses Berichts: 01.12.2026 12:00:00 UTC."}[lang]
        assert (said in text) is (aware is None)
        art33 = on_disk["notifications"]["tenants"]["kasse_a"]["drafts"]["art33"]["text"]
        assert ("(angenommen: kein Zeitpunkt" in art33) is (aware is None)
    assumed = cases["de-assumed"][0]
    assert assumed["deadlines"]["due"][0]["seconds_left"] == 24 * 3600
    assert "- Frist: 04.12.2026 12:00 UTC (noch 3 Tage)" in assumed["notifications"]["tenants"]["kasse_a"]["drafts"][
        "art33"]["text"]
    # the English words for an assumed awareness time: the English report rendered with the assumed clocks
    en = dict(cases["en-given"][0], deadlines=deadline_section(None, NOW))
    text, _ = visible(render_html(en))
    assert ("No awareness time was given (--aware-at), so it was assumed to be the time of this report: "
            "2026-12-01 12:00:00 UTC.") in text and "2026-12-02 12:00 UTC (24 h left)" in text


def test_passed_deadlines_say_overdue_never_negative_hours(cases):
    for name, needles in {"de-given": ["Frühe Erstmeldung", "überfällig seit 30.11.2026 14:00 UTC",
                                       "02.12.2026 14:00 UTC (noch 26 h)"],
                          "en-given": ["Early warning", "overdue since 2026-11-30 14:00 UTC",
                                       "2026-12-02 14:00 UTC (26 h left)"]}.items():
        rep, html, pdf, out = cases[name]
        assert rep["deadlines"]["due"][0]["seconds_left"] == -22 * 3600
        text, _ = visible(html)
        mds = " ".join(p.read_text() for p in (out / "notifications").rglob("*.md"))
        for n in needles:
            assert n in text and n in " ".join(pdf.split()), (name, n)
        assert needles[1] in mds
        for where in (text, mds, pdf):
            assert not re.search(r"[-−]\d+(?:[.,]\d+)? ?h\b", where) and not re.search(r"[-+]\d+(?:[.,]\d)? h left", where)


# -- counts, units, PDF -------------------------------------------------------------------------

def test_counts_in_singular_and_plural(cases):
    de, _ = visible(cases["de-given"][1])
    en, _ = visible(cases["en-given"][1])
    assert "kasse_a (1 System)" in de and "kasse_a (1 host)" in en
    assert "2 Befunde, höchster Schweregrad mittel" in de or "2 Befunde, höchster Schweregrad hoch" in de
    assert re.search(r"Mandant kasse_a: .*? · Version 1 · \d+ Entwürfe", de)
    assert "(s)" not in cases["en-given"][1] and "in 1 connection, over https" in en  # detections' sentences too
    assert [units.count(n, "host", lang) for n, lang in ((1, "en"), (2, "en"), (1, "de"), (2, "de"))] == [
        "1 host", "2 hosts", "1 System", "2 Systeme"]
    assert units.count(1200, "indicator", "de") == "1.200 Indikatoren" and units.count(1, "day", "de") == "1 Tag"


def test_units_in_both_languages():
    assert (units.number(1234567.891, "de", 2), units.number(1234567.891, "en", 2)) == ("1.234.567,89", "1,234,567.89")
    assert (units.human_bytes(2003787, "de"), units.human_bytes(2003787), units.human_bytes(945, "de")) == (
        "2,0 MB", "2.0 MB", "945 B")
    assert (units.percent(0.3327, "de"), units.percent(0.3327)) == ("33,3 %", "33.3%")
    assert [units.duration(s, "de") for s in (6, 754, 9 * 3600 + 300, 47 * 3600 + 59 * 60, 72 * 3600, 90 * 3600)] == [
        "6 s", "12 min", "9 h 5 min", "47 h", "3 Tage", "3 Tage 18 h"]
    assert units.duration(25 * 3600 + 40 * 60, "en") == "25 h" and units.duration(49 * 3600, "en") == "2 days 1 h"
    t = datetime(2026, 11, 29, 13, 57, 35, tzinfo=UTC)
    assert (units.when(t, "de"), units.when(t, "en", seconds=True)) == ("29.11.2026 13:57 UTC", "2026-11-29 13:57:35 UTC")
    assert units.time_left(t + timedelta(hours=47), t, "de") == "noch 47 h"
    assert units.time_left(t, t + timedelta(days=2000), "en") == "overdue since 2026-11-29 13:57 UTC"
    assert units.deadline_status(t, t - timedelta(hours=3), "de") == "29.11.2026 13:57 UTC (noch 3 h)"
    assert units.period(t, t + timedelta(days=1), "de") == "29.11.2026 13:57 UTC – 30.11.2026 13:57 UTC"


def test_pdf_text_is_german_with_the_drafts_as_documents(cases):
    rep, _, pdf, _ = cases["de-given"]
    flat = " ".join(pdf.split())
    for needle in ("Meldefristen", "Entwürfe der Meldungen", units.human_bytes(rep["payload"]["outbound_bytes"], "de"),
                   "Meldung einer Verletzung des Schutzes personenbezogener Daten: kasse_a", "(a) Art der Verletzung",
                   "Entwurf, vor dem Versand prüfen und ergänzen.", "Ausgehende Datenmengen"):
        assert needle in flat, needle
    for raw in ("|---", "**", "## ", "# Meldung"):
        assert raw not in pdf, raw


def test_unknown_verdict_names_render_gracefully(cases):
    rep = dict(cases["en-given"][0], verdict="SOMETHING_NEWER")
    assert "SOMETHING_NEWER" in render_html(rep)
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    out = drafts.build_drafts(DraftInput("k", (t0, t0 + timedelta(hours=1)), t0, verdict="SOMETHING_NEWER"), t0, "de")
    text = out["drafts"]["register"]["text"]
    assert "kann noch nicht bestimmt werden** (SOMETHING\\_NEWER)" not in text  # names are escaped, not mangled
    assert "kann noch nicht bestimmt werden** (SOMETHING_NEWER)" in text and "Art. 33 Abs. 4 DSGVO" in text
    assert "SOMETHING_NEWER" in notifications_html({"tenants": {"k": out}}, "de")


def test_every_detection_has_a_german_title():
    missing = sorted(set(MODULES) - set(TECHNIQUES_DE))
    assert not missing, f"add the German title of {missing} to TECHNIQUES_DE in src/abfluss/report/phrases.py"


def test_drafts_say_when_the_awareness_time_was_assumed():
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    for assumed in (True, False):
        inp = DraftInput("k", (t0, t0 + timedelta(hours=1)), t0, aware_at_assumed=assumed, verdict="EXFIL_INDICATED")
        out = drafts.build_drafts(inp, t0 + timedelta(hours=80), "en")
        assert out["aware_at_source"] == ("assumed" if assumed else "given")
        text = out["drafts"]["art33"]["text"]
        assert ("- Awareness: 2026-03-01 00:00 UTC (assumed: no awareness time was given" in text) is assumed
        assert "- Deadline: overdue since 2026-03-04 00:00 UTC" in text
