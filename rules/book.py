"""All encounters of one run (or one stream worker), the overdue and retention schedules, the clock.

Two drivers share it. The batch command uses event time: each event moves the clock and whatever
fell due before it fires first (`handle`). The stream processor uses the wall clock: a timer asks
which encounters fell due (`due`, which writes nothing) and routes a tick for each through the
encounter's own partition, where `tick` applies it.

State lives in any MutableMapping (a dict, or a faust Table behind an adapter); every change is
written back so a changelog-backed table sees it. Clock values are epoch seconds.
"""
from __future__ import annotations

import heapq
from collections.abc import MutableMapping

from rules.encounter import EncounterState
from rules.facts import count_open
from rules.policy import DEFAULT, Policy

DEFAULT_RETENTION_MINUTES = 14 * 24 * 60  # late documentation and audits arrive days later


class TooLate(ValueError):
    """An event for an encounter not held (closed and purged) older than the retention window."""


class Book:
    def __init__(self, states: MutableMapping[str, EncounterState] | None = None, policy: Policy = DEFAULT,
                 retention_minutes: int = DEFAULT_RETENTION_MINUTES, event_clock: bool = True) -> None:
        self.states = states if states is not None else {}
        self.policy = policy
        self.retention = retention_minutes * 60
        self.event_clock = event_clock
        self.now = 0
        self._deadlines: list[tuple[int, str]] = []  # (second, encounter): an infusion may be overdue
        self._expiry: list[tuple[int, str]] = []  # (second, encounter): a closed encounter may be purged
        self._open: dict[str, int] = {}  # open encounter -> its running administrations
        self.open_administrations = 0
        self.duplicates = 0  # events ignored as repeats of an event_id

    @property
    def open_count(self) -> int:
        return len(self._open)

    def handle(self, event, now: int | None = None) -> list[dict]:
        """Apply one event. With event time as the clock, what fell due before it fires first."""
        # Each field read once: attribute access on a pydantic model is slow.
        epoch, encounter_id, event_type = event.epoch, event.encounter_id, event.type
        out = self.advance(epoch) if self.event_clock else []
        if now is not None:
            self.now = max(self.now, int(now))
        state = self.states.get(encounter_id)
        if state is None:
            if epoch < self.now - self.retention:
                raise TooLate(f"occurred_at is more than {self.retention // 86400} days before the clock and the "
                              "encounter is not held any more: correct it in the billing system directly")
            state = EncounterState(encounter_id)
        elif event.event_id in state.seen:
            self.duplicates += 1
            return out
        out += state.apply(event, self.now, self.policy)
        self.states[encounter_id] = state  # written back: a table's changelog must see it
        # Not getattr(event, "administration_id", None): a missing field costs pydantic an exception.
        admin_id = event.administration_id if event_type.startswith("administration.") else None
        self._schedule(state, event_type, admin_id)
        self._note(state)
        return out

    def advance(self, now: int) -> list[dict]:
        """Event-time driver: move the clock and apply every tick now due."""
        if now <= self.now:
            return []
        out: list[dict] = []
        for encounter_id in self.due(now):
            out += self.tick(encounter_id, now)
        self.now = now
        return out

    def due(self, now: int) -> list[str]:
        """Encounters with an overdue check or a retention purge due at `now`; writes no state."""
        found: dict[str, None] = {}
        while self._deadlines and self._deadlines[0][0] < now:
            found[heapq.heappop(self._deadlines)[1]] = None
        while self._expiry and self._expiry[0][0] <= now:
            found[heapq.heappop(self._expiry)[1]] = None
        return list(found)

    def tick(self, encounter_id: str, now: int) -> list[dict]:
        """Apply the clock to one encounter: raise overdue alerts, or purge it once expired."""
        self.now = max(self.now, int(now))
        state = self.states.get(encounter_id)
        if state is None:
            return []
        if state.discharged and state.discharged_at + self.retention <= self.now:
            del self.states[encounter_id]
            self._forget(encounter_id)
            return []
        out = state.fire_overdue(self.now, self.policy)
        if out:
            self.states[encounter_id] = state
            self._note(state)
        return out

    def rebuild(self) -> None:
        """Re-derive schedules and open counts from the states (after a table was recovered)."""
        self._deadlines, self._expiry, self._open, self.open_administrations = [], [], {}, 0
        for encounter_id in list(self.states):
            state = self.states.get(encounter_id)
            self._schedule(state, "encounter.discharge_cancelled")
            self._schedule(state, "encounter.discharged")
            self._note(state)

    def _schedule(self, state: EncounterState, event_type: str, admin_id: str | None = None) -> None:
        """Only starts (and a reopening) create deadlines; only discharges start the retention."""
        if event_type == "administration.started":
            deadline = state.deadline(admin_id, self.policy)
            if deadline is not None:
                heapq.heappush(self._deadlines, (deadline * 60, state.encounter_id))
        elif event_type == "encounter.discharge_cancelled":
            for deadline, _ in state.deadlines(self.policy):
                heapq.heappush(self._deadlines, (deadline * 60, state.encounter_id))
        elif event_type == "encounter.discharged" and state.discharged:
            heapq.heappush(self._expiry, (state.discharged_at + self.retention, state.encounter_id))

    def _note(self, state: EncounterState) -> None:
        """Keep the open-encounter and running-administration counts (metrics) current."""
        encounter_id = state.encounter_id
        self.open_administrations -= self._open.pop(encounter_id, 0)  # _forget, inlined: every event
        if not state.discharged:
            running = count_open(state.admins.values())
            self._open[encounter_id] = running
            self.open_administrations += running

    def _forget(self, encounter_id: str) -> None:
        self.open_administrations -= self._open.pop(encounter_id, 0)
