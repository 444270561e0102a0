"""`infusion-validator report`: the coder's report from the output records of `code`.

The figures are checked against sums computed here, straight from the records, not through the
report's own functions.
"""
import csv
import io
import json
import re
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from cli.report import build, finding_stakes, fold, view_of
from cli.report_html import render
from cli.report_spill import Spilled
from rules.codes import CODES
from simulator import simulate
from cli.batch import run_batch

CLI = [sys.executable, "-m", "cli.main"]
FEES = Path(__file__).parent.parent / "samples" / "fee-schedule-illustrative.csv"


def _run(*args, stdin: bytes = b"", cwd=None):
    return subprocess.run(CLI + list(args), input=stdin, capture_output=True, timeout=120, cwd=cwd)


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> Path:
    """The output of `code` for a small simulated day, bad input lines and documentation gaps included."""
    out = io.BytesIO()
    run_batch((line.encode() for line in simulate(encounters=300, seed=5, gap_rate=0.1, bad_line_rate=0.01)), out)
    path = tmp_path_factory.mktemp("report") / "coded.jsonl"
    path.write_bytes(out.getvalue())
    return path


@pytest.fixture(scope="module")
def day_page(day, tmp_path_factory) -> Path:
    html = tmp_path_factory.mktemp("html") / "day.html"
    result = _run("report", str(day), "-o", str(html), "--fee-schedule", str(FEES))
    assert result.returncode == 0, result.stderr
    assert str(html).encode() in result.stderr and b"encounters" in result.stderr  # path and one-line summary
    return html


@pytest.fixture(scope="module")
def day_html(day_page) -> str:
    return day_page.read_text()


@pytest.fixture(scope="module")
def day_csv(day_page) -> list[dict]:
    with open(day_page.with_suffix(".csv"), newline="") as f:
        return list(csv.DictReader(f))


def _records(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _fees() -> dict[str, Decimal]:
    rows = [ln.split(",") for ln in FEES.read_text().splitlines()[1:] if ln and not ln.startswith("#")]
    return {cpt: Decimal(amount) for cpt, amount in rows if cpt != "cpt"}


def _net_lines(records: list[dict]) -> list[dict]:
    reversed_ids = {r["reverses"] for r in records if r["kind"] == "charge" and r["action"] == "reverse"}
    posts = {r["charge_id"]: r for r in records if r["kind"] == "charge" and r["action"] == "post"}
    return [r for cid, r in posts.items() if cid not in reversed_ids]


def _standing(records: list[dict]) -> list[dict]:
    last = {}
    for r in records:
        if r["kind"] == "alert":
            last[r["alert_id"]] = r
    return [a for a in last.values() if a["state"] == "raised"]


def _category_amount(html: str, category: str) -> Decimal:
    m = re.search(rf'<tr data-category="{category}">.*?data-amount=\'([\d.]+)\'', html)
    return Decimal(m[1])


def test_every_net_cpt_is_in_the_page_with_its_units_and_every_encounter_in_the_csv(day, day_html, day_csv):
    net = _net_lines(_records(day))
    assert net
    units = Counter()
    for line in net:
        units[line["cpt"]] += line["units"]
    page = {m[1]: int(m[2].replace(",", "")) for m in
            re.finditer(r'<tr data-key="(\w+)"><td><bdi>\w+</bdi></td><td class=n>[\d,]+</td><td class=n>([\d,]+)</td>',
                        _table(day_html, "by-cpt"))}
    assert {cpt: n for cpt, n in page.items() if n} == units  # rows with 0 net units: a CPT only at stake
    assert {r["encounter_id"] for r in day_csv if r["row"] == "line"} == {line["encounter_id"] for line in net}


def test_reversed_lines_are_not_in_the_report():
    records = [_charge("c1", "96365"), _charge("c2", "96374"),
               {**_charge("r1", "96374"), "action": "reverse", "reverses": "c2"}]
    [view] = _views(records)
    assert [line["cpt"] for line in view.lines] == ["96365"]


def test_three_charts_drawn_inline_as_svg(day_html):
    for chart in ("chart-trend", "chart-units", "chart-gaps"):
        figure = re.search(rf"<figure id={chart}>(.*?)</figure>", day_html, re.S)
        assert figure and figure[1].startswith("<svg") and "</svg>" in figure[1]
    assert day_html.count("<svg") == 3


def test_nothing_is_fetched_when_the_report_is_opened(day_html):
    lowered = day_html.lower()
    assert not re.search(r"https?:|url\((?!#)|@import", lowered)  # no URL: no <script src>, <link href>, url(http...)
    assert "content-security-policy" in lowered and "default-src 'none'" in lowered
    assert "<script" not in lowered and "<link" not in lowered and "<img" not in lowered


def test_missed_and_held_amounts_equal_sums_from_the_records(day, day_html):
    records, fees = _records(day), _fees()
    standing = _standing(records)
    missed = Decimal(0)
    for a in standing:
        if a["code"] == "PREBILL_MISSED_CHARGE":
            cpt, supported, submitted = re.match(r"(\d+): documentation supports (\d+) unit\(s\), (\d+)", a["message"]).groups()
            missed += fees[cpt] * (int(supported) - int(submitted))
    gaps = [a for a in standing if a["audience"] == "nursing"]
    gap_admins = {(a["encounter_id"], a["administration_id"]) for a in gaps}
    held = sum((fees[line["cpt"]] * line["units"] for line in _net_lines(records)
                if line["incomplete_documentation"]
                or any((line["encounter_id"], x) in gap_admins for x in line["administration_ids"])
                or (line["encounter_id"], None) in gap_admins), Decimal(0))
    assert missed > 0 and held > 0  # the day has both, or the test proves nothing
    assert _category_amount(day_html, "missed") == missed
    assert _category_amount(day_html, "held") == held
    assert f"{missed:,.2f}" in day_html and f"{held:,.2f}" in day_html


def test_every_prebill_finding_of_the_day_is_read_back_from_its_wording(day):
    """rules/prebill.py words the findings; if that wording changes, the money at stake must not
    silently drop to zero."""
    findings = [a for a in _standing(_records(day)) if a["code"].startswith("PREBILL_")]
    assert {a["code"] for a in findings} >= {"PREBILL_MISSED_CHARGE", "PREBILL_ADDITIONAL_HOUR_UNSUPPORTED"}
    for a in findings:
        if "modifiers differ" not in a["message"]:
            assert finding_stakes(a, Counter()), a["message"]


def test_unsupported_units_counted_once_per_cpt(tmp_path):
    """96360 submitted as initial is both hydration-as-initial and a second initial code: one unit at
    stake, not two. An add-on hour finding states its units: 3 submitted, 1 supported, 2 at stake."""
    records = [_charge("c1", "96365"), _charge("c2", "96366"),
               _alert("a1", "PREBILL_HYDRATION_AS_INITIAL", "96360 (initial hydration) was submitted but a drug "
                      "service is the initial service: hydration is secondary"),
               _alert("a2", "PREBILL_TWO_INITIAL_CODES", "Submitted 2 initial service codes (96360 among them) "
                      "for 1 access group(s): report one initial service per group"),
               _alert("a3", "PREBILL_ADDITIONAL_HOUR_UNSUPPORTED", "3 unit(s) of add-on hour 96366 submitted but "
                      "the documented times support 1: an additional hour needs more than 30 minutes")]
    path = tmp_path / "r.jsonl"
    path.write_bytes(_jsonl(records))
    out = tmp_path / "r.html"
    assert _run("report", str(path), "-o", str(out), "--fee-schedule", str(FEES)).returncode == 0
    html, fees = out.read_text(), _fees()
    assert _category_amount(html, "unsupported") == fees["96360"] + 2 * fees["96366"]


def test_hostile_strings_in_records_are_escaped():
    hostile = "<script>alert('x')</script>"
    records = [{**_charge("c1", "96365"), "explanation": hostile, "encounter_id": "E<img src=x>1",
                "administration_ids": ["<b>A1</b>"]},
               {**_alert("a1", "STOP_TIME_MISSING", hostile, audience="nursing"), "encounter_id": "E<img src=x>1",
                "administration_id": "<b>A1</b>", "location": {"unit": "<i>4W</i>"}}]
    report = build([("<source>", io.BytesIO(_jsonl(records)), None)], top=10)
    html = render(report, None, "<csv>")
    assert "<script" not in html and "<img" not in html and "<b>A1" not in html and "<i>4W" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html and "&lt;source&gt;" in html


def test_a_bad_line_is_counted_not_fatal(tmp_path):
    good = _jsonl([_charge("c1", "96365")])
    raw = good + b"{not json\n" + b"[]\n" + b'{"kind":"charge","charge_id":"c9"}\n' + b"\xff\xfe\n"
    out = tmp_path / "r.html"
    result = _run("report", "-", "-o", str(out), stdin=raw)
    assert result.returncode == 2, result.stderr  # written, but some lines were not read
    assert b"4 unreadable lines" in result.stderr
    html = out.read_text()
    assert "4 line(s) could not be read" in html and "standard input:2, standard input:3, standard input:4, standard input:5" in html
    assert '<tr data-key="96365">' in html


def test_standard_input_and_default_output_path(tmp_path, day):
    result = _run("report", "-", stdin=day.read_bytes(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(b"report.html: ")
    html = (tmp_path / "report.html").read_text()
    assert "standard input" in html and "<svg" in html and (tmp_path / "report.csv").read_text().startswith("encounter_id,")


def test_without_a_fee_schedule_units_only_and_how_to_add_amounts(day, tmp_path):
    out = tmp_path / "r.html"
    assert _run("report", str(day), "-o", str(out)).returncode == 0
    html = out.read_text()
    assert "data-amount" not in html and "--fee-schedule" in html and "cpt,amount" in html


def test_a_bad_fee_schedule_is_an_error_naming_the_line(tmp_path, day):
    fees = tmp_path / "fees.csv"
    fees.write_text("cpt,amount\n96365,150\n96366,fifty\n")
    result = _run("report", str(day), "-o", str(tmp_path / "r.html"), "--fee-schedule", str(fees))
    assert result.returncode == 1 and b"line 3" in result.stderr and not (tmp_path / "r.html").exists()


def test_the_illustrative_fee_schedule_says_so_and_covers_every_code(day_html):
    text = FEES.read_text()
    assert "ILLUSTRATIVE" in text and "NOT CMS rates" in text
    assert set(CODES.values()) <= set(_fees())
    assert "ILLUSTRATIVE" in day_html and "NOT CMS rates" in day_html  # the label travels into the report


def test_help_has_an_example():
    result = _run("report", "--help")
    assert result.returncode == 0 and b"infusion-validator report coded.jsonl --fee-schedule" in result.stdout


# -- hand-built records ----------------------------------------------------------------------


def _charge(charge_id: str, cpt: str, units: int = 1) -> dict:
    return {"kind": "charge", "charge_id": charge_id, "action": "post", "reverses": None, "encounter_id": "E1",
            "cpt": cpt, "units": units, "modifiers": [], "service_date": "2026-03-02", "administration_ids": ["A1"],
            "incomplete_documentation": False, "explanation": f"{cpt} explained"}


def _alert(alert_id: str, code: str, message: str, audience: str = "coding") -> dict:
    return {"kind": "alert", "alert_id": alert_id, "encounter_id": "E1", "administration_id": None, "code": code,
            "severity": "hard", "state": "raised", "message": message, "audience": audience}


def _views(records: list[dict]) -> list:
    return [view_of(e) for e in fold((("test", orjson.dumps(r)) for r in records), Spilled()).values()]


def _table(html: str, table_id: str) -> str:
    return re.search(rf"<table id={table_id}>(.*?)</table>", html, re.S)[1]


def _jsonl(records: list[dict]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


# -- a lookback's scale ----------------------------------------------------------------------


def _copies(day: Path, n: int, out: Path) -> Path:
    """`n` copies of a day's records, each copy's encounters (and ids) their own: an archive n times
    the day, written without running `code` n times."""
    text = day.read_bytes()
    with open(out, "wb") as f:
        for k in range(n):
            f.write(re.sub(rb'"((?:ENC|ch-|rv-|al-)[\w-]+)"', rb'"\1-%d"' % k, text))
    return out


def test_the_csv_sums_equal_the_page(day_html, day_csv):
    """The page's units by CPT and revenue at stake by category are the sums of the CSV's rows."""
    units, stake = Counter(), {}
    for r in day_csv:
        if r["row"] == "line":
            units[r["cpt"]] += int(r["units"])
        elif r["row"] == "at_stake":
            stake[r["category"]] = stake.get(r["category"], Decimal(0)) + Decimal(r["amount"] or 0)
    page_units = {m[1]: int(m[2].replace(",", "")) for m in re.finditer(
        r'<tr data-key="(\w+)"><td><bdi>\w+</bdi></td><td class=n>[\d,]+</td><td class=n>([\d,]+)</td>',
        _table(day_html, "by-cpt"))}
    assert {c: n for c, n in page_units.items() if n} == units
    for category in ("missed", "unsupported", "held"):
        assert _category_amount(day_html, category) == stake.get(category, Decimal(0)), category
    assert sum(stake.values()) > 0


def test_the_page_does_not_grow_with_the_archive(day, tmp_path):
    """10 and 40 days' worth of the day: the same page size for the same --top (the rest is in the
    CSV, which grows with the archive)."""
    sizes = {}
    for n in (10, 40):
        records = _copies(day, n, tmp_path / f"x{n}.jsonl")
        page = tmp_path / f"x{n}.html"
        result = _run("report", str(records), "-o", str(page), "--top", "20", "--fee-schedule", str(FEES))
        assert result.returncode == 0, result.stderr
        sizes[n] = page.stat().st_size, len(page.with_suffix(".csv").read_bytes().splitlines()) - 1
    (page10, rows10), (page40, rows40) = sizes[10], sizes[40]
    assert page40 < 1.1 * page10 and page40 < 1_000_000, sizes
    assert rows40 == 4 * rows10
    html = (tmp_path / "x40.html").read_text()
    listed = len(re.findall(r"<details id=", html))
    assert listed == 20 and re.search(r"id=not-listed>[\d,]+ more encounter\(s\) to work are not listed", html)


def test_several_files_and_a_period(tmp_path):
    march = [{**_charge(f"m{i}", "96365"), "encounter_id": f"M{i}", "service_date": f"2026-03-{i:02d}"}
             for i in range(1, 4)]
    april = [{**_charge("a1", "96374"), "encounter_id": "A1", "service_date": "2026-04-01"},
             _alert("x1", "STOP_TIME_MISSING", "document the stop", audience="nursing")]  # E1: no charge, no date
    (tmp_path / "march.jsonl").write_bytes(_jsonl(march))
    (tmp_path / "april.jsonl").write_bytes(_jsonl(april))
    out = tmp_path / "r.html"
    result = _run("report", str(tmp_path / "march.jsonl"), str(tmp_path / "april.jsonl"), "-o", str(out),
                  "--from", "2026-03-02", "--to", "2026-03-31")
    assert result.returncode == 0, result.stderr
    html = out.read_text()
    assert "march.jsonl, " in html and "april.jsonl" in html and "from 2026-03-02 to 2026-03-31" in html
    assert re.findall(r'<tr data-key="(2026-[\d-]+)">', _table(html, "by-day")) == ["2026-03-02", "2026-03-03"]
    assert "3 encounter(s) left out" in html  # M1 before the period, A1 after, E1 undated
    assert _run("report", str(tmp_path / "march.jsonl"), "--from", "2026-04-01", "--to", "2026-03-01").returncode == 1


def test_csv_cells_are_data_never_formulas(tmp_path):
    records = [{**_charge("c1", "96365"), "explanation": "=HYPERLINK(\"http://x\",\"click\")"},
               _alert("a1", "STOP_TIME_MISSING", " +cmd|' /C calc'!A0", audience="nursing")]
    (tmp_path / "r.jsonl").write_bytes(_jsonl(records))
    assert _run("report", str(tmp_path / "r.jsonl"), "-o", str(tmp_path / "r.html")).returncode == 0
    with open(tmp_path / "r.csv", newline="") as f:
        details = [r["detail"] for r in csv.DictReader(f)]
    assert "'=HYPERLINK(\"http://x\",\"click\")" in details and "' +cmd|' /C calc'!A0" in details


def test_a_browser_opens_the_page_of_a_large_day(day, tmp_path):
    """100 copies of the day (29,800 encounters): the page opens in headless Chromium, charts and
    tables drawn. How long it takes is measured by benchmarks/report.py, not here."""
    from tests.browser import chromium

    records = _copies(day, 100, tmp_path / "big.jsonl")
    page = tmp_path / "big.html"
    assert _run("report", str(records), "-o", str(page), "--fee-schedule", str(FEES)).returncode == 0
    browser = chromium()
    try:
        browser.get(page.as_uri())
        assert browser.execute_script("return document.readyState") == "complete"
        assert len(browser.find_elements("css selector", "#worklist tr")) == 201  # the header and --top 200
        assert len(browser.find_elements("css selector", "figure svg")) == 3
        assert re.search(r"[\d,]{6} encounters", browser.find_element("tag name", "p").text)
    finally:
        browser.quit()
