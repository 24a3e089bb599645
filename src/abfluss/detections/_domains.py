"""Registered domains (public-suffix aware), computed set-based so every engine runs them.

The registered domain is the public suffix plus one label: ``a.b.example.co.uk`` ->
``example.co.uk``, ``x.foo.blogspot.com`` -> ``foo.blogspot.com`` (with the list's private
section). The rules are the copy of the Public Suffix List bundled with the
``publicsuffixlist`` package, read offline.

A DNS tunnel has as many distinct query names as it has messages, so the names are never
pulled into Python: each name's tails (its last 1, 2, ... labels) are joined with the rule
table inside the engine. The decision follows the package's own algorithm (and the PSL
test data): of the tails with a rule, the longest decides; an exception rule (``!www.ck``)
makes the suffix one label shorter, a wildcard rule (``*.ck``) one label longer unless the
tail is the whole name, an exact rule is the suffix itself. No rule at all: the last label
(unknown top-level domains count as public suffixes).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import ibis
from ibis import _

#: Shift of the public-suffix length relative to the matched tail, per rule kind.
EXACT, WILDCARD, EXCEPTION = 0, 1, -1
#: When one tail has rules of several kinds, the package checks exception, then wildcard, then exact.
_PRIORITY = {EXCEPTION: 0, WILDCARD: 1, EXACT: 2}
_ICANN_END = "// ===END ICANN DOMAINS==="


@dataclass(frozen=True)
class Rules:
    """The suffix rules as a lookup table: ``tails[i]`` has shift ``shifts[i]``."""

    tails: tuple[str, ...]
    shifts: tuple[int, ...]
    depth: int  # the longest tail (in labels) any rule can match


@lru_cache(maxsize=2)
def load_rules(private: bool = True) -> Rules:
    """Rules of the bundled list; ``private=False`` keeps only the ICANN section."""
    from publicsuffixlist import PSLFILE

    best: dict[str, int] = {}
    with open(PSLFILE, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line == _ICANN_END and not private:
                break
            rule = line.split(" ")[0].lower()
            if not rule or rule.startswith("//"):
                continue
            for form in _forms(rule):
                kind, tail = _kind(form)
                if tail not in best or _PRIORITY[kind] < _PRIORITY[best[tail]]:
                    best[tail] = kind
    tails = tuple(sorted(best))
    return Rules(tails, tuple(best[t] for t in tails), max(t.count(".") + 1 for t in tails))


def _forms(rule: str) -> set[str]:
    """The rule as written and with its labels IDNA-encoded (query names arrive as xn--...)."""
    bang = "!" if rule.startswith("!") else ""
    try:
        encoded = bang + rule.lstrip("!").encode("idna").decode("ascii")
    except UnicodeError:
        encoded = rule
    return {rule, encoded}


def _kind(rule: str) -> tuple[int, str]:
    if rule.startswith("!"):
        return EXCEPTION, rule[1:]
    if rule.startswith("*."):
        return WILDCARD, rule[2:]
    return EXACT, rule


def label_count(name):
    """Number of labels of a dotted name (Ibis string expression)."""
    return name.length() - name.replace(".", "").length() + 1


def tail(name, labels: int):
    """The last ``labels`` labels of ``name``; empty when the name has fewer."""
    return name.re_extract(rf"((?:[^.]+\.){{{labels - 1}}}[^.]+)$", 1)


def registered(names, rules: Rules):
    """``names`` (one row per distinct ``name``) with ``labels`` and ``domain``, its registered
    domain; ``domain`` is null when the name is itself a public suffix (``co.uk``, ``com``)."""
    table = ibis.memtable({"tail": list(rules.tails), "shift": list(rules.shifts)})
    n = names.select("name", labels=label_count(names.name))
    hits = []
    for d in range(1, rules.depth + 1):
        t = n.filter(n.labels >= d).mutate(depth=d, tail=tail(n.name, d))
        h = t.join(table, "tail")
        # A wildcard matching the whole name makes the name itself the suffix (PSL test data).
        publen = ibis.ifelse((h.shift == WILDCARD) & (h.labels == d), d, h.shift + d)
        hits.append(h.select("name", "depth", publen=publen.cast("int32")))
    best = ibis.union(*hits).group_by("name").aggregate(publen=_.publen.argmax(_.depth))
    j = n.left_join(best, "name").select(n.name, n.labels, publen=best.publen.coalesce(1))
    # publen reaches depth + 1 (a wildcard on the longest tail): the domain one label more.
    domain = ibis.cases(*[(j.publen == k, tail(j.name, k + 1)) for k in range(1, rules.depth + 2)],
                        else_=None)
    domain = ibis.ifelse((j.labels > j.publen) & (domain != ""), domain, ibis.null("string"))
    return j.select("name", "labels", domain=domain)
