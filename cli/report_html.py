"""The coder's report as one self-contained HTML file: inline CSS, charts drawn by matplotlib as inline
SVG, nothing fetched when it is opened (a coder may read it on a machine with no network).

Every string that comes from the records goes through `_d` (or `_e` where it is not shown as text):
explanations, messages and ids are written by other systems and must never become markup. `_d`
also removes control and bidirectional-override characters and isolates the value (`<bdi>`), so a
right-to-left override in a drug name cannot reverse the words around it; long unbroken values wrap.
Attribute values are quoted and built only from the product's own vocabulary (a severity outside
hard/warn/info is shown as info). Chart labels reach matplotlib as plain text, never as mathtext.
The page carries its own Content-Security-Policy: no script, nothing fetched.
"""
from __future__ import annotations

import io
import re
from collections import Counter
from decimal import Decimal
from html import escape

from cli.report import (HELD, MISSED, NO_DATE, UNSUPPORTED, EncounterView, FeeSchedule, Money, Report, Stake,
                        Tally, Totals)
from feeds.text import clean, cut

CATEGORY_TITLES = {
    MISSED: "Missed charges (documented, not submitted)",
    UNSUPPORTED: "Unsupported units (submitted, not documented)",
    HELD: "Held by missing documentation",
}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:75em;
padding:0 1em;color:#1d2430}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0 1em}th,td{border:1px solid #d5d9e0;padding:.25em .5em;
text-align:left;vertical-align:top}th{background:#f1f3f7}td.n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#5b6473}.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em .8em;margin:1em 0}
.hard{color:#a40000;font-weight:600}.warn{color:#8a5a00;font-weight:600}.info{color:#33608c}
.charts{display:flex;flex-wrap:wrap;gap:2em}.charts figure{margin:0;flex:1 1 28em}
figure svg{max-width:100%;height:auto}details{margin:.4em 0;border:1px solid #e2e5ea;padding:.3em .7em}
td.d{white-space:nowrap}summary{cursor:pointer;font-weight:600}code{font-size:.95em}ul{margin:.3em 0}
td,li,summary,p,h1,code{overflow-wrap:anywhere}bdi{unicode-bidi:isolate}
"""
# No script at all; styles inline (the page's block and the SVG charts' attributes); nothing fetched.
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
SEVERITIES = ("hard", "warn", "info")


def _e(value: object) -> str:
    return escape(clean(str(value))[0], quote=True)


def _d(value: object) -> str:
    """A value from the records, as isolated, escaped text."""
    return f"<bdi>{_e(value)}</bdi>"


def _severity(alert: dict) -> str:
    """A class attribute value from the product's vocabulary only."""
    severity = alert.get("severity")
    return severity if severity in SEVERITIES else "info"


def _money(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def render(report: Report, fees: FeeSchedule | None, csv_name: str | None = None) -> str:
    """The page: its size depends on the number of CPTs, units, days and findings, and on `--top`,
    never on the number of encounters (those not listed are in the CSV, `csv_name`)."""
    totals, listed = report.totals, report.listed
    source = ", ".join(report.sources)
    body = [
        f"<h1>Coder's report</h1><p class=muted>From the output records of <code>infusion-validator code</code> "
        f"in <code>{_e(source)}</code>{_period(report)}: {report.read.lines:,} lines, {totals.encounters:,} "
        f"encounters, {totals.to_work:,} with something to work.</p>",
        _input_notes(report),
        _stake_section(totals, fees),
        _charts(totals, fees),
        _breakdowns(totals, fees),
        _worklist(listed, totals, fees, csv_name),
        "<h2>Encounters most at stake</h2><p class=muted>Net charge lines (posts minus reversals) with the rule "
        "that decided each, standing pre-bill findings with what to correct, and open documentation gaps.</p>",
        *(_encounter(v, fees) for v in listed),
    ]
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>Coder's report: {_e(source)}</title><style>{CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")


def _period(report: Report) -> str:
    p = report.period
    if not p.given:
        return ""
    return (f", encounters first served {'from ' + p.start.isoformat() if p.start else ''}"
            f"{' ' if p.start and p.end else ''}{'to ' + p.end.isoformat() if p.end else ''}")


def _input_notes(report: Report) -> str:
    read, totals, notes = report.read, report.totals, []
    if read.unreadable:
        notes.append(f"{read.unreadable:,} line(s) could not be read as output records and were skipped "
                     f"(first: {_e(', '.join(read.unreadable_at))}).")
    if read.dead_letters:
        cats = ", ".join(f"{_e(c)} {n:,}" for c, n in sorted(read.dead_letters.items()))
        notes.append(f"{sum(read.dead_letters.values()):,} input event(s) were rejected by the coder "
                     f"(dead letters: {cats}); whatever they documented is not coded here.")
    if totals.orphan_reversals:
        notes.append(f"{totals.orphan_reversals:,} reversal(s) cancel a charge posted outside these records; "
                     "they change nothing here.")
    if totals.left_out:
        notes.append(f"{totals.left_out:,} encounter(s) left out: first served outside the period, or with no "
                     "charge line to date them.")
    return "".join(f"<p class=note>{n}</p>" for n in notes)


# -- revenue at stake ---------------------------------------------------------------------------


def _stake_section(totals: Totals, fees: FeeSchedule | None) -> str:
    rows = "".join(_category_row(cat, totals.stakes[cat], fees) for cat in CATEGORY_TITLES)
    head = "<tr><th>category</th><th>units</th>" + ("<th>amount</th><th>units with no fee</th>" if fees else "") + "</tr>"
    return (f"<h2>Revenue at stake</h2>{_fee_note(fees)}<table id=stake-totals>{head}{rows}</table>"
            "<p class=muted>Missed: units the documentation supports beyond the submitted lines "
            "(PREBILL_MISSED_CHARGE). Unsupported: submitted units the documentation does not support "
            "(PREBILL_* findings); where a finding names a code but not its units it counts 1 unit, the least "
            "it can be, marked &ge;. Held: net lines coded on a fallback (incomplete documentation) or behind "
            "an administration with an open documentation gap.</p>" + _pump_note(totals))


def _pump_note(totals: Totals) -> str:
    """Infusion pump evidence (coding-rules §11), counted beside the money: the pump says what the
    chart lacks, but its figures are not charges until documentation supports them."""
    p = totals.pumps
    if not p:
        return ""
    return (f"<p id=pump-evidence>Infusion pump evidence: {p['uncharted']:,} infusion(s) the pump delivered and "
            f"nobody charted (each a missed charge until charted, not counted above); {p['mismatch']:,} chart/pump "
            f"time mismatch(es), {p['mismatch_changes_codes']:,} of which would change the codes or units; "
            f"{p['stop_known_to_pump']:,} missing or overdue stop time(s) the pump's stop could close.</p>")


def _fee_note(fees: FeeSchedule | None) -> str:
    if fees is None:
        return ("<p class=note>Units only. To see amounts, give a fee schedule: <code>infusion-validator report "
                "coded.jsonl --fee-schedule fees.csv</code>, a CSV with the header <code>cpt,amount</code> "
                "(e.g. <code>samples/fee-schedule-illustrative.csv</code>, made-up amounts).</p>")
    notes = "".join(f"<br>{_e(n)}" for n in fees.notes)
    return (f"<p class=note>Amounts = units &times; the fee in <code>{_e(fees.source)}</code>, as given; this "
            f"report knows no payer rates.{notes}</p>")


def _category_row(category: str, money: Money, fees: FeeSchedule | None) -> str:
    approx = "&ge; " if money.approx else ""
    row = f"<tr data-category=\"{category}\"><td>{CATEGORY_TITLES[category]}</td><td class=n>{approx}{money.units:,}</td>"
    if fees:
        row += f"<td class=n data-amount='{money.amount}'>{approx}{_money(money.amount)}</td><td class=n>{money.unpriced:,}</td>"
    return row + "</tr>"


def _at_stake(money: Money, fees: FeeSchedule | None) -> str:
    """A breakdown cell: the amount at stake (units without a fee schedule), blank when nothing."""
    if not money.units:
        return ""
    approx = "&ge; " if money.approx else ""
    if fees is None:
        return f"{approx}{money.units:,}"
    return approx + _money(money.amount) + (f" <span class=muted>+{money.unpriced} unit(s) no fee</span>"
                                            if money.unpriced else "")


# -- breakdowns ---------------------------------------------------------------------------------


def _breakdowns(totals: Totals, fees: FeeSchedule | None) -> str:
    stake = "amount at stake" if fees else "units at stake"
    cpt = _table("by-cpt", ("CPT", "net lines", "net units", stake), sorted(totals.by_cpt.items()),
                 lambda t: (t.lines, t.units), fees)
    work = ("encounters", "to work", "net units", "findings", "open gaps", stake)
    unit = _table("by-unit", ("unit", *work), sorted(totals.by_unit.items()), _work_cells, fees)
    day = _table("by-day", ("first service date", *work), sorted(totals.by_day.items()), _work_cells, fees)
    finding = _table("by-finding", ("finding or hold", "standing", "encounters", stake),
                     sorted(totals.by_finding.items(), key=lambda kv: (-kv[1].stake.amount, -kv[1].stake.units, kv[0])),
                     lambda t: (t.findings, t.encounters), fees)
    return ("<h2>Breakdowns</h2><p class=muted>An encounter counts under its unit (of its latest alert) and its "
            "first service date; money under the CPT at stake; a surplus two findings explain counts under "
            "both findings.</p>"
            f"<h3>By CPT</h3>{cpt}<h3>By finding</h3>{finding}<h3>By unit</h3>{unit}<h3>By day</h3>{day}")


def _work_cells(t: Tally) -> tuple:
    return t.encounters, t.to_work, t.units, t.findings, t.open_gaps


def _table(table_id: str, head: tuple[str, ...], rows, cells, fees: FeeSchedule | None) -> str:
    heads = "".join(f"<th>{h}</th>" for h in head)
    body = "".join(f"<tr data-key=\"{_e(key)}\"><td>{_d(key)}</td>"
                   + "".join(f"<td class=n>{n:,}</td>" for n in cells(t))
                   + f"<td class=n data-units={t.stake.units}{_amount_attr(t.stake, fees)}>"
                   + f"{_at_stake(t.stake, fees)}</td></tr>"
                   for key, t in rows)
    return f"<table id={table_id}><tr>{heads}</tr>{body}</table>" if body else "<p class=muted>None.</p>"


def _amount_attr(money: Money, fees: FeeSchedule | None) -> str:
    return f" data-amount='{money.amount}'" if fees else ""


# -- charts -------------------------------------------------------------------------------------


def _charts(totals: Totals, fees: FeeSchedule | None) -> str:
    from matplotlib import rc_context

    # labels are data: plain text (a CPT of `$x^{$` is not mathtext), control characters removed, cut
    units = sorted((_label(c), t.units) for c, t in totals.by_cpt.items() if t.units)
    gaps = sorted((_label(c), n) for c, n in totals.alerts.get("nursing", {}).items())
    days = sorted((d, t) for d, t in totals.by_day.items() if d != NO_DATE)
    with rc_context({"text.parse_math": False}):
        drawn = _units_chart(units), _gaps_chart(gaps), _trend_chart(days, fees)
    what = "amount" if fees else "units"
    return ("<h2>Charts</h2><div class=charts>"
            f"<figure id=chart-trend>{drawn[2]}<figcaption>By first service date: {what} at stake and encounters "
            "to work</figcaption></figure>"
            f"<figure id=chart-units>{drawn[0]}<figcaption>Net units by CPT</figcaption></figure>"
            f"<figure id=chart-gaps>{drawn[1]}<figcaption>Documentation gaps by alert code: "
            "still open vs resolved</figcaption></figure></div>")


def _label(value: object) -> str:
    return cut(clean(str(value))[0], 40)


def _figure(rows: int):
    # a Figure without pyplot: no global figure registry to close, no GUI backend, and half the import time
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 1.2 + 0.28 * max(rows, 1)), layout="tight")
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _units_chart(units: list[tuple[str, int]]) -> str:
    fig, ax = _figure(len(units))
    if units:
        bars = ax.barh([c for c, _ in units], [n for _, n in units], color="#33608c")
        ax.bar_label(bars, padding=2, fontsize=8)
        ax.invert_yaxis()  # lowest CPT on top, as the tables read
    else:
        ax.text(0.5, 0.5, "no net charge lines", ha="center", transform=ax.transAxes)
    ax.set_xlabel("units")
    return _svg(fig, "units")


def _gaps_chart(gaps: list[tuple[str, Counter]]) -> str:
    fig, ax = _figure(len(gaps))
    if gaps:
        codes = [c for c, _ in gaps]
        opened = [n["open"] for _, n in gaps]
        bars = ax.barh(codes, opened, color="#c0392b", label="open")
        ax.bar_label(bars, padding=2, fontsize=8)
        bars = ax.barh(codes, [n["resolved"] for _, n in gaps], left=opened, color="#9bb7d4", label="resolved")
        ax.bar_label(bars, padding=2, fontsize=8)
        ax.invert_yaxis()
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, fontsize=8, frameon=False)  # above the bars
    else:
        ax.text(0.5, 0.5, "no documentation gaps", ha="center", transform=ax.transAxes)
    ax.set_xlabel("alerts")
    return _svg(fig, "gaps")


def _trend_chart(days: list[tuple[str, Tally]], fees: FeeSchedule | None) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.0), layout="tight")
    ax = fig.add_subplot()
    ax.spines[["top"]].set_visible(False)
    if days:
        x = range(len(days))
        stake = [float(t.stake.amount) if fees else t.stake.units for _, t in days]
        ax.bar(x, stake, color="#c0392b", label="at stake")
        ax.set_ylabel("amount at stake" if fees else "units at stake")
        work = ax.twinx()
        work.plot(x, [t.to_work for _, t in days], color="#33608c", marker="." if len(days) < 60 else None,
                  label="encounters to work")
        work.set_ylabel("encounters to work")
        step = max(1, len(days) // 8)  # at most ~8 date labels, whatever the period
        ax.set_xticks(list(x)[::step], [_label(d) for d, _ in days][::step], rotation=30, ha="right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no dated charge lines", ha="center", transform=ax.transAxes)
    return _svg(fig, "trend")


def _svg(fig, salt: str) -> str:
    from matplotlib import rc_context

    buf = io.StringIO()
    # text stays text (no glyph paths: smaller); a salt per chart keeps the clip-path ids of the two
    # inline SVGs apart, and makes the output the same from run to run
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": f"report-{salt}"}):  # labels parsed at draw time too
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]  # inline SVG in HTML needs no XML prolog or DOCTYPE
    # namespace declarations are redundant inside HTML; leaving them out keeps the file free of any URL
    return re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg, count=2)


# -- worklist and encounters --------------------------------------------------------------------


def _worklist(listed: list[EncounterView], totals: Totals, fees: FeeSchedule | None, csv_name: str | None) -> str:
    if not listed:
        return "<h2>Encounters to work</h2><p>None: no standing finding, open gap or revenue at stake.</p>"
    cols = "".join(f"<th>{c}</th>" for c in ("missed", "unsupported", "held"))
    head = f"<tr><th>encounter</th><th>unit</th><th>first served</th><th>findings and notes</th><th>open gaps</th>{cols}</tr>"
    rows = "".join(_worklist_row(v, fees) for v in listed)  # the most money (or units) at stake first
    unit = "amount" if fees else "units"
    rest = totals.to_work - len(listed)
    where = (f"every encounter's lines, findings and amounts are in <code>{_e(csv_name)}</code>, one row each"
             if csv_name else "write them all with <code>--csv FILE</code>")
    more = (f"<p class=note id=not-listed>{rest:,} more encounter(s) to work are not listed here (<code>--top</code> "
            f"shows more); {where}.</p>" if rest else f"<p class=muted>{where[0].upper()}{where[1:]}.</p>")
    return (f"<h2>Encounters to work</h2><p class=muted>The {len(listed):,} most at stake of {totals.to_work:,}; "
            f"missed / unsupported / held in {unit}.</p><table id=worklist>{head}{rows}</table>{more}")


def _worklist_row(v: EncounterView, fees: FeeSchedule | None) -> str:
    cells = "".join(f"<td class=n>{_stake_total([s for s in v.stakes if s.category == c], fees)}</td>"
                    for c in CATEGORY_TITLES)
    return (f"<tr><td><a href='#{_anchor(v.encounter_id)}'>{_d(v.encounter_id)}</a></td><td>{_d(v.unit)}</td>"
            f"<td class=d>{_d(v.day)}</td><td class=n>{len(v.findings)}</td><td class=n>{len(v.open_gaps)}</td>{cells}</tr>")


def _stake_total(stakes: list[Stake], fees: FeeSchedule | None) -> str:
    money = Money()
    for s in stakes:
        money.add(s, fees)
    return _at_stake(money, fees)


def _anchor(encounter_id: str) -> str:
    return _e("enc-" + re.sub(r"\s", "_", encounter_id))


def _encounter(v: EncounterView, fees: FeeSchedule | None) -> str:
    flags = []
    if v.findings:
        flags.append(f"{len(v.findings)} finding(s)")
    if v.open_gaps:
        flags.append(f"{len(v.open_gaps)} open gap(s)")
    label = f" <span class=muted>{', '.join(flags)}</span>" if flags else ""
    opened = " open" if v.needs_action else ""
    return (f"<details id='{_anchor(v.encounter_id)}'{opened}><summary>{_d(v.encounter_id)}{label}</summary>"
            + _lines_table(v.lines) + _findings(v.findings) + _gaps(v.open_gaps) + _stakes(v.stakes, fees)
            + "</details>")


def _lines_table(lines: list[dict]) -> str:
    if not lines:
        return "<p class=muted>No net charge lines (not discharged in these records, or nothing billable).</p>"
    head = ("<tr><th>CPT</th><th>units</th><th>modifiers</th><th>service date</th><th>administrations</th>"
            "<th>explanation</th></tr>")
    return f"<table class=lines>{head}{''.join(_line_row(line) for line in lines)}</table>"


def _line_row(line: dict) -> str:
    mods = "-".join(map(str, line.get("modifiers") or ()))
    admins = ", ".join(map(str, line.get("administration_ids") or ()))
    flag = " <span class=hard>incomplete documentation</span>" if line.get("incomplete_documentation") else ""
    return (f"<tr><td><b>{_d(line['cpt'])}</b></td><td class=n>{_e(line['units'])}</td><td>{_d(mods)}</td>"
            f"<td class=d>{_d(line['service_date'])}</td><td>{_d(admins)}</td>"
            f"<td>{_d(line.get('explanation', ''))}{flag}</td></tr>")


def _findings(findings: list[dict]) -> str:
    if not findings:
        return ""
    items = "".join(f"<li><span class=\"{_severity(a)}\">{_d(a['code'])}</span>: {_d(a['message'])}</li>"
                    for a in findings)
    return f"<h4>Pre-bill findings and coding notes: what to correct</h4><ul>{items}</ul>"


def _gaps(gaps: list[dict]) -> str:
    if not gaps:
        return ""
    items = "".join(_gap_item(a) for a in gaps)
    return f"<h4>Open documentation gaps (for nursing; charges wait on them)</h4><ul>{items}</ul>"


def _gap_item(a: dict) -> str:
    where = a.get("location") or {}
    unit = f" <span class=muted>unit {_d(where['unit'])}</span>" if isinstance(where, dict) and where.get("unit") else ""
    admin = f" <span class=muted>administration {_d(a['administration_id'])}</span>" if a.get("administration_id") else ""
    return f"<li><span class=\"{_severity(a)}\">{_d(a['code'])}</span>{admin}{unit}: {_d(a['message'])}</li>"


def _stakes(stakes: list[Stake], fees: FeeSchedule | None) -> str:
    if not stakes:
        return ""
    head = "<tr><th>at stake</th><th>CPT</th><th>units</th>" + ("<th>amount</th>" if fees else "") + "<th>why</th></tr>"
    return f"<h4>Revenue at stake</h4><table class=stakes>{head}{''.join(_stake_row(s, fees) for s in stakes)}</table>"


def _stake_row(s: Stake, fees: FeeSchedule | None) -> str:
    approx = "" if s.exact else "&ge; "
    cells = f"<td>{s.category}</td><td>{_d(s.cpt)}</td><td class=n>{approx}{s.units}</td>"
    if fees:
        amount = fees.amount(s)
        cells += f"<td class=n>{approx}{_money(amount)}</td>" if amount is not None else "<td class=muted>no fee</td>"
    return f"<tr>{cells}<td>{_d(s.reason)}</td></tr>"


def stake_totals(totals: Totals, fees: FeeSchedule | None) -> str:
    """One line for the terminal: units (and amounts) per category."""
    parts = []
    for cat in CATEGORY_TITLES:
        money = totals.stakes[cat]
        approx = ">=" if money.approx else ""
        text = f"{cat} {approx}{money.units:,} units"
        if fees:
            text += f" ({approx}{_money(money.amount)}" + (f", {money.unpriced} units with no fee)" if money.unpriced else ")")
        parts.append(text)
    return ", ".join(parts)
