"""Keyed hashing and masking of identifiers: the only forms in which a found value is ever kept.

Distinct values are counted through HMAC-SHA256 under a per-workspace key, so counts can be
deduplicated across payloads and runs without storing the value; the key never leaves
`<workspace>/secret/dlp.key` (owner-only). The masked form shows the shape to an analyst and at
most four characters of the value.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from ..errors import WorkspaceError
from .identifiers import normalise

KEY_BYTES = 32
KEY_DIR = "secret"
KEY_FILE = "dlp.key"
MASK_KEEP_HEAD = 3   # characters kept at the start of a long value (A12******0)
MASK_KEEP_TAIL = 1   # characters kept at the end of a long value
MASK_LONG = 8        # from this length on head and tail are kept; shorter values keep one character
MASK_SHORT = 4       # below this length nothing is kept


def workspace_key(root: Path) -> bytes:
    """The workspace's 32-byte DLP key, created on first use (file 0600 in a 0700 directory)."""
    path = Path(root) / KEY_DIR / KEY_FILE
    if not path.exists():
        _create_key(path)
    return _read_key(path)


def _create_key(path: Path) -> None:
    """Write a fresh key to a private temporary file and link it into place, so that two processes
    starting at once agree on one key and no reader ever sees a half-written file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)  # mkdir's mode is subject to the umask and to an existing dir
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_bytes(KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process was first: use its key
    finally:
        tmp.unlink()


def _read_key(path: Path) -> bytes:
    st = path.stat()
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        os.chmod(path, 0o600)  # a copied or restored workspace may have lost its modes
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise WorkspaceError(f"DLP key file {path} is damaged (expected {KEY_BYTES} bytes); "
                             "remove it to start a new key (earlier value hashes will no longer match)")
    return key


class Keyed:
    """HMAC-SHA256 under one key for many short messages: the padded key's two SHA-256 states
    are computed once and copied per message (RFC 2104), with the interpreter's own SHA-256 when
    it has one: copying an OpenSSL context cost more than hashing a 20-byte value. Equal to
    ``hmac.digest(key, msg, "sha256")``."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes):
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = _sha256(key.translate(_IPAD))
        self._outer = _sha256(key.translate(_OPAD))

    def __repr__(self) -> str:  # the key stays out of logs
        return "Keyed(...)"

    def hexdigest(self, msg: bytes) -> str:
        inner = self._inner.copy()
        inner.update(msg)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def _builtin_sha256():
    try:
        from _sha256 import sha256  # CPython <= 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # CPython >= 3.12
        except ImportError:
            sha256 = hashlib.sha256
    return sha256


_sha256 = _builtin_sha256()
_SHA256_BLOCK = 64
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


def value_hash(key: bytes, category: str, value: str) -> str:
    """Hex HMAC-SHA256 over `category:normalised value`."""
    msg = f"{category}:{normalise(category, value)}".encode()
    return hmac.digest(key, msg, hashlib.sha256).hex()


def mask(category: str, value: str) -> str:
    """Masked form of the normalised value.

    Identifiers keep the first 3 and the last character (`A12******0`); values shorter than 8
    keep only the first, below 4 nothing. ICD codes keep only their shape (`***.**`): the code
    itself is the health information. E-mail addresses keep the first character of the local
    part and of the domain and the top-level domain (`m***@a***.de`), with a fixed number of
    stars so the length is not shown either.
    """
    return mask_normalised(category, normalise(category, value))


def mask_normalised(category: str, v: str) -> str:
    """`mask` of a value that is already normalised (the scanner normalises once per value)."""
    if category == "icd10":
        return "".join("." if ch == "." else "*" for ch in v)
    if category == "email":
        return _mask_email(v)
    n = len(v)
    if n >= MASK_LONG:
        return v[:MASK_KEEP_HEAD] + "*" * (n - MASK_KEEP_HEAD - MASK_KEEP_TAIL) + v[n - MASK_KEEP_TAIL:]
    if n >= MASK_SHORT:
        return v[0] + "*" * (n - 1)
    return "*" * n


def _mask_email(v: str) -> str:
    local, _, domain = v.rpartition("@")
    head, _, tld = domain.rpartition(".")
    return f"{local[:1]}***@{head[:1]}***.{tld}" if head else f"{local[:1]}***@***"
