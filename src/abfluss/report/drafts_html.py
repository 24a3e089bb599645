"""The notification drafts as documents inside report.html and report.pdf.

The drafts are written as Markdown (``drafts_text``; the ``.md`` files are what people edit).
Here they become HTML with markdown-it-py: headings, tables, lists and emphasis, never a
``<pre>`` of raw Markdown. The drafts quote names an attacker chooses (DNS names, TLS server
names), so the parser runs with raw HTML off and without links, images, autolinks, reference
definitions, entities and code blocks: every character of the text ends up escaped as text,
and nothing in a draft can add a tag, a link or a request to the report.
"""

from __future__ import annotations

from html import escape

from markdown_it import MarkdownIt

from ..units import count
from .texts import TEXTS

#: Markdown rules switched off: everything that could turn attacker text into a link, a tag
#: or a preformatted block.
DISABLED = ["link", "image", "autolink", "html_inline", "html_block", "entity", "reference", "code", "fence"]
#: The report's own headings go down to h3 (tenant), so a draft's "#" becomes h4.
HEADING_SHIFT = 3


def parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    return md.enable("table").disable(DISABLED)


def draft_html(text: str, md: MarkdownIt | None = None) -> str:
    """One draft's Markdown as an HTML fragment (headings shifted below the report's own)."""
    md = md or parser()
    tokens = md.parse(text)
    for tok in tokens:
        if tok.type in ("heading_open", "heading_close"):
            tok.tag = f"h{min(6, int(tok.tag[1]) + HEADING_SHIFT)}"
    return md.renderer.render(tokens, md.options, {})


def verdict_name(verdict: str, lang: str) -> str:
    """The verdict in words; an unknown verdict name is shown as it is."""
    return TEXTS[lang].get("v_" + verdict, verdict)


def notifications_html(notif: dict, lang: str) -> str:
    """Every tenant's drafts: a heading per tenant, then each draft as its own document."""
    t = TEXTS[lang]
    md = parser()
    parts = []
    for name, ten in notif["tenants"].items():
        drafts = ten["drafts"]
        parts.append(f'<h3 class="tenant">{escape(t["tenant"])} {escape(name)}: '
                     f'{escape(verdict_name(ten["verdict"], lang))} · {escape(t["draft_version"])} {ten["version"]}'
                     f' · {escape(count(len(drafts), "draft", lang))}</h3>')
        for kind, d in drafts.items():
            parts.append(f'<article class="draft" id="draft-{escape(name)}-{escape(kind)}">\n'
                         f'{draft_html(d["text"], md)}</article>')
    return "\n".join(parts)
