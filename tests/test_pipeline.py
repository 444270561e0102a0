"""The pipeline on an in-memory runtime (tests/fake_runtime.py): what it processes, acks, reads again
and holds, through rebalances, lost reads, alignment waits and a delivery that fails. Milliseconds
each; the same behaviour on the real broker is tests/test_stream.py's and tests/test_faults.py's."""
from __future__ import annotations

import asyncio

import pytest

from streams.runtime import TP
from tests.events import discharge, start, stop
from tests.fake_runtime import FakeRuntime, Harness, SendFailed

NOW = 1772463600 + 86400  # the day after tests.events' day: its events are recent


def clock():
    return NOW


def _day(h: Harness):
    """An infusion, its stop and the discharge, each on its own topic, stamped in that order."""
    t = h.topics
    return (h.record(t.started, start("A1", "10:00"), 1_000),
            h.record(t.stopped, stop("A1", "10:45"), 2_000),
            h.record(t.discharged, discharge("11:00"), 3_000))


async def test_records_are_processed_in_time_order_across_topics_and_acked_once_their_outputs_are_sent():
    h = Harness(clock=clock)
    started, stopped, discharged = _day(h)
    # The discharge's topic is read first; the stop is still at the broker: the discharge waits for it.
    await h.run(h.hand_over([started, discharged]))
    assert h.charges() == [] and h.runtime.acked == []  # the start waits too: nothing goes before the stop
    await h.run(h.hand_over([stopped]))
    assert [(c["cpt"], c["units"]) for c in h.charges()] == [("96365", 1)]  # 45 minutes: an infusion, not a push
    assert sorted(h.runtime.acked) == sorted([(started.tp, 0), (stopped.tp, 0), (discharged.tp, 0)])
    assert not h.runtime.tracked  # nothing left that would hold a commit back
    assert any(key == "E1" for key, _, _ in h.runtime.changelog)  # the state went to the changelog first


async def test_records_fetched_before_a_rebalance_are_left_to_be_read_again():
    h = Harness(clock=clock)
    started, stopped, discharged = _day(h)
    await h.run(h.hand_over([started, discharged]))  # the discharge is held, waiting for the stop
    # A rebalance gives the partitions back to this worker in a new generation; a record fetched in
    # the old one reaches the agent after it, handed over since (the read ledger expects it).
    h.pipeline.revoked([TP(t, 0) for t in h.pipeline.inputs])
    h.runtime.generation = 2
    h.assign(0)
    stopped.generation_id = 1
    await h.run(h.hand_over([stopped]))
    assert h.charges() == []  # neither the held discharge nor the stale stop was processed
    assert (stopped.tp, 0) not in h.runtime.acked and (discharged.tp, 0) not in h.runtime.acked
    assert h.pipeline.aligner.held == 0  # dropped: the partition's next owner reads them again


async def test_a_record_lost_between_the_consumer_and_the_agent_makes_the_partition_read_again():
    h = Harness(clock=clock)
    t = h.topics
    first, lost, third = (h.record(t.started, start(f"A{n}", f"10:0{n}"), 1_000 + n) for n in range(3))
    h.hand_over([first, lost, third])
    await h.run([first, third])  # `lost` never reached the agent
    assert h.runtime.seeks == [(TP(t.started, 0), 1)]
    assert (third.tp, 2) not in h.runtime.acked  # it comes again after `lost`, in order
    assert h.metrics.reads_again.labels("lost_in_faust")._value.get() == 1


async def test_a_discharge_waits_for_an_input_behind_at_most_the_longest_wait_then_goes():
    h = Harness(clock=clock, max_wait_ms=50)
    started, stopped, discharged = _day(h)
    await h.run(h.hand_over([started, discharged]))
    assert h.charges() == []
    await asyncio.sleep(0.08)  # the stop's producer is stuck: it never arrives
    await h.run([])
    assert [(c["cpt"], c["incomplete_documentation"]) for c in h.charges()] == [("96374", True)]  # no stop: a push
    assert h.metrics.alignment_forced.labels("input_behind")._value.get() == 2  # the start and the discharge


async def test_a_delivery_that_fails_acks_nothing_and_the_restart_sends_the_same_outputs():
    """The states reached the changelog, the outputs did not: nothing is acked and the agent fails at
    its next batch (the worker exits). After the restart the records are read again: they are
    duplicates of what the recovered state applied, and its outbox goes out with the same ids."""
    h = Harness(clock=clock)
    records = _day(h)
    h.runtime.fail_outputs = True
    await h.run(h.hand_over(list(records)))
    assert h.runtime.changelog and h.runtime.acked == []
    with pytest.raises(SendFailed):
        await h.pipeline.run([])

    restarted = FakeRuntime()
    restarted.store, restarted.highwaters = dict(h.runtime.store), dict(h.runtime.highwaters)
    again = Harness(clock=clock, runtime=restarted)
    again.processor.recovered()  # the table recovered from the changelog
    await again.run(again.hand_over(list(records)))
    clean = Harness(clock=clock)
    await clean.run(clean.hand_over(list(_day(clean))))
    assert [c["charge_id"] for c in again.charges()] == [c["charge_id"] for c in clean.charges()] != []
    assert sorted(again.runtime.acked) == sorted((r.tp, r.offset) for r in records)
