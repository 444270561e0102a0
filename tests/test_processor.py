"""The stream glue without a broker: routing, dead letters, ticks, gauges."""
import json

import orjson

from rules.policy import Policy
from streams.config import Topics
from streams.metrics import Metrics
from streams.processor import MARK, Message, Processor
from tests.events import discharge, start, stop

T = Topics()
TOPIC_OF = {"administration.started": T.started, "administration.stopped": T.stopped,
            "encounter.discharged": T.discharged}


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def _processor(clock=None, policy=Policy()):
    return Processor({}, T, policy, 14 * 1440, Metrics(), clock=clock or Clock(1772463600 + 86400))


def _msg(event, offset=0, key=None, topic=None):
    return Message(topic or TOPIC_OF[event["type"]], 0, offset,
                   (key if key is not None else event["encounter_id"]).encode(), json.dumps(event).encode())


def _records(outputs):
    return [(o.topic, orjson.loads(o.value)) for o in outputs]


def test_routes_charges_to_the_charge_topic_keyed_by_encounter_and_as_fhir_chargeitems():
    p = _processor()
    outs = [o for e in [start("A1", "10:00"), stop("A1", "10:45"), discharge("11:00")] for o in p.process(_msg(e))]
    assert [(o.topic, o.key) for o in outs] == [(T.charges, b"E1"), (T.chargeitems, b"E1")]
    charge, item = (json.loads(o.value) for o in outs)
    assert (item["resourceType"], item["id"], item["status"]) == ("ChargeItem", charge["charge_id"], "billable")
    assert item["code"]["coding"][0]["code"] == charge["cpt"]
    assert orjson.loads(outs[0].value)["cpt"] == "96365"


def test_dead_letters_name_topic_partition_offset_and_reason():
    p = _processor()
    bad = [
        Message(T.started, 3, 17, b"E1", b"{oops"),
        _msg(start("A1", "10:00"), key="E2"),
        _msg(stop("A1", "10:45"), topic=T.started),
        Message(T.started, 0, 5, b"E1", b"x" * 300_000),
    ]
    records = [r for m in bad for _, r in _records(p.process(m))]
    assert [r["category"] for r in records] == ["invalid_json", "key_mismatch", "wrong_topic", "oversize"]
    assert records[0]["source"] == {"topic": T.started, "partition": 3, "offset": 17}
    assert "key every message by its encounter_id" in records[1]["reason"]
    assert p.metrics.dead_letters.labels("key_mismatch")._value.get() == 1


def test_timer_ticks_raise_overdue_by_wall_clock_and_the_stop_resolves_it():
    clock = Clock(0)
    p = _processor(clock, Policy(overdue_grace_minutes=0))
    begin = start("A1", "10:00", ordered_duration_minutes=30)
    clock.now = 1772463600  # 2026-03-02 10:00 -05:00
    assert p.process(_msg(begin)) == []
    clock.now += 30 * 60
    assert p.due_ticks() == []
    clock.now += 1
    ticks = p.due_ticks()
    assert [(t.topic, t.key) for t in ticks] == [(T.ticks, b"E1")]
    raised = _records(p.process(Message(T.ticks, 0, 0, ticks[0].key, ticks[0].value)))
    assert [(t, r["code"], r["state"]) for t, r in raised] == [(T.alerts, "STOP_TIME_OVERDUE", "raised")]
    resolved = _records(p.process(_msg(stop("A1", "10:40"), offset=1)))
    assert [(r["code"], r["state"]) for _, r in resolved] == [("STOP_TIME_OVERDUE", "resolved")]


def test_gauges_count_open_encounters_and_running_administrations():
    p = _processor()
    for e in [start("A1", "10:00"), start("A2", "10:05"), start("B", "10:00", enc="E2")]:
        p.process(_msg(e))
    assert (p.book.open_count, p.book.open_administrations) == (2, 3)
    p.process(_msg(stop("A1", "10:45")))
    p.process(_msg(discharge("11:00", enc="E2")))
    assert (p.book.open_count, p.book.open_administrations) == (1, 1)


def test_state_is_kept_as_json_in_the_table_and_rebuilt_after_assignment():
    table = {}
    p = Processor(table, T, Policy(), 14 * 1440, Metrics(), clock=Clock(1772463600))
    p.process(_msg(start("A1", "10:00", ordered_duration_minutes=30)))
    assert table == {}  # written back only when the agent says its outputs are delivered
    p.flush()
    assert json.loads(table["E1"])["encounter_id"] == "E1"
    fresh = Processor(table, T, Policy(), 14 * 1440, Metrics(), clock=Clock(1772463600 + 3601))
    fresh.needs_rebuild = True
    fresh.recovered()
    assert [t.key for t in fresh.due_ticks()] == [b"E1"]
    assert fresh.book.open_count == 1


def test_forwarding_mode_is_kept_in_the_table_beside_the_encounters():
    """A partition's next owner reads back that producers mis-partition (streams/pipeline.py)."""
    table = {}
    p = Processor(table, T, Policy(), 14 * 1440, Metrics(), clock=Clock(1772463600))
    p.process(_msg(start("A1", "10:00", ordered_duration_minutes=30)))
    p.flush()
    p.states.remember_forwarding(0, 1772464200.5)
    p.states.remember_forwarding(1, 1772463900.0)
    assert list(p.states) == ["E1"]  # not an encounter
    fresh = Processor(table, T, Policy(), 14 * 1440, Metrics(), clock=Clock(1772463600))
    assert fresh.states.forwarding_until == 0.0
    fresh.needs_rebuild = True
    fresh.recovered()
    assert fresh.states.forwarding_until == 1772464200.5
    assert fresh.book.open_count == 1


def test_replay_after_a_crash_resends_the_same_outputs_or_nothing():
    """What kill -9 can leave: state not yet written (replay re-sends identical outputs, same ids)
    or written (replay finds every event seen and sends nothing). Never a different output."""
    events = [start("A1", "10:00"), stop("A1", "10:45"), discharge("11:00")]
    table = {}
    first = Processor(table, T, Policy(), 14 * 1440, Metrics(), clock=Clock(1772463600 + 86400))
    sent = [o for e in events for o in first.process(_msg(e))]
    crashed = Processor(table, T, Policy(), 14 * 1440, Metrics(), clock=Clock(1772463600 + 86400))
    assert [o for e in events for o in crashed.process(_msg(e))] == sent  # nothing flushed: same again
    first.flush()
    after = Processor(table, T, Policy(), 14 * 1440, Metrics(), clock=Clock(1772463600 + 86400))
    assert [o for e in events for o in after.process(_msg(e))] == []


def test_an_internal_error_is_dead_lettered_and_the_next_message_still_processed(monkeypatch):
    p = _processor()
    monkeypatch.setattr(p.book, "handle", lambda *a, **k: 1 / 0)
    out = _records(p.process(_msg(start("A1", "10:00"))))
    assert [(t, r["category"]) for t, r in out] == [(T.dead_letters, "internal_error")]
    monkeypatch.undo()
    assert p.process(_msg(start("A2", "10:00"))) == []


def test_outbox_written_but_not_delivered_is_sent_again_after_a_restart():
    events = [start("A1", "10:00"), stop("A1", "10:45"), discharge("11:00")]
    table = {}
    first = Processor(table, T, Policy(), 14 * 1440, Metrics(), clock=Clock(1772463600 + 86400))
    sent = [o for e in events for o in first.process(_msg(e))]
    first.flush()  # state and outbox durable; crash before the outputs were delivered
    restarted = Processor(table, T, Policy(), 14 * 1440, Metrics(), clock=Clock(1772463600 + 86400))
    restarted.needs_rebuild = True
    again = restarted.process(_msg(start("B", "12:00", enc="E2")))
    assert again == sent  # re-sent with the same ids, riding on the partition's next message
    restarted.delivered(restarted.flush())
    assert all("outbox" not in json.loads(v) for k, v in table.items() if not k.startswith(MARK))
    again = Processor(table, T, Policy(), 14 * 1440, Metrics(), clock=Clock(1772463600 + 86400))
    again.needs_rebuild = True
    assert again.process(_msg(start("C", "12:00", enc="E3"))) == []  # delivered: not sent a third time


def test_a_delivered_batch_moves_its_partitions_mark_instead_of_rewriting_its_states():
    """One mark per partition per batch, not one rewrite per state: the outbox stays in the
    changelog record, covered by the mark; in memory it is dropped unless a later batch rewrote it."""
    table = {}
    p = Processor(table, T, Policy(), 14 * 1440, Metrics(), clock=Clock(1772463600 + 86400))
    for e in [start("A1", "10:00"), stop("A1", "10:45"), discharge("11:00")]:
        p.process(_msg(e))
    first = p.flush()
    written = table["E1"]
    assert json.loads(written)["batch"] == 1 and json.loads(written)["outbox"]
    p.process(_msg(start("B", "12:00", enc="E2")))
    p.process(_msg(discharge("13:00", enc="E2")))
    second = p.flush()  # in flight while the first is delivered
    p.delivered(first)
    assert table[f"{MARK}0"] == b"1" and "outbox" not in json.loads(table["E1"])
    p.delivered(second)
    assert table[f"{MARK}0"] == b"2"


def test_a_later_batch_is_not_undone_by_an_earlier_batch_delivered_after_it():
    table = {}
    p = Processor(table, T, Policy(), 14 * 1440, Metrics(), clock=Clock(1772463600 + 86400))
    for e in [start("A1", "10:00"), stop("A1", "10:45"), discharge("11:00")]:
        p.process(_msg(e))
    first = p.flush()
    assert p.process(_msg(start("A2", "10:50", drug="ondansetron", method="push")))  # late: batch 2 recodes
    second = p.flush()
    newer = table["E1"]
    p.delivered(first)
    assert table["E1"] is newer and json.loads(newer)["batch"] == 2  # still holds batch 2's outbox
    restarted = Processor(table, T, Policy(), 14 * 1440, Metrics(), clock=Clock(1772463600 + 86400))
    restarted.needs_rebuild = True
    resent = restarted.process(_msg(start("C", "12:00", enc="E3")))
    assert resent and all(o.key == b"E1" for o in resent)  # batch 2 was not delivered: sent again
    assert restarted.states._batch[0] == 2  # numbering goes on above what the table holds
    p.delivered(second)
    assert table[f"{MARK}0"] == b"2" and "outbox" not in json.loads(table["E1"])


def test_undelivered_outbox_gets_a_tick_when_its_partition_is_quiet():
    table = {}
    first = Processor(table, T, Policy(), 14 * 1440, Metrics(), clock=Clock(1772463600 + 86400))
    sent = [o for e in [start("A1", "10:00"), stop("A1", "10:45"), discharge("11:00")] for o in first.process(_msg(e))]
    first.flush()
    restarted = Processor(table, T, Policy(), 14 * 1440, Metrics(), clock=Clock(1772463600 + 86400))
    restarted.needs_rebuild = True
    restarted.recovered()
    ticks = restarted.due_ticks()
    assert [t.key for t in ticks] == [b"E1"]
    assert restarted.process(Message(T.ticks, 0, 0, ticks[0].key, ticks[0].value)) == sent


def test_timer_during_recovery_neither_ticks_nor_forgets_the_outboxes():
    """faust's timer runs while the table is still recovering (empty, after a kill -9): a schedule
    built then would drop every deadline and undelivered outbox. It waits for `recovered`."""
    recovered = {}
    first = Processor(recovered, T, Policy(), 14 * 1440, Metrics(), clock=Clock(1772463600 + 86400))
    sent = [o for e in [start("A1", "10:00"), stop("A1", "10:45"), discharge("11:00")] for o in first.process(_msg(e))]
    first.flush()
    table = {}  # the restarted worker's table, before the changelog is read
    restarted = Processor(table, T, Policy(), 14 * 1440, Metrics(), clock=Clock(1772463600 + 86400))
    restarted.needs_rebuild = True  # partitions assigned
    assert restarted.due_ticks() == []
    table.update(recovered)
    restarted.recovered()
    ticks = restarted.due_ticks()
    assert [t.key for t in ticks] == [b"E1"]
    assert restarted.process(Message(T.ticks, 0, 0, ticks[0].key, ticks[0].value)) == sent
