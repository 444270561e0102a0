"""`hl7 translate` / `fhir translate`: messages to events offline, as an interface analyst runs them."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

SAMPLES = Path(__file__).parents[1] / "samples"
CLI = [sys.executable, "-m", "cli.main"]
SCENARIO = sorted(str(p) for p in (SAMPLES / "hl7" / "scenario").glob("*.hl7"))


def _run(*args, stdin=None):
    return subprocess.run([*CLI, *args], capture_output=True, input=stdin, timeout=60)


def test_an_archive_translates_to_the_events_of_its_scenario_and_codes_like_them():
    done = _run("hl7", "translate", *SCENARIO)
    assert done.returncode == 0 and done.stderr == b""
    events = [json.loads(line) for line in done.stdout.splitlines()]
    scenario = [json.loads(line) for line in (SAMPLES / "hl7" / "scenario.jsonl").read_text().splitlines()]
    assert {e["event_id"] for e in events} == {e["event_id"] for e in scenario}
    coded = _run("code", "-", stdin=done.stdout)
    assert coded.returncode == 0 and b'"kind":"charge"' in coded.stdout


def test_rejections_go_to_standard_error_one_json_line_each_with_every_problem_and_exit_2():
    done = _run("hl7", "translate", str(SAMPLES / "hl7" / "malformed-no-offset.hl7"), *SCENARIO,
                str(SAMPLES / "hl7" / "ras-unknown-drug.hl7"))
    assert done.returncode == 2
    assert done.stdout  # the good messages still translate
    rejections = [json.loads(line) for line in done.stderr.splitlines()]
    assert [r["source"]["file"] for r in rejections] == ["malformed-no-offset.hl7", "ras-unknown-drug.hl7"]
    assert all(r["kind"] == "rejection" and r["ack"] == "AE" and r["problems"] for r in rejections)
    assert rejections[1]["alerts"][0]["code"] == "DRUG_CLASS_UNKNOWN"


def test_a_time_zone_places_local_times_and_a_wrong_one_is_a_usage_error():
    no_offset = str(SAMPLES / "hl7" / "malformed-no-offset.hl7")
    assert _run("hl7", "translate", "--timezone", "America/New_York", no_offset).returncode == 0
    bad = _run("hl7", "translate", "--timezone", "Mars/Olympus", no_offset)
    assert bad.returncode == 1 and b"IANA time zone" in bad.stderr


@pytest.mark.parametrize("sample,ok", [("bundle-transaction.json", True), ("medication-administration-unknown-drug.json", False)])
def test_fhir_files_translate_the_same_way(sample, ok):
    done = _run("fhir", "translate", str(SAMPLES / "fhir" / sample))
    assert done.returncode == (0 if ok else 2)
    assert bool(done.stdout) == ok and bool(done.stderr) != ok


def test_a_missing_file_or_json_is_a_usage_error_that_says_what_to_give(tmp_path):
    assert _run("hl7", "translate", str(tmp_path / "nope.hl7")).returncode == 1
    (tmp_path / "x.json").write_text("{not json")
    done = _run("fhir", "translate", str(tmp_path / "x.json"))
    assert done.returncode == 1 and b"give FHIR JSON files" in done.stderr


def test_standard_input_is_read_when_the_file_is_a_dash():
    scenario = b"".join((Path(p).read_bytes() for p in SCENARIO))
    from_stdin = _run("hl7", "translate", "-", stdin=scenario)
    assert from_stdin.returncode == 0 and from_stdin.stdout == _run("hl7", "translate", *SCENARIO).stdout
    bundle = SAMPLES / "fhir" / "bundle-transaction.json"
    from_stdin = _run("fhir", "translate", "-", stdin=bundle.read_bytes())
    assert from_stdin.returncode == 0 and from_stdin.stdout == _run("fhir", "translate", str(bundle)).stdout


def test_version():
    from importlib.metadata import version

    done = _run("--version")
    assert done.returncode == 0 and done.stdout.decode() == f"infusion-validator {version('infusion-validator')}\n"
