"""Stream processor benchmark (issue 4), against ONE embedded Tansu broker started here.

    python -m benchmarks.stream [--events 100000] [--encounters 12000] [--rate 1000]
                                [--latency-seconds 30] [--open 100000] [--skip d] [--partitions 8]

(a) sustained throughput: N simulated events are produced into the input topics first (routed by
    type, keyed by encounter), then the consumer side is timed on the same topics:
      raw    AIOKafkaConsumer.getmany + AIOKafkaProducer.send (not awaited each) + flush at the end:
             one output per input. (Before issue 14 it added the whole batch's size once per partition
             of the batch, so it stopped after a fraction of the events and overstated its rate.)
      faust  a plain faust passthrough agent in its own app (value_serializer raw)
      worker the real validator (streams.faust_runtime.app.build_app), in-process, done when its Metrics count
             every event consumed (iv_events_consumed_total + non-too_late dead letters)
    Rates are steady-state: from the first record processed to the last (group join excluded);
    the rate including start-up is printed too.
(b) discharge-to-charge latency at --rate events/s offered load: a whole simulated day of about
    rate x latency-seconds events is fed at a constant rate to a fresh in-process worker; for each
    charge output, latency = charge message's broker timestamp - the encounter's discharge message's
    broker timestamp (ms); also the same measured end to end (send call -> received by a consumer),
    and the worker's own iv_discharge_to_charge_seconds histogram.
(c) memory per open encounter: --open encounters, one administration.started each, through
    streams.processor.Processor over a dict table (what the memory:// store holds), measured with
    tracemalloc (Python heap) and RSS; (d) also reports the worker subprocess's RSS growth.
(d) recovery after kill -9: a worker subprocess (`python -m cli.main worker`, IV_* env) loads
    --open open encounters, is SIGKILLed and restarted; the time from the restart to the output
    (charge or alert) of a discharge sent at the restart.

By default the policy disables overdue alerts (the replayed day is two days old, so against the
wall clock every running infusion would be overdue at once: an alert storm that is an artifact of
replaying); --default-policy uses the specification's defaults instead.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import gc
import logging
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from simulator import simulate
from streams.broker import EmbeddedBroker, free_port
from streams.config import Topics, from_env
from streams.feed import route
from streams.metrics import Metrics

NO_OVERDUE = "overdue_grace_minutes = 100000\noverdue_without_order_minutes = 100000\n"
T0 = time.monotonic()
TARGETS = {"rate": 10_000, "ratio": 0.25, "p99_ms": 100, "bytes": 2048, "recovery_s": 30}


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", flush=True)


def quiet_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    for name in ("faust", "mode", "aiokafka", "kafka", "streams"):
        logging.getLogger(name).setLevel(logging.WARNING)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def topics_named(prefix: str, inputs_from: Topics | None = None) -> Topics:
    base = Topics()
    t = Topics(**{f.name: f"{prefix}.{getattr(base, f.name)}" for f in dataclasses.fields(Topics)})
    if inputs_from is not None:
        t = dataclasses.replace(t, **{n: getattr(inputs_from, n) for n in
                                      ("started", "stopped", "voided", "discharged", "discharge_cancelled",
                                       "submitted")})
    return t


async def create(bootstrap: str, names, partitions: int) -> None:
    """Create topics with an explicit partition count. Done before streams.topics.create_topics,
    because on Tansu its describe_topics (a Metadata request) auto-creates a missing topic with the
    broker's default of 4 partitions, which create_topics then rejects as a mismatch."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for n in names:
            try:
                await admin.create_topics([NewTopic(n, partitions, 1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def produce(bootstrap: str, items, label: str) -> tuple[float, list]:
    """Send (topic, key, value) items without awaiting each; returns (seconds, metadata list)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10, max_batch_size=256 * 1024)
    await producer.start()
    t = time.monotonic()
    metas, pending = [], []
    try:
        for i, (topic, key, value) in enumerate(items, 1):
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 5000:
                metas += await asyncio.gather(*pending)
                pending = []
            if i % 25000 == 0:
                say(f"  {label}: produced {i:,}")
        metas += await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    return time.monotonic() - t, metas


def worker_settings(bootstrap: str, app_id: str, topics: Topics, partitions: int, policy_file: str | None,
                    **overrides):
    s = from_env({}, bootstrap_servers=bootstrap, app_id=app_id, partitions=partitions,
                 data_dir=tempfile.mkdtemp(prefix="iv-bench-"), policy_file=policy_file, **overrides)
    return dataclasses.replace(s, topics=topics)


def consumed(metrics: Metrics) -> int:
    n = 0
    for fam in metrics.events.collect():
        n += sum(s.value for s in fam.samples if s.name.endswith("_total"))
    for fam in metrics.dead_letters.collect():
        n += sum(s.value for s in fam.samples if s.name.endswith("_total") and s.labels.get("reason") != "too_late")
    return int(n)


def histogram_quantile(metrics: Metrics, q: float) -> float | None:
    buckets = []
    for fam in metrics.discharge_to_charge.collect():
        for s in fam.samples:
            if s.name.endswith("_bucket"):
                buckets.append((float(s.labels["le"]), s.value))
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    for le, count in buckets:
        if count >= q * total:
            return le
    return None


# -- (a) throughput --------------------------------------------------------------------------

async def bench_raw(bootstrap: str, inputs, out: str, n: int) -> dict:
    consumer = AIOKafkaConsumer(*inputs, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    start = time.monotonic()
    await consumer.start()
    await producer.start()
    count, first = 0, None
    try:
        while count < n:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for msgs in batch.values():
                if first is None and msgs:
                    first = time.monotonic()
                for m in msgs:  # one output per input, keyed as the input (as the worker at least does)
                    await producer.send(out, m.value, key=m.key)
                count += len(msgs)  # this partition's records only (it once summed the whole batch here)
        await producer.flush()  # every output acknowledged by the broker before the clock stops
        end = time.monotonic()
    finally:
        await consumer.stop()
        await producer.stop()
    return {"events": count, "steady": count / (end - first), "total": count / (end - start),
            "seconds": end - first}


async def wait_count(get, n: int, label: str, timeout: float) -> tuple[float | None, float]:
    """Poll get() until it reaches n; returns (monotonic time of first progress, of completion)."""
    first, last_report, deadline = None, time.monotonic(), time.monotonic() + timeout
    while True:
        c = get()
        now = time.monotonic()
        if first is None and c > 0:
            first = now
        if c >= n:
            return first, now
        if now > deadline:
            raise TimeoutError(f"{label}: only {c:,} of {n:,} after {timeout:.0f} s")
        if now - last_report >= 5:
            say(f"  {label}: {c:,} / {n:,}")
            last_report = now
        await asyncio.sleep(0.02)


async def bench_faust(bootstrap: str, inputs, out: str, n: int, partitions: int, transport: str = "kafka") -> dict:
    """A plain faust passthrough; `transport` kafka (aiokafka, the worker's) or confluent (faust's librdkafka driver)."""
    import faust

    from streams.faust_runtime import compat
    compat.apply()
    app = faust.App(f"bench-pass-{int(time.time() * 1000)}", broker=f"{transport}://{bootstrap}",
                    key_serializer="raw", value_serializer="raw", topic_partitions=partitions,
                    consumer_auto_offset_reset="earliest", web_enabled=False, store="memory://",
                    datadir=tempfile.mkdtemp(prefix="iv-bench-pass-"), broker_session_timeout=6.0,
                    broker_heartbeat_interval=1.0, broker_rebalance_timeout=6.0, broker_commit_interval=1.0,
                    producer_linger=0.005)
    source = app.topic(*inputs, key_type=bytes, value_type=bytes)
    sink = app.topic(out, key_type=bytes, value_type=bytes)
    counter = [0]

    @app.agent(source, name="passthrough")
    async def passthrough(stream):
        async for event in stream.events():  # one output per input, keyed as the input
            await sink.send(key=event.key, value=event.value)
            counter[0] += 1

    start = time.monotonic()
    await app.start()
    try:
        first, end = await wait_count(lambda: counter[0], n, "faust passthrough", 600)
        await app.producer.flush()
        end = time.monotonic()
    finally:
        await app.stop()
    return {"events": counter[0], "steady": n / (end - first), "total": n / (end - start), "seconds": end - first}


async def bench_worker(settings, n: int) -> dict:
    from streams.faust_runtime.app import build_app
    from streams.topics import create_topics

    await create(settings.bootstrap_servers, settings.topics.all, settings.partitions)
    await create_topics(settings, log=lambda _: None)
    metrics = Metrics()
    app = build_app(settings, metrics)
    start = time.monotonic()
    await app.start()
    try:
        first, end = await wait_count(lambda: consumed(metrics), n, "validator worker", 1200)
    finally:
        await app.stop()
    outs = {}
    for fam in metrics.charges.collect():
        outs["charges"] = int(sum(s.value for s in fam.samples if s.name.endswith("_total")))
    for fam in metrics.alerts.collect():
        outs["alerts"] = int(sum(s.value for s in fam.samples if s.name.endswith("_total")))
    for fam in metrics.dead_letters.collect():
        outs["dead letters"] = int(sum(s.value for s in fam.samples if s.name.endswith("_total")))
    return {"events": consumed(metrics), "steady": n / (end - first), "total": n / (end - start),
            "seconds": end - first, "outputs": outs}


# -- (b) latency -----------------------------------------------------------------------------

async def bench_latency(bootstrap: str, settings, lines: list[bytes], rate: float) -> dict:
    from streams.faust_runtime.app import build_app
    from streams.topics import create_topics
    from streams.worker import tune_gc_for_worker

    t = settings.topics
    await create(bootstrap, t.all, settings.partitions)
    await create_topics(settings, log=lambda _: None)
    metrics = Metrics()
    app = build_app(settings, metrics)
    await app.start()
    tune_gc_for_worker()  # as `worker` does once started (streams/worker.py)
    # A downstream consumer as the worker reads: Tansu answers a waiting fetch only at its max wait
    # (streams/faust_runtime/compat.py, fix 4), so aiokafka's default 500 ms added up to that to "end to end".
    out = AIOKafkaConsumer(t.charges, t.discharged, bootstrap_servers=bootstrap, group_id=None,
                           auto_offset_reset="earliest", fetch_max_wait_ms=20)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await out.start()
    await producer.start()
    sent_at: dict[bytes, list[float]] = {}  # encounter -> wall times of its discharge send calls
    discharge_ts: dict[bytes, list[int]] = {}  # encounter -> broker timestamps (ms) of its discharges
    broker_lat, e2e_lat = [], []
    measured: set[bytes] = set()
    done_feeding = asyncio.Event()

    async def feeder():
        await asyncio.sleep(8)  # let the worker join its group and recover its (empty) table
        say(f"  feeding {len(lines):,} events at {rate:,.0f}/s")
        begin = time.monotonic()
        for i, line in enumerate(lines):
            due = begin + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            topic, key = route(line, t)
            if topic == t.discharged:
                sent_at.setdefault(key, []).append(time.time())
            await producer.send(topic, line, key=key)
            if (i + 1) % 10000 == 0:
                say(f"  fed {i + 1:,} (behind schedule {max(0.0, time.monotonic() - due) * 1000:.0f} ms)")
        await producer.flush()
        done_feeding.set()

    task = asyncio.create_task(feeder())
    last = time.monotonic()
    waiting: list = []  # (charge record, its message, when read): its discharge not read yet
    try:
        while True:
            batch = await out.getmany(timeout_ms=100)
            now_wall = time.time()
            charges = []
            for tp, msgs in batch.items():
                for m in msgs:
                    last = time.monotonic()
                    if tp.topic == t.discharged:
                        discharge_ts.setdefault(m.key, []).append(m.timestamp)
                    else:
                        charges.append((orjson.loads(m.value), m, now_wall))
            pending, waiting = waiting + charges, []
            for rec, m, read_at in pending:
                key = m.key
                if key in measured or rec.get("action") == "reverse":
                    continue
                before = [d for d in discharge_ts.get(key, []) if d <= m.timestamp]
                if not before:  # its discharge is in a fetch still to come
                    waiting.append((rec, m, read_at))
                    continue
                measured.add(key)
                broker_lat.append(m.timestamp - before[-1])
                sends = sent_at.get(key)
                if sends:
                    e2e_lat.append((read_at - sends[-1]) * 1000)
            if task.done() and time.monotonic() - last > 3:
                break
        task.result()
    finally:
        task.cancel()
        await out.stop()
        await producer.stop()
        await app.stop()
    return {"broker": broker_lat, "e2e": e2e_lat, "discharges": sum(len(v) for v in sent_at.values()),
            "hist_p50": histogram_quantile(metrics, 0.5), "hist_p99": histogram_quantile(metrics, 0.99)}


# -- (c) and (d): open encounters ------------------------------------------------------------

def open_encounter_lines(n: int, template: dict) -> list[tuple[bytes, bytes]]:
    """(key, line) for n encounters with one administration.started each, an hour ago."""
    at = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).replace(microsecond=0).isoformat()
    out = []
    for i in range(n):
        enc = f"ENCBENCH{i:07d}"
        ev = dict(template, event_id=f"bench-ev-{i:07d}", encounter_id=enc, occurred_at=at,
                  administration_id=f"{enc}-MA01")
        if "container_id" in ev:
            ev["container_id"] = f"BAG-B{i:07d}"
        out.append((enc.encode(), orjson.dumps(ev)))
    return out


def rss_bytes(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def bench_memory(events: list[tuple[bytes, bytes]], topics: Topics, policy) -> dict:
    from streams.processor import Message, Processor

    table: dict = {}
    processor = Processor(table, topics, policy, 14 * 1440, Metrics())
    gc.collect()
    rss0 = rss_bytes()
    tracemalloc.start()
    gc.collect()
    heap0 = tracemalloc.get_traced_memory()[0]
    t = time.monotonic()
    for i, (key, value) in enumerate(events):
        processor.process(Message(topics.started, 0, i, key, value, time.time()))
        if i % 500 == 499:
            processor.delivered(processor.flush())
        if (i + 1) % 25000 == 0:
            say(f"  processor: {i + 1:,} open encounters")
    processor.delivered(processor.flush())
    elapsed = time.monotonic() - t
    gc.collect()
    heap1 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    gc.collect()
    rss1 = rss_bytes()
    n = len(events)
    return {"open": processor.book.open_count, "heap_per": (heap1 - heap0) / n, "rss_per": (rss1 - rss0) / n,
            "json_per": sum(len(k) + len(v) for k, v in table.items()) / n, "seconds_traced": elapsed}


def metric_sum(port: int, name: str) -> float | None:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(name + "{") or
               l.startswith(name + " "))


async def bench_recovery(bootstrap: str, partitions: int, events: list[tuple[bytes, bytes]],
                         discharge_template: dict, policy_file: str, log_dir: str, store: str = "memory://") -> dict:
    from streams.topics import create_topics

    prefix = f"rec{int(time.time() * 1000) % 10**8}"
    settings = worker_settings(bootstrap, f"iv-{prefix}", topics_named(prefix), partitions, policy_file,
                               metrics_port=free_port(), store=store)
    await create(bootstrap, settings.topics.all, partitions)
    await create_topics(settings, log=lambda _: None)
    port = settings.metrics_port
    env = {k: v for k, v in os.environ.items() if not k.startswith("IV_")}
    env["IV_GROUP_INSTANCE_ID"] = "bench-worker-0"  # as deployed: the restarted worker keeps its pod's name
    env.update(IV_BOOTSTRAP_SERVERS=bootstrap, IV_APP_ID=settings.app_id, IV_PARTITIONS=str(partitions),
               IV_POLICY_FILE=policy_file, IV_DATA_DIR=settings.data_dir, IV_METRICS_PORT=str(port),
               IV_LOG_LEVEL="warning", IV_STORE=store)  # the restarted worker keeps IV_DATA_DIR
    for name in settings.topics.__dataclass_fields__:
        env[f"IV_TOPIC_{name.upper()}"] = getattr(settings.topics, name)

    logs = []

    def start_worker():
        log = open(Path(log_dir) / f"bench-worker-{len(logs) + 1}.log", "wb")
        logs.append(log.name)
        return subprocess.Popen([sys.executable, "-m", "cli.main", "worker"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)

    worker = start_worker()
    result: dict = {"logs": logs}
    try:
        # warm up: one event through, so the baseline RSS is of a running, assigned worker
        warm = open_encounter_lines(1, orjson.loads(events[0][1]))[0]
        warm_line = orjson.dumps(dict(orjson.loads(warm[1]), encounter_id="ENCWARM", event_id="warm-1",
                                      administration_id="ENCWARM-MA01"))
        await produce(bootstrap, [(settings.topics.started, b"ENCWARM", warm_line)], "warm-up")
        deadline = time.monotonic() + 120
        while (metric_sum(port, "iv_events_consumed_total") or 0) < 1:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"worker did not process the warm-up event; see {logs[-1]}")
            await asyncio.sleep(0.2)
        rss0 = rss_bytes(worker.pid)
        n = len(events)
        say(f"  loading {n:,} open encounters into the worker subprocess (pid {worker.pid})")
        t = time.monotonic()
        await produce(bootstrap, [(settings.topics.started, k, v) for k, v in events], "open encounters")
        first, end = await wait_count(lambda: (metric_sum(port, "iv_events_consumed_total") or 0) - 1, n,
                                      "worker subprocess", 1200)
        result["load_rate"] = n / (end - t)
        await asyncio.sleep(3)  # offsets commit every second; changelog writes were awaited per batch
        result["rss_per"] = (rss_bytes(worker.pid) - rss0) / n

        target = events[n // 2][0]
        at = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)).replace(microsecond=0).isoformat()
        discharge = orjson.dumps(dict(discharge_template, event_id="bench-discharge", encounter_id=target.decode(),
                                      occurred_at=at))
        out = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        await out.start()
        tps = [TopicPartition(tp, p) for tp in settings.topics.outputs for p in range(partitions)]
        out.assign(tps)
        await out.seek_to_end(*tps)
        for tp in tps:
            await out.position(tp)
        say("  SIGKILL the worker; restarting it and sending a discharge")
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        t0 = time.monotonic()
        worker = start_worker()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        await producer.send_and_wait(settings.topics.discharged, discharge, key=target)
        await producer.stop()
        metrics_up, got = None, None
        deadline = t0 + 600
        try:
            while got is None and time.monotonic() < deadline:
                batch = await out.getmany(timeout_ms=100)
                for msgs in batch.values():
                    for m in msgs:
                        if m.key == target and got is None:
                            got = time.monotonic()
                            result["first_output"] = orjson.loads(m.value).get("kind")
                if metrics_up is None and metric_sum(port, "iv_events_consumed_total") is not None:
                    metrics_up = time.monotonic() - t0
                if worker.poll() is not None:
                    raise RuntimeError(f"restarted worker exited with {worker.returncode}; see {logs[-1]}")
        finally:
            await out.stop()
        result["metrics_up"] = metrics_up
        result["recovery"] = None if got is None else got - t0
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    return result


# -- main ------------------------------------------------------------------------------------

async def run(args) -> None:
    from rules.policy import load_policy

    skip = set(args.skip.replace(",", " ").split()) if args.skip else set()
    tmp = tempfile.mkdtemp(prefix="iv-bench-stream-")
    policy_file = None
    if not args.default_policy:
        policy_file = str(Path(tmp) / "policy.toml")
        Path(policy_file).write_text(NO_OVERDUE)
    day = dt.date.today() - dt.timedelta(days=2)
    results: dict = {}

    t = time.monotonic()
    lines = [l.encode() for l in simulate(encounters=args.encounters, seed=7, day=day)][:args.events]
    say(f"simulated {args.encounters:,} encounters ({day}): using {len(lines):,} events "
        f"({time.monotonic() - t:.1f} s, not timed)")
    started_tpl = next(orjson.loads(l) for l in lines if b'"administration.started"' in l and b'"infusion"' in l)
    discharge_tpl = next(orjson.loads(l) for l in lines if b'"encounter.discharged"' in l)

    broker = EmbeddedBroker(log_dir=tmp)
    say(f"embedded broker up in {broker.start():.1f} s at {broker.bootstrap}")
    try:
        bootstrap = broker.bootstrap
        if "a" not in skip:
            prefix = f"thr{int(time.time() * 1000) % 10**8}"
            inputs = topics_named(prefix)
            await create(bootstrap, inputs.inputs + (f"{prefix}.raw-out", f"{prefix}.faust-out"), args.partitions)
            secs, _ = await produce(bootstrap, [(*route(l, inputs), l) for l in lines], "pre-produce")
            say(f"(a) pre-produced {len(lines):,} events in {secs:.1f} s ({len(lines) / secs:,.0f}/s)")
            n = len(lines)
            a = results["a"] = {}
            if "raw" not in skip:
                say("(a) raw aiokafka passthrough ...")
                a["raw"] = await bench_raw(bootstrap, inputs.inputs, f"{prefix}.raw-out", n)
                say(f"    raw: {a['raw']['steady']:,.0f} events/s")
            if "faust" not in skip:
                say(f"(a) plain faust passthrough agent ({args.faust_transport}://) ...")
                a["faust"] = await asyncio.wait_for(bench_faust(bootstrap, inputs.inputs, f"{prefix}.faust-out", n,
                                                                args.partitions, args.faust_transport), 600)
                say(f"    faust: {a['faust']['steady']:,.0f} events/s")
            if "worker" not in skip:
                say("(a) validator worker (build_app, in-process) ...")
                ws = worker_settings(bootstrap, f"iv-{prefix}", topics_named(prefix + "w", inputs), args.partitions,
                                     policy_file)
                a["worker"] = await bench_worker(ws, n)
                say(f"    worker: {a['worker']['steady']:,.0f} events/s; outputs {a['worker']['outputs']}")
        if "b" not in skip:
            n_b = int(args.rate * args.latency_seconds)
            per_enc = len(lines) / max(1, len({route(l, Topics())[1] for l in lines}))
            enc_b = max(10, int(n_b / per_enc))
            lines_b = [l.encode() for l in simulate(encounters=enc_b, seed=11, day=day)][:n_b]
            say(f"(b) latency: a simulated day of {enc_b:,} encounters, {len(lines_b):,} events at "
                f"{args.rate:,.0f} events/s to a fresh in-process worker ...")
            prefix = f"lat{int(time.time() * 1000) % 10**8}"
            ls = worker_settings(bootstrap, f"iv-{prefix}", topics_named(prefix), args.partitions, policy_file)
            results["b"] = await bench_latency(bootstrap, ls, lines_b, args.rate)
            b = results["b"]
            if b["broker"]:
                say(f"    {len(b['broker']):,} discharges with charges: p50 {pct(b['broker'], .5):.0f} ms, "
                    f"p99 {pct(b['broker'], .99):.0f} ms")
        if "c" not in skip:
            say(f"(c) memory: {args.open:,} open encounters through streams.processor.Processor (dict table) ...")
            events = open_encounter_lines(args.open, started_tpl)
            results["c"] = bench_memory(events, Topics(), load_policy(policy_file))
            say(f"    {results['c']['heap_per']:,.0f} bytes per open encounter (tracemalloc)")
        if "d" not in skip:
            say(f"(d) recovery after kill -9 with {args.open:,} open encounters (worker subprocess) ...")
            events = open_encounter_lines(args.open, started_tpl)
            pf = policy_file or str(Path(tmp) / "default.toml")
            if not Path(pf).exists():
                Path(pf).write_text("")
            results["d"] = await bench_recovery(bootstrap, args.partitions, events, discharge_tpl, pf, tmp)
            say(f"    recovery: {results['d'].get('recovery')}")
    finally:
        broker.stop()
    report(args, results, len(lines))


def report(args, r: dict, n: int) -> None:
    print()
    print(f"== Stream processor benchmark: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, one embedded Tansu broker, {args.partitions} partitions, "
          f"policy: {'spec defaults' if args.default_policy else 'overdue alerts off'}")
    if "a" in r:
        a = r["a"]
        raw = a.get("raw", {}).get("steady")
        print(f"(a) throughput, {n:,} pre-produced events (steady state = first to last record; "
              "incl. start-up in brackets)")
        print(f"    {'consumer':<28}{'events/s':>12}{'(incl. start)':>16}{'x raw':>9}{'seconds':>10}")
        for name, label in (("raw", "raw aiokafka passthrough"), ("faust", "plain faust passthrough"),
                            ("worker", "validator worker")):
            if name in a:
                x = a[name]
                ratio = f"{x['steady'] / raw:.2f}" if raw else "-"
                print(f"    {label:<28}{x['steady']:>12,.0f}{x['total']:>16,.0f}{ratio:>9}{x['seconds']:>10.1f}")
        if "worker" in a:
            w = a["worker"]["steady"]
            ok = w >= TARGETS["rate"] and (not raw or w / raw >= TARGETS["ratio"])
            print(f"    target >= 10,000 events/s and >= 0.25 x raw: {'met' if ok else 'MISSED'}")
    if "b" in r:
        b = r["b"]
        print(f"(b) discharge-to-charge latency at {args.rate:,.0f} events/s offered "
              f"({b['discharges']:,} discharges, {len(b['broker']):,} with a charge measured)")
        if b["broker"]:
            p99 = pct(b["broker"], .99)
            print(f"    broker timestamps (charge - discharge): p50 {pct(b['broker'], .5):.0f} ms, p99 {p99:.0f} ms, "
                  f"max {max(b['broker']):.0f} ms")
            print(f"    end to end (send call -> consumer):      p50 {pct(b['e2e'], .5):.0f} ms, "
                  f"p99 {pct(b['e2e'], .99):.0f} ms")
            h50, h99 = b["hist_p50"], b["hist_p99"]
            print(f"    worker histogram iv_discharge_to_charge_seconds: p50 <= {h50 and h50 * 1000:.0f} ms, "
                  f"p99 <= {h99 and h99 * 1000:.0f} ms (bucket bounds)")
            print(f"    target p99 <= 100 ms: {'met' if p99 <= TARGETS['p99_ms'] else 'MISSED'}")
    if "c" in r:
        c = r["c"]
        print(f"(c) memory per open encounter, {c['open']:,} open (one administration.started each), "
              "Processor over a dict table (= the memory:// store's contents):")
        print(f"    tracemalloc {c['heap_per']:,.0f} B/encounter, RSS {c['rss_per']:,.0f} B/encounter, "
              f"of which the stored JSON key+value {c['json_per']:,.0f} B")
        if "d" in r and r["d"].get("rss_per"):
            print(f"    worker subprocess RSS growth loading them: {r['d']['rss_per']:,.0f} B/encounter")
        print(f"    target <= 2 KB: {'met' if c['heap_per'] <= TARGETS['bytes'] else 'MISSED'} (tracemalloc)")
    if "d" in r:
        d = r["d"]
        print(f"(d) recovery after kill -9, {args.open:,} open encounters (worker loaded them at "
              f"{d.get('load_rate', 0):,.0f} events/s):")
        rec = d.get("recovery")
        print(f"    restart -> output of a new discharge ({d.get('first_output')}): "
              f"{'not seen within 600 s' if rec is None else f'{rec:.1f} s'}; /metrics up after "
              f"{d.get('metrics_up') or 0:.1f} s")
        print(f"    target <= 30 s: {'met' if rec is not None and rec <= TARGETS['recovery_s'] else 'MISSED'}")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=100_000, help="events for (a) (default 100,000)")
    p.add_argument("--encounters", type=int, default=12_000, help="encounters simulated for (a) (default 12,000)")
    p.add_argument("--rate", type=float, default=1000, help="offered load of (b), events/s (default 1,000)")
    p.add_argument("--latency-seconds", type=float, default=30, help="length of (b)'s paced feed (default 30)")
    p.add_argument("--open", type=int, default=100_000, help="open encounters for (c) and (d) (default 100,000)")
    p.add_argument("--partitions", type=int, default=8, help="partitions of every topic (default 8)")
    p.add_argument("--skip", default="", help="parts to skip: any of a b c d raw faust worker (e.g. 'd' or 'b,d')")
    p.add_argument("--faust-transport", default="kafka", choices=("kafka", "confluent"),
                   help="the faust passthrough's driver: kafka (aiokafka, the worker's) or confluent (librdkafka)")
    p.add_argument("--default-policy", action="store_true",
                   help="use the spec's policy (overdue alerts on) instead of the overdue-off policy")
    args = p.parse_args()
    quiet_logging()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
