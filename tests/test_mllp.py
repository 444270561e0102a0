"""MLLP pieces without a broker (gateways/mllp.py): ACKs with one ERR per problem, ACK text read back
unescaped, archives split as bytes, answers in time when Kafka does not store."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from feeds import DrugClasses, translate_hl7
from gateways.bridge import Bridge
from gateways.gateway import send_hl7
from gateways.mllp import build_ack, handle, read_ack, split_messages
from streams.config import Topics

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


class _StuckProducer:
    """A producer whose cluster never takes anything (aiokafka's send() returns a future to await)."""

    async def send(self, *args, **kwargs):
        return asyncio.get_running_loop().create_future()


async def test_a_message_kafka_does_not_store_in_time_is_answered_resend_while_the_sender_waits():
    raw = (SAMPLES / "ras-start.hl7").read_bytes()
    began = time.monotonic()
    ack = await handle(raw, Bridge(_StuckProducer(), Topics(), timeout=0.3), DrugClasses.load(), {"feed": "hl7"})
    assert time.monotonic() - began < 2
    assert read_ack(ack.decode()) == ("AE", "could not store the message in Kafka; resend it")


async def test_hl7_send_says_why_it_gave_up_waiting_for_an_ack(tmp_path):
    async def silent(reader, writer):
        await reader.read(1 << 20)  # takes the message, never answers

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    (tmp_path / "m.hl7").write_bytes((SAMPLES / "ras-start.hl7").read_bytes())
    try:
        with pytest.raises(OSError) as exc:
            await send_hl7("127.0.0.1", port, [str(tmp_path / "m.hl7")], timeout=0.3)
    finally:
        server.close()
    assert str(exc.value).startswith(f"no ACK within 0.3 s for message MAR0001001 from 127.0.0.1:{port}; it may "
                                      "or may not be stored")
