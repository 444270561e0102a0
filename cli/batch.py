"""`infusion-validator code`: JSON Lines events in, output records out, through the same
encounter state machine as the stream processor, with event time as the clock."""
from __future__ import annotations

import gc
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

import orjson

from cli.held import HeldStates
from models.errors import BadEvent
from models.events import parse_event
from rules.book import DEFAULT_RETENTION_MINUTES, Book, TooLate
from rules.policy import DEFAULT, Policy
from streams.records import MAX_EVENT_BYTES, dead_letter, oversize_reason


@dataclass
class BatchStats:
    """What became of every line: lines == events + dead_letters + blank_lines + duplicates."""
    lines: int = 0  # lines read
    events: int = 0  # events accepted: parsed, applied, not a repeat of an event_id
    dead_letters: int = 0  # rejected lines, each with a dead-letter record
    blank_lines: int = 0  # empty or whitespace-only lines, skipped
    duplicates: int = 0  # valid events whose event_id was seen before in the encounter: ignored
    records: Counter = field(default_factory=Counter)  # output records by kind/action/state
    charges: Counter = field(default_factory=Counter)  # net units by CPT
    alerts: Counter = field(default_factory=Counter)  # raised alerts by code
    reasons: Counter = field(default_factory=Counter)  # dead letters by first words of the reason
    open_encounters: int = 0

    def count(self, rec: dict) -> None:
        kind = rec["kind"]
        if kind == "charge":
            self.records[f"charge {rec['action']}"] += 1
            self.charges[rec["cpt"]] += rec["units"] if rec["action"] == "post" else -rec["units"]
        elif kind == "alert":
            self.records[f"alert {rec['state']}"] += 1
            if rec["state"] == "raised":
                self.alerts[rec["code"]] += 1
        else:
            self.records["dead letter"] += 1
            self.reasons[rec["category"]] += 1


def run_batch(lines: Iterable[bytes], out: BinaryIO, policy: Policy = DEFAULT,
              progress: bool = False, retention_days: float = DEFAULT_RETENTION_MINUTES / 1440,
              held_dir: str | None = None) -> BatchStats:
    """`retention_days`: how long, in event time, a discharged encounter is held for late documentation;
    an event for one purged earlier is a dead letter (too_late). `held_dir`: where the held encounters'
    temporary files go (default TMPDIR)."""
    retention_minutes = round(retention_days * 1440)
    # A long archive holds every encounter discharged within the retention: packed, on disk (cli/held.py),
    # in about 16 files. No running counts per event (the stream's gauges; progress counts when it reports).
    held = HeldStates(span_seconds=max(86400, retention_minutes * 60 // 16), directory=held_dir)
    try:
        book = Book(held, policy=policy, retention_minutes=retention_minutes, gauges=False, pack_closed=True)
        return _run(book, lines, out, progress)
    finally:
        held.close()


def _run(book: Book, lines: Iterable[bytes], out: BinaryIO, progress: bool) -> BatchStats:
    stats = BatchStats()
    write, dumps = out.write, orjson.dumps
    next_report = time.monotonic() + 2
    for lineno, raw in enumerate(lines, 1):
        stats.lines = lineno
        for rec in _process(book, lineno, raw, stats):
            stats.count(rec)
            write(dumps(rec, option=orjson.OPT_APPEND_NEWLINE))
        if progress and lineno % 4096 == 0 and time.monotonic() >= next_report:
            next_report = time.monotonic() + 2
            _report(stats, book)
    stats.open_encounters = book.open_count
    # The Book counts repeats of an event_id as it ignores them (no extra work per event here);
    # they were counted as parsed events above.
    stats.duplicates = book.duplicates
    stats.events -= book.duplicates
    return stats


def tune_gc_for_batch() -> None:
    """Make full garbage collections rare; call once before run_batch in a batch process.

    A batch run keeps every encounter's state (about 23 small containers each) until it ends and
    makes almost no reference cycles, so each full collection, rerun as the heap grows, walks all
    of that state and frees nothing: about 15% of a 20,000-encounter day. Young collections still
    run as usual, so any short-lived cycle is freed as before.
    """
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 1000)  # a full collection after 1,000 middle ones, not 10


def _process(book: Book, lineno: int, raw: bytes, stats: BatchStats) -> list[dict]:
    if not raw.strip():
        stats.blank_lines += 1
        return []  # blank lines separate nothing in JSON Lines; skipping them loses no data
    if len(raw) > MAX_EVENT_BYTES:
        stats.dead_letters += 1
        return [dead_letter(oversize_reason(len(raw)), "oversize", {"line": lineno}, raw)]
    try:
        event = parse_event(raw)
        out = book.handle(event)
        stats.events += 1  # after handle: an event too late to hold is a dead letter, not an event
        return out
    except BadEvent as exc:
        stats.dead_letters += 1
        return [dead_letter(str(exc), exc.category, {"line": lineno}, raw)]
    except TooLate as exc:
        stats.dead_letters += 1
        return [dead_letter(str(exc), "too_late", {"line": lineno}, raw)]


def _report(stats: BatchStats, book: Book) -> None:
    print(f"  {stats.lines:,} lines: {stats.records['charge post']:,} charges posted, "
          f"{stats.records['alert raised']:,} alerts raised, {stats.dead_letters:,} dead letters, "
          f"{book.open_count:,} encounters open", file=sys.stderr, flush=True)
