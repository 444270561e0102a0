"""Plain-text summary tables for the end of a run (batch or demo)."""
from __future__ import annotations

from collections import Counter

from rules.alerts import audience


def table(title: str, counts: Counter, key_name: str, value_name: str) -> str:
    rows = [(k, v) for k, v in sorted(counts.items()) if v]
    if not rows:
        return f"{title}: none"
    width = max(len(key_name), *(len(str(k)) for k, _ in rows))
    lines = [title, f"  {key_name:<{width}}  {value_name:>8}"]
    lines += [f"  {k:<{width}}  {v:>8,}" for k, v in rows]
    return "\n".join(lines)


def accounting(stats) -> str:
    """Every line read, accounted for: accepted, dead-lettered, blank or a duplicate event_id."""
    rows = [("events accepted", stats.events), ("dead-lettered", stats.dead_letters),
            ("blank lines skipped", stats.blank_lines), ("duplicates ignored", stats.duplicates)]
    width = max(len(f"{n:,}") for n in (stats.lines, *(n for _, n in rows)))
    lines = [f"{'Lines read':<22}  {stats.lines:>{width},}"]
    lines += [f"  {name:<20}  {n:>{width},}" for name, n in rows]
    return "\n".join(lines)


def summary(stats, alerts: bool = True) -> str:
    parts = [
        accounting(stats) + f"\n{stats.open_encounters:,} encounters still open.",
        table("Net charges by CPT", stats.charges, "CPT", "units"),
        table("Dead letters by reason", stats.reasons, "reason", "count"),
    ]
    if alerts:
        parts[2:2] = [table("Nursing documentation alerts raised", _of(stats.alerts, "nursing"), "alert", "count"),
                      table("Coding findings raised", _of(stats.alerts, "coding"), "alert", "count")]
    return "\n\n".join(parts)


def _of(alerts: Counter, who: str) -> Counter:
    return Counter({code: n for code, n in alerts.items() if audience(code) == who})
