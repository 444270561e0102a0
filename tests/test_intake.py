"""The Intake's handling of the worker's own repartition topic, where only the worker should write."""
import logging

from streams.alignment import Aligner
from streams.config import Topics
from streams.intake import DONE, HOLD, WATERMARK, Intake
from streams.messages import Message
from streams.metrics import Metrics

T = Topics()


def _intake() -> Intake:
    inputs = (*T.inputs, T.repartition, T.ticks)
    return Intake(T, 4, Aligner(inputs, 10.0, 4), Metrics())


def test_a_foreign_record_on_the_repartition_topic_is_skipped_with_an_error_never_raised(caplog):
    """The agent loop crashes the worker on an exception: a record that raised here would make it
    crash at every start (a poison pill). Watermarks and forwards that do not parse are skipped."""
    intake = _intake()
    garbage = [b"not json", b"[]", b'{"from": "x", "time": 1, "forwarding_until": 2}', b"{}", None]
    with caplog.at_level(logging.ERROR, logger="streams.intake"):
        for value in garbage:
            msg = Message(T.repartition, 1, 7, b"E1", value, 1.0, headers=[(WATERMARK, b"1")])
            assert intake.receive(msg, 10.0) == (DONE, None)
        assert intake.receive(Message(T.repartition, 1, 8, b"E1", b"{}", 1.0, headers=[]), 10.0) == (DONE, None)
    assert sum("was skipped" in r.getMessage() for r in caplog.records) == len(garbage) + 1


def test_a_well_formed_watermark_and_forward_are_taken():
    intake = _intake()
    mark = Message(T.repartition, 1, 7, b"", b'{"from": 2, "time": 5.0, "forwarding_until": 9.0}', 1.0,
                   headers=[(WATERMARK, b"1")])
    assert intake.receive(mark, 1.0) == (DONE, None)
    assert intake.aligner.forwarding_until == 9.0
    fwd = Message(T.repartition, 1, 8, b"E1", b"{}", 1.0,
                  headers=[("iv-topic", T.started.encode()), ("iv-partition", b"3"), ("iv-offset", b"42")])
    action, held = intake.receive(fwd, 1.0)
    assert action == HOLD and (held.topic, held.offset, held.source_partition) == (T.started, 42, 3)
