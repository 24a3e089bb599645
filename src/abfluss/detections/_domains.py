"""Registered domains (public-suffix aware), computed set-based so every engine runs them.

The registered domain is the public suffix plus one label: ``a.b.example.co.uk`` ->
``example.co.uk``, ``x.foo.blogspot.com`` -> ``foo.blogspot.com`` (with the list's private
section). The rules are the copy of the Public Suffix List bundled with the
``publicsuffixlist`` package, read offline.

A DNS tunnel has as many distinct query names as it has messages, so the names are never
pulled into Python. Only the distinct last two labels of the names are (few: one per
registered domain under a one-label suffix); they select the rules that can apply at all,
usually a few dozen of the ~10 000. The names are then matched in one projection inside the
engine: literal sets of those rules, checked from the longest tail down, no join and no
shuffle, so DuckDB and Spark both run it as a plain scan.

The decision follows the package's own algorithm (and the PSL test data): of the tails with
a rule, the longest decides; an exception rule (``!www.ck``) makes the suffix one label
shorter, a wildcard rule (``*.ck``) one label longer unless the tail is the whole name, an
exact rule is the suffix itself. No rule at all: the last label (unknown top-level domains
count as public suffixes).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import ibis

#: Rule kinds, in the order the package checks them for one tail.
EXCEPTION, WILDCARD, EXACT = "exception", "wildcard", "exact"
_ICANN_END = "// ===END ICANN DOMAINS==="


@dataclass(frozen=True)
class Rules:
    """The suffix rules by tail length: ``tails[d - 1][kind]`` are the tails of ``d`` labels that
    have a rule of that kind (``!www.ck`` -> exception ``www.ck``, ``*.ck`` -> wildcard ``ck``)."""

    tails: tuple[dict[str, tuple[str, ...]], ...]

    @property
    def depth(self) -> int:
        """The longest tail (in labels) any rule can match."""
        return len(self.tails)


@lru_cache(maxsize=2)
def load_rules(private: bool = True) -> Rules:
    """Rules of the bundled list; ``private=False`` keeps only the ICANN section."""
    from publicsuffixlist import PSLFILE

    kinds: dict[str, set[str]] = {}
    with open(PSLFILE, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line == _ICANN_END and not private:
                break
            rule = line.split(" ")[0].lower()
            if not rule or rule.startswith("//"):
                continue
            for form in _forms(rule):
                kind, tail_ = _kind(form)
                kinds.setdefault(tail_, set()).add(kind)
    depth = max(t.count(".") + 1 for t in kinds)
    by_depth = [{EXCEPTION: [], WILDCARD: [], EXACT: []} for _ in range(depth)]
    for tail_, ks in sorted(kinds.items()):
        for k in ks:
            by_depth[tail_.count(".")][k].append(tail_)
    return Rules(tuple({k: tuple(v) for k, v in d.items()} for d in by_depth))


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


def key(name):
    """Per name, what selects its rules: the last two labels (the last one for one-label names)."""
    two = tail(name, 2)
    return ibis.ifelse(two == "", name, two)


def restrict(rules: Rules, keys) -> Rules:
    """The rules that can match names with these ``key`` values: a tail of one label must be a
    name's last label, a longer tail must end in a name's last two labels."""
    keys = set(keys)
    tlds = {k.rsplit(".", 1)[-1] for k in keys}
    kept = []
    for d, by_kind in enumerate(rules.tails, start=1):
        wanted = tlds if d == 1 else keys
        kept.append({kind: tuple(t for t in ts if (t if d == 1 else _last_two(t)) in wanted)
                     for kind, ts in by_kind.items()})
    while kept and not any(kept[-1].values()):
        kept.pop()
    return Rules(tuple(kept))


def _last_two(t: str) -> str:
    return ".".join(t.rsplit(".", 2)[-2:])


def registered(names, rules: Rules):
    """``names`` (one row per distinct ``name``) with ``labels`` and ``domain``, its registered
    domain; ``domain`` is null when the name is itself a public suffix (``co.uk``, ``com``).
    Pass the rules through :func:`restrict` first: every rule becomes a literal in the query."""
    deep = rules.depth
    n = names.select("name", labels=label_count(names.name),
                     **{f"t{d}": tail(names.name, d) for d in range(1, deep + 3)})
    whens = []
    for d in range(deep, 0, -1):
        col, r = n[f"t{d}"], rules.tails[d - 1]
        if r[EXCEPTION]:
            whens.append((col.isin(r[EXCEPTION]), d - 1))
        if r[WILDCARD]:
            # A wildcard matching the whole name makes the name itself the suffix (PSL test data).
            whens.append((col.isin(r[WILDCARD]), ibis.ifelse(n.labels == d, d, d + 1)))
        if r[EXACT]:
            whens.append((col.isin(r[EXACT]), d))
    n = n.mutate(publen=ibis.cases(*whens, else_=1) if whens else ibis.literal(1))
    # publen reaches deep + 1 (a wildcard on the longest tail); the domain is one label more.
    domain = ibis.cases(*[(n.publen == k, n[f"t{k + 1}"]) for k in range(1, deep + 2)], else_=None)
    domain = ibis.ifelse((n.labels > n.publen) & (domain != ""), domain, ibis.null("string"))
    return n.select("name", "labels", domain=domain)
