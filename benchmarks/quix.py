"""Quix Streams baseline (issue 14 (g)): what a user would pick instead of the worker, on the same
broker and the same events. Needs the `bench` extra (quixstreams) in a virtualenv of its own:

    python3 -m venv .venv/bench-quix && .venv/bench-quix/bin/pip install 'quixstreams>=3.20'

(quixstreams 3.28 pins pydantic < 2.14 and confluent-kafka < 2.13: installed into the project's
.venv it would downgrade the libraries the worker and `code` are measured with.) This module
imports nothing from the project, so that interpreter runs it (QUIX_PYTHON, below).

    python -m benchmarks.quix --bootstrap HOST:PORT --inputs t1,t2,... --out TOPIC --count N

One Quix Streams Application (librdkafka consumer and producer, RocksDB state with a changelog
topic per input topic) with one StreamingDataFrame per input topic: a stateful per-key update (a
counter per encounter in the state store) and one output per event, the input value, keyed as the
input, to --out. Stops after N outputs (`Application.run(count=N)`, which then flushes the producer
and commits) and prints one JSON line: {"events", "steady", "total", "seconds"} as the other
baselines of benchmarks/stream.py (steady = first record processed to the end).

Against Tansu: at-least-once (Quix's exactly-once needs Kafka transactions; kept out so the figure
does not depend on Tansu's transaction support), input and output topics created beforehand by the
caller; Quix creates its own changelog topics (compacted) through the admin API. Its start-up on
Tansu is about 30 s (each changelog topic's creation about 1 s, each of the 48 store partitions'
assignment about 0.5 s), which is why the steady rate starts at its first record.

`run_quix` is the asyncio-side helper: it runs this module as a subprocess, so Quix's blocking loop
and signal handlers stay out of the benchmark's own event loop.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--inputs", required=True, help="comma-separated input topics")
    p.add_argument("--out", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--group", default=f"bench-quix-{int(time.time() * 1000)}")
    p.add_argument("--timeout", type=float, default=900)
    args = p.parse_args()

    from quixstreams import Application

    start = time.monotonic()
    app = Application(broker_address=args.bootstrap, consumer_group=args.group, auto_offset_reset="earliest",
                      processing_guarantee="at-least-once", state_dir=tempfile.mkdtemp(prefix="iv-bench-quix-"),
                      use_changelog_topics=True,
                      # the worker's faust consumer's session and heartbeat (streams/faust_runtime/app.py), not
                      # librdkafka's 45 s session: the same group timing on both sides
                      consumer_extra_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
                      loglevel=os.environ.get("IV_BENCH_QUIX_LOGLEVEL", "WARNING"))
    out = app.topic(args.out, key_deserializer="bytes", value_deserializer="bytes",
                    key_serializer="bytes", value_serializer="bytes")
    first = [None]

    def update(value, state):  # the per-key state a stateful consumer keeps: events seen per encounter
        if first[0] is None:
            first[0] = time.monotonic()
        state.set("n", state.get("n", 0) + 1)
        return value

    for name in args.inputs.split(","):
        topic = app.topic(name, key_deserializer="bytes", value_deserializer="bytes",
                          key_serializer="bytes", value_serializer="bytes")
        # Tansu's DescribeConfigs has no retention.ms, which Quix reads to derive its changelog
        # topic's config: give it Kafka's meaning of "none set" (infinite)
        topic.broker_config.extra_config.setdefault("retention.ms", "-1")
        app.dataframe(topic).apply(update, stateful=True).to_topic(out)
    app.run(count=args.count, timeout=args.timeout, collect=False)
    end = time.monotonic()
    n = args.count
    print(json.dumps({"events": n, "steady": n / (end - first[0]), "total": n / (end - start),
                      "seconds": end - first[0]}), flush=True)


QUIX_PYTHON = os.environ.get("IV_BENCH_QUIX_PYTHON", ".venv/bench-quix/bin/python")


async def run_quix(bootstrap: str, inputs, out: str, n: int, log_path: str, python: str = QUIX_PYTHON) -> dict:
    """Run the Quix baseline as a subprocess of `python` on these topics; its result, or
    {"error": ...} (e.g. no such interpreter: the bench virtualenv above not made)."""
    if not os.path.exists(python):
        return {"error": f"no {python}: python3 -m venv .venv/bench-quix && "
                         ".venv/bench-quix/bin/pip install 'quixstreams>=3.20'"}
    with open(log_path, "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            python, str(Path(__file__).resolve()), "--bootstrap", bootstrap, "--inputs", ",".join(inputs),
            "--out", out, "--count", str(n), stdout=asyncio.subprocess.PIPE, stderr=log)
        stdout, _ = await proc.communicate()
    for line in reversed(stdout.decode().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": f"quix baseline exited {proc.returncode}; see {log_path}"}


if __name__ == "__main__":
    main()
