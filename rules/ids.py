"""Deterministic output ids: the same input always gives the same id, so consumers de-duplicate."""
from __future__ import annotations

from hashlib import blake2b


def stable_id(prefix: str, *parts: object) -> str:
    digest = blake2b("\x1f".join(map(str, parts)).encode(), digest_size=12).hexdigest()
    return f"{prefix}-{digest}"
