"""One administration as the engine sees it, and its classification into a billable service.

Times are whole epoch minutes (coding-rules: units of time are whole minutes); `offset` is the UTC
offset of the documented stamps, which decides local dates and the clock times in explanations.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field

from rules.codes import RANKS

_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
PUSH_MAX_MINUTES = 15  # Noridian JE A / CPT: an IV push is 15 minutes or less.


@dataclass(slots=True)
class Administration:
    id: str
    drug_name: str
    category: str
    route: str
    method: str
    start: int | None
    stop: int | None
    offset: int = 0
    drug_code: str | None = None
    access_site: str | None = None
    separate_access_reason: str | None = None
    container_id: str | None = None
    purpose: str = "treatment"
    ordered_duration_minutes: int | None = None
    primary_reason: bool = False
    ids: tuple[str, ...] = field(default=())
    drug_system: str | None = None
    ingredient: str | None = None  # the substance, when the drug table says (contract v1.2 drug.ingredient)
    device: str | None = None
    pump_stop: bool = False  # the stop is a pump's (pump_stop_times = "fallback"), not documented

    def __post_init__(self) -> None:
        if not self.ids:
            self.ids = (self.id,)

    def with_pump_stop(self, stop: int) -> Administration:
        return dataclasses.replace(self, stop=stop, pump_stop=True)

    def with_times(self, start: int | None, stop: int | None) -> Administration:
        return dataclasses.replace(self, start=start, stop=stop)

    def same_drug(self, other: Administration) -> bool:
        """The same substance, as CPT's "new drug" means (coding-rules §3): the same ingredient
        through the drug table, or equal codes of one system, or equal names ignoring case. Two vials
        of ondansetron with different NDCs are one drug; a 96375 for the second would be an overcharge."""
        if self.ingredient and other.ingredient and self.ingredient.casefold() == other.ingredient.casefold():
            return True
        if self.drug_code and other.drug_code and self.drug_code == other.drug_code \
                and (self.drug_system or "") == (other.drug_system or ""):
            return True
        return self.drug_name.casefold() == other.drug_name.casefold()


@dataclass(slots=True)
class Service:
    """A classified administration: kind is infusion, push, hydration, injection or sc_infusion."""

    admin: Administration
    kind: str
    minutes: int
    incomplete: bool = False

    @property
    def rank(self) -> int:
        kind = "push" if self.kind == "push" else "infusion"
        return RANKS[(self.admin.category, kind)]

    @property
    def timed(self) -> bool:
        """Has a real [start, stop) interval (a push without a stop has none)."""
        return self.admin.stop is not None and not self.incomplete

    @property
    def interval(self) -> tuple[int, int]:
        return (self.admin.start, self.admin.stop)


def local_date(minute: int, offset: int) -> dt.date:
    return dt.date.fromordinal(_EPOCH_ORDINAL + (minute + offset) // 1440)


# "HH:MM" of every minute of the day: formatting one per call was a visible share of coding time.
_CLOCK = tuple(f"{hours:02d}:{minutes:02d}" for hours in range(24) for minutes in range(60))


def clock(minute: int, offset: int) -> str:
    return _CLOCK[(minute + offset) % 1440]


def describe(service: Service) -> str:
    """Chart-checkable description, e.g. 'vancomycin 07:00–09:31 (151 min) on PIV-1'."""
    a = service.admin
    site = f" on {a.access_site}" if a.access_site else ""
    start = _CLOCK[(a.start + a.offset) % 1440]  # clock(), inlined: once per service and hot
    if a.stop is None:
        return f"{a.drug_name} started {start}{site} (no stop documented)"
    pump = " (stop from the pump, not documented)" if a.pump_stop else ""
    return f"{a.drug_name} {start}–{_CLOCK[(a.stop + a.offset) % 1440]} ({a.stop - a.start} min){site}{pump}"
