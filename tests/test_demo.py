"""`infusion-validator demo`, run as a user runs it (a small fast day): what it prints after the day
is what issue 12 asks a user to see."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_demo_prints_what_a_user_reads_and_writes_the_report():
    done = subprocess.run([sys.executable, "-m", "cli.main", "demo", "--encounters", "80", "--speed", "40000",
                           "--exit-after-day"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    samples = out.split("Sample charge lines")[1].split("\n\n")[0].splitlines()[1:]
    assert len(samples) == 3 and all(re.match(r"  \S+ \d{5}(-\w\w)* x\d+: .+", line) for line in samples), samples
    assert re.search(r"Nursing documentation alerts .*\n  alert +raised +resolved +open\n", out)
    assert re.search(r"Coding findings .*\n  alert +raised +resolved +open\n", out)
    assert "PREBILL_" not in out.split("Nursing documentation alerts")[1].split("Coding findings")[0]
    url = re.search(r"Nursing worklist: (http://127\.0\.0\.1:\d+/)\n", out)
    report = re.search(r"Coder's report of the day: (\S+\.html) \(every encounter's rows in (\S+\.csv)\)", out)
    assert url and report
    html = Path(report.group(1)).read_text()
    assert "<svg" in html and "illustrative" in html.lower()
    assert Path(report.group(2)).read_text().startswith("encounter_id,row,")
    assert "For a lookback, run last month's MAR export through" in out
    assert re.search(r"Infusion pumps \(50% of pump infusions report\): \d+ open stop-time alert\(s\) name the pump's stop", out)
    billing = re.search(r"Billing interface file: (\S+\.hl7) \((\d+) HL7 DFT\^P03 messages: .*; 0 held\)", out)
    assert billing, out[-1500:]
    messages = [m for m in Path(billing.group(1)).read_bytes().split(b"\n") if m]
    assert len(messages) == int(billing.group(2)) > 0 and all(m.startswith(b"MSH|^~\\&|") for m in messages)
