"""Byte counts as people read them in tables and reports (decimal units, like ledgers and SIEMs)."""

from __future__ import annotations


def human_bytes(n: int | float | None) -> str:
    """1234567 -> '1.2 MB'; bytes below 1000 stay whole ('945 B')."""
    n = float(n or 0)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
