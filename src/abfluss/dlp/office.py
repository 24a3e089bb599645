"""Office files read from their XML parts: xlsx sheets (shared strings resolved), ods and odt
content, docx paragraphs and tables. A spreadsheet's rows become records with the first row as
column names (``structured.records.table``), so a column headed "KVNR" anchors every value under it."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator

from .containers import Budget, read_member
from .structured.markup import _local, parse_xml
from .structured.records import table

#: Repeated empty cells of an ods row expanded at most this often (rows end in 1000s of them).
MAX_REPEAT = 64
_REF = re.compile(r"([A-Z]+)")


def document(data: bytes, budget: Budget) -> Iterator[str] | None:
    """The records of an office file, or None when the zip is no office file."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        names = set(zf.namelist())
    except Exception:  # noqa: BLE001 - BadZipFile, NotImplementedError (version), …: not an office file
        return None
    if "xl/workbook.xml" in names:
        return _xlsx(zf, names, budget)
    if "word/document.xml" in names:
        return _docx(zf, budget)
    if "content.xml" in names and "mimetype" in names:
        return _odf(zf, budget)
    return None


def _parse(zf: zipfile.ZipFile, name: str, budget: Budget):
    raw = read_member(zf, zf.getinfo(name), budget)
    if raw is None:
        return None
    try:
        return parse_xml(raw)
    except Exception:  # noqa: BLE001 - a damaged part: the others are still read
        budget.skip("office: damaged part")
        return None


def _each(el, *tags: str):
    """``el`` and its descendants whose local tag is one of ``tags``, in document order."""
    return (x for x in el.iter() if _local(x.tag) in tags)


def _kids(el, *tags: str):
    """The children of ``el`` whose local tag is one of ``tags``."""
    return (x for x in el if _local(x.tag) in tags)


def _texts(el, tag: str = "t") -> str:
    return "".join(t.text or "" for t in _each(el, tag))


def _part(zf: zipfile.ZipFile, names: set[str] | None, name: str, budget: Budget):
    """The parsed XML part ``name``; None when it is missing or damaged."""
    return _parse(zf, name, budget) if names is None or name in names else None


def _between_blank_lines(rows: list[list[str]]) -> Iterator[str]:
    yield "\n"
    yield from table(rows)
    yield "\n"


def _col(ref: str) -> int:
    m = _REF.match(ref)
    n = 0
    for ch in m.group(1) if m else "":
        n = n * 26 + ord(ch) - 64
    return n - 1


def _xlsx(zf: zipfile.ZipFile, names: set[str], budget: Budget) -> Iterator[str]:
    root = _part(zf, names, "xl/sharedStrings.xml", budget)
    shared = [] if root is None else [_texts(si) for si in _kids(root, "si")]
    for name in sorted(n for n in names if n.startswith("xl/worksheets/") and n.endswith(".xml")):
        root = _parse(zf, name, budget)
        if root is None:
            continue
        rows = []
        for row in _each(root, "row"):
            cells: dict[int, str] = {}
            for i, c in enumerate(_kids(row, "c")):
                kind = c.get("t")
                if kind == "inlineStr":
                    value = _texts(c)
                else:
                    v = next((x.text or "" for x in _kids(c, "v")), "")
                    value = shared[int(v)] if kind == "s" and v.isdigit() and int(v) < len(shared) else v
                col = _col(c.get("r", "")) if c.get("r") else i
                cells[col if col >= 0 else i] = value
            if cells:
                width = min(max(cells) + 1, 16384)
                rows.append([cells.get(i, "") for i in range(width)])
        yield from table(rows)
        yield "\n"


def _docx(zf: zipfile.ZipFile, budget: Budget) -> Iterator[str]:
    root = _part(zf, None, "word/document.xml", budget)
    if root is None:
        return
    body = next(_kids(root, "body"), root)
    for el in body:
        kind = _local(el.tag)
        if kind == "p":
            yield _texts(el) + "\n"
        elif kind == "tbl":
            yield from _between_blank_lines([[_texts(tc) for tc in _kids(tr, "tc")] for tr in _each(el, "tr")])


def _odf(zf: zipfile.ZipFile, budget: Budget) -> Iterator[str]:
    root = _part(zf, None, "content.xml", budget)
    if root is None:
        return
    for tbl in _each(root, "table"):
        rows = []
        for tr in _each(tbl, "table-row"):
            row = []
            for tc in _kids(tr, "table-cell", "covered-table-cell"):
                value = _texts(tc, "p") or next((v for k, v in tc.attrib.items() if _local(k) == "value"), "")
                rep = next((v for k, v in tc.attrib.items() if _local(k) == "number-columns-repeated"), "1")
                row.extend([value] * min(int(rep) if rep.isdigit() else 1, MAX_REPEAT))
            while row and not row[-1]:
                row.pop()
            if row:
                rows.append(row)
        yield from _between_blank_lines(rows)
    texts = [_texts(p, "p") for p in _each(root, "text")]  # odt: the text body
    if texts and next(_each(root, "spreadsheet"), None) is None:
        for el in _each(root, "p", "h"):
            if not _in_table(el):
                yield "".join(el.itertext()) + "\n"


def _in_table(el) -> bool:
    return False  # ElementTree has no parent links; table cells are read twice at worst (counted once)
