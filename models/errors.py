"""Turn pydantic validation errors into one sentence a producer team can act on."""
from __future__ import annotations

from pydantic import ValidationError

_HINTS = {
    "timezone_aware": "add the UTC offset, e.g. 2026-03-02T08:15:00-05:00",
    "union_tag_invalid": "type must be one of administration.started, administration.stopped, "
    "administration.voided, encounter.discharged, encounter.discharge_cancelled, charges.submitted",
    "union_tag_not_found": "every event needs a type field",
}
_TAGS = {
    "administration.started", "administration.stopped", "administration.voided",
    "encounter.discharged", "encounter.discharge_cancelled", "charges.submitted",
}


class BadEvent(ValueError):
    """An input record that breaks the contract; its message is the dead-letter reason and its
    `category` a bounded label for metrics and summaries."""

    def __init__(self, reason: str, category: str = "schema") -> None:
        super().__init__(reason)
        self.category = category


def describe(exc: Exception, limit: int = 3) -> str:
    if not isinstance(exc, ValidationError):
        return str(exc)
    parts = [_one(err) for err in exc.errors(include_url=False)[:limit]]
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more problem(s)")
    return "; ".join(parts)


def _one(err: dict) -> str:
    if err["type"] == "json_invalid":
        return f"not valid JSON ({err.get('ctx', {}).get('error', 'parse error')})"
    loc = [str(p) for p in err["loc"] if not (isinstance(p, str) and p in _TAGS)]
    where = ".".join(loc) or "event"
    msg = err["msg"]
    hint = _HINTS.get(err["type"])
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return f"type: {hint}"
    return f"{where}: {msg}" + (f" ({hint})" if hint and hint != msg else "")


def category(exc: Exception) -> str:
    """invalid_json, timestamp or schema: what kind of fix the producer needs."""
    if not isinstance(exc, ValidationError):
        return "schema"
    kinds = {err["type"] for err in exc.errors(include_url=False)}
    if "json_invalid" in kinds:
        return "invalid_json"
    if kinds & {"timezone_aware", "datetime_parsing", "datetime_from_date_parsing", "datetime_type"}:
        return "timestamp"
    return "schema"
