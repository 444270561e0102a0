"""MLLP pieces without a broker (gateways/mllp.py): ACKs with one ERR per problem, ACK text read back
unescaped, archives split as bytes."""
from __future__ import annotations

from pathlib import Path

from feeds import DrugClasses, translate_hl7
from gateways.mllp import build_ack, read_ack, split_messages

SAMPLES = Path(__file__).parent.parent / "samples" / "hl7"


def test_a_rejection_ack_has_one_err_segment_per_problem():
    raw = (SAMPLES / "malformed-no-visit.hl7").read_bytes().replace(b"|IP|A", b"|MAYBE|Z")
    t = translate_hl7(raw, DrugClasses.load())
    assert len(t.problems) == 3
    ack = build_ack(raw, t.ack, t.error, t.problems, t.category).decode()
    segments = ack.split("\r")
    assert [s[:3] for s in segments] == ["MSH", "MSA", "ERR", "ERR", "ERR"]
    assert segments[2].startswith("ERR|||101^Required field missing^HL70357|E||||PV1-19")
    assert read_ack(ack) == ("AE", t.error)


def test_ack_text_with_delimiters_is_escaped_on_the_wire_and_read_back_as_said():
    raw = (SAMPLES / "ras-start.hl7").read_bytes()
    said = "RXR-1 route 'P|O^x&y~z\\' is not coded"
    ack = build_ack(raw, "AE", said, [said], "hl7_bad_value").decode()
    assert "|P|O^" not in ack
    assert read_ack(ack) == ("AE", said)
    assert read_ack(build_ack(raw, "AA", None).decode()) == ("AA", "")
    assert read_ack("garbage")[0] == "?"


def test_archives_are_split_as_bytes_so_any_charset_survives():
    one = (SAMPLES / "ras-start.hl7").read_bytes().replace(b"vancomycin", "Vancomycine \u00e9".encode("latin-1"))
    archive = b"\x0b" + one + b"\x1c\r\n\n" + (SAMPLES / "ras-stop.hl7").read_bytes().replace(b"\r", b"\r\n")
    first, second = split_messages(archive)
    assert first == one.rstrip(b"\r") + b"\r" and "Vancomycine \u00e9".encode("latin-1") in first
    assert second.count(b"\r\n") == 0 and second.startswith(b"MSH|")
