"""All encounters of one run (or one stream worker), the overdue and retention schedules, the clock.

Two drivers share it. Event time: each encounter keeps its own clock, the newest occurred_at of its
own events; an event first fires that encounter's overdue checks that fell due before it, and an
administration charted behind its encounter's clock is checked as it arrives (`handle`). So an
encounter's output never depends on other encounters' events, in a batch replay or on a stream
partition alike. The wall clock (the stream processor only, `wall_ticks=True`): a timer asks which
encounters fell due (`due`, which writes no state) and routes a tick for each through the
encounter's own partition, where `tick` applies it once the partition has read every record that
reached Kafka before the tick (so a backlog's stops come first). Retention (the purge of discharged
encounters, TooLate) follows one clock per partition (a `shard`), the newest event time it read.

State lives in any MutableMapping (a dict, or a faust Table behind an adapter); every change is
written back so a changelog-backed table sees it. Clock values are epoch seconds.
"""
from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, MutableMapping

from rules.encounter import EncounterState, Packed
from rules.facts import count_open
from rules.policy import DEFAULT, Policy

DEFAULT_RETENTION_MINUTES = 14 * 24 * 60  # late documentation and audits arrive days later


class TooLate(ValueError):
    """An event for an encounter not held (closed and purged) older than the retention window."""


class Book:
    def __init__(self, states: MutableMapping[str, EncounterState] | None = None, policy: Policy = DEFAULT,
                 retention_minutes: int = DEFAULT_RETENTION_MINUTES, shard_of: Callable[[str], int] | None = None,
                 gauges: bool = True, pack_closed: bool = False, wall_ticks: bool = False) -> None:
        """`gauges`: keep the open-encounter and running-administration counts current on every event
        (the stream's metrics); without, `open_count` counts when asked and `open_administrations`
        stays 0. `pack_closed`: hold a discharged encounter packed (EncounterState.pack), a few hundred
        bytes, until an event for it arrives; for the batch command's own mapping only (in memory, or one that
        keeps them on disk), never a table: Packed is not JSON."""
        self.states = states if states is not None else {}
        self.gauges = gauges
        self.wall_ticks = wall_ticks  # keep overdue deadlines for a wall-clock timer (`due`): the stream
        self.pack_closed = pack_closed
        self.policy = policy
        self.retention = retention_minutes * 60
        self.shard_of = shard_of or _one_shard  # encounter -> the shard (stream partition) holding it
        self.clocks: dict[int, int] = {}  # shard -> its clock, epoch seconds
        self._deadlines: dict[int, list[tuple[int, str]]] = {}  # shard -> (second, encounter): may be overdue
        self._expiry: dict[int, list[tuple[int, str]]] = {}  # shard -> (second, encounter): may be purged
        self._open: dict[str, int] = {}  # open encounter -> its running administrations
        self.open_administrations = 0
        self.duplicates = 0  # events ignored as repeats of an event_id

    @property
    def open_count(self) -> int:
        if self.gauges:
            return len(self._open)
        return sum([1 for s in self.states.values() if type(s) is EncounterState and not s.discharged])

    @property
    def now(self) -> int:
        """The newest clock of any shard (the batch's only one)."""
        return max(self.clocks.values(), default=0)

    def handle(self, event) -> list[dict]:
        """Apply one event. Its time moves its shard's clock and what fell due before it fires first."""
        # Each field read once: attribute access on a pydantic model is slow.
        epoch, encounter_id, event_type = event.epoch, event.encounter_id, event.type
        shard = self.shard_of(encounter_id)
        clocks = self.clocks
        if epoch > clocks.get(shard, 0):
            out = self.advance(epoch, shard)
            now = epoch
        else:  # the clock stays: nothing falls due (advance, inlined: most events of a day)
            out = []
            now = clocks[shard]
        state = self.states.get(encounter_id)
        if state is None:
            if epoch < now - self.retention:
                raise TooLate(f"occurred_at is more than {self.retention / 86400:g} days before the clock and the "
                              "encounter is not held any more: correct it in the billing system directly")
            state = EncounterState(encounter_id)
        elif type(state) is Packed:
            if state.has_seen(event.event_id):
                self.duplicates += 1
                return out
            state = EncounterState.unpack(encounter_id, state)
        elif event.event_id in state.seen:
            self.duplicates += 1
            return out
        if epoch > state.clock:  # the encounter's own clock moves: what fell due before this event fires first
            out += state.fire_overdue(epoch, self.policy)
            state.clock = epoch
        out += state.apply(event, state.clock, self.policy)
        if event_type in _DEADLINES and state.deadlines(self.policy):
            out += state.fire_overdue(state.clock, self.policy)  # charted behind its encounter's clock
        # Not getattr(event, "administration_id", None): a missing field costs pydantic an exception.
        admin_id = event.administration_id if event_type.startswith("administration.") else None
        self._schedule(state, event_type, admin_id)
        if self.gauges:
            self._note(state)
        # Written back: a table's changelog must see it.
        self.states[encounter_id] = state.pack() if self.pack_closed and state.discharged else state
        return out

    def advance(self, now: int, shard: int = 0) -> list[dict]:
        """Event-time driver: move a shard's clock and purge what it expired (overdue checks follow
        each encounter's own clock, in `handle`; the wall clock's are `due`'s)."""
        if now <= self.clocks.get(shard, 0):
            return []
        out: list[dict] = []
        expiry = self._expiry.get(shard)
        expired: dict[str, None] = {}
        while expiry and expiry[0][0] <= now:
            expired[heapq.heappop(expiry)[1]] = None
        for encounter_id in expired:
            out += self._purge(encounter_id, now)
        self.clocks[shard] = now
        return out

    def due(self, now: int, shard: int = 0) -> list[str]:
        """Encounters of a shard with an overdue check or a retention purge due at `now`; writes no state."""
        found: dict[str, None] = {}
        deadlines, expiry = self._deadlines.get(shard), self._expiry.get(shard)
        while deadlines and deadlines[0][0] < now:
            found[heapq.heappop(deadlines)[1]] = None
        while expiry and expiry[0][0] <= now:
            found[heapq.heappop(expiry)[1]] = None
        return list(found)

    @property
    def shards(self) -> list[int]:
        """Shards with anything scheduled."""
        return [s for s in {*self._deadlines, *self._expiry} if self._deadlines.get(s) or self._expiry.get(s)]

    def tick(self, encounter_id: str, now: int) -> list[dict]:
        """Apply the wall clock to one encounter: raise overdue alerts, or purge it once expired."""
        shard = self.shard_of(encounter_id)
        now = self.clocks[shard] = max(self.clocks.get(shard, 0), int(now))
        state = self.states.get(encounter_id)
        if state is None or self._purged(encounter_id, state, now):
            return []
        out = state.fire_overdue(now, self.policy)
        if out:
            self.states[encounter_id] = state
            if self.gauges:
                self._note(state)
        return out

    def _purge(self, encounter_id: str, now: int) -> list[dict]:
        state = self.states.get(encounter_id)
        if state is not None:
            self._purged(encounter_id, state, now)
        return []

    def _purged(self, encounter_id: str, state, now: int) -> bool:
        """Drop a discharged encounter whose retention ended by `now`; whether it is gone (a packed
        one always is for the tick: only the purge can be due for it)."""
        if type(state) is Packed:
            if state.discharged_at + self.retention <= now:
                del self.states[encounter_id]
            return True
        if state.discharged and state.discharged_at + self.retention <= now:
            del self.states[encounter_id]
            self._forget(encounter_id)
            return True
        return False

    def rebuild(self, states: Iterable[EncounterState]) -> None:
        """Re-derive schedules and open counts from every state, given once each (after a table was
        recovered: the stream's JsonStates.scan reads them in one pass)."""
        self._deadlines, self._expiry, self._open, self.open_administrations = {}, {}, {}, 0
        for state in states:
            self._schedule(state, "encounter.discharge_cancelled")
            self._schedule(state, "encounter.discharged")
            self._note(state)

    def _schedule(self, state: EncounterState, event_type: str, admin_id: str | None = None) -> None:
        """Only starts (and a reopening) create deadlines; only discharges start the retention."""
        encounter_id = state.encounter_id
        if event_type in _DEADLINES and not self.wall_ticks:
            return  # event time fires overdue checks per encounter (handle): no schedule to keep
        if event_type == "administration.started":
            deadline = state.deadline(admin_id, self.policy)
            if deadline is not None:
                heapq.heappush(self._heap(self._deadlines, encounter_id), (deadline * 60, encounter_id))
            if state.pumps:  # a start can match pump evidence that came first
                self._schedule(state, "device.delivery")
        elif event_type == "device.delivery":
            for deadline, admin_id in state.deadlines(self.policy):
                if not admin_id:  # pump evidence's; the overdue ones are scheduled by their start
                    heapq.heappush(self._heap(self._deadlines, encounter_id), (deadline * 60, encounter_id))
        elif event_type == "encounter.discharge_cancelled":
            for deadline, _ in state.deadlines(self.policy):
                heapq.heappush(self._heap(self._deadlines, encounter_id), (deadline * 60, encounter_id))
        elif event_type == "encounter.discharged" and state.discharged:
            heapq.heappush(self._heap(self._expiry, encounter_id), (state.discharged_at + self.retention, encounter_id))

    def _heap(self, heaps: dict[int, list], encounter_id: str) -> list:
        shard = self.shard_of(encounter_id)
        heap = heaps.get(shard)
        if heap is None:
            heap = heaps[shard] = []
        return heap

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


# the events that can start an overdue clock (or pump evidence's)
_DEADLINES = ("administration.started", "encounter.discharge_cancelled", "device.delivery")


def _one_shard(encounter_id: str) -> int:  # noqa: ARG001 - the batch keeps every encounter in one
    return 0
