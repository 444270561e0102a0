"""Coding-rules §7, national edits: the CMS MUE table and PTP edit files, loaded in the shapes CMS
publishes (tests/data/billing/SYNTHETIC-*: made-up values, never real ones), and MUE_EXCEEDED /
NCCI_PTP_CONFLICT raised on the engine's lines and on submitted lines, naming the file and the dates."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rules.book import Book
from rules.edits import EditFileError, NationalEdits, decode, parse_mue, parse_ptp
from rules.policy import DEFAULT, load_policy
from tests.events import discharge, final_alerts, run, start, stop, submitted

ROOT = Path(__file__).parent.parent
DATA = ROOT / "tests" / "data" / "billing"
MUE_FILE = DATA / "SYNTHETIC-MCR_MUE_OutpatientHospitalServices_Eff_01-01-2026.csv"
PTP_FILE = DATA / "SYNTHETIC-ptp_hospital_f1.txt"
NOTICE = ('"SYNTHETIC FIXTURE - NOT CMS DATA. Values invented for tests.\r\n\r\nApplicable FARS/DFARS '
          'Restrictions Apply.",,,\r\n')
PTP_HEADER = ("Column 1\tColumn 2\t*=in existence prior to 1996\tEffective Date\tDeletion Date *=no data\t"
              "Modifier 0=not allowed 1=allowed 9=not applicable\tPTP Edit Rationale\n")


def mue_text(rows: str, setting: str = "Outpatient Hospital") -> str:
    return (NOTICE + f'"HCPCS/\r\nCPT Code",{setting} Services MUE Values,MUE Adjudication Indicator,MUE Rationale\r\n'
            + rows)


def shipped() -> NationalEdits:
    return NationalEdits((parse_mue(decode(MUE_FILE.read_bytes(), MUE_FILE.name), MUE_FILE.name),),
                         (parse_ptp(decode(PTP_FILE.read_bytes(), PTP_FILE.name), PTP_FILE.name),))


def coded(events: list[dict], edits: NationalEdits) -> list[dict]:
    return run(events, Book(policy=dataclasses.replace(DEFAULT, edits=edits)))


def raised(records: list[dict], code: str) -> list[str]:
    standing = final_alerts(records)
    return [r["message"] for r in records if r["kind"] == "alert" and r["code"] == code and r["state"] == "raised"
            and standing.get((code, r["administration_id"])) == "raised"]


# -- the files, as CMS shapes them --------------------------------------------------------------------

def test_the_shipped_mue_fixture_loads_past_its_notice_and_split_header():
    table = parse_mue(decode(MUE_FILE.read_bytes(), MUE_FILE.name), MUE_FILE.name)
    assert table.billing == "facility" and table.edition == dt.date(2026, 1, 1)
    assert (table.edits["96365"].value, table.edits["96365"].mai) == (2, 1)
    assert table.edits["96360"].indicator == "2 Date of Service Edit: Policy"
    assert "96376" not in table.edits and table.absent == 1  # a confidential value: no MUE, not 0
    assert table.rows == 9 and len(table.edits) == 8


def test_the_shipped_ptp_fixture_loads_every_pair_with_its_window():
    f = parse_ptp(decode(PTP_FILE.read_bytes(), PTP_FILE.name), PTP_FILE.name)
    assert f.rows == 6 and len(f.edits) == 6 and f.skipped == 0
    deleted = next(e for e in f.edits if (e.column1, e.column2) == ("96374", "96360"))
    assert deleted.deletion == dt.date(2025, 12, 31) and deleted.effective == dt.date(1996, 1, 1)
    assert {e.modifier for e in f.edits} == {"0", "1", "9"}


def test_the_loader_tolerates_bom_crlf_windows_1252_footers_and_a_csv_export():
    text = ("\ufeffCopyright notice, with commas and \"quotes\"\r\n\r\n" + PTP_HEADER.replace("\n", "\r\n")
            + "96365\t96360\t\t20250101\t*\t1\tStandards\r\n\r\nEnd of file \x96 SYNTHETIC\r\n")
    f = parse_ptp(decode(text.encode("cp1252", errors="replace"), "x.txt"), "x.txt")
    assert [(e.column1, e.column2) for e in f.edits] == [("96365", "96360")] and f.skipped == 1
    as_csv = ('"Notice, quoted"\nColumn 1,Column 2,*=in existence prior to 1996,Effective Date,Deletion Date *=no '
              'data,"Modifier 0=not allowed 1=allowed 9=not applicable",PTP Edit Rationale\n'
              '96365,96374,,2025-01-01,12/31/2025,1,x\n')
    (e,) = parse_ptp(as_csv, "export.csv").edits
    assert (e.effective, e.deletion) == (dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    mue = parse_mue(mue_text("96365,3,1 Line Edit,x\r\nNot a code row,,,\r\n").replace("\r\n", "\n"), "m.csv")
    assert mue.edits["96365"].value == 3 and mue.edition is None and mue.skipped == 1


def test_pairs_without_a_drug_administration_code_are_not_kept():
    f = parse_ptp(PTP_HEADER + "99285\t36000\t\t20250101\t*\t1\tx\n36000\t96365\t\t20250101\t*\t1\tx\n", "p.txt")
    assert [(e.column1, e.column2) for e in f.edits] == [("36000", "96365")] and f.out_of_scope == 1


@pytest.mark.parametrize("data, says", [
    (b"PK\x03\x04zipped", "export it as CSV"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1old excel", "export it as CSV"),
])
def test_zip_and_excel_files_are_refused_with_the_fix(data, says):
    with pytest.raises(EditFileError, match=says):
        decode(data, "MUE.zip")


def test_a_file_without_the_header_or_of_the_wrong_table_is_refused():
    with pytest.raises(EditFileError, match="no MUE"):
        parse_mue("just,some,csv\n96365,1,2\n", "m.csv")
    with pytest.raises(EditFileError, match="Outpatient Hospital Services MUE table"):
        parse_mue(mue_text("E0100,1,1 Line Edit,x\n", "DME Supplier"), "dme.csv")
    assert parse_mue(mue_text("96365,1,1 Line Edit,x\n", "Practitioner"), "p.csv").billing == "professional"
    with pytest.raises(EditFileError, match="two MUE tables"):
        t = parse_mue(mue_text("96365,1,1 Line Edit,x\n"), "a.csv")
        NationalEdits((t, t))


# -- findings on the engine's lines -------------------------------------------------------------------

def test_mue_over_the_engine_s_own_units_per_date_of_service():
    """8 h 10 min of ceftriaxone: 96365 + 96366 x7; a made-up MUE of 5 (indicator 3) for 96366."""
    table = parse_mue(mue_text("96366,5,3 Date of Service Edit: Clinical,x\n"), "MCR_MUE_X_Eff_04-01-2026.csv")
    out = coded([start("A1", "08:00"), stop("A1", "16:10"), discharge("17:00")], NationalEdits((table,)))
    (msg,) = raised(out, "MUE_EXCEEDED")
    assert msg.startswith("96366 on 2026-03-02: 7 unit(s) coded by the validator, over the MUE of 5 per date of "
                          "service (3 Date of Service Edit: Clinical)")
    assert "MCR_MUE_X_Eff_04-01-2026.csv (edition effective 2026-04-01)" in msg
    assert next(r for r in out if r["kind"] == "alert" and r["code"] == "MUE_EXCEEDED")["audience"] == "coding"


def test_no_finding_within_the_mue_or_without_edits():
    events = [start("A1", "08:00"), stop("A1", "10:00"), discharge("11:00")]
    assert not raised(coded(events, shipped()), "MUE_EXCEEDED")
    assert not [r for r in run(events) if r["kind"] == "alert"]


def test_the_practitioner_table_applies_to_professional_billing_only():
    table = parse_mue(mue_text("96366,1,2 Date of Service Edit: Policy,x\n", "Practitioner"), "prof.csv")
    events = [start("A1", "08:00"), stop("A1", "11:00"), discharge("12:00", billing="professional")]
    assert raised(coded(events, NationalEdits((table,))), "MUE_EXCEEDED")
    facility = [start("A1", "08:00", enc="E2"), stop("A1", "11:00", enc="E2"), discharge("12:00", enc="E2")]
    assert not raised(coded(facility, NationalEdits((table,))), "MUE_EXCEEDED")


# -- findings on submitted lines ------------------------------------------------------------------------

BASE = [start("A1", "08:00"), stop("A1", "08:45")]  # 96365 x1


def test_a_submitted_line_over_a_line_edit_and_over_a_date_of_service_edit():
    out = coded(BASE + [submitted("09:00", [("96365", 3), ("96360", 1), ("96360", 1)]), discharge("10:00")],
                shipped())
    msgs = raised(out, "MUE_EXCEEDED")
    assert any(m.startswith("96365 on 2026-03-02: 3 unit(s) submitted, over the MUE of 2 per claim line "
                            "(1 Line Edit)") for m in msgs)
    assert any(m.startswith("96360 on 2026-03-02: 2 unit(s) submitted, over the MUE of 1 per date of service "
                            "(2 Date of Service Edit: Policy)") for m in msgs)
    assert all("SYNTHETIC-MCR_MUE_OutpatientHospitalServices_Eff_01-01-2026.csv" in m for m in msgs)


def test_ptp_indicator_1_fires_without_a_modifier_and_names_the_file_and_its_dates():
    out = coded(BASE + [submitted("09:00", [("96365", 1), ("96374", 1)]), discharge("10:00")], shipped())
    (msg,) = raised(out, "NCCI_PTP_CONFLICT")
    assert msg.startswith("96374 x1 on 2026-03-02 submitted with 96365: NCCI procedure-to-procedure edit 96365/96374 "
                          "of SYNTHETIC-ptp_hospital_f1.txt (effective 2025-01-01, no deletion date)")
    assert "unless a modifier the documentation supports" in msg


def test_ptp_indicator_1_passes_a_separate_site_modifier_but_indicator_0_does_not():
    ok = coded(BASE + [submitted("09:00", [("96365", 1), ("96374", 1, "XU")]), discharge("10:00")], shipped())
    assert not raised(ok, "NCCI_PTP_CONFLICT")
    chemo = [start("C1", "08:00", drug="cisplatin", category="chemotherapy", enc="E3"), stop("C1", "09:00", enc="E3"),
             submitted("09:30", [("96413", 1), ("96360", 1, "XU")], enc="E3"), discharge("10:00", enc="E3")]
    (msg,) = raised(coded(chemo, shipped()), "NCCI_PTP_CONFLICT")
    assert msg.startswith("96360 x1 on 2026-03-02 submitted with 96413") and "never paid together" in msg


def test_ptp_edits_outside_their_window_or_with_indicator_9_never_fire():
    """96374/96360 was deleted 2025-12-31 (the first day it no longer applies); 96409/96374 has indicator 9."""
    lines = [("96374", 1), ("96360", 1), ("96409", 1)]
    assert not raised(coded(BASE + [submitted("09:00", lines), discharge("10:00")], shipped()), "NCCI_PTP_CONFLICT")
    old = parse_ptp(PTP_HEADER + "96374\t96360\t*\t19960101\t20260302\t1\tx\n", "p.txt")
    day_before = [start("P1", "+0 08:00", enc="E4"), discharge("09:00", enc="E4"),
                  submitted("08:30", [("96374", 1), ("96360", 1)], enc="E4")]
    day_before = [dict(e, occurred_at=e["occurred_at"].replace("2026-03-02", "2026-03-01")) for e in day_before]
    assert raised(coded(day_before, NationalEdits((), (old,))), "NCCI_PTP_CONFLICT")
    on_deletion_day = [start("P1", "08:00", enc="E5"), submitted("08:30", [("96374", 1), ("96360", 1)], enc="E5"),
                       discharge("09:00", enc="E5")]
    assert not raised(coded(on_deletion_day, NationalEdits((), (old,))), "NCCI_PTP_CONFLICT")


def test_a_corrected_submission_resolves_the_finding():
    out = coded(BASE + [submitted("09:00", [("96365", 1), ("96374", 1)]), discharge("10:00"),
                        submitted("11:00", [("96365", 1)])], shipped())
    assert not raised(out, "NCCI_PTP_CONFLICT")
    assert [r["state"] for r in out if r["kind"] == "alert" and r["code"] == "NCCI_PTP_CONFLICT"] == ["raised",
                                                                                                      "resolved"]


def test_a_submitted_line_s_own_service_date_picks_the_edit_in_force():
    old = parse_ptp(PTP_HEADER + "96365\t96374\t\t20250101\t20260302\t1\tx\n", "p.txt")
    events = BASE + [discharge("10:00"), {**submitted("09:00", [("96365", 1), ("96374", 1)]), "lines": [
        {"cpt": "96365", "units": 1, "service_date": "2026-03-01"},
        {"cpt": "96374", "units": 1, "service_date": "2026-03-01"}]}]
    (msg,) = raised(coded(events, NationalEdits((), (old,))), "NCCI_PTP_CONFLICT")
    assert "on 2026-03-01 submitted" in msg and "deletion date 2026-03-02" in msg


def test_the_policy_file_cannot_set_edits(tmp_path):
    policy = tmp_path / "p.toml"
    policy.write_text("edits = 1\n")
    with pytest.raises(ValueError, match="unknown setting"):
        load_policy(policy)


def test_code_takes_mue_and_ptp_files_and_says_what_it_loaded(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in BASE + [
        submitted("09:00", [("96365", 3), ("96374", 1)]), discharge("10:00")]) + "\n")
    done = subprocess.run([sys.executable, "-m", "cli.main", "code", str(events), "--mue", str(MUE_FILE),
                           "--ptp", str(PTP_FILE), "--ptp", str(PTP_FILE)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    codes = {json.loads(line)["code"] for line in done.stdout.splitlines() if '"kind":"alert"' in line}
    assert {"MUE_EXCEEDED", "NCCI_PTP_CONFLICT"} <= codes
    assert "MUE table SYNTHETIC-MCR_MUE_OutpatientHospitalServices_Eff_01-01-2026.csv" in done.stderr
    assert "PTP edits SYNTHETIC-ptp_hospital_f1.txt: 6 pairs" in done.stderr
    zipped = tmp_path / "mue.zip"
    zipped.write_bytes(b"PK\x03\x04...")
    bad = subprocess.run([sys.executable, "-m", "cli.main", "code", str(events), "--mue", str(zipped)], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "export it as CSV" in bad.stderr


def test_the_report_lists_the_findings_and_reads_their_units_at_stake():
    """cli/report.py reads the figures back from the wording (rules/edits.py): a change of wording must
    not drop the units at stake to zero."""
    from collections import Counter

    from cli.report import UNSUPPORTED, Encounter, finding_stakes, view_of

    out = coded(BASE + [submitted("09:00", [("96365", 3), ("96374", 1)]), discharge("10:00")], shipped())
    enc = Encounter("E1")
    for r in out:
        if r["kind"] == "alert":
            enc.alerts[r["alert_id"]] = r
        elif r["action"] == "post":
            enc.posts[r["charge_id"]] = r
    view = view_of(enc)
    assert {a["code"] for a in view.findings} >= {"MUE_EXCEEDED", "NCCI_PTP_CONFLICT"}
    stakes = {a["code"]: finding_stakes(a, Counter()) for a in view.findings
              if a["code"] in ("MUE_EXCEEDED", "NCCI_PTP_CONFLICT")}
    assert [(s.category, s.cpt, s.units, s.exact) for s in stakes["MUE_EXCEEDED"]] == [(UNSUPPORTED, "96365", 1, True)]
    assert [(s.cpt, s.units) for s in stakes["NCCI_PTP_CONFLICT"]] == [("96374", 1)]
