"""The stream processor against the real embedded broker: same results as the batch command."""
import asyncio
import io
import json

import orjson
import pytest

from simulator import simulate
from cli.batch import run_batch
from streams.config import Topics
from streams.feed import SimClock, occurred
from tests.events import cancel, discharge, net_charges, standing_alerts, start, stop, void
from tests.stream_harness import Worker, unique_settings


def NEXT_DAY():
    """A stopped clock the day after the test events (2026-03-02), for tests that are not about time."""
    return 1772463600 + 86400


def _batch(lines):
    out = io.BytesIO()
    run_batch(lines, out)
    return [orjson.loads(l) for l in out.getvalue().splitlines()]


def _lines(events):
    return [json.dumps(e).encode() for e in events]


def _discharges(lines):
    return sum(1 for line in lines if b'"encounter.discharged"' in line)


async def test_simulated_day_streams_to_the_same_charges_and_alerts_as_batch(broker):
    lines = [l.encode() for l in simulate(encounters=150, seed=11, bad_line_rate=0.01)]
    clock = SimClock(min(t for l in lines if (t := occurred(l))) - 60, speed=20000)
    expected = _batch(lines)
    async with Worker(unique_settings(broker.bootstrap), clock) as w:
        clock.start()
        await w.send(lines, clock)
        got = await w.collect(lambda r: len([x for x in r if x["kind"] == "dead_letter"]) >=
                              len([x for x in expected if x["kind"] == "dead_letter"]))
    assert net_charges(got) == net_charges(expected)
    # Topics have no order between them, so the stream may raise and resolve alerts a file replay
    # never raises (a discharge read before its stops); what still stands at the end must agree.
    assert standing_alerts(got) == standing_alerts(expected)
    dead = sorted(r["category"] for r in got if r["kind"] == "dead_letter")
    assert dead == sorted(r["category"] for r in expected if r["kind"] == "dead_letter")


async def test_out_of_order_duplicates_late_documentation_and_reopen(broker):
    events = [
        stop("A1", "10:45"), discharge("11:00"), start("A1", "10:00"),  # stop and discharge first
        start("P", "10:05", drug="ondansetron", method="push"),
        start("X", "14:00", enc="E2"), discharge("15:00", enc="E2"),  # no stop yet: coded as push
        stop("X", "14:50", enc="E2"),  # late documentation after discharge
        start("V", "09:00", enc="E3"), stop("V", "09:40", enc="E3"), discharge("10:00", enc="E3"),
        void("V", "10:30", enc="E3"),  # entered in error after discharge
        start("R", "08:00", enc="E4"), stop("R", "08:50", enc="E4"), discharge("09:00", enc="E4"),
        cancel("09:10", enc="E4"), start("S", "09:20", enc="E4", drug="famotidine", method="push"),
        discharge("09:40", enc="E4"),
    ]
    lines = _lines(events)
    lines += lines[:3]  # at-least-once producers resend
    expected = _batch(lines)
    async with Worker(unique_settings(broker.bootstrap), clock=NEXT_DAY) as w:
        await w.send(lines)
        got = await w.collect(lambda r: net_charges(r) == net_charges(expected), timeout=40)
    assert {(c[0], c[4]) for c in net_charges(got)} == {
        ("96365", ("A1",)), ("96375", ("P",)), ("96365", ("X",)), ("96365", ("R",)), ("96375", ("S",))}
    assert standing_alerts(got) == standing_alerts(expected) == set()  # the late stop resolved any missing-stop alert
    assert not [r for r in got if r["kind"] == "charge" and r["encounter_id"] == "E4" and r["action"] == "reverse"]


async def test_dead_letters_keep_source_position_and_do_not_disturb_valid_data(broker):
    good = _lines([start("A1", "10:00"), stop("A1", "10:45"), discharge("11:00")])
    bad = [b"{truncated", json.dumps({**start("B", "10:00"), "occurred_at": "2026-03-02T10:00:00"}).encode()]
    async with Worker(unique_settings(broker.bootstrap), clock=NEXT_DAY) as w:
        await w.send([good[0], bad[0], good[1], bad[1], good[2]])
        got = await w.collect(lambda r: len(r) >= 3)
    dead = [r for r in got if r["kind"] == "dead_letter"]
    assert sorted(r["category"] for r in dead) == ["invalid_json", "timestamp"]
    assert all(set(r["source"]) == {"topic", "partition", "offset"} for r in dead)
    assert [c[0] for c in net_charges(got)] == ["96365"]


async def test_overdue_alert_fires_by_wall_clock_and_resolves_on_stop(broker):
    import time

    from rules.policy import Policy
    from streams import config

    settings = unique_settings(broker.bootstrap)
    now = time.time()
    begin = {**start("A1", "10:00", ordered_duration_minutes=1),
             "occurred_at": _stamp(now - 60)}  # ordered 1 min + grace 0: due right away
    policy_file = _policy_file("overdue_grace_minutes = 0\n")
    settings = config.Settings(**{**settings.__dict__, "policy_file": policy_file})
    async with Worker(settings) as w:
        await w.send(_lines([begin]))
        raised = await w.collect(lambda r: any(x["kind"] == "alert" for x in r), timeout=30, quiet=0.5)
        assert [(r["code"], r["state"]) for r in raised] == [("STOP_TIME_OVERDUE", "raised")]
        await w.send(_lines([{**stop("A1", "10:00"), "occurred_at": _stamp(time.time())}]))
        got = await w.collect(lambda r: len(r) >= 2, timeout=30, quiet=0.5)
    assert [(r["code"], r["state"]) for r in got] == [("STOP_TIME_OVERDUE", "raised"), ("STOP_TIME_OVERDUE", "resolved")]
    assert Policy  # the policy file above is read through the same loader as the CLI's


def _stamp(epoch: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="seconds")


def _policy_file(text: str) -> str:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(text)
        return f.name


async def test_metrics_endpoint_exposes_the_named_metrics_after_a_run(broker):
    import urllib.request

    from streams.broker import free_port

    events = [start("A1", "10:00"), stop("A1", "10:45"), start("B", "10:00", enc="E2"), discharge("11:00")]
    documentation = _lines(events[:3])
    lines = _lines(events[3:]) + _lines(events[:1]) + [b"not json"]
    settings = unique_settings(broker.bootstrap, metrics_port=free_port())
    async with Worker(settings, clock=NEXT_DAY) as w:
        server = w.metrics.serve(settings.metrics_port, "127.0.0.1")
        try:
            await w.send(documentation)
            await asyncio.sleep(3)  # topics have no order: the discharge must come after its stop
            await w.send(lines)
            await w.collect(lambda r: len(r) >= 2)
            text = urllib.request.urlopen(f"http://127.0.0.1:{settings.metrics_port}/metrics").read().decode()
        finally:
            server.shutdown()
    wanted = {
        f'iv_events_consumed_total{{topic="{settings.topics.started}",type="administration.started"}} 3.0',
        'iv_charges_total{action="post",cpt="96365"} 1.0',
        'iv_dead_letters_total{reason="invalid_json"} 1.0',
        "iv_duplicate_events_total 1.0",
        "iv_open_encounters 1.0",
        "iv_open_administrations 1.0",
        "iv_discharge_to_charge_seconds_count 1.0",
    }
    assert wanted <= set(text.splitlines()), text
    assert "faust_rebalance_done_latency_count" in text  # faust's own sensors too (streams/metrics.py)
    assert "E1" not in text and "E2" not in text  # no encounter ids in labels


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
async def test_state_survives_a_worker_restart(broker, store):
    """memory:// recovers from the changelog (with the Tansu end-offset fix), rocksdb:// from disk."""
    settings = unique_settings(broker.bootstrap, store=store)
    async with Worker(settings, clock=NEXT_DAY) as w:
        await w.send(_lines([start("A1", "10:00"), stop("A1", "10:45")]))
        await asyncio.sleep(3)  # no output before discharge: give the worker time to apply both
    async with Worker(settings, clock=NEXT_DAY) as w:
        await w.send(_lines([discharge("11:00")]))
        got = await w.collect(lambda r: any(x["kind"] == "charge" for x in r))
    assert [c[0] for c in net_charges(got)] == ["96365"]


async def test_ten_thousand_malformed_messages_in_live_traffic(broker):
    """Each reject is dead-lettered with a reason; the agent never crashes; valid coding is exact."""
    from aiokafka import AIOKafkaProducer

    from simulator import simulate_events
    from tests.fuzz import mutants

    events = list(simulate_events(encounters=150, seed=13))
    lines = [orjson.dumps(e) for e in events]
    bad = mutants(events, 10_000, seed=2)
    expected = _batch(lines)
    settings = unique_settings(broker.bootstrap)
    topic_of = {getattr(Topics(), f): getattr(settings.topics, f) for f in Topics.__dataclass_fields__}
    async with Worker(settings, clock=NEXT_DAY) as w:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20, max_request_size=2**21)
        await producer.start()
        try:
            step = len(bad) // len(lines) + 1
            for i, line in enumerate(lines):
                await w.send([line])
                for topic, key, value in bad[i * step:(i + 1) * step]:
                    await producer.send(topic_of[topic], value, key=key)
            await producer.flush()
        finally:
            await producer.stop()
        got = await w.collect(lambda r: sum(1 for x in r if x["kind"] == "dead_letter") >= len(bad), timeout=180)
        crashed = w.app.crashed
    dead = [r for r in got if r["kind"] == "dead_letter"]
    assert len(dead) == len(bad) and all(r["reason"] for r in dead)
    assert net_charges(got) == net_charges(expected)
    assert standing_alerts(got) == standing_alerts(expected)
    assert not crashed


async def test_topics_created_with_any_partition_count_and_mismatch_explained(broker):
    import dataclasses

    from streams.config import ConfigError
    from streams.topics import create_topics

    settings = dataclasses.replace(unique_settings(broker.bootstrap), partitions=8)
    assert len(await create_topics(settings, log=lambda _: None)) == len(settings.topics.all)
    assert await create_topics(settings, log=lambda _: None) == []
    with pytest.raises(ConfigError, match="another partition count than IV_PARTITIONS=4"):
        await create_topics(dataclasses.replace(settings, partitions=4), log=lambda _: None)


async def test_an_agent_loop_that_fails_crashes_the_app_instead_of_stalling(broker):
    """A failed batch (e.g. a produce that never succeeds) must not leave a worker running that
    processes nothing: the app crashes, `worker` exits 1 and a new start reads the batch again."""
    async with Worker(unique_settings(broker.bootstrap), clock=NEXT_DAY) as w:
        async def fail(records):
            raise RuntimeError("delivery failed")

        w.app.pipeline.run = fail
        await w.send(_lines([start("A1", "10:00")]))
        for _ in range(300):
            if w.app.crashed:
                break
            await asyncio.sleep(0.1)
        assert w.app.crashed and isinstance(w.app.crash_reason, RuntimeError)


async def test_faust_knows_the_agent_takes_records_so_it_does_not_report_a_stalled_stream(broker):
    """faust's consumer thread logs an ERROR ("Stream has not started processing", after 5 minutes)
    for partitions no faust stream took events from; the agent loop takes them from the inbox, so it
    tells faust's monitor when (the demo logged it for every idle partition until this)."""
    lines = _lines([start("A1", "10:00"), stop("A1", "10:45"), discharge("11:00")])
    async with Worker(unique_settings(broker.bootstrap), NEXT_DAY) as w:
        await w.send(lines)
        await w.collect(lambda r: any(x["kind"] == "charge" for x in r))
        inbound = w.app.monitor.stream_inbound_time
        topics = w.settings.topics
        assert {tp.topic for tp in inbound} >= {topics.started, topics.stopped, topics.discharged}
        assert all(0 <= asyncio.get_running_loop().time() - t < 60 for t in inbound.values())


async def test_a_timer_send_refused_while_the_worker_stops_is_dropped_not_a_crash():
    from faust.exceptions import NotReady

    from streams.faust_runtime.app import send_unless_stopping

    class Stub:
        should_stop = True

        async def send(self, outputs):
            raise NotReady("Producer service not yet started")

    stub = Stub()
    await send_unless_stopping(stub, stub, [])  # stopping: dropped (the ticks come again after a restart)
    stub.should_stop = False
    with pytest.raises(NotReady):  # running: a real failure, the app must crash
        await send_unless_stopping(stub, stub, [])


async def test_the_coding_rules_worked_examples_stream_to_what_code_gives(broker):
    """Every worked example of docs/coding-rules.md §8 (same drug by substance, pushes at one instant,
    the take-home chemotherapy pump, overdue charted behind its visit's clock among them), each its own
    encounter, through the real worker: the same standing charges and alerts as `code`."""
    from tests.test_coding_rules_doc import EXAMPLES, _events

    events = [e for name in EXAMPLES for e in _events(EXAMPLES[name], enc=f"DOC-{name}")]
    expected = _batch(_lines(events))
    assert {name for name in ("28", "29", "30", "31", "32")} <= set(EXAMPLES)
    async with Worker(unique_settings(broker.bootstrap), NEXT_DAY) as w:
        await w.send(_lines(events))
        got = await w.collect(lambda r: net_charges(r) == net_charges(expected)
                              and standing_alerts(r) == standing_alerts(expected))
    assert net_charges(got) == net_charges(expected) and standing_alerts(got) == standing_alerts(expected)
