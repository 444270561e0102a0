"""What the chart says about one administration so far: start details, stop, void.

Starts, stops and voids may arrive in any order; the last correction of each part wins.
Stored as plain lists so the state serializes to small JSON.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rules.administration import Administration

# Order of the start fields in the serialized list.
_START_FIELDS = ("drug_name", "drug_code", "category", "route", "method", "access_site",
                 "separate_access_reason", "container_id", "purpose", "ordered_duration_minutes",
                 "primary_reason", "start", "offset", "drug_system", "ingredient", "device", "order_id")
_INDEX = {name: i for i, name in enumerate(_START_FIELDS)}
_START, _METHOD, _PURPOSE, _ORDERED, _CATEGORY = (_INDEX[n] for n in ("start", "method", "purpose",
                                                                     "ordered_duration_minutes", "category"))
_INSTANT_OK = ("push", "injection")  # methods that may be charted at one instant (stop = start)


@dataclass(slots=True)
class AdminFacts:
    start: list | None = None  # values in _START_FIELDS order
    stop: tuple[int, int] | None = None  # (minute, offset)
    voided: bool = False

    def record_start(self, event) -> None:
        drug = event.drug
        self.start = [drug.name, drug.code, event.category, event.route, event.method,
                      event.access_site, event.separate_access_reason, event.container_id, event.purpose,
                      event.ordered_duration_minutes, bool(event.primary_reason), event.minute, event.offset,
                      drug.system, drug.ingredient, event.device, event.order_id]

    def field(self, name: str):
        return self.start[_INDEX[name]] if self.start else None

    @property
    def stops_before_start(self) -> bool:
        """Stop before start; or at the start for an infusion or hydration (a push or an injection
        charted at one instant is a push: many MARs chart them so, coding-rules §5)."""
        if self.stop is None or self.start is None or self.voided:
            return False
        stop, start = self.stop[0], self.start[_START]
        return stop < start or (stop == start and not instant_ok(self.start[_METHOD], self.start[_CATEGORY]))

    @property
    def open(self) -> bool:
        """Started, not stopped, not voided: still running as far as the chart says."""
        return self.start is not None and self.stop is None and not self.voided

    def overdue_minute(self, policy) -> int | None:
        """When a running treatment infusion becomes overdue: its ordered duration plus grace, or
        the fixed limit without an order. None when it is not one."""
        start = self.start
        # Not open (spelled out, no property call: every clock tick asks this of every admin).
        if self.stop is not None or start is None or self.voided:
            return None
        if start[_METHOD] != "infusion" or start[_PURPOSE] != "treatment":
            return None
        ordered = start[_ORDERED]
        allowed = ordered + policy.overdue_grace_minutes if ordered else policy.overdue_without_order_minutes
        return start[_START] + allowed

    def administration(self, admin_id: str) -> Administration | None:
        if self.voided:
            return None
        stop = self.stop[0] if self.stop else None
        if self.start is None:
            if self.stop is None:
                return None
            return Administration(admin_id, "", "therapeutic", "IV", "infusion", None, stop, self.stop[1])
        # Positional, in Administration's field order (a keyword dict per admin costs more than coding it).
        (drug_name, drug_code, category, route, method, access_site, separate_access_reason, container_id,
         purpose, ordered_duration_minutes, primary_reason, start, offset, drug_system, ingredient,
         device, _order) = self.start
        return Administration(admin_id, drug_name, category, route, method, start, stop, offset, drug_code,
                              access_site, separate_access_reason, container_id, purpose,
                              ordered_duration_minutes, primary_reason, (), drug_system, ingredient, device)

    def to_json(self) -> list:
        return [self.start, list(self.stop) if self.stop else None, self.voided]

    @classmethod
    def from_json(cls, data: list) -> AdminFacts:
        start, stop, voided = data
        if start is not None and len(start) < len(_START_FIELDS):  # a state written before v1.2's fields
            start = start + [None] * (len(_START_FIELDS) - len(start))
        return cls(start, tuple(stop) if stop else None, voided)


def instant_ok(method: str, category: str) -> bool:
    """Whether a stop at the start minute is a documented instant (a push, an injection) rather than
    a wrong time (an infusion, any hydration)."""
    return method in _INSTANT_OK and category != "hydration"


def count_open(facts: Iterable[AdminFacts]) -> int:
    """How many of `facts` are open (AdminFacts.open, spelled out: the book recounts an encounter's
    running administrations on every event, and a property call each doubled the cost)."""
    return sum([1 for f in facts if f.stop is None and f.start is not None and not f.voided])
