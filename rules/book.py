"""All encounters of one run (or one stream partition), the overdue schedule and the clock.

The batch command drives it with event time; the stream processor with wall-clock ticks. State
lives in any MutableMapping (a dict, or a faust Table); every change is written back so a
changelog-backed table sees it.
"""
from __future__ import annotations

import heapq
from collections.abc import MutableMapping

from rules.encounter import EncounterState
from rules.policy import DEFAULT, Policy

DEFAULT_RETENTION_MINUTES = 14 * 24 * 60  # late documentation and audits arrive days later


class TooLate(ValueError):
    """An event for an encounter closed and purged longer ago than the retention window."""


class Book:
    def __init__(self, states: MutableMapping[str, EncounterState] | None = None, policy: Policy = DEFAULT,
                 retention_minutes: int = DEFAULT_RETENTION_MINUTES) -> None:
        self.states = states if states is not None else {}
        self.policy = policy
        self.retention = retention_minutes
        self.now = 0  # epoch minutes
        self._deadlines: list[tuple[int, str, str]] = []  # (minute, encounter, administration)
        self._expiry: list[tuple[int, str]] = []  # (minute, encounter) for closed encounters

    def handle(self, event) -> list[dict]:
        """Apply one event. With event time as the clock, overdue alerts due before it fire first."""
        minute = event.minute
        out = self.advance(minute)
        state = self.states.get(event.encounter_id)
        if state is None:
            if minute < self.now - self.retention:
                raise TooLate(f"occurred_at is more than {self.retention // 1440} days before the newest event "
                              "and the encounter is not open: correct it in the billing system directly")
            state = EncounterState(event.encounter_id)
        out += state.apply(event, self.now, self.policy)
        self.states[event.encounter_id] = state  # written back: a table's changelog must see it
        self._schedule(state, event.type, getattr(event, "administration_id", None))
        return out

    def rebuild(self) -> None:
        """Re-derive the schedules from the states (after recovering a table)."""
        self._deadlines, self._expiry = [], []
        for state in self.states.values():
            self._schedule(state, "encounter.discharge_cancelled")
            self._schedule(state, "encounter.discharged")

    def advance(self, now: int) -> list[dict]:
        """Move the clock forward; fire overdue alerts now due and purge expired encounters."""
        if now <= self.now:
            return []
        self.now = now
        out: list[dict] = []
        while self._deadlines and self._deadlines[0][0] < now:
            _, encounter_id, admin_id = heapq.heappop(self._deadlines)
            state = self.states.get(encounter_id)
            due = state is not None and state.deadline(admin_id, self.policy)
            if due and due < now:  # still running and still unalerted (stale entries are skipped)
                out += state.fire_overdue(now, self.policy)
                self.states[encounter_id] = state
        self._purge()
        return out

    def _schedule(self, state: EncounterState, event_type: str, admin_id: str | None = None) -> None:
        """Only starts (and a reopening) create deadlines; only discharges start the retention."""
        if event_type == "administration.started":
            deadline = state.deadline(admin_id, self.policy)
            if deadline is not None:
                heapq.heappush(self._deadlines, (deadline, state.encounter_id, admin_id))
        elif event_type == "encounter.discharge_cancelled":
            for deadline, admin_id in state.deadlines(self.policy):
                heapq.heappush(self._deadlines, (deadline, state.encounter_id, admin_id))
        elif event_type == "encounter.discharged" and state.discharged:
            heapq.heappush(self._expiry, (state.discharged_at // 60 + self.retention, state.encounter_id))

    def _purge(self) -> None:
        while self._expiry and self._expiry[0][0] <= self.now:
            _, encounter_id = heapq.heappop(self._expiry)
            state = self.states.get(encounter_id)
            if state is not None and state.discharged and state.discharged_at // 60 + self.retention <= self.now:
                del self.states[encounter_id]

    @property
    def open_encounters(self) -> int:
        return sum(1 for s in self.states.values() if not s.discharged)
