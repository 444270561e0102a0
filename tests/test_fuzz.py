"""Fuzzing: thousands of malformed messages mixed into a valid day change nothing valid."""
import json

import orjson

from rules.policy import Policy
from simulator import simulate_events
from streams.config import Topics
from streams.metrics import Metrics
from streams.processor import Message, Processor
from tests.events import net_charges
from tests.fuzz import TYPE_TOPIC, mutants

T = Topics()


def _processor():
    return Processor({}, T, Policy(), 14 * 1440, Metrics(), clock=lambda: 1772463600 + 3 * 86400)


def test_ten_thousand_rejects_are_each_dead_lettered_and_valid_coding_is_exact():
    events = list(simulate_events(encounters=300, seed=5))
    valid = [Message(TYPE_TOPIC[e["type"]], 0, i, e["encounter_id"].encode(), json.dumps(e).encode())
             for i, e in enumerate(events)]
    bad = [Message(t, 0, 10**6 + i, k, v) for i, (t, k, v) in enumerate(mutants(events, 10_000))]
    clean, mixed = _processor(), _processor()
    expected = [orjson.loads(o.value) for m in valid for o in clean.process(m) if o.topic in T.outputs]
    stream = []
    for i, m in enumerate(valid):  # interleave: a reject or two after every valid message
        stream.append(m)
        stream.extend(bad[i * len(bad) // len(valid):(i + 1) * len(bad) // len(valid)])
    got = [orjson.loads(o.value) for m in stream for o in mixed.process(m) if o.topic in T.outputs]
    dead = [r for r in got if r["kind"] == "dead_letter"]
    assert len(dead) == len(bad)
    assert all(r["reason"] and r["category"] and r["source"]["offset"] >= 10**6 for r in dead)
    assert net_charges(got) == net_charges(expected)
    assert [r for r in got if r["kind"] != "dead_letter"] == expected
