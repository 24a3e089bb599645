"""The accounting's classification in DuckDB (``accounting.account``).

Over ten million flows a day's ledger has hundreds of thousands of host-hours and the 30 days
before it millions: classified one by one in Python they took minutes. Here the window's ledger
rows are classified in SQL, with the module's rules in their order (``accounting``'s docstring),
and summed per class x host x destination, so only the pairs asked for reach Python:

- each destination's baseline threshold from the sorted list of its host-hours before the window
  (``limits_sql``: ``accounting.baseline``'s arithmetic, tested equal on hundreds of lists);
- the findings that flag bytes as three small tables joined to the rows (``Flags.tables``): by
  host and destination, by host and name (matched in Python, as ``str.lower`` does), by host and
  the hours a finding without destination spans;
- ``is_local`` in Python for the few destinations whose ``dest_class`` cannot already say so.

``classify_rows`` runs the same SQL over rows given in Python (an in-memory database).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from .accounting import (BASELINE_Z, EXFIL_DETECTIONS, FLAGGED_MIN_SEVERITY, INDICATOR_DETECTIONS,
                         _utc, is_local)
from .findings import SEVERITIES, Finding


class Flags:
    """Which ledger rows the flagging findings cover."""

    def __init__(self, findings: list[Finding]):
        floor = SEVERITIES.index(FLAGGED_MIN_SEVERITY)
        self.pairs: dict[tuple[str, str], list[str]] = {}
        self.names: dict[str, list[tuple[str, str]]] = {}
        self.hosts: dict[str, list[tuple[datetime, datetime, str]]] = {}
        for f in findings:
            if f.detection not in EXFIL_DETECTIONS + INDICATOR_DETECTIONS or SEVERITIES.index(f.severity) < floor:
                continue
            for h in f.internal_hosts:
                for x in f.external_hosts:
                    self.pairs.setdefault((h, x), []).append(f.id)
                for n in f.external_names:
                    self.names.setdefault(h, []).append((n.lower(), f.id))
                if not f.external_hosts and not f.external_names and f.start:
                    self.hosts.setdefault(h, []).append((f.start, f.end or f.start, f.id))

    def by_name(self, host: str, name: str | None) -> list[str]:
        """The findings naming ``name`` (or a domain above it) for ``host``."""
        name = (name or "").lower()
        return [i for n, i in self.names.get(host, ()) if name == n or name.endswith("." + n)] if name else []

    def tables(self, con, names: list[tuple[str, str]]) -> None:
        """The flags as the temporary tables the classification joins: ``_acc_fp`` (host,
        destination, id), ``_acc_fn`` (host, name, ids: ``names``' pairs, matched here) and
        ``_acc_fh`` (host, first and last microsecond of a finding's span, id)."""
        fp = [(h, x, i) for (h, x), ids in self.pairs.items() for i in ids]
        fn = [(h, n, ids) for h, n in names if (ids := self.by_name(h, n))]
        fh = [(h, _us(lo), _us(hi), i) for h, spans in self.hosts.items() for lo, hi, i in spans]
        con.execute("CREATE OR REPLACE TEMP TABLE _acc_fp AS SELECT unnest(?::VARCHAR[]) AS h, "
                    "unnest(?::VARCHAR[]) AS x, unnest(?::VARCHAR[]) AS id", [list(c) for c in zip(*fp)] or [[], [], []])
        con.execute("CREATE OR REPLACE TEMP TABLE _acc_fn AS SELECT unnest(?::VARCHAR[]) AS h, "
                    "unnest(?::VARCHAR[]) AS name, unnest(?::VARCHAR[][]) AS ids", [list(c) for c in zip(*fn)] or [[], [], []])
        con.execute("CREATE OR REPLACE TEMP TABLE _acc_fh AS SELECT unnest(?::VARCHAR[]) AS h, unnest(?::BIGINT[]) AS lo, "
                    "unnest(?::BIGINT[]) AS hi, unnest(?::VARCHAR[]) AS id", [list(c) for c in zip(*fh)] or [[], [], [], []])


def _us(t: datetime) -> int:
    return (_utc(t) - _EPOCH) // timedelta(microseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
TEMP_TABLES = ("_acc_rows", "_acc_limits", "_acc_local", "_acc_fp", "_acc_fn", "_acc_fh", "_acc_pairs")


def limits_sql(values: str, keys: str) -> str:
    """Per destination (``keys``), ``baseline``'s threshold over ``values`` (rows of ``keys`` and
    ``v``, a positive host-hour byte count before the window): the same arithmetic in DuckDB, so no
    host-hour reaches Python (tests/test_accounting.py compares the two). Median and p99 are read
    from each destination's sorted list; the MAD is ``quantile_cont`` of the deviations (no
    second sort). The median of an even count is the mean of the two middle values, as
    ``statistics.median``; both are exact in doubles for byte counts below 2^50."""
    return f"""
        SELECT {keys}, greatest(any_value(med) + '{BASELINE_Z * 1.4826!r}'::DOUBLE * quantile_cont(abs(x - med), 0.5),
                                any_value(p99)) AS threshold
        FROM (SELECT {keys}, med, p99, unnest(s) AS x FROM (
            SELECT {keys}, s,
                   CASE WHEN n % 2 = 1 THEN s[n // 2 + 1]::DOUBLE ELSE (s[n // 2] + s[n // 2 + 1])::DOUBLE / 2 END AS med,
                   -- Python's round() halves to even: round_even
                   s[least(n - 1, round_even(0.99::DOUBLE * (n - 1), 0)::BIGINT) + 1]::DOUBLE AS p99
            FROM (SELECT {keys}, s, len(s) AS n FROM (
                SELECT {keys}, list_sort(list(v)) AS s FROM ({values}) GROUP BY {keys}))))
        GROUP BY {keys}"""


#: Each row of ``_acc_rows`` with its class and the ids of the findings that flag it (the
#: module's rules, in their order): ``_acc_limits`` holds the destinations' thresholds,
#: ``_acc_local`` the destinations ``is_local`` says are local among the rows ``check_local``
#: marks (those whose ``dest_class`` does not already say so from the address: proxied, or
#: named only), ``_acc_fp``/``_acc_fn``/``_acc_fh`` the flags (``Flags.tables``).
CLASSIFIED_SQL = """
    WITH c AS (
        SELECT w.*, lim.threshold,
               w.dest_class = 'local' OR (w.check_local AND w.external_host IN (SELECT x FROM _acc_local)) AS local_,
               list_sort(list_distinct(list_concat(coalesce(p.ids, []::VARCHAR[]), coalesce(n.ids, []::VARCHAR[]),
                                                   coalesce(hs.ids, []::VARCHAR[])))) AS ids_
        FROM _acc_rows w
        LEFT JOIN _acc_limits lim ON lim.external_host = w.external_host
        LEFT JOIN (SELECT h, x, list(id) AS ids FROM _acc_fp GROUP BY h, x) p
               ON p.h = w.internal_host AND p.x = w.external_host
        LEFT JOIN _acc_fn n ON n.h = w.internal_host AND n.name = w.external_name
        LEFT JOIN (SELECT k.h, k.hour, list(f.id) AS ids
                   FROM (SELECT DISTINCT internal_host AS h, hour FROM _acc_rows
                         WHERE internal_host IN (SELECT h FROM _acc_fh)) k
                   JOIN _acc_fh f ON f.h = k.h AND epoch_us(k.hour) <= f.hi AND epoch_us(k.hour) + 3600000000 > f.lo
                   GROUP BY k.h, k.hour) hs ON hs.h = w.internal_host AND hs.hour = w.hour)
    SELECT * EXCLUDE (threshold, local_, ids_),
           CASE WHEN local_ THEN 'local' WHEN dest_class = 'allowlisted' THEN 'allowlisted'
                WHEN len(ids_) > 0 THEN 'flagged' WHEN bytes_out <= threshold THEN 'baseline'
                ELSE 'unexplained' END AS category,
           CASE WHEN local_ OR dest_class = 'allowlisted' THEN []::VARCHAR[] ELSE ids_ END AS ids
    FROM c"""


def prepare(con, rows: str, rows_args: list, limits: str, values_args: list, flags: Flags) -> None:
    """The temporary tables ``CLASSIFIED_SQL`` reads: ``rows`` (ledger rows with ``check_local``),
    ``limits`` (``external_host`` and ``threshold``: ``limits_sql``), the local destinations and the flags."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _acc_rows AS {rows}", rows_args)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _acc_limits AS {limits}", values_args)
    maybe = [x for (x,) in con.execute("SELECT DISTINCT external_host FROM _acc_rows "
                                       "WHERE check_local AND dest_class <> 'local'").fetchall()]
    con.execute("CREATE OR REPLACE TEMP TABLE _acc_local AS SELECT unnest(?::VARCHAR[]) AS x",
                [[x for x in maybe if is_local(x)]])
    names = con.execute("""
        SELECT DISTINCT internal_host, external_name FROM _acc_rows
        WHERE internal_host IN (SELECT unnest(?::VARCHAR[])) AND external_name <> ''""",
                        [sorted(flags.names)]).fetchall() if flags.names else []
    flags.tables(con, names)


def drop(con) -> None:
    for t in TEMP_TABLES:
        con.execute(f"DROP TABLE IF EXISTS {t}")


def classify_rows(rows: list[dict], history: list[dict], findings: list[Finding]) -> list[tuple[str, dict, list[str]]]:
    """Each ledger row with its class and the ids of the findings that flag it: the rules
    ``account`` applies, here over rows given as dicts (in an in-memory database)."""
    import duckdb

    per_dest: dict[str, dict[tuple, int]] = {}
    for r in history:
        k = (r["internal_host"], r["hour"])
        d = per_dest.setdefault(r["external_host"], {})
        d[k] = d.get(k, 0) + r["bytes_out"]
    values = [(x, v) for x, hours in per_dest.items() for v in hours.values() if v > 0]
    cols = ("internal_host", "external_host", "external_name", "dest_class")
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        prepare(con, f"""
            SELECT unnest(?::BIGINT[]) AS i, {', '.join(f'unnest(?::VARCHAR[]) AS {c}' for c in cols)},
                   make_timestamptz(unnest(?::BIGINT[])) AS hour, unnest(?::BIGINT[]) AS bytes_out,
                   true AS check_local""",
                 [list(range(len(rows)))] + [[r[c] for r in rows] for c in cols]
                 + [[_us(r["hour"]) for r in rows], [r["bytes_out"] for r in rows]],
                 limits_sql("SELECT unnest(?::VARCHAR[]) AS external_host, unnest(?::BIGINT[]) AS v", "external_host"),
                 [[x for x, _ in values], [v for _, v in values]], Flags(findings))
        got = con.execute(f"SELECT category, ids FROM ({CLASSIFIED_SQL}) ORDER BY i").fetchall()
    finally:
        con.close()
    return [(cat, r, list(ids)) for r, (cat, ids) in zip(rows, got)]


#: The classified rows summed per class x host x destination (``_acc_pairs``). The pair's name
#: is that of its first named row in the ledger's order (bytes out descending, then hour: one
#: number, ``o``), else (none named) the last row's, as a running ``name or row's name`` over
#: them gives.
PAIRS_SQL = f"""
    CREATE OR REPLACE TEMP TABLE _acc_pairs AS
    SELECT category, internal_host, external_host,
           coalesce(arg_min(external_name, o) FILTER (WHERE external_name <> ''),
                    nullif(arg_max(coalesce(external_name, chr(0)), o), chr(0))) AS external_name,
           sum(bytes_out)::BIGINT AS bytes_out, sum(flows)::BIGINT AS flows,
           coalesce(list_sort(list_distinct(flatten(list(ids) FILTER (WHERE len(ids) > 0)))), []::VARCHAR[])
               AS findings,
           epoch_us(min(first_seen)) AS first_seen, epoch_us(max(last_seen)) AS last_seen
    FROM (SELECT *, -bytes_out::HUGEINT * 4294967296 + epoch_us(hour) // 3600000000 AS o FROM ({CLASSIFIED_SQL}))
    GROUP BY category, internal_host, external_host"""


PAIR_COLUMNS = ("category", "internal_host", "external_host", "external_name", "bytes_out", "flows", "findings",
                "first_seen", "last_seen")


def fetch_pairs(con, tail: str) -> list[dict]:
    """Rows of ``_acc_pairs`` (``PAIRS_SQL``) after ``tail`` (a filter, order and limit), times as UTC datetimes."""
    out = []
    for row in con.execute(f"SELECT {', '.join(PAIR_COLUMNS)} FROM _acc_pairs {tail}").fetchall():
        p = dict(zip(PAIR_COLUMNS, row))
        p["first_seen"] = _EPOCH + timedelta(microseconds=p["first_seen"])
        p["last_seen"] = _EPOCH + timedelta(microseconds=p["last_seen"])
        out.append(p)
    return out
