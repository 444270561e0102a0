"""Output record helpers shared by the batch command and the stream processor."""
from __future__ import annotations

RAW_LIMIT = 2000  # characters of a rejected input kept in its dead letter
MAX_EVENT_BYTES = 256 * 1024  # no valid event comes near this; bigger is a broken producer


def dead_letter(reason: str, category: str, source: dict, raw: bytes | str) -> dict:
    """`category` is a bounded label (invalid_json, schema, timestamp, oversize, too_late, ...)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = text.rstrip("\r\n")
    if len(text) > RAW_LIMIT:
        text = text[:RAW_LIMIT] + f"... [{len(text) - RAW_LIMIT} more characters]"
    return {"kind": "dead_letter", "reason": reason, "category": category, "source": source, "raw": text}


def oversize_reason(size: int) -> str:
    return f"event is {size} bytes, over the {MAX_EVENT_BYTES}-byte limit: send one event per message"
