"""Issue 14's targets in one run: the stream worker beside `code` and beside the baselines a user
would pick instead, on the same simulated events and ONE embedded Tansu broker started here.

    python -m benchmarks.targets [--sizes 48000] [--open 20000] [--rate 1000] [--latency-seconds 30]
                                 [--day-encounters 20000] [--partitions 8] [--stores rocksdb://,memory://] [--skip "b d"]
    full size:  --sizes 20000,48000,200000 --open 100000

(a) one worker on a backlog: a simulated day (day = today - 2, seed 7) of about --sizes events
    (encounters = events / 8.1) is produced by librdkafka (murmur2, keyed by encounter: the
    partitions the worker's own producers give) before one worker subprocess (`python -m cli.main
    worker`, tests/stream_harness.py) starts; events/s = events / seconds from the worker's start
    (process spawn) to its last output record. Done when the worker's /metrics count every event
    (iv_events_consumed_total + iv_dead_letters_total) and nothing new came for 3 s (or nothing new
    for 20 s). The batch `code` rate on the same events, whole process (`python -m cli.main code
    FILE > /dev/null`, best of 2), in the same run; the ratio. With several --sizes, the worker's
    rate at each: within 20% of each other is the target (no slowdown as the run grows).
(b) discharge-to-charge at --rate events/s offered, p99 by broker timestamps and end to end
    (benchmarks.stream.bench_latency: an in-process worker fed a fresh simulated day).
(c) memory per open encounter: --open encounters with one administration.started each through
    streams.processor.Processor over a dict table, tracemalloc (benchmarks.stream.bench_memory);
    and the worker subprocess's RSS growth while (d) loads them.
(d) kill -9 with --open open encounters: seconds from the restart to the first output of a
    discharge sent at the restart (benchmarks.stream.bench_recovery; the worker keeps its
    IV_GROUP_INSTANCE_ID across the restart, as deploy/k8s's pods do), once per --stores store:
    rocksdb:// (deploy/k8s's) and memory:// (a bare worker's). The target is for 100,000.
(e) `code`, whole process, on a --day-encounters day (seed 7, as `make bench`), best of 2.
(h) `code`'s peak RSS (its VmHWM, read while it runs) on an --archive-encounters day (seed 7),
    divided by its encounters: what a held encounter costs (every one is held: the day is within
    the retention); also above the peak of `code` on an empty file (the idle interpreter).
(f) two worker subprocesses on the same backlog as (a)'s first size, fresh topics: events/s
    beside one worker's, with the CPU seconds each used (what limits scaling here).
(g) baselines on (a)'s input topics (first size): raw aiokafka passthrough, plain faust
    passthrough (benchmarks.stream.bench_raw/bench_faust), Quix Streams stateful per-key update
    (benchmarks/quix.py; its own venv, .venv/bench-quix). Rates are steady state (first record
    processed to the last output acknowledged); with start-up in brackets.

The policy disables overdue alerts (benchmarks.stream.NO_OVERDUE: the day is two days old). The
machine's load average is printed at the start and the end: on a shared machine, read it with them.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import io
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from benchmarks import stream as sb
from benchmarks.quix import QUIX_PYTHON, run_quix
from benchmarks.stream import say
from rules.policy import load_policy
from simulator import simulate
from cli.batch import run_batch
from streams.broker import EmbeddedBroker, free_port
from streams.config import Topics
from streams.topics import create_topics
from tests.confluent_feed import MURMUR2, feed_confluent
from tests.events import net_charges
from tests.stream_harness import WORKER_LOG_DIR, start_worker, unique_settings, worker_env

TARGETS = {"rate": 10_000, "x_code": 0.30, "x_code_cpu": 0.50, "x_quix": 0.50, "steady_within": 0.20, "p99_ms": 100,
           "bytes": 1024,
           "recovery_s": 15, "recovery_open": 100_000, "code_rate": 50_000, "held_bytes": 2048}
SETTLE_S, QUIET_S = 3.0, 20.0
STORE_ROLE = {"rocksdb://": "deploy/k8s's store, on each worker's own volume: a restart or update reads only the newest changelog",
              "memory://": "a bare worker's store; a worker whose volume is lost reads the whole changelog so"}


def day_of(events: int, seed: int = 7) -> list[bytes]:
    day = dt.date.today() - dt.timedelta(days=2)
    return [l.encode() for l in simulate(encounters=max(50, round(events / 8.1)), seed=seed, day=day)]


def code_whole_process(path: str, policy_file: str | None, repeat: int = 2) -> tuple[float, float]:
    """(seconds, CPU seconds) of the fastest of `repeat` runs of `python -m cli.main code FILE >
    /dev/null` (exit 0 or 2: dead letters). CPU seconds are less sensitive to a shared machine."""
    args = [sys.executable, "-m", "cli.main", "code", path] + (["--policy", policy_file] if policy_file else [])
    best = None
    for _ in range(repeat):
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.monotonic()
        rc = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        elapsed = time.monotonic() - t
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if rc not in (0, 2):
            raise RuntimeError(f"code exited {rc} on {path}")
        cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
        if best is None or elapsed < best[0]:
            best = (elapsed, cpu)
    return best


def code_peak_rss(path: str) -> int:
    """Peak RSS in bytes of `python -m cli.main code FILE > /dev/null`: its VmHWM, read every 50 ms
    until it exits (the high-water mark only grows; wait4's ru_maxrss would also count this
    process's pages, which the child holds between fork and exec)."""
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "code", path], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except OSError:
            pass
        time.sleep(0.05)
    if proc.returncode not in (0, 2):
        raise RuntimeError(f"code exited {proc.returncode} on {path}")
    return peak


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def consumed(ports: list[int]) -> float:
    return sum((sb.metric_sum(p, "iv_events_consumed_total") or 0) + (sb.metric_sum(p, "iv_dead_letters_total") or 0)
               for p in ports)


async def backlog(bootstrap: str, lines: list[bytes], expected_net, policy_file: str, workers: int,
                  partitions: int, timeout: float, label: str) -> dict:
    """Produce `lines` into fresh topics, then start `workers` worker subprocesses and time them
    from their start to their last output record."""
    settings = dataclasses.replace(unique_settings(bootstrap), partitions=partitions)
    await sb.create(bootstrap, settings.topics.all, partitions)
    await create_topics(settings, log=lambda _: None)
    t = time.monotonic()
    await asyncio.to_thread(feed_confluent, bootstrap, lines, settings.topics,
                            {tp: MURMUR2 for tp in settings.topics.inputs})
    say(f"  {label}: produced {len(lines):,} events in {time.monotonic() - t:.1f} s; starting {workers} worker(s)")
    consumer = AIOKafkaConsumer(*settings.topics.outputs, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=None)
    await consumer.start()
    procs, ports, raw = [], [], []
    n = len(lines)
    try:
        start = time.monotonic()
        for _ in range(workers):  # each its own metrics port and data dir, as on separate hosts
            own = dataclasses.replace(settings, metrics_port=free_port(), data_dir=tempfile.mkdtemp(prefix="iv-t14-"))
            ports.append(own.metrics_port)
            procs.append(start_worker(worker_env(own, policy_file)))
        last = checked = report = None
        seen = 0.0
        while True:
            for msgs in (await consumer.getmany(timeout_ms=300)).values():
                raw += [m.value for m in msgs]
                last = time.monotonic()
            now = time.monotonic()
            if checked is None or now - checked >= 1.0:
                seen, checked = consumed(ports), now
            if seen >= n and last is not None and now - last >= SETTLE_S:
                why = "every event consumed, nothing new for 3 s"
                break
            if last is not None and now - last >= QUIET_S:
                why = f"nothing new for {QUIET_S:.0f} s ({seen:,.0f} of {n:,} consumed)"
                break
            if now - start >= timeout:
                why = f"timeout ({timeout:.0f} s; {seen:,.0f} of {n:,} consumed)"
                break
            if all(p.poll() is not None for p in procs):
                why = "every worker exited"
                break
            if report is None or now - report >= 10:
                report = now
                say(f"  {label}: {seen:,.0f} / {n:,} consumed, {len(raw):,} output records after {now - start:.0f} s")
        cpu = [cpu_seconds(p.pid) for p in procs]
    finally:
        await consumer.stop()
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    records = [orjson.loads(v) for v in raw]
    seconds = (last - start) if last is not None else None
    return {"events": n, "seconds": seconds, "rate": n / seconds if seconds else 0.0, "why": why, "cpu": cpu,
            "outputs": len(records), "net_equal": net_charges(records) == expected_net, "topics": settings.topics}


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "MISS")


async def run(args) -> dict:
    skip = set(args.skip.replace(",", " ").split())
    tmp = tempfile.mkdtemp(prefix="iv-bench-t14-")
    policy_file = str(Path(tmp) / "policy.toml")
    Path(policy_file).write_text(sb.NO_OVERDUE)
    policy = load_policy(policy_file)
    r: dict = {"load_start": os.getloadavg(), "sizes": []}

    if "e" not in skip:
        lines = [l.encode() for l in simulate(encounters=args.day_encounters, seed=7)]
        path = Path(tmp) / "day.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        say(f"(e) `code` whole process on a {args.day_encounters:,}-encounter day ({len(lines):,} events), best of 2")
        secs, cpu = code_whole_process(str(path), None)
        r["e"] = {"events": len(lines), "seconds": secs, "rate": len(lines) / secs, "cpu_rate": len(lines) / cpu}
        say(f"    {r['e']['rate']:,.0f} events/s ({secs:.2f} s)")
        del lines

    if "h" not in skip:
        path, empty, events = Path(tmp) / "archive.jsonl", Path(tmp) / "empty.jsonl", 0
        say(f"(h) `code` peak RSS on a {args.archive_encounters:,}-encounter day ...")
        with open(path, "w") as out:
            for line in simulate(encounters=args.archive_encounters, seed=7):
                out.write(line + "\n")
                events += 1
        empty.write_text("")
        r["h"] = {"encounters": args.archive_encounters, "events": events, "peak": code_peak_rss(str(path)),
                  "idle": code_peak_rss(str(empty))}
        say(f"    {r['h']['peak'] / 1e6:,.1f} MB peak")
        path.unlink()

    broker = EmbeddedBroker(log_dir=tmp)
    say(f"embedded broker up in {broker.start():.1f} s at {broker.bootstrap}")
    bootstrap = broker.bootstrap
    try:
        for i, size in enumerate(args.sizes if "a" not in skip else []):
            lines = day_of(size)
            path = Path(tmp) / f"backlog-{size}.jsonl"
            path.write_bytes(b"\n".join(lines) + b"\n")
            out = io.BytesIO()
            t = time.monotonic()
            run_batch(lines, out, policy)
            in_process = time.monotonic() - t
            expected = net_charges([orjson.loads(l) for l in out.getvalue().splitlines()])
            secs, cpu = code_whole_process(str(path), policy_file)
            s = {"events": len(lines), "code_rate": len(lines) / secs, "code_cpu_rate": len(lines) / cpu,
                 "code_in_process": len(lines) / in_process}
            say(f"(a) {len(lines):,} events: `code` whole process {s['code_rate']:,.0f} events/s "
                f"(in-process run_batch {s['code_in_process']:,.0f}); one worker on the backlog ...")
            s["one"] = await backlog(bootstrap, lines, expected, policy_file, 1, args.partitions, args.timeout,
                                     f"1 worker, {len(lines):,}")
            say(f"    one worker: {s['one']['rate']:,.0f} events/s ({s['one']['why']}; net charges equal "
                f"{s['one']['net_equal']})")
            r["sizes"].append(s)
            if i > 0:
                continue
            if "f" not in skip:
                say(f"(f) two workers on the same {len(lines):,} events, fresh topics ...")
                s["two"] = await backlog(bootstrap, lines, expected, policy_file, 2, args.partitions, args.timeout,
                                         f"2 workers, {len(lines):,}")
                say(f"    two workers: {s['two']['rate']:,.0f} events/s ({s['two']['why']})")
            if "g" not in skip:
                inputs, n, g = s["one"]["topics"].inputs, len(lines), {}
                prefix = f"base{int(time.time() * 1000) % 10**8}"
                await sb.create(bootstrap, [f"{prefix}.{x}-out" for x in ("raw", "faust", "quix")], args.partitions)
                say("(g) raw aiokafka passthrough on (a)'s input topics ...")
                g["raw"] = await sb.bench_raw(bootstrap, inputs, f"{prefix}.raw-out", n)
                say(f"    raw: {g['raw']['steady']:,.0f} events/s")
                say("(g) plain faust passthrough ...")
                g["faust"] = await sb.bench_faust(bootstrap, inputs, f"{prefix}.faust-out", n, args.partitions)
                say(f"    faust: {g['faust']['steady']:,.0f} events/s")
                say(f"(g) Quix Streams stateful per-key update ({QUIX_PYTHON}) ...")
                g["quix"] = await run_quix(bootstrap, inputs, f"{prefix}.quix-out", n, str(Path(tmp) / "quix.log"))
                say(f"    quix: {g['quix'].get('steady', 0):,.0f} events/s {g['quix'].get('error', '')}")
                r["g"] = g
        if "b" not in skip:
            n_b = int(args.rate * args.latency_seconds)
            lines_b = day_of(n_b, seed=11)[:n_b]
            say(f"(b) latency: {len(lines_b):,} events of a simulated day at {args.rate:,.0f} events/s, "
                "in-process worker ...")
            prefix = f"lat{int(time.time() * 1000) % 10**8}"
            ls = sb.worker_settings(bootstrap, f"iv-{prefix}", sb.topics_named(prefix), args.partitions, policy_file)
            r["b"] = await sb.bench_latency(bootstrap, ls, lines_b, args.rate)
        if "c" not in skip or "d" not in skip:
            tpl = day_of(2000)
            started_tpl = next(orjson.loads(l) for l in tpl if b'"administration.started"' in l and b'"infusion"' in l)
            discharge_tpl = next(orjson.loads(l) for l in tpl if b'"encounter.discharged"' in l)
            events = sb.open_encounter_lines(args.open, started_tpl)
            if "c" not in skip:
                say(f"(c) memory: {args.open:,} open encounters through Processor (dict table), tracemalloc ...")
                r["c"] = sb.bench_memory(events, Topics(), policy)
            for store in ([] if "d" in skip else args.stores.split(",")):
                say(f"(d) kill -9 with {args.open:,} open encounters (worker subprocess, {store}) ...")
                r.setdefault("d", {})[store] = await sb.bench_recovery(bootstrap, args.partitions, events,
                                                                      discharge_tpl, policy_file, tmp, store)
    finally:
        broker.stop()
    r["load_end"] = os.getloadavg()
    return r


def report(args, r: dict) -> None:
    T = TARGETS
    load = lambda l: ", ".join(f"{x:.2f}" for x in l)  # noqa: E731
    print()
    print(f"== Issue 14 targets: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"one embedded Tansu broker, {args.partitions} partitions, overdue alerts off")
    print(f"   load average at start {load(r['load_start'])}, at end {load(r['load_end'])} "
          "(1, 5, 15 min; the machine is shared)")
    row = lambda name, got, target, ok: print(f"{name:<68}{got:>12}  {target:<22}{verdict(ok)}")  # noqa: E731
    print(f"{'measure':<68}{'measured':>12}  {'target':<22}")
    sizes = r["sizes"]
    for s in sizes:
        one = s["one"]
        row(f"(a) one worker, {s['events']:,}-event backlog, start->last output", f"{one['rate']:,.0f} ev/s",
            f">= {T['rate']:,} ev/s", one["rate"] >= T["rate"])
        x = one["rate"] / s["code_rate"]
        row(f"    x `code` whole process on the same events ({s['code_rate']:,.0f} ev/s)", f"{x:.3f} x",
            f">= {T['x_code']:.2f} x", x >= T["x_code"])
        print(f"    ({one['seconds'] or 0:.1f} s, worker CPU {one['cpu'][0]:.1f} s; {one['outputs']:,} output records; "
              f"net charges equal `code`'s: {'yes' if one['net_equal'] else 'NO'}; stopped: {one['why']}; "
              f"in-process run_batch {s['code_in_process']:,.0f} ev/s)")
        if one["cpu"][0]:
            per_cpu = s["events"] / one["cpu"][0] / s["code_cpu_rate"]
            row(f"    x `code` per CPU second (worker {s['events'] / one['cpu'][0]:,.0f}, `code` "
                f"{s['code_cpu_rate']:,.0f} ev/s)", f"{per_cpu:.3f} x", f">= {T['x_code_cpu']:.2f} x",
                per_cpu >= T["x_code_cpu"])
    if len(sizes) > 1:
        rates = [s["one"]["rate"] for s in sizes]
        spread = min(rates) / max(rates)
        row("(a) rate across sizes " + ", ".join(f"{s['events']:,}" for s in sizes), f"min/max {spread:.2f}",
            f">= {1 - T['steady_within']:.2f}", spread >= 1 - T["steady_within"])
    elif sizes:
        print("(a) rate across sizes: one size only (--sizes 20000,200000 for the 'no slowdown' target)")
    if "b" in r:
        b = r["b"]
        if b["broker"]:
            p50, p99 = sb.pct(b["broker"], .5), sb.pct(b["broker"], .99)
            row(f"(b) discharge->charge at {args.rate:,.0f} ev/s, broker timestamps p50/p99",
                f"{p50:,.0f} / {p99:,.0f} ms", f"p99 <= {T['p99_ms']} ms", p99 <= T["p99_ms"])
            e50, e99 = sb.pct(b["e2e"], .5), sb.pct(b["e2e"], .99)
            row("    same, end to end (send call -> consumer) p50/p99", f"{e50:,.0f} / {e99:,.0f} ms",
                f"p99 <= {T['p99_ms']} ms", e99 <= T["p99_ms"])
            print(f"    ({b['discharges']:,} discharges, {len(b['broker']):,} with a charge measured)")
        else:
            row("(b) discharge->charge", "no charge measured", f"p99 <= {T['p99_ms']} ms", False)
    if "c" in r:
        c = r["c"]
        row(f"(c) memory per open encounter ({c['open']:,} open), tracemalloc", f"{c['heap_per']:,.0f} B",
            f"<= {T['bytes']:,} B", c["heap_per"] <= T["bytes"])
        loaded = next(iter(r.get("d", {}).values()), {})
        extra = f"; worker subprocess RSS growth {loaded['rss_per']:,.0f} B" if loaded.get("rss_per") else ""
        print(f"    (RSS {c['rss_per']:,.0f} B, stored JSON key+value {c['json_per']:,.0f} B{extra})")
    for store, d in r.get("d", {}).items():
        rec = d.get("recovery")
        row(f"(d) kill -9 with {args.open:,} open, {store}: restart -> first output", "none in 600 s" if rec is None
            else f"{rec:.1f} s", f"<= {T['recovery_s']} s at {T['recovery_open']:,}",
            None if args.open != T["recovery_open"] else (rec is not None and rec <= T["recovery_s"]))
        print(f"    ({STORE_ROLE.get(store, store)}; worker loaded them at {d.get('load_rate', 0):,.0f} ev/s; "
              f"/metrics up after {d.get('metrics_up') or 0:.1f} s; first output: {d.get('first_output')}"
              + ("; verdict only at --open 100000)" if args.open != T["recovery_open"] else ")"))
    if "e" in r:
        e = r["e"]
        row(f"(e) `code` whole process, {args.day_encounters:,}-encounter day ({e['events']:,} events)",
            f"{e['rate']:,.0f} ev/s", f">= {T['code_rate']:,} ev/s", e["rate"] >= T["code_rate"])
        print(f"    ({e['seconds']:.2f} s; per CPU second {e['cpu_rate']:,.0f} ev/s)")
    if "h" in r:
        h = r["h"]
        per = h["peak"] / h["encounters"]
        row(f"(h) `code` peak RSS per held encounter, {h['encounters']:,}-encounter day", f"{per:,.0f} B",
            f"<= {T['held_bytes']:,} B", per <= T["held_bytes"])
        print(f"    ({h['events']:,} events; peak {h['peak'] / 1e6:,.1f} MB; {(h['peak'] - h['idle']) / h['encounters']:,.0f} B "
              f"above the idle interpreter's {h['idle'] / 1e6:,.1f} MB)")
    if sizes and "two" in sizes[0]:
        one, two = sizes[0]["one"], sizes[0]["two"]
        row(f"(f) two workers vs one, {sizes[0]['events']:,} events, {args.partitions} partitions",
            f"{two['rate']:,.0f} vs {one['rate']:,.0f}", "side by side", None)
        print(f"    ({two['rate'] / one['rate']:.2f}x; CPU seconds: one worker {one['cpu'][0]:.1f}, two workers "
              f"{' + '.join(f'{c:.1f}' for c in two['cpu'])}; {os.cpu_count()} cores shared with the broker and "
              f"this process; net charges equal: {'yes' if two['net_equal'] else 'NO'})")
    if "g" in r:
        g = r["g"]
        raw = g["raw"]["steady"]
        w = sizes[0]["one"]["rate"]
        print(f"(g) baselines on (a)'s {sizes[0]['events']:,} input events, steady state (incl. start-up):")
        for name, label in (("raw", "raw aiokafka passthrough (1 output per input)"),
                            ("faust", "plain faust passthrough agent"),
                            ("quix", "Quix Streams 3.x stateful per-key update, at-least-once")):
            x = g[name]
            if "error" in x:
                print(f"    {label:<54} not run: {x['error']}")
                continue
            print(f"    {label:<54}{x['steady']:>12,.0f} ev/s ({x['total']:,.0f}){x['steady'] / raw:>8.2f} x raw")
        print(f"    {'validator worker, start->last output (a)':<54}{w:>12,.0f} ev/s{'':>10}{w / raw:>6.3f} x raw")
        quix = g["quix"]
        if "error" in quix:
            row("(g) the worker x Quix Streams' stateful per-key update", "not run", f">= {T['x_quix']:.2f} x", None)
        else:
            x = w / quix["steady"]
            row(f"(g) the worker (a) x Quix Streams' stateful per-key update ({quix['steady']:,.0f} ev/s)", f"{x:.3f} x",
                f">= {T['x_quix']:.2f} x", x >= T["x_quix"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="48000",
                   help="backlog sizes of (a), events, comma-separated (default 48000; full: 20000,48000,200000); "
                        "(f) and (g) run on the first")
    p.add_argument("--open", type=int, default=20_000, help="open encounters of (c) and (d) (default 20,000; target "
                                                           "is for 100,000)")
    p.add_argument("--rate", type=float, default=1000, help="offered load of (b), events/s (default 1,000)")
    p.add_argument("--latency-seconds", type=float, default=30, help="length of (b)'s paced feed (default 30)")
    p.add_argument("--day-encounters", type=int, default=20_000, help="(e)'s day, encounters (default 20,000)")
    p.add_argument("--partitions", type=int, default=8, help="partitions of every topic (default 8)")
    p.add_argument("--timeout", type=float, default=1200, help="seconds for a backlog run (default 1,200)")
    p.add_argument("--archive-encounters", type=int, default=100_000,
                   help="(h)'s day, encounters (default 100,000: about 810,000 events, 1.5 min)")
    p.add_argument("--stores", default="rocksdb://,memory://",
                   help="(d)'s worker table stores, each measured (default rocksdb://,memory://: deploy/k8s's, "
                        "which keeps the table in the worker's data dir, and a bare worker's)")
    p.add_argument("--skip", default="", help="parts to skip: any of a b c d e f g h (f, g need a)")
    args = p.parse_args()
    args.sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    sb.quiet_logging()
    report(args, asyncio.run(run(args)))
    print(f"worker logs: {WORKER_LOG_DIR}")


if __name__ == "__main__":
    main()
