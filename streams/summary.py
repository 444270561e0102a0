"""Plain-text summary tables for the end of a run (batch or demo)."""
from __future__ import annotations

from collections import Counter


def table(title: str, counts: Counter, key_name: str, value_name: str) -> str:
    rows = [(k, v) for k, v in sorted(counts.items()) if v]
    if not rows:
        return f"{title}: none"
    width = max(len(key_name), *(len(str(k)) for k, _ in rows))
    lines = [title, f"  {key_name:<{width}}  {value_name:>8}"]
    lines += [f"  {k:<{width}}  {v:>8,}" for k, v in rows]
    return "\n".join(lines)


def summary(stats) -> str:
    parts = [
        f"{stats.lines:,} lines read, {stats.events:,} events accepted, {stats.dead_letters:,} dead-lettered; "
        f"{stats.open_encounters:,} encounters still open.",
        table("Net charges by CPT", stats.charges, "CPT", "units"),
        table("Alerts raised by code", stats.alerts, "alert", "count"),
        table("Dead letters by reason", stats.reasons, "reason", "count"),
    ]
    return "\n\n".join(parts)
