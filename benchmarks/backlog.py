"""Backlog benchmark: the stream worker started on events that are ALL already in Kafka (the normal
state after an outage or a deploy), compared with the batch command on the same events.

    python -m benchmarks.backlog [--encounters 1500] [--seed 41] [--partitions 8] [--workers 2]
                                 [--producer murmur2|mixed|both] [--timeout 300]

For each producer mode, on a fresh embedded Tansu broker (streams.broker) with fresh topic names
and app id (tests.stream_harness.unique_settings), every topic created with --partitions:
  1. a simulated day (simulator.simulate, seed --seed, day = today - 2 days) is coded by the batch
     command's run_batch: the reference;
  2. every line is produced BEFORE any worker starts, in file order, by type to its topic, keyed by
     encounter_id (streams.feed.route), with confluent-kafka (librdkafka; tests/confluent_feed.py):
       murmur2  every topic with partitioner murmur2_random (Java-compatible: the partition
                aiokafka's and faust's default partitioner gives the same key);
       mixed    MAR topics (mar.administration.*) with librdkafka's default partitioner
                (consistent_random: CRC32 of the key), ADT and billing topics with murmur2_random,
                as when the MAR feed comes from another producer than ADT/billing;
  3. --workers worker subprocesses (`python -m cli.main worker`, IV_* env as the fault tests
     give it: tests.stream_harness.worker_env/start_worker) start together; the output topics
     (charges, alerts, dead letters) are read from the beginning until the net charges equal the
     batch's (and nothing new came for 3 s, so trailing records are counted), or nothing new came
     for 10 s after at least one record, or --timeout; then the workers get SIGTERM.
Printed per mode: charge and alert records of `code` and of the workers (workers both raw and
de-duplicated by id: charge_id, (alert_id, state); delivery is at-least-once), the ratios
workers / batch, whether net charges (tests.events.net_charges) and standing alerts
(tests.events.standing_alerts) are equal, the encounters whose net charges differ, the encounters
the batch charges and the workers emitted no charge record for, net charge units, elapsed seconds.

The figures that matter are counts, not timings: they depend on how the workers interleave the
topics, hardly on machine load. Elapsed seconds are printed for information.

The policy disables overdue alerts (benchmarks.stream.NO_OVERDUE): the day is two days old, so
against the wall clock every infusion still running when its events are read would be overdue at
once, an alert storm that only a replay has. Needs the `test` extra (confluent-kafka, and the tests
package: run from the project root).
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import io
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from benchmarks.stream import NO_OVERDUE, quiet_logging
from rules.policy import load_policy
from simulator import simulate
from cli.batch import run_batch
from streams.broker import EmbeddedBroker, free_port
from streams.topics import create_topics
from tests.confluent_feed import MODES, describe, feed_confluent, partitioners
from tests.events import net_charges, standing_alerts
from tests.stream_harness import WORKER_LOG_DIR, start_worker, unique_settings, worker_env

SETTLE_S = 3.0  # after the net charges match: trailing alerts and repeats still counted
QUIET_S = 10.0  # nothing new for this long after at least one record: the workers are done
PROGRESS_S = 5.0
T0 = time.monotonic()


def note(msg: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def tally(records: list[dict]) -> dict:
    """Raw and de-duplicated (by id) counts of charge and alert records, and dead letters."""
    charges = [r for r in records if r["kind"] == "charge"]
    alerts = [r for r in records if r["kind"] == "alert"]
    first: dict = {}
    changed = 0  # an id repeated with other content: not a redelivery, a different record
    for r in charges + alerts:
        rid = r["charge_id"] if r["kind"] == "charge" else (r["alert_id"], r["state"])
        if first.setdefault(rid, r) != r:
            changed += 1
    return {"charges": len(charges), "charges_unique": len({r["charge_id"] for r in charges}),
            "alerts": len(alerts), "alerts_unique": len({(r["alert_id"], r["state"]) for r in alerts}),
            "dead_letters": sum(1 for r in records if r["kind"] == "dead_letter"), "changed_repeats": changed,
            "alert_codes": alert_codes(records, unique=True)}


def alert_codes(records: list[dict], unique: bool = False) -> Counter:
    """(code, state) -> alert records; with unique, each (alert_id, state) once."""
    alerts = [r for r in records if r["kind"] == "alert"]
    if unique:
        alerts = list({(r["alert_id"], r["state"]): r for r in alerts}.values())
    return Counter((r["code"], r["state"]) for r in alerts)


def charges_by_encounter(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if r["kind"] == "charge":
            out[r["encounter_id"]].append(r)
    return out


def units(records: list[dict]) -> int:
    return sum(u for _, u, *_ in net_charges(records))


def compare(expected: list[dict], got: list[dict]) -> dict:
    want, have = charges_by_encounter(expected), charges_by_encounter(got)
    want_net = {e: net_charges(rs) for e, rs in want.items()}
    differ = sum(1 for e in set(want) | set(have) if want_net.get(e, []) != net_charges(have.get(e, [])))
    charged = [e for e, net in want_net.items() if net]
    return {"net_equal": net_charges(got) == net_charges(expected),
            "alerts_equal": standing_alerts(got) == standing_alerts(expected),
            "standing": (len(standing_alerts(expected)), len(standing_alerts(got))),
            "differ": differ, "charged": len(charged), "encounters": len(set(want) | set(have)),
            "no_charges": sum(1 for e in charged if e not in have),
            "units": (units(expected), units(got))}


async def collect(settings, expected_net: list, workers: list[subprocess.Popen], timeout: float,
                  label: str) -> tuple[list[dict], str, float | None, float]:
    """Read the output topics from the beginning until a stop condition; returns (records, why
    it stopped, seconds from the start to the last record, seconds from the start to the stop).
    Called right after the workers are started: the start is theirs."""
    consumer = AIOKafkaConsumer(*settings.topics.outputs, bootstrap_servers=settings.bootstrap_servers,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    records: list[dict] = []
    start = time.monotonic()
    last_new = last_progress = None
    checked, checked_at, match = -1, 0.0, False
    try:
        while True:
            for messages in (await consumer.getmany(timeout_ms=300)).values():
                records += [orjson.loads(m.value) for m in messages]
                last_new = time.monotonic()
            now = time.monotonic()
            if checked != len(records) and now - checked_at >= 1.0:  # net_charges sorts everything
                match, checked, checked_at = net_charges(records) == expected_net, len(records), now
            if match and checked == len(records) and now - last_new >= SETTLE_S:
                why = f"net charges equal the batch's (and nothing new for {SETTLE_S:.0f} s)"
                break
            if last_new is not None and now - last_new >= QUIET_S:
                why = f"nothing new for {QUIET_S:.0f} s"
                break
            if now - start >= timeout:
                why = f"timeout ({timeout:.0f} s)"
                break
            if all(w.poll() is not None for w in workers):
                why = "every worker exited"
                break
            if last_progress is None or now - last_progress >= PROGRESS_S:
                last_progress = now
                kinds = Counter(r["kind"] for r in records)
                alive = sum(1 for w in workers if w.poll() is None)
                note(f"  {label}: {len(records):,} records ({kinds['charge']:,} charge, {kinds['alert']:,} alert, "
                     f"{kinds['dead_letter']:,} dead letter) after {now - start:.0f} s; "
                     f"{alive}/{len(workers)} workers running")
    finally:
        await consumer.stop()
    return records, why, (last_new - start if last_new is not None else None), now - start


def stop(workers: list[subprocess.Popen]) -> list[int]:
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    codes = []
    for w in workers:
        try:
            codes.append(w.wait(30))
        except subprocess.TimeoutExpired:
            w.kill()
            codes.append(w.wait())
    return codes


async def run_mode(mode: str, args, lines: list[bytes], expected: list[dict], policy_file: str, tmp: str) -> dict:
    broker = EmbeddedBroker(log_dir=tmp)
    note(f"{mode}: embedded broker up in {broker.start():.1f} s at {broker.bootstrap}")
    workers: list[subprocess.Popen] = []
    try:
        settings = dataclasses.replace(unique_settings(broker.bootstrap), partitions=args.partitions)
        await create_topics(settings, log=lambda _: None)
        chosen = partitioners(mode, settings.topics)
        t = time.monotonic()
        sent = await asyncio.to_thread(
            feed_confluent, broker.bootstrap, lines, settings.topics, chosen,
            lambda n: n % 10000 == 0 and note(f"  {mode}: produced {n:,}"))
        note(f"{mode}: produced all {sent:,} events in {time.monotonic() - t:.1f} s, before any worker; "
             f"starting {args.workers} workers (logs in {WORKER_LOG_DIR})")
        ports = []
        for _ in range(args.workers):  # each its own metrics port and data dir, as on separate hosts
            own = dataclasses.replace(settings, metrics_port=free_port(), data_dir=tempfile.mkdtemp(prefix="iv-bl-"))
            ports.append(own.metrics_port)
            workers.append(start_worker(worker_env(own, policy_file)))
        got, why, last, elapsed = await collect(settings, net_charges(expected), workers, args.timeout, mode)
        note(f"{mode}: {len(got):,} output records; stopped after {elapsed:.1f} s: {why}")
        reading = scrape(ports)
    finally:
        exits = stop(workers) if workers else []
        broker.stop()
    return {"mode": mode, "partitioners": chosen, "sent": sent, "reading": reading,
            "why": why, "last": last, "elapsed": elapsed, "exits": exits, **compare(expected, got), "tally": tally(got)}


READING = ("iv_repartitioned_total", "iv_alignment_wait_seconds_total", "iv_alignment_forced_total",
           "iv_reads_again_total")


def scrape(ports: list[int]) -> Counter:
    """How the workers read: their reading metrics (streams/metrics.py), summed over workers."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    total: Counter = Counter()
    for port in ports:
        try:
            text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        except OSError as exc:
            note(f"  metrics of :{port} not read: {exc}")
            continue
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in READING:
                    total[(sample.name, tuple(sorted(sample.labels.items())))] += sample.value
    return total


def ratio(a: int, b: int) -> str:
    return f"{a / b:.2f}" if b else "-"


def report(args, day: dt.date, n_lines: int, batch: dict, results: list[dict]) -> None:
    print()
    print(f"== Backlog benchmark: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"one embedded Tansu broker per producer mode")
    print(f"   {args.encounters:,} encounters, seed {args.seed}, day {day} ({n_lines:,} events), "
          f"{args.partitions} partitions, {args.workers} worker subprocesses, all events produced before "
          f"the workers start")
    print(f"   policy (batch and workers): overdue alerts off ({NO_OVERDUE.strip().replace(chr(10), ', ')})")
    for r in results:
        t, c = r["tally"], r
        by_partitioner = defaultdict(list)
        for topic, p in r["partitioners"].items():
            by_partitioner[describe(p)].append(topic.split(".", 1)[1])
        print()
        print(f"-- producer {r['mode']}: " + "; ".join(f"{p}: {', '.join(ts)}" for p, ts in by_partitioner.items()))
        print(f"   {'':<16}{'batch code':>12}{'workers dedup':>15}{'x batch':>9}{'workers raw':>13}{'x batch':>9}")
        for label, key in (("charge records", "charges"), ("alert records", "alerts")):
            b, u, raw = batch[key], t[f"{key}_unique"], t[key]
            print(f"   {label:<16}{b:>12,}{u:>15,}{ratio(u, b):>9}{raw:>13,}{ratio(raw, b):>9}")
        print(f"   {'dead letters':<16}{batch['dead_letters']:>12,}{'':>15}{'':>9}{t['dead_letters']:>13,}")
        extra = sorted(((n - batch["alert_codes"][k], k, n) for k, n in t["alert_codes"].items()),
                       key=lambda x: (-x[0], x[1]))[:3]
        if extra and extra[0][0] > 0:
            print("   most extra alert records: " + ", ".join(
                f"{code} {state} {n:,} (batch {batch['alert_codes'][(code, state)]:,})" for _, (code, state), n in extra))
        if t["changed_repeats"]:
            print(f"   ids repeated with different content: {t['changed_repeats']:,}")
        print(f"   net charges equal:      {'yes' if c['net_equal'] else 'NO'}")
        print(f"   standing alerts equal:  {'yes' if c['alerts_equal'] else 'NO'} "
              f"(batch {c['standing'][0]:,}, workers {c['standing'][1]:,})")
        print(f"   encounters whose net charges differ: {c['differ']:,} (of {c['encounters']:,} with charge records)")
        print(f"   encounters the batch charges with no charge record from the workers: {c['no_charges']:,} "
              f"(of {c['charged']:,})")
        print(f"   net charge units: reference {c['units'][0]:,}, workers {c['units'][1]:,}")
        if r["reading"]:
            print("   how the workers read: " + "; ".join(
                f"{name.removeprefix('iv_').removesuffix('_total')}{dict(labels) if labels else ''} {value:,.1f}"
                for (name, labels), value in sorted(r["reading"].items())))
        last = "no output" if r["last"] is None else f"last output record at {r['last']:.1f} s"
        print(f"   elapsed from the workers' start: {last}; stopped at {r['elapsed']:.1f} s: {r['why']}; "
              f"worker exit codes after SIGTERM {r['exits']}")
    print(f"worker logs: {WORKER_LOG_DIR}")


async def run(args) -> None:
    tmp = tempfile.mkdtemp(prefix="iv-bench-backlog-")
    policy_file = str(Path(tmp) / "policy.toml")
    Path(policy_file).write_text(NO_OVERDUE)
    day = dt.date.today() - dt.timedelta(days=2)
    lines = [l.encode() for l in simulate(encounters=args.encounters, seed=args.seed, day=day)]
    out = io.BytesIO()
    stats = run_batch(lines, out, load_policy(policy_file))
    expected = [orjson.loads(l) for l in out.getvalue().splitlines()]
    batch = {"charges": sum(1 for r in expected if r["kind"] == "charge"),
             "alerts": sum(1 for r in expected if r["kind"] == "alert"), "dead_letters": stats.dead_letters,
             "alert_codes": alert_codes(expected)}
    note(f"simulated {args.encounters:,} encounters ({day}, seed {args.seed}): {len(lines):,} events; batch "
         f"reference: {batch['charges']:,} charge and {batch['alerts']:,} alert records; policy: overdue alerts "
         f"off ({policy_file})")
    modes = MODES if args.producer == "both" else (args.producer,)
    results = [await run_mode(m, args, lines, expected, policy_file, tmp) for m in modes]
    report(args, day, len(lines), batch, results)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encounters", type=int, default=1500, help="encounters simulated (default 1,500)")
    p.add_argument("--seed", type=int, default=41, help="simulator seed (default 41)")
    p.add_argument("--partitions", type=int, default=8, help="partitions of every topic (default 8)")
    p.add_argument("--workers", type=int, default=2, help="worker subprocesses (default 2)")
    p.add_argument("--producer", choices=(*MODES, "both"), default="both",
                   help="partitioners of the producer (default both, one after the other)")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for the workers' outputs (default 300)")
    args = p.parse_args()
    quiet_logging()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
