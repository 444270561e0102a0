"""The coder's report at the scale of a lookback audit, beside `code` on the same day (issue 29).

    python -m benchmarks.report [--encounters 20000,100000,200000] [--fee-schedule FILE]

For each size: simulates a day (not timed), runs `infusion-validator code` and `infusion-validator
report` as the commands a user runs (wall clock and peak RSS of each process, from wait4), measures
the page and the CSV, and opens the page of the size named by --render (default 100,000) in
Debian's headless Chromium (seconds until the document is complete). Prints one row per size and
the targets with their verdicts:

  page <= 10 MB; rendered by headless Chromium within 30 s; report peak RSS <= 400 MB; report time
  <= 0.6x code's on the same day (at --render's size); report peak RSS flat from the smallest to
  the largest size (within 25%).
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "cli.main"]
FEES = "samples/fee-schedule-illustrative.csv"
TARGETS = {"page_mb": 10.0, "render_s": 30.0, "report_mb": 400.0, "time_ratio": 0.6, "flat": 1.25}


def timed(argv: list[str], stdout) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command."""
    began = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - began
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 2):
        raise SystemExit(f"{' '.join(argv)} exited {code}: {err[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024


def render_seconds(page: Path) -> float | None:
    """Seconds from asking headless Chromium for the page to the document complete; None without it."""
    try:
        from tests.browser import CHROMIUM, DRIVER, chromium
    except ImportError:
        return None
    if not (CHROMIUM and DRIVER):
        return None
    browser = chromium()
    try:
        browser.set_page_load_timeout(120)
        began = time.perf_counter()
        browser.get(page.as_uri())  # returns once the document is loaded
        assert browser.execute_script("return document.readyState") == "complete"
        return time.perf_counter() - began
    finally:
        browser.quit()


def measure(n: int, work: Path, fees: str, render: bool) -> dict:
    events, coded, page = work / f"day-{n}.jsonl", work / f"coded-{n}.jsonl", work / f"report-{n}.html"
    with open(events, "wb") as out:
        subprocess.run(CLI + ["simulate", "--encounters", str(n), "--seed", "29"], stdout=out, check=True)
    with open(coded, "wb") as out:
        code_s, code_mb = timed(CLI + ["code", str(events)], out)
    report_s, report_mb = timed(CLI + ["report", str(coded), "-o", str(page), "--fee-schedule", fees],
                                subprocess.DEVNULL)
    row = {"encounters": n, "events": sum(1 for _ in open(events, "rb")), "code_s": code_s, "code_mb": code_mb,
           "report_s": report_s, "report_mb": report_mb, "page_mb": page.stat().st_size / 1e6,
           "csv_mb": page.with_suffix(".csv").stat().st_size / 1e6,
           "render_s": render_seconds(page) if render else None}
    for path in (events, coded):
        path.unlink()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encounters", default="20000,100000,200000", help="sizes, comma-separated")
    parser.add_argument("--render", type=int, default=100_000, help="the size whose page Chromium opens")
    parser.add_argument("--fee-schedule", default=FEES)
    args = parser.parse_args()
    sizes = [int(n) for n in args.encounters.split(",")]

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="iv-bench-report-") as tmp:
        for n in sizes:
            rows.append(measure(n, Path(tmp), args.fee_schedule, render=n == args.render))
            r = rows[-1]
            render = f"{r['render_s']:.1f} s" if r["render_s"] is not None else "-"
            print(f"{n:>9,} encounters ({r['events']:,} events): code {r['code_s']:.1f} s {r['code_mb']:.0f} MB | "
                  f"report {r['report_s']:.1f} s {r['report_mb']:.0f} MB ({r['report_s'] / r['code_s']:.2f}x code) | "
                  f"page {r['page_mb']:.2f} MB, csv {r['csv_mb']:.0f} MB | chromium {render}", flush=True)
    verdicts(rows, args.render)


def verdicts(rows: list[dict], render_size: int) -> None:
    def say(name: str, value: str, ok: bool) -> None:
        print(f"  {'met   ' if ok else 'MISSED'} {name}: {value}")

    print("targets:")
    page = max(r["page_mb"] for r in rows)
    say("page <= 10 MB at every size", f"largest {page:.2f} MB", page <= TARGETS["page_mb"])
    rendered = [r for r in rows if r["encounters"] == render_size]
    if rendered and rendered[0]["render_s"] is not None:
        s = rendered[0]["render_s"]
        say(f"rendered by headless Chromium within 30 s ({render_size:,} encounters)", f"{s:.1f} s",
            s <= TARGETS["render_s"])
    else:
        print(f"  not measured: Chromium render ({render_size:,} encounters not run, or chromium not installed)")
    peak = max(r["report_mb"] for r in rows)
    say("report peak RSS <= 400 MB", f"largest {peak:.0f} MB", peak <= TARGETS["report_mb"])
    if rendered:
        ratio = rendered[0]["report_s"] / rendered[0]["code_s"]
        say(f"report time <= 0.6x code's ({render_size:,} encounters)", f"{ratio:.2f}x", ratio <= TARGETS["time_ratio"])
    if len(rows) > 1:
        small, large = rows[0], rows[-1]
        growth = large["report_mb"] / small["report_mb"]
        say(f"report memory flat from {small['encounters']:,} to {large['encounters']:,} encounters",
            f"{small['report_mb']:.0f} -> {large['report_mb']:.0f} MB ({growth:.2f}x)", growth <= TARGETS["flat"])


if __name__ == "__main__":
    main()
