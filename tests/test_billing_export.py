"""`billing export` and billing/dft.py: charge records -> DFT^P03 by the chargemaster, read back with
python-hl7. The acceptance test: every exported message parses, and the net units per encounter, CPT
and service date equal `code`'s."""
from __future__ import annotations

import datetime as dt
import io
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import hl7
import orjson
import pytest

from billing.chargemaster import ChargemasterError, parse
from billing.dft import CROCKFORD, Dft, Held, Interface, NotACharge, collision_probability, transaction_id, translate
from cli.batch import run_batch
from cli.billing import export
from simulator import simulate
from tests.billing_receiver import BillingReceiver, ReceiverConfig, exchange, read_ack

ROOT = Path(__file__).parent.parent
DATA = ROOT / "tests" / "data" / "billing"
SAMPLE_CDM = ROOT / "samples" / "chargemaster-illustrative.csv"
NOW = dt.datetime(2026, 3, 3, 6, 0, tzinfo=dt.timezone.utc)


def cdm(path: Path = SAMPLE_CDM):
    return parse(path.read_text(), path.name)


def field(msg: hl7.Message, seg: str, n: int, rep: int = 1, comp: int = 1) -> str:
    try:
        return msg.unescape(str(msg.extract_field(seg, 1, n, rep, comp)))
    except (IndexError, KeyError):
        return ""


def messages(data: bytes) -> list[hl7.Message]:
    return [hl7.parse(m.decode()) for m in data.split(b"\n") if m.strip()]


def charge(cid: str = "ch-1", action: str = "post", cpt: str = "96365", **kw) -> dict:
    rec = {"kind": "charge", "charge_id": cid, "action": action, "reverses": None, "encounter_id": "V1", "cpt": cpt,
           "units": 1, "modifiers": [], "service_date": "2026-03-02", "administration_ids": ["A1"],
           "incomplete_documentation": False, "explanation": "x", "patient_class": "emergency"}
    return {**rec, **kw}


# -- the simulated day, through `code` and `billing export` ------------------------------------------------

@pytest.fixture(scope="module")
def day() -> tuple[list[dict], bytes, object]:
    events = [line.encode() for line in simulate(encounters=400, seed=11, day=dt.date(2026, 3, 2))]
    coded = io.BytesIO()
    run_batch(events, coded)
    records = [orjson.loads(line) for line in coded.getvalue().splitlines()]
    out, err = io.BytesIO(), io.StringIO()
    stats = export(((f"line {n}", line) for n, line in enumerate(coded.getvalue().splitlines(keepends=True), 1)),
                   cdm(), Interface(sending_facility="SYNHOSP", receiving_facility="SYNHOSP"), out, err, now=NOW)
    assert stats.held == 0 and stats.unreadable == 0, err.getvalue()
    return records, out.getvalue(), stats


def test_every_message_parses_and_net_units_per_encounter_cpt_and_date_equal_code_s(day):
    records, data, stats = day
    want: Counter = Counter()
    for r in records:
        if r["kind"] == "charge":
            want[(r["encounter_id"], r["cpt"], r["service_date"])] += r["units"] if r["action"] == "post" else -r["units"]
    got: Counter = Counter()
    parsed = messages(data)
    for msg in parsed:
        assert str(msg.segment("MSH")[9]) == "DFT^P03^DFT_P03" and field(msg, "MSH", 12) == "2.5.1"
        (ft1,) = msg.segments("FT1")
        sign = {"CG": 1, "CD": -1}[field(msg, "FT1", 6)]
        day_ = field(msg, "FT1", 4)
        key = (field(msg, "PV1", 19), field(msg, "FT1", 25), f"{day_[:4]}-{day_[4:6]}-{day_[6:]}")
        got[key] += sign * int(field(msg, "FT1", 10))
    assert stats.reversals > 0 and stats.posts > 1000  # the day has credits, or the test proves little
    assert len(parsed) == stats.messages == sum(1 for r in records if r["kind"] == "charge")
    assert +got == +want and got == want


def test_ids_are_stable_short_and_a_credit_names_the_charge_it_reverses(day):
    records, data, _ = day
    parsed = messages(data)
    ids = [field(m, "FT1", 2) for m in parsed]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(f"[{CROCKFORD}]{{12}}", i) for i in ids)
    assert all(field(m, "MSH", 10) == "IV" + field(m, "FT1", 2) for m in parsed)
    charges = {r["charge_id"]: r for r in records if r["kind"] == "charge"}
    by_id = {transaction_id(cid): r for cid, r in charges.items()}
    position = {tid: n for n, tid in enumerate(ids)}
    for n, m in enumerate(parsed):
        rec = by_id[field(m, "FT1", 2)]
        assert (field(m, "FT1", 6) == "CD") == (rec["action"] == "reverse")
        if rec["action"] == "reverse":
            ref = field(m, "FT1", 31)
            assert ref == transaction_id(rec["reverses"]) and position[ref] < n  # the charge went first
        assert field(m, "PID", 18) == rec["encounter_id"]
        assert field(m, "PV1", 2) == {"outpatient": "O", "observation": "O", "emergency": "E"}[rec["patient_class"]]
        assert [field(m, "FT1", 26, rep) for rep in range(1, len(rec["modifiers"]) + 1)] == rec["modifiers"]


def test_the_exported_day_is_taken_by_a_billing_system_test_double(day):
    """Every message AA, every charge posted once and every credit matched to its charge."""
    _, data, stats = day
    sample = [m for m in data.split(b"\n") if m.strip()][:300]
    cfg = ReceiverConfig(known_charge_codes=frozenset(r.charge_code for r in cdm().rows), duplicates="reject")

    async def go():
        async with BillingReceiver(cfg) as rx:
            acks = await exchange(rx.host, rx.port, sample)
            return rx, [read_ack(a)["code"] for a in acks]
    import asyncio
    rx, codes = asyncio.run(go())
    assert set(codes) == {"AA"} and len(rx.postings) == len(sample)


# -- one record -------------------------------------------------------------------------------------------

def test_the_synthetic_examples_ids_are_the_derivation_s():
    """tests/data/billing/SYNTHETIC-infusion_DFT_P03_*.hl7 were made with the same FT1-2 derivation."""
    post = (DATA / "SYNTHETIC-infusion_DFT_P03_post_v2.5.1.hl7").read_text()
    reversal = (DATA / "SYNTHETIC-infusion_DFT_P03_reversal_v2.5.1.hl7").read_text()
    assert re.findall(r"FT1\|\d\|(\w+)\|", post) == [transaction_id("ch-3f0a9c1d2b4e5f60718293a4"),
                                                     transaction_id("ch-8b7c6d5e4f3a2b1c0d9e8f7a")]
    assert reversal.rstrip("\r\n").endswith("|" + transaction_id("ch-8b7c6d5e4f3a2b1c0d9e8f7a"))


def test_a_post_field_by_field():
    rec = charge(modifiers=["XU", "59"], units=2, patient_id="MRN|7^^^GEN&HOSP", encounter_id="V^1")
    result = translate(rec, cdm(), Interface(sending_facility="SYNHOSP", receiving_application="PB",
                                             processing_id="T"), NOW)
    assert isinstance(result, Dft)
    segs = result.message.decode().split("\r")
    assert segs[-1] == "" and [s[:3] for s in segs[:-1]] == ["MSH", "EVN", "PID", "PV1", "FT1"]
    assert segs[0] == (f"MSH|^~\\&|INFUSION-VALIDATOR|SYNHOSP|PB||20260303060000+0000||DFT^P03^DFT_P03|"
                       f"IV{transaction_id('ch-1')}|T|2.5.1")
    assert segs[1] == "EVN|P03|20260303060000+0000"
    msg = hl7.parse(result.message.decode())
    assert field(msg, "PID", 3) == "MRN|7" and field(msg, "PID", 3, comp=4) == "GEN&HOSP"  # escaped, read back
    assert field(msg, "PID", 5) == "" and field(msg, "PID", 18) == field(msg, "PV1", 19) == "V^1"
    assert field(msg, "PV1", 2) == "E"
    assert (field(msg, "FT1", 1), field(msg, "FT1", 4), field(msg, "FT1", 6)) == ("1", "20260302", "CG")
    assert (field(msg, "FT1", 7), field(msg, "FT1", 7, comp=2)) == ("2600101", "IV INFUSION THERAPEUTIC FIRST HOUR")
    assert (field(msg, "FT1", 10), field(msg, "FT1", 13)) == ("2", "INF")
    assert (field(msg, "FT1", 25), field(msg, "FT1", 25, comp=3)) == ("96365", "C4")
    assert [field(msg, "FT1", 26, r, c) for r in (1, 2) for c in (1, 3)] == ["XU", "HCPCS", "59", "CPTM"]
    assert field(msg, "FT1", 11) == "" and field(msg, "FT1", 31) == ""  # priced by the billing system


def test_a_reversal_is_a_credit_with_positive_units_and_the_reference_where_the_setting_says():
    rev = charge("rv-1", "reverse", reverses="ch-1")
    msg = hl7.parse(translate(rev, cdm(), Interface(), NOW).message.decode())
    assert (field(msg, "FT1", 6), field(msg, "FT1", 10), field(msg, "FT1", 31)) == ("CD", "1", transaction_id("ch-1"))
    elsewhere = hl7.parse(translate(rev, cdm(), Interface(reversal_reference=23), NOW).message.decode())
    assert field(elsewhere, "FT1", 23) == transaction_id("ch-1") and field(elsewhere, "FT1", 31) == ""
    nowhere = translate(rev, cdm(), Interface(reversal_reference=None), NOW).message
    assert transaction_id("ch-1").encode() not in nowhere
    with pytest.raises(ValueError, match="FT1-7 cannot carry"):
        Interface(reversal_reference=7)


def test_patient_class_and_missing_patient_id():
    for cls, code in (("outpatient", "O"), ("observation", "O"), ("emergency", "E"), ("inpatient", "I"), (None, "U")):
        rec = charge(patient_class=cls) if cls else {k: v for k, v in charge().items() if k != "patient_class"}
        msg = hl7.parse(translate(rec, cdm(), Interface(), NOW).message.decode())
        assert field(msg, "PV1", 2) == code and field(msg, "PID", 3) == ""


def test_text_that_is_not_ascii_is_declared_in_msh_18():
    text = SAMPLE_CDM.read_text().replace("IV INFUSION THERAPEUTIC FIRST HOUR", "PERFUSION IV THÉRAPEUTIQUE")
    message = translate(charge(), parse(text, "cdm.csv"), Interface(), NOW).message
    assert message.split(b"\r")[0].endswith(b"|2.5.1||||||UNICODE UTF-8") and "THÉRAPEUTIQUE".encode() in message


def test_an_unmapped_or_ambiguous_cpt_is_held_and_so_is_its_reversal():
    synthetic = cdm(DATA / "SYNTHETIC-chargemaster.csv")  # 96374 in the infusion center and in the ED
    held = translate(charge(cpt="96374"), synthetic, Interface(), NOW)
    assert isinstance(held, Held) and "several charge codes (2600110 (INF), 4500374 (ED))" in held.reason
    missing = translate(charge("rv-9", "reverse", cpt="96416", reverses="ch-9"), synthetic, Interface(), NOW)
    assert isinstance(missing, Held) and missing.reason.startswith("reversal not sent: the chargemaster "
                                                                    "(SYNTHETIC-chargemaster.csv) maps no charge code")


def test_records_that_are_not_usable_charges_are_refused_with_the_field():
    for bad, says in ((charge(units=0), "units"), (charge(cpt=""), "cpt"), ({"kind": "alert"}, "not a charge"),
                      (charge(action="reverse"), "reverses"), (charge(service_date="03/02/2026"), "service_date")):
        with pytest.raises(NotACharge, match=says):
            translate(bad, cdm(), Interface(), NOW)


def test_the_chargemaster_loader():
    text = ("\ufeff# a note\r\ncharge_code,description,cpt,revenue_code,department,price\r\n"
            "0001,A,96365,0260,INF,10\r\n0001,A again,96365,0260,INF,10\r\n0002,B,96365-XU,0260,INF,1\r\n"
            ",C,96366,0260,INF,1\r\n")
    loaded = parse(text, "cdm.csv")
    assert [(r.charge_code, r.revenue_code) for r in loaded.rows] == [("0001", "0260")]
    assert [p.split(":")[0] for p in loaded.problems] == ["line 5", "line 6"]
    with pytest.raises(ChargemasterError, match="one charge code, one CPT"):
        parse(text + "0001,A,96366,0260,INF,1\r\n", "cdm.csv")
    with pytest.raises(ChargemasterError, match="missing: revenue_code, department"):
        parse("charge_code,description,cpt\n1,a,96365\n", "cdm.csv")


def test_collision_odds_of_the_60_bit_id():
    assert collision_probability(1_500_000) < 1e-6 < collision_probability(2_000_000)
    assert collision_probability(48_000_000) < 1e-3 < collision_probability(60_000_000)
    assert collision_probability(1) == 0.0


# -- the command ------------------------------------------------------------------------------------------

def run_cli(*args: str, stdin: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    import os
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IV_")} | (env or {})
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, input=stdin, capture_output=True,
                          env=environ)


def test_the_command_holds_what_the_chargemaster_lacks_and_exports_it_later(tmp_path):
    coded = tmp_path / "coded.jsonl"
    coded.write_bytes(b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in [
        charge("ch-1"), charge("ch-2", cpt="96374"), charge("rv-2", "reverse", cpt="96374", reverses="ch-2"),
        {"kind": "alert", "code": "X"}, charge("ch-1")]) + b"not json\n")
    partial = tmp_path / "partial.csv"
    partial.write_text("\n".join(line for line in SAMPLE_CDM.read_text().splitlines() if ",96374," not in line))
    out, held = tmp_path / "day.hl7", tmp_path / "held.jsonl"
    done = run_cli("billing", "export", str(coded), "--chargemaster", str(partial), "-o", str(out), "--held", str(held))
    assert done.returncode == 2, done.stderr
    err = done.stderr.decode()
    assert "held ch-2 (post CPT 96374 x1 on 2026-03-02)" in err and "held rv-2 (reverse" in err
    assert "1 DFT^P03 messages (1 charges, 0 credits); 2 held, 1 unreadable lines, 1 repeats skipped, 1 other" in err
    assert len(messages(out.read_bytes())) == 1
    again = run_cli("billing", "export", "-", "--chargemaster", str(SAMPLE_CDM), stdin=held.read_bytes())
    assert again.returncode == 0, again.stderr
    assert [field(m, "FT1", 6) for m in messages(again.stdout)] == ["CG", "CD"]


def test_the_command_needs_a_usable_chargemaster(tmp_path):
    coded = tmp_path / "coded.jsonl"
    coded.write_bytes(orjson.dumps(charge()) + b"\n")
    done = run_cli("billing", "export", str(coded))
    assert done.returncode == 1 and b"--chargemaster" in done.stderr
    empty = tmp_path / "empty.csv"
    empty.write_text("charge_code,description,cpt,revenue_code,department\n")
    done = run_cli("billing", "export", str(coded), env={"IV_BILLING_CHARGEMASTER_FILE": str(empty)})
    assert done.returncode == 1 and b"no chargemaster row" in done.stderr
    done = run_cli("billing", "export", str(coded), "--chargemaster", str(SAMPLE_CDM),
                   env={"IV_BILLING_REVERSAL_REFERENCE": "FT1-23", "IV_BILLING_RECEIVING_APPLICATION": "PB"})
    assert done.returncode == 0 and b"|PB|" in done.stdout
