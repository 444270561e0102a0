"""`infusion-validator code` as a user runs it: files, stdin, bad lines, exit status."""
import json
import subprocess
import sys

import pytest

from tests.events import discharge, start, stop

CLI = [sys.executable, "-m", "cli.main"]


def _run(*args, stdin: bytes = b""):
    return subprocess.run(CLI + list(args), input=stdin, capture_output=True, timeout=120)


def _jsonl(events) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


GOOD = [start("A1", "10:00"), stop("A1", "10:45"), discharge("11:00")]


def test_clean_file_exits_0(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(_jsonl(GOOD))
    result = _run("code", str(path))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["kind"], r["cpt"]) for r in records] == [("charge", "96365")]


def test_bad_lines_are_dead_lettered_with_line_numbers_and_the_rest_coded():
    other = [start("B1", "10:00", enc="E2"), stop("B1", "10:45", enc="E2"), discharge("11:00", enc="E2")]
    raw = (_jsonl(GOOD[:1]) + b"{truncated\n" + _jsonl(GOOD[1:2]) + b"\n" + b"[]\n"
           + b'{"event_id":"x","type":"administration.stopped","encounter_id":"E9",'
             b'"occurred_at":"2026-03-02T10:00:00","administration_id":"Z"}\n'
           + b"\xff\xfe garbage\n" + _jsonl(GOOD[2:]) + _jsonl(other))
    result = _run("code", "-", stdin=raw)
    assert result.returncode == 2
    records = [json.loads(line) for line in result.stdout.splitlines()]
    dead = [(r["source"]["line"], r["category"]) for r in records if r["kind"] == "dead_letter"]
    assert dead == [(2, "invalid_json"), (5, "schema"), (6, "timestamp"), (7, "invalid_json")]
    assert all(r["reason"] and r["raw"] for r in records if r["kind"] == "dead_letter")
    charges = sorted((r["encounter_id"], r["cpt"]) for r in records if r["kind"] == "charge")
    assert charges == [("E1", "96365"), ("E2", "96365")]


def test_oversize_line_is_dead_lettered_and_truncated():
    huge = json.dumps({**GOOD[0], "note": "x" * 300_000}).encode() + b"\n"
    result = _run("code", "-", stdin=huge + _jsonl(GOOD[1:]))
    assert result.returncode == 2
    dead = json.loads(result.stdout.splitlines()[0])
    assert dead["category"] == "oversize" and len(dead["raw"]) < 3000


def test_missing_file_is_an_io_error():
    result = _run("code", "/nonexistent/events.jsonl")
    assert result.returncode == 1 and b"no such file" in result.stderr


def test_usage_error_exits_1():
    result = _run("code", "--no-such-flag")
    assert result.returncode == 1 and b"usage:" in result.stderr


def test_bad_policy_file_exits_1_with_the_fix(tmp_path):
    policy = tmp_path / "p.toml"
    policy.write_text('initial_tiebreak = "random"\n')
    result = _run("code", "--policy", str(policy), "-", stdin=_jsonl(GOOD))
    assert result.returncode == 1 and b"choose one of longest, earliest_start" in result.stderr


def test_policy_file_changes_coding(tmp_path):
    policy = tmp_path / "p.toml"
    policy.write_text('missing_stop_fallback = "none"\n')
    events = [start("A1", "10:00"), discharge("11:00")]
    records = [json.loads(l) for l in _run("code", "--policy", str(policy), "-", stdin=_jsonl(events)).stdout.splitlines()]
    assert [r["kind"] for r in records] == ["alert"]


def test_open_encounters_print_alerts_not_charges():
    events = [start("A1", "10:00", ordered_duration_minutes=30), start("B", "11:30", method="push")]
    records = [json.loads(l) for l in _run("code", "-", stdin=_jsonl(events)).stdout.splitlines()]
    assert [(r["kind"], r["code"]) for r in records] == [("alert", "STOP_TIME_OVERDUE")]


def test_summary_on_stderr():
    result = _run("code", "--summary", "-", stdin=_jsonl(GOOD))
    assert b"Net charges by CPT" in result.stderr and b"96365" in result.stderr


def test_help_explains_output_and_exit_status():
    out = _run("code", "--help").stdout.decode()
    for words in ("dead_letter", "Exit status", "reversal", "--policy"):
        assert words in out


@pytest.mark.parametrize("name", ["event.schema.json", "charge.schema.json", "alert.schema.json",
                                  "dead_letter.schema.json"])
def test_schema_export(tmp_path, name):
    assert _run("schema", "--out", str(tmp_path)).returncode == 0
    schema = json.loads((tmp_path / name).read_text())
    assert schema.get("type") == "object" or "oneOf" in schema or "discriminator" in schema


def test_retention_days_sets_how_long_a_closed_encounter_is_held():
    """A stop (10:45) read after events two days later: recoded within the default 14 days, a
    too_late dead letter with --retention-days 1 (the clock is the newest event time)."""
    later = [start("B1", "+2 10:00", enc="E2"), stop("A1", "10:45")]
    kept = _run("code", "-", stdin=_jsonl([start("A1", "10:00"), discharge("11:00")] + later))
    assert kept.returncode == 0, kept.stderr
    purged = _run("code", "--retention-days", "1", "-", stdin=_jsonl([start("A1", "10:00"), discharge("11:00")] + later))
    assert purged.returncode == 2
    letters = [json.loads(line) for line in purged.stdout.splitlines() if b"dead_letter" in line]
    assert [(d["category"], d["source"]["line"]) for d in letters] == [("too_late", 4)]
    assert "1 days" in letters[0]["reason"]
    assert _run("code", "--retention-days", "0", "-").returncode == 1
