"""The text of a unit: BOMs, UTF-16 without BOM, and bytes of other encodings kept as they are."""

from __future__ import annotations

import codecs

WIDE = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def decode_text(data: bytes) -> str:
    """The unit as text: BOMs honoured, UTF-16 without BOM recognised by its zero bytes, else
    UTF-8 with undecodable bytes (cp1252, Latin-1) kept as they are (surrogateescape)."""
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", "surrogateescape")
    for bom, enc in ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
                     (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            return data[len(bom):].decode(enc, "replace")
    enc = utf16_guess(data)
    if enc:
        return data.decode(enc, "replace")
    return data.decode("utf-8", "surrogateescape")


def utf16_guess(data: bytes) -> str | None:
    sample = data[:512]
    if len(sample) < 8:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    half = len(sample) // 2
    if odd > 0.4 * half and even < 0.05 * half:
        return "utf-16-le"
    if even > 0.4 * half and odd < 0.05 * half:
        return "utf-16-be"
    return None


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def is_text(data: bytes) -> bool:
    """Few control bytes (as the sink's binary test): the result of a base64 decoding is text."""
    if data.startswith(WIDE) or utf16_guess(data):
        return True
    sample = data[:1024]
    ctrl = sum(1 for b in sample if b < 9 or 13 < b < 32 or b == 127)
    return ctrl <= 0.1 * len(sample)
