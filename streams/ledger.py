"""What the consumer handed to faust, partition by partition, checked against what the agent gets.

faust moves fetched records through its own machinery (a drain loop, per-agent queues) before the
agent sees them, and around rebalances that machinery loses records: queues are cleared when flow
control resumes; a batch fetched before a seek is still delivered after it; the drain loop keeps a
"read offset" per partition that concurrent seeks overwrite, then drops records below it or takes
a jump for a gap in the log. A lost record is an event never applied, silently. So:

- the consumer side (streams/faust_runtime/compat.py) hands over, per partition, only records that continue
  what the ledger expects (`expected`) and writes each down (`handed`); a batch fetched before the
  partition was last sought (`epochs`) is stale and not handed over;
- every seek, faust's or ours, starts the partition afresh here (`restart`);
- the agent checks each arrival against the list (`arrived`): the next one handed over: process
  it; one further down: the ones before it were lost in between, read the partition again from the
  first of them; one not in the list: a stale copy, drop it;
- records handed over that never arrive at all (lost at the end of what was read) are found by
  `overdue`, asked when the agent has been idle;
- records the consumer moved past without handing them over (its position, learned without a
  record, beyond what the ledger expects) are found by `skipped`, also asked when idle: the last
  net under every race of this kind (one made the two-worker test stall until 2026-11-29).

It also tells whether a partition is caught up: everything the broker had (its high watermark) was
handed over and received.
"""
from __future__ import annotations

from collections import deque
from enum import Enum


class Arrival(Enum):
    IN_ORDER = "in order"
    AFTER_LOSS = "after a loss"  # records handed over before this one never arrived
    STALE = "stale"  # handed over before the partition was read again


class ReadLedger:
    def __init__(self, topics, first=()) -> None:
        self.topics = frozenset(topics)  # the agent's source topics; others (changelogs) are faust's own
        self._first = frozenset(first)  # the worker's own topics: read before a backlog of input
        self.epochs: dict = {}  # tp -> how often it was sought: what was fetched before is stale
        self._handed: dict = {}  # tp -> messages handed over and not yet arrived, in order
        self._ids: dict = {}  # tp -> ids of those messages
        self._next: dict = {}  # tp -> offset the next record handed over must have at least
        self._position: dict = {}  # tp -> the consumer's position learned without a record
        self._since: dict = {}  # tp -> when its oldest pending record was handed over (monotonic)
        self._skipped: dict = {}  # tp -> offset it was last read again from because the position passed it

    # -- the consumer's side -------------------------------------------------------------

    def tracks(self, tp) -> bool:
        return tp.topic in self.topics

    def first(self, tp) -> bool:
        """Read before other topics (see compat._fetch_first)."""
        return tp.topic in self._first

    def expected(self, tp) -> int | None:
        """The lowest offset the next record may have (None: anything, nothing read since assignment)."""
        return self._next.get(tp)

    def handed(self, tp, message, now: float) -> None:
        pending = self._handed.get(tp)
        if pending is None:
            pending, self._ids[tp] = self._handed.setdefault(tp, deque()), set()
        if not pending:
            self._since[tp] = now
        pending.append(message)
        self._ids[tp].add(id(message))
        self._next[tp] = message.offset + 1

    def restart(self, tp, offset: int | None) -> None:
        """The partition is read again from `offset` (None: unknown, e.g. never committed).

        Records handed over below `offset` are still on their way and are not read again: they stay
        expected. Forgetting them made them stale on arrival while the consumer read on after them:
        lost (a seek to where the drain stopped, after faust skipped a paused partition's records;
        3 to 220 events of a 200,000-event backlog until 2026-11-29)."""
        self.epochs[tp] = self.epochs.get(tp, 0) + 1
        pending = self._handed.pop(tp, None)
        for d in (self._ids, self._position):
            d.pop(tp, None)
        keep = [m for m in pending or () if offset is not None and m.offset < offset]
        if keep:
            self._handed[tp], self._ids[tp] = deque(keep), {id(m) for m in keep}
        else:
            self._since.pop(tp, None)
        if offset is None:
            self._next.pop(tp, None)
        else:
            self._next[tp] = offset

    def position(self, tp, offset: int, epoch: int | None) -> None:
        """The consumer's position, learned in its own thread at `epoch` (ignored if sought since)."""
        if self.epochs.get(tp) == epoch:
            self._position[tp] = offset

    def forget(self, tps) -> None:
        """Partitions revoked: what was handed over of them is faust's to drop."""
        for tp in tps:
            self.restart(tp, None)

    # -- the agent's side ----------------------------------------------------------------

    def arrived(self, tp, message, now: float) -> Arrival:
        if tp.topic not in self.topics:
            return Arrival.IN_ORDER
        pending = self._handed.get(tp)
        if not pending or id(message) not in self._ids[tp]:
            return Arrival.STALE
        if pending[0] is not message:
            return Arrival.AFTER_LOSS  # the agent reads the partition again from first_pending
        pending.popleft()
        self._ids[tp].discard(id(message))
        self._since[tp] = now
        return Arrival.IN_ORDER

    def first_pending(self, tp) -> int | None:
        pending = self._handed.get(tp)
        return pending[0].offset if pending else None

    def overdue(self, now: float, after: float) -> list:
        """Partitions whose oldest pending record was handed over more than `after` seconds ago
        (ask only when the agent has been idle: then nothing is on its way any more)."""
        return [tp for tp, pending in self._handed.items() if pending and now - self._since[tp] > after]

    def skipped(self) -> list[tuple]:
        """(tp, offset) of partitions the consumer has moved past records it never handed over:
        read them again from `offset`. Once per offset: if the position passes it again without a
        record, those offsets hold none (transaction markers) and it stays caught up."""
        found = []
        for tp, position in self._position.items():
            expected = self._next.get(tp)
            if expected is None or position <= expected or self._handed.get(tp) or self._skipped.get(tp) == expected:
                continue
            self._skipped[tp] = expected
            found.append((tp, expected))
        return found

    def caught_up(self, tp, highwater: int | None) -> bool:
        """Nothing of the partition is on its way: all the broker had was handed over and received."""
        if self._handed.get(tp) or highwater is None:
            return False
        position = max(self._next.get(tp, -1), self._position.get(tp, -1))
        return position >= highwater

    def wants_position(self, tp, highwater: int | None) -> bool:
        """Nothing pending and the position unknown or short of the end: worth asking the consumer
        (its position moves past control records and compacted offsets without handing a record)."""
        if tp.topic not in self.topics or self._handed.get(tp) or highwater is None:
            return False
        return max(self._next.get(tp, -1), self._position.get(tp, -1)) < highwater
