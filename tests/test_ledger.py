"""The ReadLedger: every record handed to faust is checked off when the agent gets it."""
from faust.types import TP

from streams.ledger import Arrival, ReadLedger

A = TP("mar.administration.started", 0)


class Msg:
    def __init__(self, offset):
        self.offset = offset


def _handed(ledger, *offsets, now=0.0):
    msgs = [Msg(o) for o in offsets]
    for m in msgs:
        ledger.handed(A, m, now)
    return msgs


def test_records_arrive_in_the_order_they_were_handed_over():
    ledger = ReadLedger([A.topic])
    m = _handed(ledger, 4, 5, 6)
    assert [ledger.arrived(A, x, 1.0) for x in m] == [Arrival.IN_ORDER] * 3
    assert ledger.expected(A) == 7 and ledger.first_pending(A) is None


def test_a_record_after_a_lost_one_says_where_to_read_again():
    ledger = ReadLedger([A.topic])
    m = _handed(ledger, 4, 5, 6)
    assert ledger.arrived(A, m[0], 1.0) is Arrival.IN_ORDER
    assert ledger.arrived(A, m[2], 1.0) is Arrival.AFTER_LOSS  # 5 was cleared from faust's queue
    assert ledger.first_pending(A) == 5


def test_copies_from_before_a_restart_are_stale():
    ledger = ReadLedger([A.topic])
    old = _handed(ledger, 90, 91)
    ledger.restart(A, 62)
    assert ledger.expected(A) == 62 and ledger.epochs[A] == 1
    assert ledger.arrived(A, old[0], 1.0) is Arrival.STALE


def test_records_on_their_way_below_a_seek_still_count_and_the_rest_are_stale():
    """A seek to where faust's drain stopped (it skipped a paused partition's records) restarted the
    ledger and made the records handed over before it stale on arrival, while the consumer read on
    after them: 3 events of a 200,000-event backlog never processed."""
    ledger = ReadLedger([A.topic])
    m = _handed(ledger, 4, 5, 6)
    ledger.restart(A, 7)  # read on from 7: 4-6 are still on their way
    assert not ledger.caught_up(A, 7)
    assert [ledger.arrived(A, x, 1.0) for x in m] == [Arrival.IN_ORDER] * 3
    assert ledger.caught_up(A, 7)
    m = _handed(ledger, 7, 8, 9)
    ledger.restart(A, 8)  # read again from 8: its copies on their way are stale, 7 still counts
    assert [ledger.arrived(A, x, 1.0) for x in m] == [Arrival.IN_ORDER, Arrival.STALE, Arrival.STALE]


def test_records_lost_at_the_end_are_overdue_once_the_agent_is_idle():
    ledger = ReadLedger([A.topic])
    _handed(ledger, 4, now=10.0)
    assert ledger.overdue(11.0, after=2.0) == []
    assert ledger.overdue(12.5, after=2.0) == [A]


def test_caught_up_when_everything_up_to_the_high_watermark_arrived():
    ledger = ReadLedger([A.topic])
    assert not ledger.caught_up(A, None)  # nothing fetched yet: the end is unknown
    m = _handed(ledger, 4, 5)
    assert not ledger.caught_up(A, 6)  # handed over, still on its way
    for x in m:
        ledger.arrived(A, x, 1.0)
    assert ledger.caught_up(A, 6) and not ledger.caught_up(A, 7)
    assert ledger.wants_position(A, 7)
    ledger.position(A, 7, epoch=None)  # past a transaction marker at 6, learned in the consumer thread
    assert ledger.caught_up(A, 7)
    ledger.position(A, 9, epoch=5)  # learned before a seek: ignored
    assert not ledger.caught_up(A, 9)


def test_a_consumer_position_past_what_the_ledger_expects_is_read_again_once():
    """The takeover stall of 2026-11-29: the ledger expected offset 18, the consumer had moved to the
    end (134) without handing 18-133 over, and nothing more would ever be fetched."""
    ledger = ReadLedger([A.topic])
    ledger.restart(A, 18)
    ledger.position(A, 134, epoch=ledger.epochs[A])  # learned in the consumer thread, no record
    assert ledger.skipped() == [(A, 18)]
    ledger.restart(A, 18)  # the agent reads the partition again from 18 (the patched seek)
    ledger.position(A, 134, epoch=ledger.epochs[A])  # and the position passes 18 again without a record:
    assert ledger.skipped() == []  # those offsets hold none (transaction markers): not again
    assert ledger.caught_up(A, 134)


def test_nothing_is_passed_while_records_are_on_their_way():
    ledger = ReadLedger([A.topic])
    _handed(ledger, 4, 5)
    ledger.position(A, 9, epoch=None)
    assert ledger.skipped() == []


def test_other_topics_pass_through():
    ledger = ReadLedger([A.topic])
    changelog = TP("encounters-changelog", 0)
    assert not ledger.tracks(changelog)
    assert ledger.arrived(changelog, Msg(0), 0.0) is Arrival.IN_ORDER
