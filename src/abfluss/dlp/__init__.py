"""Sensitive-data (DLP) detection in cleartext payloads: identifiers, keyed hashes, masks.

Only `Hit`s leave this package: category, HMAC under the workspace key, masked form and whether
context anchored the value. Raw identifiers are never stored, logged or put into messages.
"""

from .keys import mask, value_hash, workspace_key
from .scanner import CATEGORIES, Hit, Scanner, ScanSettings

__all__ = ["CATEGORIES", "Hit", "ScanSettings", "Scanner", "mask", "value_hash", "workspace_key"]
