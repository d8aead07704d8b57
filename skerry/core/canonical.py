"""Canonical JSON and content digests.

Bundles are signed and compared by digest, so the same desired state must
always serialise to the same bytes: keys sorted, no insignificant
whitespace, UTF-8, no NaN/Infinity. Digests are written ``sha256:<hex>``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` deterministically (sorted keys, compact, UTF-8)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
