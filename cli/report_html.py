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

from cli.report import HELD, MISSED, UNSUPPORTED, EncounterView, FeeSchedule, Stake, Summary
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


def render(summary: Summary, source: str, fees: FeeSchedule | None) -> str:
    recs = summary.records
    needing = [v for v in summary.encounters if v.needs_action]
    body = [
        f"<h1>Coder's report</h1><p class=muted>From the output records of <code>infusion-validator code</code> "
        f"in <code>{_e(source)}</code>: {recs.lines:,} lines, {len(summary.encounters):,} encounters, "
        f"{len(needing):,} with something to work.</p>",
        _input_notes(summary),
        _stake_section(summary, fees),
        _charts(summary),
        _worklist(needing, fees),
        "<h2>Encounters</h2><p class=muted>Net charge lines (posts minus reversals) with the rule that decided "
        "each, standing pre-bill findings with what to correct, and open documentation gaps. Encounters to "
        "work come first and are open.</p>",
        *(_encounter(v, fees) for v in summary.encounters),
    ]
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>Coder's report: {_e(source)}</title><style>{CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")


def _input_notes(summary: Summary) -> str:
    recs, notes = summary.records, []
    if recs.unreadable:
        notes.append(f"{recs.unreadable:,} line(s) could not be read as output records and were skipped "
                     f"(first: line {', '.join(map(str, recs.unreadable_lines))}).")
    if recs.dead_letters:
        cats = ", ".join(f"{_e(c)} {n:,}" for c, n in sorted(recs.dead_letters.items()))
        notes.append(f"{sum(recs.dead_letters.values()):,} input event(s) were rejected by the coder "
                     f"(dead letters: {cats}); whatever they documented is not coded here.")
    if recs.orphan_reversals:
        notes.append(f"{recs.orphan_reversals:,} reversal(s) cancel a charge posted outside these records; "
                     "they change nothing here.")
    return "".join(f"<p class=note>{n}</p>" for n in notes)


# -- revenue at stake ---------------------------------------------------------------------------


def _stake_section(summary: Summary, fees: FeeSchedule | None) -> str:
    stakes = [s for v in summary.encounters for s in v.stakes]
    rows = "".join(_category_row(cat, [s for s in stakes if s.category == cat], fees) for cat in CATEGORY_TITLES)
    head = "<tr><th>category</th><th>units</th>" + ("<th>amount</th><th>units with no fee</th>" if fees else "") + "</tr>"
    return (f"<h2>Revenue at stake</h2>{_fee_note(fees)}<table id=stake-totals>{head}{rows}</table>"
            "<p class=muted>Missed: units the documentation supports beyond the submitted lines "
            "(PREBILL_MISSED_CHARGE). Unsupported: submitted units the documentation does not support "
            "(PREBILL_* findings); where a finding names a code but not its units it counts 1 unit, the least "
            "it can be, marked &ge;. Held: net lines coded on a fallback (incomplete documentation) or behind "
            "an administration with an open documentation gap.</p>")


def _fee_note(fees: FeeSchedule | None) -> str:
    if fees is None:
        return ("<p class=note>Units only. To see amounts, give a fee schedule: <code>infusion-validator report "
                "coded.jsonl --fee-schedule fees.csv</code>, a CSV with the header <code>cpt,amount</code> "
                "(e.g. <code>samples/fee-schedule-illustrative.csv</code>, made-up amounts).</p>")
    notes = "".join(f"<br>{_e(n)}" for n in fees.notes)
    return (f"<p class=note>Amounts = units &times; the fee in <code>{_e(fees.source)}</code>, as given; this "
            f"report knows no payer rates.{notes}</p>")


def _category_row(category: str, stakes: list[Stake], fees: FeeSchedule | None) -> str:
    units = sum(s.units for s in stakes)
    approx = "&ge; " if any(not s.exact for s in stakes) else ""
    row = f"<tr data-category=\"{category}\"><td>{CATEGORY_TITLES[category]}</td><td class=n>{approx}{units:,}</td>"
    if fees:
        amount, unpriced = _priced(stakes, fees)
        row += f"<td class=n data-amount='{amount}'>{approx}{_money(amount)}</td><td class=n>{unpriced:,}</td>"
    return row + "</tr>"


def _priced(stakes: list[Stake], fees: FeeSchedule) -> tuple[Decimal, int]:
    amount, unpriced = Decimal(0), 0
    for s in stakes:
        a = fees.amount(s)
        if a is None:
            unpriced += s.units
        else:
            amount += a
    return amount, unpriced


# -- charts -------------------------------------------------------------------------------------


def _charts(summary: Summary) -> str:
    from matplotlib import rc_context

    # labels are data: plain text (a CPT of `$x^{$` is not mathtext), control characters removed, cut
    units = sorted((_label(c), n) for c, n in summary.units_by_cpt.items())
    gaps = sorted((_label(c), n) for c, n in summary.gaps_by_code.items())
    with rc_context({"text.parse_math": False}):
        drawn = _units_chart(units), _gaps_chart(gaps)
    return ("<h2>Charts</h2><div class=charts>"
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


def _worklist(needing: list[EncounterView], fees: FeeSchedule | None) -> str:
    if not needing:
        return "<h2>Encounters to work</h2><p>None: no standing finding, open gap or revenue at stake.</p>"
    cols = "".join(f"<th>{c}</th>" for c in ("missed", "unsupported", "held"))
    head = f"<tr><th>encounter</th><th>findings and notes</th><th>open gaps</th>{cols}</tr>"
    # the most money (or units) at stake first: that is where a coder's hour is worth most
    ranked = sorted(needing, key=lambda v: (-_stake_value(v.stakes, fees), v.encounter_id))
    rows = "".join(_worklist_row(v, fees) for v in ranked)
    unit = "amount" if fees else "units"
    return (f"<h2>Encounters to work</h2><p class=muted>{len(needing):,} encounters, the most at stake first; "
            f"missed / unsupported / held in {unit}.</p><table id=worklist>{head}{rows}</table>")


def _stake_value(stakes: list[Stake], fees: FeeSchedule | None) -> Decimal:
    return _priced(stakes, fees)[0] if fees else Decimal(sum(s.units for s in stakes))


def _worklist_row(v: EncounterView, fees: FeeSchedule | None) -> str:
    cells = "".join(f"<td class=n>{_stake_total([s for s in v.stakes if s.category == c], fees)}</td>"
                    for c in CATEGORY_TITLES)
    return (f"<tr><td><a href='#{_anchor(v.encounter_id)}'>{_d(v.encounter_id)}</a></td>"
            f"<td class=n>{len(v.findings)}</td><td class=n>{len(v.open_gaps)}</td>{cells}</tr>")


def _stake_total(stakes: list[Stake], fees: FeeSchedule | None) -> str:
    if not stakes:
        return ""
    approx = "&ge; " if any(not s.exact for s in stakes) else ""
    if fees is None:
        return f"{approx}{sum(s.units for s in stakes):,}"
    amount, unpriced = _priced(stakes, fees)
    return approx + _money(amount) + (f" <span class=muted>+{unpriced} unit(s) no fee</span>" if unpriced else "")


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


def stake_totals(summary: Summary, fees: FeeSchedule | None) -> str:
    """One line for the terminal: units (and amounts) per category."""
    parts = []
    for cat in CATEGORY_TITLES:
        stakes = [s for v in summary.encounters for s in v.stakes if s.category == cat]
        approx = ">=" if any(not s.exact for s in stakes) else ""
        text = f"{cat} {approx}{sum(s.units for s in stakes):,} units"
        if fees:
            amount, unpriced = _priced(stakes, fees)
            text += f" ({approx}{_money(amount)}" + (f", {unpriced} units with no fee)" if unpriced else ")")
        parts.append(text)
    return ", ".join(parts)
