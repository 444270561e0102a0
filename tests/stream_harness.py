"""Run events through the real worker on the embedded broker and collect every output record:
in-process (`Worker`) or as `python -m cli.main worker` subprocesses (`worker_env`,
`start_worker`; used by tests/test_faults.py and benchmarks/backlog.py)."""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import subprocess
import sys
import tempfile
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.faust_runtime.app import build_app
from streams.config import Settings, Topics, from_env
from streams.feed import feed
from streams.metrics import Metrics
from streams.topics import create_topics

_runs = itertools.count(1)


def unique_settings(bootstrap: str, **overrides) -> Settings:
    """Topics and app id of their own, so tests sharing one broker never see each other's data."""
    n = f"t{next(_runs)}-{int(time.time() * 1000) % 10**8}"
    topics = Topics(**{f.name: f"{n}.{getattr(Topics(), f.name)}" for f in dataclasses.fields(Topics)})
    settings = from_env({}, bootstrap_servers=bootstrap, app_id=f"iv-{n}", partitions=4, tick_seconds=0.5,
                        data_dir=tempfile.mkdtemp(prefix="iv-test-"), **overrides)
    return dataclasses.replace(settings, topics=topics)


def worker_env(settings: Settings, policy_file: str | None) -> dict[str, str]:
    """The environment of a worker subprocess for these settings (IV_* variables, the caller's
    own IV_* dropped; ticks every second, warnings only)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IV_")}
    env.update(IV_BOOTSTRAP_SERVERS=settings.bootstrap_servers, IV_APP_ID=settings.app_id,
               IV_PARTITIONS=str(settings.partitions), IV_TICK_SECONDS="1", IV_POLICY_FILE=policy_file or "",
               IV_DATA_DIR=settings.data_dir, IV_METRICS_PORT=str(settings.metrics_port), IV_LOG_LEVEL=os.environ.get("IV_TEST_WORKER_LOG_LEVEL", "warning"),
               IV_ALIGN_MAX_WAIT_MS=str(settings.align_max_wait_ms), IV_STORE=settings.store)
    for name in settings.topics.__dataclass_fields__:
        env[f"IV_TOPIC_{name.upper()}"] = getattr(settings.topics, name)
    return env


WORKER_LOG_DIR = tempfile.mkdtemp(prefix="iv-fault-workers-")


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    """A worker subprocess; its log goes to WORKER_LOG_DIR, named in a failing test's output."""
    path = os.path.join(WORKER_LOG_DIR, f"worker-{len(os.listdir(WORKER_LOG_DIR)):02d}.log")
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "worker"], env=env,
                            stdout=open(path, "wb"), stderr=subprocess.STDOUT)
    proc.log_path = path
    return proc


async def read_outputs(settings: Settings, want, timeout: float = 150.0, quiet: float = 5.0) -> list[dict]:
    """Every output record (charges, alerts, dead letters) from the beginning, until `want(records)`
    holds and nothing new came for `quiet` seconds, or `timeout`: what worker subprocesses emitted."""
    consumer = AIOKafkaConsumer(*settings.topics.outputs, bootstrap_servers=settings.bootstrap_servers,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    records, loop = [], asyncio.get_running_loop()
    deadline, last = loop.time() + timeout, loop.time()
    try:
        while loop.time() < deadline:
            for messages in (await consumer.getmany(timeout_ms=300)).values():
                records += [orjson.loads(m.value) for m in messages]
                last = loop.time()
            if want(records) and loop.time() - last > quiet:
                break
    finally:
        await consumer.stop()
    return records


class Worker:
    """An in-process worker: `async with Worker(settings, clock) as w:` then `await w.collect(...)`."""

    def __init__(self, settings: Settings, clock=None) -> None:
        self.settings, self.clock = settings, clock
        self.metrics = Metrics()
        self.records: list[dict] = []

    async def __aenter__(self) -> Worker:
        await create_topics(self.settings, log=lambda _: None)
        self.app = build_app(self.settings, self.metrics, clock=self.clock)
        await self.app.start()
        self.producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap_servers, linger_ms=5)
        self.consumer = AIOKafkaConsumer(*self.settings.topics.outputs, auto_offset_reset="earliest",
                                         bootstrap_servers=self.settings.bootstrap_servers, group_id=None)
        await self.producer.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await asyncio.sleep(0)
        await self.consumer.stop()
        await self.producer.stop()
        await self.app.stop()

    async def send(self, lines: list[bytes], clock=None) -> None:
        await feed(self.producer, lines, self.settings.topics, clock)

    async def collect(self, until, timeout: float = 60.0, quiet: float = 2.0) -> list[dict]:
        """Read outputs until `until(records)` holds and nothing new came for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            batch = await self.consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                for m in messages:
                    self.records.append(orjson.loads(m.value))
                    last = time.monotonic()
            if until(self.records) and time.monotonic() - last >= quiet:
                return self.records
        raise TimeoutError(f"outputs did not settle in {timeout} s; got {len(self.records)} records")
