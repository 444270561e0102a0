"""Compact builders for engine inputs: times as 'HH:MM' on a base day, '+1 HH:MM' for the next."""
from __future__ import annotations

import datetime as dt
import itertools

from rules.administration import Administration

BASE = dt.datetime(2026, 3, 2, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
OFFSET = -300
_ids = itertools.count(1)


def minute(t: str | None) -> int | None:
    """'10:00' -> epoch minutes on the base day (local time, UTC-5); '+1 02:00' -> next day."""
    if t is None:
        return None
    days = 0
    if t.startswith("+"):
        d, t = t[1:].split(" ")
        days = int(d)
    h, m = map(int, t.split(":"))
    local = BASE + dt.timedelta(days=days, hours=h, minutes=m)
    return int(local.timestamp()) // 60


def adm(drug: str, start: str | None, stop: str | None, category: str = "therapeutic", *,
        method: str = "infusion", route: str = "IV", id: str | None = None, **kw) -> Administration:
    return Administration(
        id=id or f"A{next(_ids):04d}", drug_name=drug, category=category, route=route, method=method,
        start=minute(start), stop=minute(stop), offset=OFFSET, **kw,
    )


def hyd(start: str, stop: str | None, **kw) -> Administration:
    return adm("sodium chloride 0.9%", start, stop, "hydration", **kw)


def chemo(drug: str, start: str, stop: str | None, **kw) -> Administration:
    return adm(drug, start, stop, "chemotherapy", **kw)


def push(drug: str, start: str, stop: str | None = None, category: str = "therapeutic", **kw) -> Administration:
    return adm(drug, start, stop, category, method="push", **kw)


def codes(coding) -> list[str]:
    """Lines as sorted 'CPT' or 'CPT xN' or 'CPT-MOD' strings."""
    out = []
    for line in coding.lines:
        s = line.cpt + "".join(f"-{m}" for m in line.modifiers)
        out.append(s if line.units == 1 else f"{s} x{line.units}")
    return sorted(out)


def alert_codes(coding) -> list[str]:
    return sorted(a.code for a in coding.alerts)
