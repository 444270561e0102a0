"""Time-aligned reading: a partition's records go out in timestamp order across its topics."""
from streams.alignment import Aligner, Held

INPUTS = ("stopped", "discharged", "repartition")


def _aligner(max_wait=2.0, partitions=2):
    return Aligner(INPUTS, max_wait, partitions)


def _add(a, topic, ts, name, partition=0, rank=0, occurred=0.0):
    a.add(partition, topic, Held(ts, occurred, rank, name))


def test_released_in_timestamp_order_across_topics_when_every_input_has_data():
    a = _aligner()
    _add(a, "discharged", 10.0, "D", rank=1)
    _add(a, "stopped", 5.0, "S1")
    _add(a, "stopped", 12.0, "S2")
    _add(a, "repartition", 8.0, "F")
    out = a.release(lambda t, p: False, now=0.0, wall=0.0)
    # after F the repartition topic is empty and behind: the discharge waits, it might get a stop
    assert out.items == ["S1", "F"]
    assert a.release(lambda t, p: t != "stopped", now=0.0, wall=0.0).items == ["D", "S2"]


def test_an_empty_input_that_is_caught_up_does_not_hold_the_others():
    a = _aligner()
    _add(a, "discharged", 10.0, "D")
    assert a.release(lambda t, p: True, now=0.0, wall=0.0).items == ["D"]


def test_a_discharge_waits_for_an_input_that_is_behind_but_at_most_max_wait():
    a = _aligner(max_wait=2.0)
    _add(a, "discharged", 10.0, "D")
    behind = lambda t, p: t != "stopped"  # noqa: E731 - its stops are still at the broker
    assert a.release(behind, now=100.0, wall=0.0).items == []
    assert a.release(behind, now=101.0, wall=0.0).items == []
    out = a.release(behind, now=102.5, wall=0.0)
    assert out.items == ["D"] and out.forced == {"input_behind": 1} and out.waited == 2.5


def test_after_an_outage_a_partition_waits_afresh_for_an_input_that_is_behind():
    """Fetching starts over when the cluster answers again (a consumer rejoins its group, refetches
    positions), slowly on a busy machine: the wait spent before it does not carry over."""
    a = _aligner(max_wait=2.0)
    _add(a, "discharged", 10.0, "D")
    behind = lambda t, p: t != "stopped"  # noqa: E731
    assert a.release(behind, now=100.0, wall=0.0).items == []
    a.restart_waits(now=101.5)  # the outage ended 1.5 s into the wait
    assert a.release(behind, now=103.0, wall=0.0).items == []  # 3 s in all, 1.5 s since
    _add(a, "stopped", 9.0, "S")  # fetched: the stop goes before the discharge
    assert a.release(lambda t, p: True, now=103.2, wall=0.0).items == ["S", "D"]


def test_equal_timestamps_go_in_the_order_the_events_occurred_then_documentation_first():
    a = _aligner()
    _add(a, "discharged", 10.0, "D", rank=3, occurred=500.0)
    _add(a, "stopped", 10.0, "S", rank=1, occurred=500.0)
    _add(a, "repartition", 10.0, "S0", rank=1, occurred=100.0)  # a producer batches many in one millisecond
    assert a.release(lambda t, p: True, now=0.0, wall=0.0).items == ["S0", "S", "D"]


def test_while_producers_mis_partition_records_wait_for_every_other_partitions_watermark():
    a = _aligner(partitions=3)
    a.forwarding_until = 1000.0
    _add(a, "discharged", 10.0, "D")
    _add(a, "stopped", 9.0, "S")
    ready = lambda t, p: True  # noqa: E731
    a.watermark(0, source=1, time=9.5, forwarding_until=1000.0)
    a.watermark(0, source=2, time=9.2, forwarding_until=1000.0)
    assert a.release(ready, now=0.0, wall=50.0).items == ["S"]
    a.watermark(0, source=1, time=11.0, forwarding_until=1000.0)
    assert a.release(ready, now=0.1, wall=50.0).items == []  # partition 2 has not forwarded up to 10
    a.watermark(0, source=2, time=10.5, forwarding_until=1000.0)
    assert a.release(ready, now=0.2, wall=50.0).items == ["D"]


def test_a_watermark_releases_only_what_is_older_than_it():
    """A source reporting T has read a record stamped T; others of that millisecond may follow it
    (the mixed-producer backlog test's false overdue alert: a stop forwarded after its watermark)."""
    a = _aligner(partitions=2)
    a.forwarding_until = 1000.0
    _add(a, "started", 10.0, "X", occurred=5.0)  # occurred after the stop below
    a.watermark(0, source=1, time=10.0, forwarding_until=1000.0)
    assert a.release(lambda t, p: True, now=0.0, wall=50.0).items == []
    a.add(0, "stopped[1]", Held(10.0, 1.0, 1, "S"), "repartition")  # the stop of that millisecond
    a.watermark(0, source=1, time=10.001, forwarding_until=1000.0)
    assert a.release(lambda t, p: True, now=0.1, wall=50.0).items == ["S", "X"]


def test_without_forwarding_no_watermark_is_awaited():
    a = _aligner(partitions=3)
    _add(a, "discharged", 10.0, "D")
    assert a.release(lambda t, p: True, now=0.0, wall=50.0).items == ["D"]


def test_revoked_partitions_are_dropped():
    a = _aligner()
    _add(a, "stopped", 1.0, "S", partition=1)
    a.drop({1})
    assert a.held == 0 and a.waiting() == []


def test_a_record_well_older_than_what_its_partition_released_is_counted_late():
    """A producer whose clock is behind the others' sends records the partition has already passed."""
    a = Aligner(INPUTS, 2.0, 2, ticks="ticks")
    _add(a, "stopped", 10.0, "S1")
    assert a.release(lambda t, p: True, now=0.0, wall=50.0).late == {}
    _add(a, "discharged", 9.5, "D")  # within a second: the ordinary race of producers' batching
    _add(a, "ticks", 8.0, "T")  # the worker's own clock: never late
    out = a.release(lambda t, p: True, now=0.1, wall=50.0)
    assert out.items == ["T", "D"] and out.late == {}
    a.add(0, "stopped[1]", Held(8.5, 0.0, 1, "S0"), "repartition")  # forwarded: its original topic
    out = a.release(lambda t, p: True, now=0.2, wall=50.0)
    assert out.items == ["S0"] and out.late == {"stopped": 1}
