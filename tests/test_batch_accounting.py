"""`code --summary` accounts for every line read (issue 12 item 6):
lines read = events accepted + dead-lettered + blank lines skipped + duplicates ignored."""
import io
import random
import subprocess
import sys

import pytest

from models.errors import BadEvent
from models.events import parse_event
from simulator import simulate
from cli.batch import run_batch
from streams.summary import summary


def _day_with_repeats() -> list[bytes]:
    """A simulated day with bad lines, plus repeats a real feed sends: a line re-sent at once, a
    line re-sent much later (some after their discharge), a bad line re-sent, and blank lines."""
    rng = random.Random(12)
    lines = [line.encode() for line in simulate(encounters=300, seed=12, bad_line_rate=0.03)]
    out = []
    for line in lines:
        out.append(line)
        roll = rng.random()
        if roll < 0.03:
            out.append(line)  # re-sent at once (valid or bad, as it came)
        elif roll < 0.05:
            out.insert(rng.randrange(len(out)), b"   " if roll < 0.035 else b"")
    later = rng.sample(lines, 40)  # re-sent at the end of the day: after most discharges
    return out + later


def _expected(lines: list[bytes]) -> dict[str, int]:
    """Each line's fate, judged independently of the batch code: blank, rejected, a repeat of an
    (encounter, event_id) already accepted, or accepted."""
    counts = {"events": 0, "dead_letters": 0, "blank_lines": 0, "duplicates": 0}
    seen = set()
    for raw in lines:
        if not raw.strip():
            counts["blank_lines"] += 1
            continue
        try:
            event = parse_event(raw)
        except BadEvent:
            counts["dead_letters"] += 1
            continue
        key = (event.encounter_id, event.event_id)
        counts["duplicates" if key in seen else "events"] += 1
        seen.add(key)
    return counts


@pytest.fixture(scope="module")
def day():
    lines = _day_with_repeats()
    stats = run_batch(iter(lines), io.BytesIO())
    return lines, stats


def test_every_line_is_counted_once(day):
    lines, stats = day
    assert stats.lines == len(lines)
    assert stats.events + stats.dead_letters + stats.blank_lines + stats.duplicates == stats.lines


def test_each_count_matches_what_the_lines_are(day):
    lines, stats = day
    expected = _expected(lines)
    got = {name: getattr(stats, name) for name in expected}
    assert got == expected
    # The day really exercises every kind (else the sum above proves little).
    assert all(n > 0 for n in got.values()), got
    assert stats.dead_letters == stats.records["dead letter"]  # one dead letter record per rejected line


def test_the_summary_prints_the_four_counts(day):
    _, stats = day
    text = summary(stats)
    for label, n in (("Lines read", stats.lines), ("events accepted", stats.events),
                     ("dead-lettered", stats.dead_letters), ("blank lines skipped", stats.blank_lines),
                     ("duplicates ignored", stats.duplicates)):
        line = next(l for l in text.splitlines() if l.strip().startswith(label))
        assert line.split()[-1] == f"{n:,}", line


def test_code_summary_on_the_command_line(day):
    lines, stats = day
    result = subprocess.run([sys.executable, "-m", "cli.main", "code", "-", "--summary"],
                            input=b"\n".join(lines) + b"\n", capture_output=True, timeout=120)
    assert result.returncode == 2  # some lines were dead-lettered
    err = result.stderr.decode()
    assert f"Lines read              {stats.lines:,}".split() == err.splitlines()[0].split()
    assert f"duplicates ignored {stats.duplicates:,}".split() == \
        next(l for l in err.splitlines() if "duplicates ignored" in l).split()


def test_an_event_too_late_to_hold_is_a_dead_letter_not_an_event():
    ev = ('{"event_id":"e%d","type":"encounter.discharged","encounter_id":"%s",'
          '"occurred_at":"%s"}')
    lines = [(ev % (1, "E1", "2026-03-20T10:00:00-05:00")).encode(),  # moves the clock
             (ev % (2, "E2", "2026-03-01T10:00:00-05:00")).encode()]  # 19 days earlier, not held: too late
    stats = run_batch(iter(lines), io.BytesIO())
    assert (stats.lines, stats.events, stats.dead_letters, stats.duplicates) == (2, 1, 1, 0)
