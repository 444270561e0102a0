"""Time-aligned reading of a partition's input topics (Kafka Streams' timestamp synchronization).

Kafka keeps no order between topics: a worker started on a backlog may read a day of discharges
before the stops documented hours earlier, code each encounter too soon and then correct it (a
reversal, a post, an alert raised and resolved). So the records of each partition are held here,
one queue per input topic (in offset order), and released in broker-timestamp order: the oldest
head first, and only while every input topic of the partition either has a record waiting (its
head is no older) or is caught up with the broker. An input that is behind makes the partition
wait, at most `max_wait` seconds (Kafka Streams' max.task.idle.ms): a lagging or stuck producer
delays coding, it never stops it.

Records forwarded from other partitions (producers that do not partition by murmur2) come through
the repartition topic, one more input of each partition, interleaved from many sources: they are
queued per original topic and source partition, each queue in its original offset order. Their
sources report how far they have read (`watermark`): while any producer mis-partitions, a record
also waits until every other partition has forwarded everything older than it (a discharge would
otherwise be coded, or an overdue clock moved, before a stop forwarded from elsewhere).

Pure: no Kafka, no faust. The agent (streams/faust_runtime/app.py) feeds it and processes what it releases.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Held:
    timestamp: float  # broker timestamp of the record, epoch seconds (milliseconds: many share one)
    occurred: float  # equal timestamps: in the order the events occurred, as the batch reads a file
    rank: int  # and then documentation before the discharge that closes the encounter
    item: Any  # what the agent processes


@dataclass(slots=True)
class _Partition:
    queues: dict[str, deque[Held]] = field(default_factory=dict)  # queue -> records in offset order
    inputs: dict[str, int] = field(default_factory=dict)  # input topic -> records held of it
    of_input: dict[str, str] = field(default_factory=dict)  # queue -> its input topic
    blocked_since: float | None = None  # when the partition began waiting for a lagging input
    forcing: bool = False  # waited max_wait: records go out until the input catches up
    held: int = 0
    released_to: float = 0.0  # the newest timestamp released: a record well older after it came late


@dataclass(slots=True)
class Release:
    items: list[Any]
    waited: float  # seconds partitions spent waiting for lagging inputs in this call
    forced: dict[str, int]  # why a record went out before its inputs caught up -> how many
    late: dict[str, int]  # input topic -> records released after one stamped LATE_BY seconds later


# A record that reaches the worker after records of its partition stamped this much later went out
# of time order: a producer whose clock is behind the others' (or that sets timestamps itself), or
# records a forced release went ahead of. Smaller gaps are the ordinary race of producers' batching.
LATE_BY = 1.0


class Aligner:
    def __init__(self, inputs: tuple[str, ...], max_wait: float, partitions: int, ticks: str | None = None) -> None:
        self.inputs = inputs  # every input topic of a partition, the repartition topic included
        self.max_wait = max_wait
        self.partitions = partitions
        self.ticks = ticks  # the worker's own clock ticks: never counted late
        self._parts: dict[int, _Partition] = {}
        # Forwarding sources: partition -> source partition -> newest time it has forwarded up to.
        self._watermarks: dict[int, dict[int, float]] = {}
        self.forwarding_until = 0.0  # wall clock: while any source forwards, records wait for watermarks

    # -- input ---------------------------------------------------------------------------

    def add(self, partition: int, source: str, held: Held, input_topic: str | None = None) -> None:
        """Hold a record of queue `source` (in offset order), read from `input_topic` (default: the
        same; forwarded records: the repartition topic, queued per original topic and partition)."""
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = _Partition()
        queue = part.queues.get(source)
        if queue is None:
            queue = part.queues[source] = deque()
            part.of_input[source] = input_topic or source
        queue.append(held)
        topic = part.of_input[source]
        part.inputs[topic] = part.inputs.get(topic, 0) + 1
        part.held += 1

    def watermark(self, partition: int, source: int, time: float, forwarding_until: float) -> None:
        """Source partition `source` has forwarded to `partition` everything stamped before `time`."""
        marks = self._watermarks.setdefault(partition, {})
        marks[source] = max(marks.get(source, 0.0), time)
        self.forwarding_until = max(self.forwarding_until, forwarding_until)

    def drop(self, partitions=None) -> None:
        """Forget what is held (partitions revoked: it is read again from the committed offsets)."""
        for p in list(self._parts) if partitions is None else partitions:
            self._parts.pop(p, None)

    def restart_waits(self, now: float) -> None:
        """The Kafka cluster answers again after an outage: every partition waiting for an input that
        is behind waits afresh, as fetching starts over (a consumer rejoining its group, refetching
        positions) and the input may be behind only because of the outage."""
        for part in self._parts.values():
            if part.blocked_since is not None and not part.forcing:
                part.blocked_since = now

    # -- output --------------------------------------------------------------------------

    def release(self, caught_up: Callable[[str, int], bool], now: float, wall: float) -> Release:
        """Everything that may go, oldest first per partition. `caught_up(topic, partition)`: nothing
        of it is waiting at the broker; `now` monotonic seconds; `wall` the wall clock."""
        out = Release([], 0.0, {}, {})
        forwarding = wall < self.forwarding_until
        for p, part in self._parts.items():
            while part.held:
                source, head = self._oldest(part)
                why = self._behind(p, part, head, caught_up, forwarding)
                if why:
                    if part.blocked_since is None:
                        part.blocked_since = now
                    if not part.forcing:
                        if now - part.blocked_since < self.max_wait:
                            break
                        out.waited += now - part.blocked_since
                        part.forcing = True
                    out.forced[why] = out.forced.get(why, 0) + 1
                elif part.blocked_since is not None:
                    if not part.forcing:
                        out.waited += now - part.blocked_since
                    part.blocked_since, part.forcing = None, False
                part.queues[source].popleft()
                part.inputs[part.of_input[source]] -= 1
                part.held -= 1
                out.items.append(head.item)
                if head.timestamp < part.released_to - LATE_BY and source != self.ticks:
                    topic = source.split("[", 1)[0]  # a forwarded record's original topic
                    out.late[topic] = out.late.get(topic, 0) + 1
                part.released_to = max(part.released_to, head.timestamp)
        return out

    @staticmethod
    def _oldest(part: _Partition) -> tuple[str, Held]:
        return min(((s, q[0]) for s, q in part.queues.items() if q), key=lambda sh: (sh[1].timestamp, sh[1].occurred, sh[1].rank))

    def _behind(self, p: int, part: _Partition, head: Held, caught_up, forwarding: bool) -> str | None:
        """Why `head` may not go yet: an input of the partition that may still hold older records,
        or (while producers mis-partition) a partition that has not forwarded this far yet."""
        for topic in self.inputs:
            if not part.inputs.get(topic) and not caught_up(topic, p):
                return "input_behind"
        if forwarding:
            # Strictly older than every mark: a source that reports T has read a record stamped T,
            # and more records of that millisecond may follow it (a producer sends many per
            # millisecond), a stop among them.
            marks = self._watermarks.get(p, {})
            if any(marks.get(q, 0.0) <= head.timestamp for q in range(self.partitions) if q != p):
                return "forwarders_behind"
        return None

    # -- state for the agent and its metrics ---------------------------------------------

    @property
    def held(self) -> int:
        return sum(part.held for part in self._parts.values())

    def held_of(self, partition: int, input_topic: str) -> int:
        part = self._parts.get(partition)
        return part.inputs.get(input_topic, 0) if part else 0

    def held_of_partition(self, partition: int) -> int:
        part = self._parts.get(partition)
        return part.held if part else 0

    def waiting(self) -> list[int]:
        """Partitions holding records (a wake-up is due when nothing else arrives)."""
        return [p for p, part in self._parts.items() if part.held]
