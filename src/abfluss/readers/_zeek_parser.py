"""What the Zeek TSV and JSON parsers share: the line count, the log type of a path, skip reporting."""

from __future__ import annotations

from pathlib import Path

from . import _zeek_maps as zm
from .base import ReadReport


class Parser:
    """What both formats share: the line count, the log type of a path, skip reporting."""

    def __init__(self, path: Path, report: ReadReport):
        self.path, self.report, self.bad, self.line = path, report, 0, 1
        self.other = False  # records of a log type we do not read were seen
        self.other_types: set[str] = set()
        self.name_log = zm.log_from_name(path.name)
        self.col_log: str | None = None

    def target(self, path_value: str | None) -> str | None:
        """The mapped log type for a ``#path``/``_path`` value (None: a log we do not read)."""
        if path_value:
            log = zm.log_from_path(path_value)
        else:
            log = self.name_log or self.col_log
        if log in ("conn", "http", "ssl") and self.name_log == "open_" + log:
            log = self.name_log
        return log

    def skip(self, line: int, reason: str) -> None:
        self.bad += 1
        self.report.skip(f"line {line}", reason)

    @staticmethod
    def lines(data: bytes, start: int, stop: int) -> int:
        return data.count(b"\n", start, stop) + (stop > start and data[stop - 1] != 0x0A)

