"""Numbers, byte counts, shares, times, durations and counted nouns as people read them.

One place for every figure a person reads (CLI tables, the evidence report, the notification
drafts), each function with a ``lang`` parameter (``"en"`` or ``"de"``): German gets decimal
commas, dots as thousands separators, ``33,3 %``, dates as ``29.11.2026 13:57 UTC``, "noch 47 h"
and "überfällig seit …". Byte units are decimal (1 KB = 1000 B), like ledgers and SIEMs.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

LANGS = ("en", "de")

#: Counted nouns: key -> lang -> (singular, plural). German plurals written out, since
#: "2 System(e)" is what a data-protection officer must not have to send.
NOUNS: dict[str, dict[str, tuple[str, str]]] = {
    "host": {"en": ("host", "hosts"), "de": ("System", "Systeme")},
    "internal_host": {"en": ("internal host", "internal hosts"), "de": ("internes System", "interne Systeme")},
    "finding": {"en": ("finding", "findings"), "de": ("Befund", "Befunde")},
    "indicator": {"en": ("indicator", "indicators"), "de": ("Indikator", "Indikatoren")},
    "flow": {"en": ("flow", "flows"), "de": ("Fluss", "Flüsse")},
    "connection": {"en": ("connection", "connections"), "de": ("Verbindung", "Verbindungen")},
    "destination": {"en": ("destination", "destinations"), "de": ("Ziel", "Ziele")},
    "record": {"en": ("record", "records"), "de": ("Datensatz", "Datensätze")},
    "check": {"en": ("check", "checks"), "de": ("Prüfung", "Prüfungen")},
    "gap": {"en": ("gap", "gaps"), "de": ("Lücke", "Lücken")},
    "draft": {"en": ("draft", "drafts"), "de": ("Entwurf", "Entwürfe")},
    "hour": {"en": ("hour", "hours"), "de": ("Stunde", "Stunden")},
    "day": {"en": ("day", "days"), "de": ("Tag", "Tage")},
    "query": {"en": ("DNS query", "DNS queries"), "de": ("DNS-Anfrage", "DNS-Anfragen")},
    "lookup": {"en": ("DNS look-up", "DNS look-ups"), "de": ("DNS-Abfrage", "DNS-Abfragen")},
    "handshake": {"en": ("TLS handshake", "TLS handshakes"), "de": ("TLS-Handshake", "TLS-Handshakes")},
    "frame": {"en": ("ARP frame", "ARP frames"), "de": ("ARP-Frame", "ARP-Frames")},
    "answer_txt": {"en": ("TXT answer", "TXT answers"), "de": ("TXT-Antwort", "TXT-Antworten")},
    "resolver": {"en": ("public resolver", "public resolvers"), "de": ("öffentlicher Resolver", "öffentliche Resolver")},
}


def _lang(lang: str) -> str:
    if lang not in LANGS:
        raise ValueError(f"lang {lang!r}: one of {', '.join(LANGS)}")
    return lang


def number(x: int | float | None, lang: str = "en", digits: int = 0) -> str:
    """1234567.8 -> '1,234,568' (en) or '1.234.568' (de); ``digits`` decimals after rounding."""
    s = f"{float(x or 0):,.{digits}f}" if digits else f"{round(float(x or 0)):,}"
    if _lang(lang) == "de":
        s = s.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return s


def human_bytes(n: int | float | None, lang: str = "en") -> str:
    """1234567 -> '1.2 MB' ('1,2 MB' in German); bytes below 1000 stay whole ('945 B')."""
    n = float(n or 0)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{int(n)} B" if unit == "B" else f"{number(n, lang, 1)} {unit}"
        n /= 1000
    return f"{number(n, lang, 1)} TB"  # pragma: no cover  (the loop returns at TB)


def percent(share: float | None, lang: str = "en", digits: int = 1) -> str:
    """0.3327 -> '33.3%' (en) or '33,3 %' (de: DIN 5008 puts a space before the sign)."""
    s = number(100 * float(share or 0), lang, digits)
    return f"{s} %" if _lang(lang) == "de" else f"{s}%"


def noun(n: int, key: str, lang: str = "en") -> str:
    """The form of noun ``key`` that goes with ``n``: ``noun(2, "host")`` -> 'hosts'."""
    one, many = NOUNS[key][_lang(lang)]
    return one if n == 1 else many


def count(n: int, key: str, lang: str = "en") -> str:
    """``count(1, "host")`` -> '1 host', ``count(2, "host", "de")`` -> '2 Systeme'."""
    return f"{number(n, lang)} {noun(n, key, lang)}"


def _dt(t: datetime | str) -> datetime:
    if isinstance(t, str):
        t = datetime.fromisoformat(t.replace("Z", "+00:00"))
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def when(t: datetime | str | None, lang: str = "en", seconds: bool = False) -> str:
    """A time in UTC: '2026-11-29 13:57 UTC' (en) or '29.11.2026 13:57 UTC' (de); '–' for none."""
    if t is None or t == "":
        return "–"
    t = _dt(t)
    clock = t.strftime("%H:%M:%S" if seconds else "%H:%M")
    day = t.strftime("%d.%m.%Y") if _lang(lang) == "de" else t.strftime("%Y-%m-%d")
    return f"{day} {clock} UTC"


def period(start: datetime | str | None, end: datetime | str | None, lang: str = "en") -> str:
    """A span of time with the day said once when it is one day: '29.11.2026 13:57:35 – 13:57:41 UTC';
    to the second when shorter than an hour (else two equal minutes could be shown)."""
    if not start or not end:
        return f"{when(start, lang)} – {when(end, lang)}"
    a, b = _dt(start), _dt(end)
    secs = (b - a).total_seconds() < 3600
    if when(a, lang, secs) == when(b, lang, secs):
        return when(a, lang, secs)
    if a.date() == b.date():
        return f"{when(a, lang, secs)[:-4]} – {b.strftime('%H:%M:%S' if secs else '%H:%M')} UTC"
    return f"{when(a, lang, secs)} – {when(b, lang, secs)}"


def duration(seconds: float | None, lang: str = "en") -> str:
    """A span in the largest units that still read exactly enough: '6 s', '12 min', '9 h 5 min',
    '47 h', '3 days 4 h' ('3 Tage 4 h'). Below 48 h hours are counted (deadlines are set in hours:
    24 h, 72 h); from 48 h on days and hours. Minutes are dropped from 10 h on, seconds from
    90 s on; what is dropped is cut off, never rounded up (a deadline is never shown later)."""
    s = max(0, int(seconds or 0))
    if s < 90:
        return f"{s} s"
    m = s // 60
    if m < 60:
        return f"{m} min"
    h, m = divmod(m, 60)
    if h < 10:
        return f"{h} h" if not m else f"{h} h {m} min"
    if h < 48:
        return f"{h} h"
    d, h = divmod(h, 24)
    days = count(d, "day", lang)
    return days if not h else f"{days} {h} h"


def time_left(deadline: datetime | str, now: datetime | str, lang: str = "en") -> str:
    """'47 h left' / 'noch 47 h'; once passed 'overdue since <time>' / 'überfällig seit <time>':
    never a negative number of hours."""
    d, n = _dt(deadline), _dt(now)
    left = (d - n).total_seconds()
    if left >= 0:
        span = duration(left, lang)
        return f"noch {span}" if _lang(lang) == "de" else f"{span} left"
    return f"überfällig seit {when(d, lang)}" if _lang(lang) == "de" else f"overdue since {when(d, lang)}"


def deadline_status(deadline: datetime | str, now: datetime | str, lang: str = "en") -> str:
    """A deadline with its state, the time said once: '09.12.2026 19:29 UTC (noch 3 Tage)', or
    'überfällig seit 02.01.2021 00:00 UTC' once it has passed."""
    if _dt(deadline) < _dt(now):
        return time_left(deadline, now, lang)
    return f"{when(deadline, lang)} ({time_left(deadline, now, lang)})"


def parse_time(value: str | None, flag: str) -> datetime | None:
    """ISO 8601 date or date-time; UTC when no zone is given (the CLI's and the web's --from/--to)."""
    from .errors import AbflussError

    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            t = datetime.combine(date.fromisoformat(value), datetime.min.time())
        except ValueError:
            raise AbflussError(f"{flag} {value!r}: not an ISO 8601 time (e.g. 2024-02-08T15:00:00Z)") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def json_default(o):
    """Times as the command line writes them in JSON: UTC with ``Z``; dates as ISO 8601."""
    if isinstance(o, datetime):
        return o.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(o, date):
        return o.isoformat()
    raise TypeError(type(o))
