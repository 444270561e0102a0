"""HL7 v2 over MLLP: the listener hospitals' interface engines send to, a sender, and file replay.

The listener answers each message with an ACK only after its events are acknowledged by Kafka:
AA accepted; AE content the validator cannot use (missing field, bad value, unknown drug: fix and
resend); AR a message it does not take at all (unparseable, unsupported type: filter it out in the
interface engine). Both AE and AR messages are dead-lettered with their reason. If Kafka cannot be
written, the answer is AE "resend" and nothing is dead-lettered: the message was not consumed.
MLLP framing and the ACK message come from python-hl7; translation from feeds.hl7v2.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from datetime import tzinfo
import re
from collections.abc import AsyncIterator

import hl7
import hl7.mllp
from aiokafka.errors import KafkaError

from feeds import DrugClasses, Translation, translate_hl7
from gateways.bridge import Bridge

log = logging.getLogger(__name__)
SOURCE = "INFUSION-VALIDATOR"


# Table 0357 (message error condition codes) for our rejection categories: ERR-3 of each problem.
_ERR_CODES = {"hl7_parse": "100^Segment sequence error", "hl7_unsupported": "200^Unsupported message type",
              "hl7_missing_field": "101^Required field missing", "hl7_bad_value": "102^Data type error",
              "unknown_drug": "103^Table value not found"}


def build_ack(raw: bytes, code: str, text: str | None, problems: list[str] = (), category: str | None = None) -> bytes:
    """An ACK for `raw`, echoing its control id; text in MSA-3 and one ERR segment per problem
    (ERR-3 the table 0357 condition, ERR-4 E, ERR-8 the problem), so an interface engine shows each
    problem on its own line. Built by python-hl7 from the message's MSH; a message too broken for
    that gets a minimal ACK of our own."""
    control = None
    errs = "".join(f"ERR|||{_ERR_CODES.get(category, '207^Application internal error')}^HL70357|E||||"
                   f"{_escape(problem)}\r" for problem in problems)
    try:
        msg = hl7.parse(_segments(raw))
        control = str(msg.segment("MSH")[10])
        ack = msg.create_ack(code, message_id=f"ACK{control}"[:20], application=SOURCE, facility=SOURCE)
        if text:
            ack.segment("MSA").append(_escape(text))
        return (str(ack).rstrip("\r") + ("\r" + errs.rstrip("\r") if errs else "")).encode()
    except Exception:  # noqa: BLE001 - unparseable is exactly the case handled here
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%S+0000")
        return (f"MSH|^~\\&|{SOURCE}|{SOURCE}|||{now}||ACK|ACK{now}|P|2.5.1\r"
                f"MSA|{code}|{control or ''}|{_escape(text or '')}\r{errs}").encode()


def _segments(raw: bytes) -> str:
    return re.sub(r"\r\n|\n", "\r", raw.decode("utf-8", "replace")).strip("\r")


def _escape(text: str) -> str:
    """HL7 escape sequences for the delimiters, so a reason cannot break the ACK's structure."""
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    return out.replace("&", "\\T\\").replace("~", "\\R\\").replace("\r", " ").replace("\n", " ")


async def handle(raw: bytes, bridge: Bridge, drugs: DrugClasses, source: dict, tz: tzinfo | None = None) -> bytes:
    """Translate (`tz`: the facility's zone for times sent without an offset), write to Kafka
    (awaited), and return the ACK to send back."""
    translation = translate_hl7(raw, drugs, tz)
    try:
        await bridge.submit(translation, raw, dict(source, message_control_id=translation.message_id))
    except KafkaError as exc:
        log.error("HL7 message not stored, answered AE: %s", type(exc).__name__)
        return build_ack(raw, "AE", "could not store the message in Kafka; resend it")
    return build_ack(raw, translation.ack, translation.error, translation.problems, translation.category)


async def serve(bridge: Bridge, drugs: DrugClasses, host: str, port: int, tz: tzinfo | None = None) -> asyncio.AbstractServer:
    """Start the MLLP listener; each connection's messages are answered in order."""
    async def connected(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = {"feed": "hl7-mllp", "peer": f"{peer[0]}:{peer[1]}" if peer else None}
        try:
            while True:
                try:
                    block = await reader.readblock()
                except asyncio.IncompleteReadError:
                    return  # the sender closed the connection
                except hl7.mllp.InvalidBlockError:
                    log.warning("closing an MLLP connection that sent bytes outside a <VT>...<FS><CR> block")
                    return
                writer.writeblock(await handle(block, bridge, drugs, source, tz))
                await writer.drain()
        finally:
            writer.close()

    return await hl7.mllp.start_hl7_server(connected, host, port)


async def send(host: str, port: int, messages: list[bytes], timeout: float = 30.0) -> AsyncIterator[tuple[bytes, str]]:
    """Send messages over MLLP one by one; yields (message, ACK text) as each ACK arrives."""
    reader, writer = await hl7.mllp.open_hl7_connection(host, port)
    try:
        for raw in messages:
            writer.writeblock(re.sub(rb"\r\n|\n", b"\r", raw).strip(b"\r") + b"\r")
            await writer.drain()
            ack = await asyncio.wait_for(reader.readblock(), timeout)
            yield raw, ack.decode("utf-8", "replace")
    finally:
        writer.close()


def split_messages(data: bytes) -> list[bytes]:
    """The messages of an archive file: one per MSH segment (MLLP framing bytes and blank lines
    between messages are ignored). Split as bytes: the translator decodes by the message's charset."""
    data = data.replace(b"\x0b", b"").replace(b"\x1c", b"")
    lines = [line for line in re.split(rb"\r\n|\r|\n", data) if line.strip()]
    messages: list[list[bytes]] = []
    for line in lines:
        if line.startswith(b"MSH") or not messages:
            messages.append([])
        messages[-1].append(line)
    return [b"\r".join(m) + b"\r" for m in messages]


def read_ack(ack: str) -> tuple[str, str]:
    """An ACK's MSA-1 code and MSA-3 text (HL7 escapes undone), ("?", raw start) when unreadable."""
    try:
        msg = hl7.parse("\r".join(seg for seg in re.split(r"\r\n|\r|\n", ack) if seg.strip()))
        msa = msg.segment("MSA")
        text = str(msa[3]) if len(msa) > 3 else ""
        return str(msa[1]), msg.unescape(text) if text else ""
    except Exception:  # a listener that is not ours may answer anything
        return "?", ack[:200]


def control_id(raw: bytes) -> str:
    """MSH-10 of a message, for printing beside its ACK."""
    msh = raw.split(b"\r", 1)[0].decode("utf-8", "replace").split("|")
    return msh[9] if len(msh) > 9 and msh[9] else "?"
