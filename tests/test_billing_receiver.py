"""Tests of the billing-system test double (tests/billing_receiver.py), which `billing send` is tested
against (tests/test_billing_send.py).

Messages built here are SYNTHETIC (synthetic_dft); the files under tests/data/billing that are not
named SYNTHETIC-* are public messages kept byte for byte (tests/data/SOURCES.md).
"""
from __future__ import annotations

import asyncio
import pathlib
import re

import hl7
import pytest

from tests.billing_receiver import (
    BillingReceiver, Dropped, Line, ReceiverConfig, collision_probability, exchange, frame, read_ack,
    synthetic_dft, transaction_id,
)

EXAMPLES = pathlib.Path(__file__).parent / "data" / "billing"
CDM = frozenset({"2600101", "2600102", "2600103", "3350101"})  # SYNTHETIC chargemaster codes


def charge(tid: str, code: str = "2600101", cpt: str = "96365", **kw) -> Line:
    return Line(transaction_id=tid, charge_code=code, cpt=cpt, **kw)


async def send(rx: BillingReceiver, *messages: str) -> list[dict]:
    return [read_ack(a) for a in await exchange(rx.host, rx.port, messages)]


# -- AA --------------------------------------------------------------------------------------------
async def test_accepts_a_charge_and_echoes_the_control_id():
    async with BillingReceiver(ReceiverConfig(known_charge_codes=CDM)) as rx:
        [ack] = await send(rx, synthetic_dft("MSG0001", [charge("N78K4B0KGQZ7")]))
    assert ack["code"] == "AA"
    assert ack["control_id"] == "MSG0001"  # MSA-2 = MSH-10
    assert ack["type"] == "ACK^P03^ACK" and ack["version"] == "2.5.1"
    assert ack["errors"] == [] and ack["text"] == ""
    assert rx.posted_ids() == ["N78K4B0KGQZ7"]
    posting = rx.postings[0]
    assert (posting.charge_code, posting.procedure, posting.account, posting.quantity) == ("2600101", "96365", "SYN-V0001", "1")


async def test_every_ft1_line_is_posted_with_its_fields():
    msg = synthetic_dft("MSG0002", [
        charge("AAAAAAAAAAA1", cpt="96413"),
        charge("AAAAAAAAAAA2", code="2600102", cpt="96415", units=2),
        charge("AAAAAAAAAAA3", code="2600103", cpt="96365", modifiers=["XU", "59"]),
    ])
    async with BillingReceiver(ReceiverConfig(known_charge_codes=CDM)) as rx:
        [ack] = await send(rx, msg)
    assert ack["code"] == "AA"
    assert rx.posted_ids() == ["AAAAAAAAAAA1", "AAAAAAAAAAA2", "AAAAAAAAAAA3"]
    assert rx.postings[1].quantity == "2"
    assert rx.postings[2].modifiers == ("XU", "59")
    assert [p.set_id for p in rx.postings] == ["1", "2", "3"]


async def test_several_messages_on_one_connection_each_get_their_own_ack():
    msgs = [synthetic_dft(f"M{i}", [charge(f"ID{i:010d}")]) for i in range(5)]
    async with BillingReceiver() as rx:
        acks = await send(rx, *msgs)
    assert [a["control_id"] for a in acks] == ["M0", "M1", "M2", "M3", "M4"]
    assert {a["code"] for a in acks} == {"AA"}
    assert rx.connections == 1 and len(rx.postings) == 5


async def test_two_senders_at_once():
    async with BillingReceiver() as rx:
        a, b = await asyncio.gather(
            exchange(rx.host, rx.port, [synthetic_dft(f"A{i}", [charge(f"A{i:011d}")]) for i in range(10)]),
            exchange(rx.host, rx.port, [synthetic_dft(f"B{i}", [charge(f"B{i:011d}")]) for i in range(10)]),
        )
    assert len(a) == len(b) == 10 and rx.connections == 2
    assert sorted(rx.posted_ids()) == sorted([f"A{i:011d}" for i in range(10)] + [f"B{i:011d}" for i in range(10)])


async def test_a_frame_split_across_tcp_writes_is_one_message():
    async with BillingReceiver() as rx:
        reader, writer = await asyncio.open_connection(rx.host, rx.port)
        data = frame(synthetic_dft("SPLIT1", [charge("SPLIT0000001")]))
        for i in range(0, len(data), 7):
            writer.write(data[i:i + 7])
            await writer.drain()
            await asyncio.sleep(0)
        block = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 5)
        writer.close()
    assert read_ack(block[1:-2])["code"] == "AA"
    assert rx.posted_ids() == ["SPLIT0000001"]


# -- AE: content the billing system refuses ----------------------------------------------------------
async def test_unknown_charge_code_is_ae_with_an_err_naming_the_field():
    async with BillingReceiver(ReceiverConfig(known_charge_codes=CDM)) as rx:
        [ack] = await send(rx, synthetic_dft("MSG0003", [charge("OK0000000001"), charge("BAD000000001", code="9999999")]))
    assert ack["code"] == "AE" and ack["control_id"] == "MSG0003"
    assert "9999999" in ack["text"]
    [err] = ack["errors"]
    assert err[2] == "FT1^2^7"  # ERR-2: segment^set^field
    assert err[3] == "103^Table value not found^HL70357"  # ERR-3
    assert err[4] == "E"  # ERR-4 severity
    assert "not in the chargemaster" in err[8]  # ERR-8 user message
    assert rx.postings == []  # atomic: the good line of a refused message is not posted either


async def test_non_atomic_receiver_posts_the_good_lines_and_still_answers_ae():
    async with BillingReceiver(ReceiverConfig(known_charge_codes=CDM, atomic=False)) as rx:
        [ack] = await send(rx, synthetic_dft("MSG0004", [charge("OK0000000001"), charge("BAD000000001", code="9999999")]))
    assert ack["code"] == "AE"
    assert rx.posted_ids() == ["OK0000000001"]


@pytest.mark.parametrize("field_no, value, condition", [
    (2, "", "101^Required field missing^HL70357"),
    (4, "", "101^Required field missing^HL70357"),
    (6, "PY", "103^Table value not found^HL70357"),
    (7, "", "101^Required field missing^HL70357"),
])
async def test_required_fields_and_transaction_types(field_no, value, condition):
    async with BillingReceiver() as rx:
        [ack] = await send(rx, synthetic_dft("REQ", [charge("REQ000000001")], extra_fields={field_no: value}))
    assert ack["code"] == "AE"
    assert ack["errors"][0][2] == f"FT1^1^{field_no}"
    assert ack["errors"][0][3] == condition
    assert rx.postings == []


async def test_empty_transaction_id_is_taken_when_the_receiver_does_not_need_it():
    async with BillingReceiver(ReceiverConfig(require_transaction_id=False)) as rx:
        [ack] = await send(rx, synthetic_dft("NOID", [charge("")]))
    assert ack["code"] == "AA" and rx.posted_ids() == [""]


async def test_delimiters_in_values_are_escaped_both_ways():
    async with BillingReceiver(ReceiverConfig(known_charge_codes=CDM)) as rx:
        [raw] = await exchange(rx.host, rx.port, [synthetic_dft("ESC", [charge("A&B|C", code="X&Y|Z^W")])])
    assert rx.exchanges[0].problems[0].text == "charge code X&Y|Z^W is not in the chargemaster"
    assert b"charge code X\\T\\Y\\F\\Z\\S\\W is not" in raw
    assert read_ack(raw)["text"] == "charge code X&Y|Z^W is not in the chargemaster"  # MSA-3, unescaped


async def test_several_problems_give_several_err_segments():
    msg = synthetic_dft("MANY", [charge("X1", code="0000000"), charge("X2", code="1111111")])
    async with BillingReceiver(ReceiverConfig(known_charge_codes=CDM)) as rx:
        [ack] = await send(rx, msg)
    assert [e[2] for e in ack["errors"]] == ["FT1^1^7", "FT1^2^7"]
    assert "(+1 more)" in ack["text"]


async def test_pre_v25_messages_get_the_error_location_in_err_1():
    async with BillingReceiver(ReceiverConfig(known_charge_codes=CDM)) as rx:
        [ack] = await send(rx, synthetic_dft("OLD", [charge("X1", code="0000000")], version="2.3"))
    assert ack["code"] == "AE" and ack["version"] == "2.3"
    assert ack["errors"][0][1] == "FT1^1^7^103&Table value not found&HL70357"


# -- duplicates: the same FT1-2 twice -----------------------------------------------------------------
def twice(tid: str = "DUP000000001") -> tuple[str, str]:
    return synthetic_dft("FIRST", [charge(tid)]), synthetic_dft("RESENT", [charge(tid)])


async def test_duplicates_ignored_answers_aa_and_posts_once():
    async with BillingReceiver(ReceiverConfig(duplicates="ignore")) as rx:
        acks = await send(rx, *twice())
    assert [a["code"] for a in acks] == ["AA", "AA"]
    assert [a["control_id"] for a in acks] == ["FIRST", "RESENT"]
    assert rx.posted_ids() == ["DUP000000001"] and rx.duplicates_ignored == 1


async def test_duplicates_rejected_answers_ae_205():
    async with BillingReceiver(ReceiverConfig(duplicates="reject")) as rx:
        acks = await send(rx, *twice())
    assert [a["code"] for a in acks] == ["AA", "AE"]
    assert acks[1]["errors"][0][2] == "FT1^1^2"
    assert acks[1]["errors"][0][3] == "205^Duplicate key identifier^HL70357"
    assert rx.posted_ids() == ["DUP000000001"]


async def test_a_receiver_without_duplicate_check_posts_twice():
    async with BillingReceiver(ReceiverConfig(duplicates="post")) as rx:
        acks = await send(rx, *twice())
    assert [a["code"] for a in acks] == ["AA", "AA"]
    assert rx.posted_ids() == ["DUP000000001", "DUP000000001"]


async def test_duplicate_within_one_message():
    msg = synthetic_dft("SAME", [charge("DUP000000002"), charge("DUP000000002")])
    async with BillingReceiver(ReceiverConfig(duplicates="reject")) as rx:
        [ack] = await send(rx, msg)
    assert ack["code"] == "AE" and ack["errors"][0][2] == "FT1^2^2" and rx.postings == []


async def test_duplicate_key_scoped_by_account():
    first = synthetic_dft("A", [charge("SAMEID000001")], account="SYN-V0001")
    other_account = synthetic_dft("B", [charge("SAMEID000001")], account="SYN-V0002")
    async with BillingReceiver(ReceiverConfig(duplicates="reject", duplicate_key=("account", "transaction_id"))) as rx:
        acks = await send(rx, first, other_account, first.replace("|A|", "|C|"))
    assert [a["code"] for a in acks] == ["AA", "AA", "AE"]
    assert [p.account for p in rx.postings] == ["SYN-V0001", "SYN-V0002"]


# -- credits (FT1-6 CD) ---------------------------------------------------------------------------------
async def test_credit_references_its_charge_in_ft1_31():
    post = synthetic_dft("P1", [charge("CHG000000001")])
    credit = synthetic_dft("R1", [charge("REV000000001", transaction_type="CD", reference="CHG000000001")])
    async with BillingReceiver() as rx:
        acks = await send(rx, post, credit)
    assert [a["code"] for a in acks] == ["AA", "AA"]
    assert rx.credited["CHG000000001"].transaction_id == "REV000000001"
    assert rx.standing() == []


async def test_credit_for_a_charge_never_posted_is_ae_204():
    credit = synthetic_dft("R2", [charge("REV000000002", transaction_type="CD", reference="NEVERPOSTED1")])
    async with BillingReceiver() as rx:
        [ack] = await send(rx, credit)
    assert ack["code"] == "AE"
    assert ack["errors"][0][2] == "FT1^1^31"
    assert ack["errors"][0][3] == "204^Unknown key identifier^HL70357"


async def test_second_credit_of_one_charge_is_refused():
    post = synthetic_dft("P1", [charge("CHG000000003")])
    credit1 = synthetic_dft("R1", [charge("REV000000003", transaction_type="CD", reference="CHG000000003")])
    credit2 = synthetic_dft("R2", [charge("REV000000004", transaction_type="CD", reference="CHG000000003")])
    async with BillingReceiver() as rx:
        acks = await send(rx, post, credit1, credit2)
    assert [a["code"] for a in acks] == ["AA", "AA", "AE"]
    assert acks[2]["errors"][0][3].startswith("205^")


async def test_credit_without_a_reference_is_ae():
    async with BillingReceiver() as rx:
        [ack] = await send(rx, synthetic_dft("R3", [charge("REV000000005", transaction_type="CD")]))
    assert ack["code"] == "AE" and ack["errors"][0][3].startswith("101^")


async def test_strict_receiver_refuses_a_12_character_reference_in_ft1_31():
    """FT1-31 is SI (a 1-4 digit set id) in v2.5.1: a type-checking receiver refuses a transaction id there."""
    post = synthetic_dft("P1", [charge("CHG000000006")])
    credit = synthetic_dft("R1", [charge("REV000000006", transaction_type="CD", reference="CHG000000006")])
    async with BillingReceiver(ReceiverConfig(strict_types=True)) as rx:
        acks = await send(rx, post, credit)
    assert [a["code"] for a in acks] == ["AA", "AE"]
    assert acks[1]["errors"][0][2] == "FT1^1^31"
    assert acks[1]["errors"][0][3] == "102^Data type error^HL70357"


async def test_reference_elsewhere_when_the_receiver_wants_it_there():
    """billing.md makes the reference's place a setting: here FT1-23 (filler order number) carries it."""
    post = synthetic_dft("P1", [charge("CHG000000007")])
    credit = synthetic_dft("R1", [charge("REV000000007", transaction_type="CD")], extra_fields={23: "CHG000000007"})
    async with BillingReceiver(ReceiverConfig(strict_types=True, reversal_ref_field=23)) as rx:
        acks = await send(rx, post, credit)
    assert [a["code"] for a in acks] == ["AA", "AA"]
    assert rx.credited["CHG000000007"].transaction_id == "REV000000007"


async def test_credit_that_repeats_the_charge_id_needs_type_in_the_duplicate_key():
    with pytest.raises(ValueError):
        ReceiverConfig(reversal_ref_field=2)
    cfg = ReceiverConfig(reversal_ref_field=2, duplicate_key=("transaction_id", "type"), duplicates="reject")
    post = synthetic_dft("P1", [charge("SAMEID000009")])
    credit = synthetic_dft("R1", [charge("SAMEID000009", transaction_type="CD")])
    async with BillingReceiver(cfg) as rx:
        acks = await send(rx, post, credit, credit.replace("|R1|", "|R2|"))
    assert [a["code"] for a in acks] == ["AA", "AA", "AE"]
    assert rx.standing() == []


async def test_strict_types_other_fields():
    async with BillingReceiver(ReceiverConfig(strict_types=True)) as rx:
        acks = await send(
            rx,
            synthetic_dft("L", [charge("THIRTEENCHARS")]),
            synthetic_dft("Q", [charge("QTY000000001")], extra_fields={10: "two"}),
            synthetic_dft("D", [charge("DAT000000001", service_date="03/02/2026")]),
        )
    assert [a["errors"][0][2] for a in acks] == ["FT1^1^2", "FT1^1^10", "FT1^1^4"]
    assert {a["errors"][0][3] for a in acks} == {"102^Data type error^HL70357"}


# -- AR: what the interface does not take at all ----------------------------------------------------------
async def test_not_a_dft_is_ar():
    adt = "MSH|^~\\&|ADT|SYNHOSP|BILLING|SYNHOSP|20260302||ADT^A03|ADT1|P|2.5.1\rEVN|A03|20260302\rPID|1||SYN-P1\r"
    async with BillingReceiver() as rx:
        [ack] = await send(rx, adt)
    assert ack["code"] == "AR" and ack["control_id"] == "ADT1"
    assert ack["errors"][0][3] == "200^Unsupported message type^HL70357"


async def test_other_dft_event_is_ar():
    async with BillingReceiver() as rx:
        [ack] = await send(rx, synthetic_dft("P11", [charge("X")]).replace("DFT^P03^DFT_P03", "DFT^P11^DFT_P11"))
    assert ack["code"] == "AR" and ack["errors"][0][3].startswith("201^")


async def test_unsupported_version_is_ar():
    async with BillingReceiver() as rx:
        [ack] = await send(rx, synthetic_dft("V27", [charge("X")], version="2.7"))
    assert ack["code"] == "AR" and ack["errors"][0][3].startswith("203^")


async def test_unparseable_bytes_are_ar_and_the_connection_stays_up():
    async with BillingReceiver() as rx:
        acks = await exchange(rx.host, rx.port, [b"this is not hl7", synthetic_dft("AFTER", [charge("AFTER0000001")])])
    first = acks[0].decode()
    assert re.search(r"\rMSA\|AR\|", first)
    assert read_ack(acks[1])["code"] == "AA"


async def test_a_dft_without_ft1_is_ae():
    msg = "MSH|^~\\&|IV|SYNHOSP|BILLING|SYNHOSP|20260302||DFT^P03|NOFT1|P|2.5.1\rEVN|P03|20260302\rPID|1||SYN\r"
    async with BillingReceiver() as rx:
        [ack] = await send(rx, msg)
    assert ack["code"] == "AE"


# -- faults: dropped connections, slow ACKs ----------------------------------------------------------------
async def resend_until_acked(rx: BillingReceiver, messages: list[str], attempts: int = 5) -> list[dict]:
    """A sender that reconnects and resends from the first unacknowledged message."""
    acks: list[bytes] = []
    pending = list(messages)
    for _ in range(attempts):
        try:
            acks += await exchange(rx.host, rx.port, pending)
            return [read_ack(a) for a in acks]
        except Dropped as dropped:
            acks += dropped.acks
            pending = pending[dropped.index:]
    raise AssertionError("never acknowledged")


def three() -> list[str]:
    return [synthetic_dft(f"S{i}", [charge(f"SEQ{i:09d}")]) for i in range(1, 4)]


async def test_drop_before_posting_then_resend_posts_each_once():
    async with BillingReceiver(ReceiverConfig(drop_after=2, drop_mode="before_post")) as rx:
        acks = await resend_until_acked(rx, three())
    assert [a["control_id"] for a in acks] == ["S1", "S2", "S3"]
    assert rx.posted_ids() == ["SEQ000000001", "SEQ000000002", "SEQ000000003"]
    assert rx.drops == 1 and rx.connections == 2
    assert rx.duplicates_ignored == 0  # the message was lost, not posted


async def test_drop_after_posting_the_resend_is_a_duplicate_that_is_ignored():
    async with BillingReceiver(ReceiverConfig(drop_after=2, drop_mode="after_post", duplicates="ignore")) as rx:
        acks = await resend_until_acked(rx, three())
    assert [a["code"] for a in acks] == ["AA", "AA", "AA"]
    assert rx.posted_ids() == ["SEQ000000001", "SEQ000000002", "SEQ000000003"]
    assert rx.duplicates_ignored == 1
    assert [e.ack_code for e in rx.exchanges] == ["AA", None, "AA", "AA"]


async def test_drop_after_posting_with_no_duplicate_check_double_bills():
    """What a sender must never rely on: a receiver without a duplicate check posts the resend again."""
    async with BillingReceiver(ReceiverConfig(drop_after=2, drop_mode="after_post", duplicates="post")) as rx:
        await resend_until_acked(rx, three())
    assert rx.posted_ids() == ["SEQ000000001", "SEQ000000002", "SEQ000000002", "SEQ000000003"]


async def test_drop_after_posting_with_duplicates_rejected_answers_ae_to_the_resend():
    async with BillingReceiver(ReceiverConfig(drop_after=1, drop_mode="after_post", duplicates="reject")) as rx:
        acks = await resend_until_acked(rx, three()[:1])
    assert acks[0]["code"] == "AE" and acks[0]["errors"][0][3].startswith("205^")
    assert rx.posted_ids() == ["SEQ000000001"]  # posted once: an AE 205 after a lost ACK means "already have it"


async def test_repeated_drops():
    async with BillingReceiver(ReceiverConfig(drop_after=2, drop_repeat=True)) as rx:
        acks = await resend_until_acked(rx, three(), attempts=10)
    assert len(acks) == 3 and rx.drops >= 2
    assert rx.posted_ids() == ["SEQ000000001", "SEQ000000002", "SEQ000000003"]


async def test_slow_ack_trips_the_sender_timeout():
    async with BillingReceiver(ReceiverConfig(ack_delay=0.5)) as rx:
        with pytest.raises(asyncio.TimeoutError):
            await exchange(rx.host, rx.port, [synthetic_dft("SLOW", [charge("SLOW00000001")])], timeout=0.1)
        await asyncio.sleep(0.6)
    assert rx.posted_ids() == ["SLOW00000001"]  # posted although the sender gave up: resending must be safe


# -- real public messages (tests/data/billing, byte for byte; tests/data/SOURCES.md) ---------------------------------------------
def example(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


async def test_redox_v25_example_is_accepted():
    raw = example("redox-hl7-v2_parser-spec_DFT_P03_v2.5.hl7")
    async with BillingReceiver() as rx:
        [ack] = await exchange(rx.host, rx.port, [raw])
    parsed = read_ack(ack)
    assert parsed["code"] == "AA" and parsed["control_id"] == "152210"
    [p] = rx.postings
    assert (p.transaction_id, p.transaction_type, p.charge_code, p.quantity) == ("691234", "CG", "84460", "1")
    assert p.procedure == "99213" and p.modifiers == ("MOD1", "MOD2") and p.account == "86210313010"


async def test_healthmatics_v23_example_is_refused_for_its_empty_ft1_7():
    """Published LF-separated (MLLP framing here turns LF into CR). Its FT1-7 transaction code is
    empty (the code is only in FT1-25), and FT1-7 is required in every v2.x: AE, location in ERR-1 (v2.3)."""
    raw = example("hl7pt-validator_Healthmatics_DFT_P03_v2.3.hl7")
    assert b"\r" not in raw
    async with BillingReceiver() as rx:
        [ack] = await exchange(rx.host, rx.port, [raw])
    parsed = read_ack(ack)
    assert parsed["code"] == "AE" and parsed["control_id"] == "1477-3" and parsed["version"] == "2.3"
    assert parsed["errors"][0][1] == "FT1^1^7^101&Required field missing&HL70357"
    assert rx.postings == []


async def test_linuxforhealth_v26_example_is_refused_for_its_version():
    raw = example("linuxforhealth_Hl7DFTMessageTest_DFT_P03_v2.6.hl7")
    async with BillingReceiver() as rx:
        [ack] = await exchange(rx.host, rx.port, [raw])
    assert read_ack(ack)["code"] == "AR"
    async with BillingReceiver(ReceiverConfig(versions=frozenset({"2.6"}), require_transaction_id=False)) as rx:
        [ack] = await exchange(rx.host, rx.port, [raw])
    assert read_ack(ack)["code"] == "AA" and rx.postings[0].charge_code == "FAKE"


def test_public_ack_example_parses_like_ours():
    parsed = read_ack(example("redox-hl7-v2_parser-spec_ACK_AA_v2.3.hl7"))
    assert parsed["code"] == "AA" and parsed["control_id"] == "1"


def test_synthetic_examples_parse():
    for path in EXAMPLES.glob("SYNTHETIC-*.hl7"):
        msg = hl7.parse(path.read_bytes().decode().strip("\r"))
        assert str(msg.segment("MSH")[9]).startswith(("DFT^P03", "ACK"))


# -- FT1-2 derivation -----------------------------------------------------------------------------------------
def test_transaction_id_is_12_safe_characters_and_deterministic():
    ids = {transaction_id(f"ch-{i:024x}") for i in range(20000)}
    assert len(ids) == 20000  # no collision in 20k (odds ~1.7e-10)
    for tid in list(ids)[:500]:
        assert len(tid) == 12 and re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{12}", tid)
    assert transaction_id("ch-abc") == transaction_id("ch-abc")
    assert transaction_id("ch-abc") != transaction_id("rv-abc")


def test_collision_odds():
    assert collision_probability(1_000_000, 60) == pytest.approx(4.34e-7, rel=0.01)
    assert collision_probability(10_000_000, 60) == pytest.approx(4.34e-5, rel=0.01)
    assert collision_probability(10_000_000, 48) == pytest.approx(0.163, rel=0.02)  # 12 hex characters
    assert collision_probability(1, 60) == 0.0


async def test_derived_ids_go_through_the_receiver():
    ids = [transaction_id(f"ch-{i:024x}") for i in range(3)]
    async with BillingReceiver(ReceiverConfig(strict_types=True, duplicates="reject")) as rx:
        [ack] = await send(rx, synthetic_dft("IDS", [charge(t) for t in ids]))
    assert ack["code"] == "AA" and rx.posted_ids() == ids


# -- the SYNTHETIC files of tests/data/billing ---------------------------------------------------------------------
def chargemaster() -> dict[str, dict]:
    import csv
    with open(EXAMPLES / "SYNTHETIC-chargemaster.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["charge_code", "description", "cpt", "revenue_code", "department"]
    return {r["charge_code"]: r for r in rows}


async def test_synthetic_post_then_reversal_against_the_synthetic_chargemaster():
    cfg = ReceiverConfig(known_charge_codes=frozenset(chargemaster()), strict_types=False, duplicates="reject")
    post = example("SYNTHETIC-infusion_DFT_P03_post_v2.5.1.hl7")
    reversal = example("SYNTHETIC-infusion_DFT_P03_reversal_v2.5.1.hl7")
    async with BillingReceiver(cfg) as rx:
        acks = [read_ack(a) for a in await exchange(rx.host, rx.port, [post, reversal])]
    assert [a["code"] for a in acks] == ["AA", "AA"]
    assert rx.posted_ids() == [transaction_id("ch-3f0a9c1d2b4e5f60718293a4"),
                               transaction_id("ch-8b7c6d5e4f3a2b1c0d9e8f7a"),
                               transaction_id("rv-0c1d2e3f4a5b6c7d8e9fa0b1")]
    assert rx.postings[1].modifiers == ("XU",)
    assert [p.transaction_id for p in rx.standing()] == [transaction_id("ch-3f0a9c1d2b4e5f60718293a4")]


async def test_the_synthetic_reversal_is_refused_by_a_type_checking_receiver():
    post = example("SYNTHETIC-infusion_DFT_P03_post_v2.5.1.hl7")
    reversal = example("SYNTHETIC-infusion_DFT_P03_reversal_v2.5.1.hl7")
    async with BillingReceiver(ReceiverConfig(strict_types=True)) as rx:
        acks = [read_ack(a) for a in await exchange(rx.host, rx.port, [post, reversal])]
    assert [a["code"] for a in acks] == ["AA", "AE"]  # why billing.md makes FT1-31's use a setting


def _rows_after_header(text: str, delimiter: str, is_header) -> list[list[str]]:
    """The loader rule of rules/edits.py: skip whatever precedes the header row (notices, blank
    rows), find the header by its content, keep rows whose first cell is a HCPCS/CPT code."""
    import csv
    import io
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    start = next(i for i, r in enumerate(rows) if is_header(r))
    return [r for r in rows[start + 1:] if r and re.fullmatch(r"[0-9A-Z]{4}[0-9A-Z]", r[0].strip())]


def test_synthetic_mue_table_has_the_cms_shape():
    text = (EXAMPLES / "SYNTHETIC-MCR_MUE_OutpatientHospitalServices_Eff_01-01-2026.csv").read_bytes().decode("latin-1")
    header = lambda r: len(r) >= 3 and re.sub(r"\s+", " ", r[0]).strip() == "HCPCS/ CPT Code"  # noqa: E731
    rows = _rows_after_header(text, ",", header)
    by_code = {r[0]: r for r in rows}
    assert by_code["96365"][1:3] == ["2", "1 Line Edit"]
    assert by_code["96360"][2].startswith("2 ")
    assert by_code["96376"][1] == ""  # value absent: a loader must treat it as "no MUE", not 0


def test_synthetic_ptp_file_has_the_cms_shape():
    text = (EXAMPLES / "SYNTHETIC-ptp_hospital_f1.txt").read_bytes().decode("latin-1")
    header = lambda r: [c.strip().replace(" ", "").lower() for c in r[:2]] == ["column1", "column2"]  # noqa: E731
    rows = _rows_after_header(text, "\t", header)
    assert len(rows) == 6
    assert {r[5] for r in rows} == {"0", "1", "9"}
    assert [r[4] for r in rows].count("*") == 5  # '*' = no deletion date
    assert all(re.fullmatch(r"\d{8}", r[3]) for r in rows)  # effective date YYYYMMDD
