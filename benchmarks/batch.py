"""Throughput of `infusion-validator code` on a simulated day: parse, state machine, coding, JSON out.

    python -m benchmarks.batch [--encounters 20000] [--repeat 3]

Generates the day once (not timed), then times run_batch end to end on one core, in-process, with
output written to an in-memory buffer (the same bytes the command writes to stdout), and prints
events/s for each repeat with the best and the median, plus the split by stage.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import resource
import statistics
import time

from models.events import parse_event
from simulator import simulate
from cli.batch import run_batch, tune_gc_for_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encounters", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    t = time.perf_counter()
    lines = [line.encode() for line in simulate(encounters=args.encounters, seed=7)]
    print(f"simulated {args.encounters:,} encounters: {len(lines):,} events "
          f"({time.perf_counter() - t:.1f} s, not timed)")

    tune_gc_for_batch()  # as `infusion-validator code` does
    rates = []
    for i in range(args.repeat):
        out = io.BytesIO()
        t = time.perf_counter()
        stats = run_batch(lines, out)
        elapsed = time.perf_counter() - t
        rates.append(len(lines) / elapsed)
        print(f"  run {i + 1}: {elapsed:.2f} s, {rates[-1]:,.0f} events/s, "
              f"{len(out.getvalue()) / 1e6:.1f} MB out, {stats.records['charge post']:,} charges posted")
    print(f"code throughput: best {max(rates):,.0f} events/s, median {statistics.median(rates):,.0f} events/s "
          "(one core, end to end)")

    t = time.perf_counter()
    for line in lines:
        parse_event(line)
    parse = time.perf_counter() - t
    print(f"  of which parsing and validation alone: {len(lines) / parse:,.0f} events/s "
          f"({parse / (len(lines) / max(rates)) * 100:.0f}% of the best run)")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
