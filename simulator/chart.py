"""One encounter's documented administrations, as the scenarios write them.

Times are whole minutes from local midnight of the simulated day (may pass 1440 for the next day).
"""
from __future__ import annotations

import random
from typing import Iterator, NamedTuple

from .catalog import DRUGS, PIV_SITES, Drug


class Admin(NamedTuple):
    admin_id: str
    drug: Drug
    route: str  # IV | SC | IM
    method: str  # infusion | push | injection
    site: str | None
    reason: str | None  # separate_access_reason
    container: str | None
    purpose: str | None  # None: field omitted, the contract default (treatment) applies
    ordered: int | None
    device: str | None
    primary: bool | None
    start: int
    stop: int | None  # None: no stop documented


def ordered_for(minutes: int) -> int:
    """The order behind an infusion of this length: nurses run close to it, rounded to 15 min."""
    return max(15, round(minutes / 15) * 15)


class Chart:
    """Builder for one encounter's administrations; short-lived, so a plain object is fine."""

    def __init__(self, rng: random.Random, encounter_id: str, bags: Iterator[int]):
        self.rng = rng
        self.encounter_id = encounter_id
        self.bags = bags
        self.site = rng.choice(PIV_SITES)
        self.admins: list[Admin] = []
        self._n = 0

    def new_admin_id(self) -> str:
        self._n += 1
        return f"{self.encounter_id}-MA{self._n:02d}"

    def new_bag(self) -> str:
        return f"BAG-{next(self.bags):07d}"

    def _purpose(self, purpose: str) -> str | None:
        # a third of treatment runs leave the optional field out, exercising the default
        if purpose == "treatment" and self.rng.random() < 0.3:
            return None
        return purpose

    def infusion(self, key: str, start: int, minutes: int, *, route: str = "IV",
                 site: str | None = None, reason: str | None = None, purpose: str = "treatment",
                 device: str | None = None, ordered: bool = True) -> int:
        """Document an infusion; returns its stop time."""
        rng = self.rng
        order = ordered_for(minutes) if ordered and rng.random() < 0.85 else None
        if device is None:
            device = "pump" if rng.random() < 0.8 else "gravity"
        vascular = (site or self.site) if route == "IV" else None
        self.admins.append(Admin(self.new_admin_id(), DRUGS[key], route, "infusion", vascular,
                                 reason, self.new_bag(), self._purpose(purpose), order, device,
                                 None, start, start + minutes))
        return start + minutes

    def take_home_pump(self, key: str, start: int, ordered: int) -> None:
        """A chemotherapy infusion connected to a portable pump and sent home: no stop in this visit
        (it is charted at the disconnect, days later). Draws nothing from the day's generator."""
        self.admins.append(Admin(self.new_admin_id(), DRUGS[key], "IV", "infusion", self.site, None, None, None,
                                 ordered, "pump", None, start, None))

    def push(self, key: str, start: int, *, minutes: int | None = None, site: str | None = None,
             reason: str | None = None, purpose: str = "treatment") -> int:
        """Document an IV push (1-5 min, a fifth without a stop); returns when it is done."""
        rng = self.rng
        if minutes is None:
            minutes = rng.randint(1, 5)
        stop = start + minutes if rng.random() < 0.8 or minutes > 15 else None
        self.admins.append(Admin(self.new_admin_id(), DRUGS[key], "IV", "push", site or self.site,
                                 reason, None, self._purpose(purpose), None, "syringe", None,
                                 start, stop))
        return start + minutes

    def injection(self, key: str, start: int, route: str) -> int:
        """Document an SC/IM injection (no stop: it has no duration to record)."""
        self.admins.append(Admin(self.new_admin_id(), DRUGS[key], route, "injection", None, None,
                                 None, self._purpose("treatment"), None, "syringe", None,
                                 start, None))
        return start + 1

    def last_time(self) -> int:
        return max(a.stop if a.stop is not None else a.start for a in self.admins)
