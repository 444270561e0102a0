"""HL7 v2 over MLLP: the listener hospitals' interface engines send to, a sender, and file replay.

The listener answers each message with an ACK only after its events are acknowledged by Kafka:
AA accepted; AE content the validator cannot use (missing field, bad value, unknown drug: fix and
resend); AR a message it does not take at all (unparseable, unsupported type: filter it out in the
interface engine). Both AE and AR messages are dead-lettered with their reason. If Kafka cannot be
written, the answer is AE "resend" and nothing is dead-lettered: the message was not consumed.

Safe to expose (issue 13): loopback unless a host is given; TLS, and mutual TLS, with an
ssl.SSLContext (gateways.tls.server_context); a message over `max_bytes` is read to its end in
bounded memory and answered once, AR "message over N bytes", with one dead letter holding its first
4 KiB; each message must arrive whole within `idle_timeout` of the previous answer (idle and
half-sent connections are closed); at most `max_connections` at once (more are closed at once and
counted); bytes outside an MLLP block get an AR and the connection is closed; nothing a sender
sends ends in a reset or an unhandled exception. Logs name the peer and the fault, never content.
The listener frames MLLP itself (asyncio's stream limit would reset frames over 64 KiB); the sender
and the ACK message come from python-hl7; translation from feeds.hl7v2.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
import time
from collections.abc import AsyncIterator
from datetime import tzinfo
import ssl as ssl_module
from ssl import SSLContext

import hl7
import hl7.mllp
from aiokafka.errors import KafkaError

from feeds import DrugClasses, PumpLinks, Translation, translate_hl7
from feeds.hl7v2 import VISIT_FIELDS, decode as _decode
from feeds.translation import Reject
from gateways.bridge import Bridge

log = logging.getLogger(__name__)
SOURCE = "INFUSION-VALIDATOR"
START, END = b"\x0b", b"\x1c\r"  # MLLP: <VT> message <FS><CR>
PREFIX_KEPT = 4096  # bytes of an oversized message kept in its dead letter
OVERSIZE = "hl7_oversize"  # dead-letter category of a message over IV_HL7_MAX_BYTES (answered AR)
NOT_MLLP = "bytes outside an MLLP block: send each message as <VT> message <FS><CR>"


# Table 0357 (message error condition codes) for our rejection categories: ERR-3 of each problem.
_ERR_CODES = {"hl7_parse": "100^Segment sequence error", "hl7_unsupported": "200^Unsupported message type",
              "hl7_missing_field": "101^Required field missing", "hl7_bad_value": "102^Data type error",
              "unknown_drug": "103^Table value not found", OVERSIZE: "104^Value too long"}


def build_ack(raw: bytes, code: str, text: str | None, problems: list[str] = (), category: str | None = None) -> bytes:
    """An ACK for `raw`, echoing its control id; text in MSA-3 and one ERR segment per problem
    (ERR-3 the table 0357 condition, ERR-4 E, ERR-8 the problem), so an interface engine shows each
    problem on its own line. Written here from the message's MSH, saying back only what HL7 needs
    and nothing else: MSH-3/4 (the sending system) as MSH-5/6 and MSH-10 as MSA-2; the trigger
    event, processing id and version only when they are codes. A message without a readable MSH
    gets the same ACK with those fields empty."""
    msh = _msh(raw)
    control = _field(msh, 10)[:199]
    trigger = _field(msh, 9).split("^")[1:2]
    trigger = trigger[0] if trigger and re.fullmatch(r"[A-Z]\d{2}", trigger[0]) else ""
    processing = _field(msh, 11) if _field(msh, 11) in ("P", "T", "D") else "P"
    version = _field(msh, 12) if re.fullmatch(r"2\.\d(\.\d)?", _field(msh, 12)) else "2.5.1"
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%S+0000")
    header = (f"MSH|^~\\&|{SOURCE}|{SOURCE}|{_field(msh, 3)}|{_field(msh, 4)}|{now}||ACK^{trigger}^ACK|"
              f"{_escape('ACK' + control)[:20]}|{processing}|{version}")
    errs = [f"ERR|||{_ERR_CODES.get(category, '207^Application internal error')}^HL70357|E||||{_escape(problem)}"
            for problem in problems]
    lines = [header, f"MSA|{code}|{_escape(control)}" + (f"|{_escape(text)}" if text else ""), *errs]
    ack = "\r".join(lines)
    if not ack.isascii():
        lines[0] += "||||||UNICODE UTF-8"  # MSH-18: the sending system's name may not be ASCII
        ack = "\r".join(lines)
    return ack.encode()


def _msh(raw: bytes) -> list[str]:
    """The MSH segment's fields (index n: MSH-n; components in standard delimiters), [] if none."""
    try:
        first = _decode(raw)
    except Reject:
        first = raw.decode("latin-1")
    first = first.lstrip("\x0b\r\n\t \ufeff").split("\r", 1)[0].split("\n", 1)[0]
    if not first.startswith("MSH") or len(first) < 8:
        return []
    separator, encoding = first[3], first[4:8]
    fields = [first[:3], separator] + first[4:].split(separator)
    if encoding != "^~\\&":  # say it back in the standard delimiters
        fields = [f.translate(str.maketrans(encoding, "^~\\&")) if n > 2 else f for n, f in enumerate(fields)]
    return fields


def _field(msh: list[str], n: int) -> str:
    return msh[n].replace("\r", " ").replace("|", "\\F\\")[:227] if n < len(msh) else ""


def _escape(text: str) -> str:
    """HL7 escape sequences for the delimiters, so a reason cannot break the ACK's structure."""
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    return out.replace("&", "\\T\\").replace("~", "\\R\\").replace("\r", " ").replace("\n", " ")


async def handle(raw: bytes, bridge: Bridge, drugs: DrugClasses, source: dict, tz: tzinfo | None = None,
                 visit_fields: tuple[str, ...] = VISIT_FIELDS, links: PumpLinks | None = None) -> bytes:
    """Translate (`tz`: the facility's zone for times sent without an offset; `visit_fields`: where
    the visit number is read; `links`: the pump feed's memory of orders), write to Kafka (awaited),
    and return the ACK to send back."""
    try:
        translation = translate_hl7(raw, drugs, tz, visit_fields, links)
    except Exception as exc:  # noqa: BLE001 - a translator bug must not cost the sender its answer
        log.error("HL7 message not translated (%s): answered AR and dead-lettered", type(exc).__name__)
        translation = Translation(events=[], problems=["the validator could not read this message (an internal "
                                                       "error, logged); it is kept in the dead letters"],
                                  category="hl7_parse")
    return await _stored(translation, raw, bridge, source, raw)


async def _stored(translation: Translation, raw: bytes, bridge: Bridge, source: dict, ack_for: bytes) -> bytes:
    try:
        await bridge.submit(translation, raw, dict(source, message_control_id=translation.message_id))
    except KafkaError as exc:
        log.error("HL7 message not stored, answered AE: %s", type(exc).__name__)
        return build_ack(ack_for, "AE", "could not store the message in Kafka; resend it")
    return build_ack(ack_for, translation.ack if translation.category != OVERSIZE else "AR", translation.error,
                     translation.problems, translation.category)


async def too_large(prefix: bytes, size: int, max_bytes: int, bridge: Bridge, source: dict) -> bytes:
    """A frame over `max_bytes`: one dead letter holding its first PREFIX_KEPT bytes, and one AR
    (built from its MSH when the prefix has one whole, else a minimal ACK)."""
    head = prefix.split(b"\r", 1)[0] if b"\r" in prefix and prefix.startswith(b"MSH") else b""
    problem = f"message over {max_bytes} bytes ({size} bytes): not taken; split it, or have IV_HL7_MAX_BYTES raised"
    fields = head.split(head[3:4]) if len(head) > 9 else []
    control = fields[9].decode("utf-8", "replace")[:64] if len(fields) > 9 and fields[9] else None
    translation = Translation(events=[], problems=[problem], category=OVERSIZE, message_id=control)
    return await _stored(translation, prefix[:PREFIX_KEPT], bridge, dict(source, bytes=size), head)


class _Frame:
    __slots__ = ("data", "size", "complete")

    def __init__(self, data: bytes, size: int, complete: bool = True) -> None:
        self.data, self.size, self.complete = data, size, complete


class _NotMLLP(Exception):
    """Bytes outside a <VT>...<FS><CR> block."""


class _Frames:
    """MLLP framing (<VT> message <FS><CR>) over a stream, in bounded memory: a frame over
    `max_bytes` is read to its end but only its first PREFIX_KEPT bytes are kept. Each frame must
    arrive whole within `timeout` seconds of the previous answer (idle and half-sent alike)."""

    def __init__(self, reader: asyncio.StreamReader, max_bytes: int, timeout: float) -> None:
        self.reader, self.max_bytes, self.timeout = reader, max_bytes, timeout
        self.buffer = bytearray()

    async def next(self) -> _Frame | None:
        """The next frame; None when the sender closed (a half-sent frame is dropped); TimeoutError
        when the time ran out (an oversized frame is then returned, incomplete, to be answered)."""
        deadline = asyncio.get_running_loop().time() + self.timeout
        kept, size, started = bytearray(), 0, False
        while True:
            if started:
                end = self.buffer.find(END)
                take = end if end >= 0 else len(self.buffer) - self.buffer.endswith(b"\x1c")
                size += take
                if size <= self.max_bytes:
                    kept += self.buffer[:take]
                elif len(kept) < PREFIX_KEPT:
                    kept += self.buffer[:PREFIX_KEPT - len(kept)]
                del self.buffer[:take + (2 if end >= 0 else 0)]
                if size > self.max_bytes and len(kept) > PREFIX_KEPT:
                    del kept[PREFIX_KEPT:]
                if end >= 0:
                    return _Frame(bytes(kept), size)
            else:
                stripped = self.buffer.lstrip(b"\r\n\t ")
                if stripped[:1] == START:
                    del stripped[:1]
                    started = True
                elif stripped:
                    raise _NotMLLP
                self.buffer = stripped
                if started:
                    continue
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await self.reader.read(65536)
            except TimeoutError:
                if size > self.max_bytes:
                    return _Frame(bytes(kept), size, complete=False)
                raise
            if not chunk:
                return None
            self.buffer += chunk


class Listener:
    """A running MLLP listener (`serve`): `close()` stops accepting and ends the connections that
    wait for a message at once; `wait_closed()` lets those answering a message finish (up to
    `grace` seconds) and ends the rest. `refused` counts connections over the cap."""

    def __init__(self, bridge: Bridge, drugs: DrugClasses, tz: tzinfo | None, max_bytes: int, idle_timeout: float,
                 max_connections: int, metrics=None, visit_fields: tuple[str, ...] = VISIT_FIELDS,
                 links: PumpLinks | None = None) -> None:
        self.bridge, self.drugs, self.tz, self.metrics = bridge, drugs, tz, metrics  # metrics: gateways.ops.FeedMetrics
        self.visit_fields = visit_fields
        # orders and pumps: links pump events (feeds/pump_link.py; the listener command also fills it
        # with the orders every replica received, gateways/pump_orders.py)
        self.links = links if links is not None else PumpLinks()
        self.max_bytes, self.idle_timeout, self.max_connections = max_bytes, idle_timeout, max_connections
        self.server: asyncio.AbstractServer | None = None
        self.connections: dict[asyncio.Task, bool] = {}  # task -> answering a message now
        self.refused = 0
        self.closing = False
        self._refusal_logged = 0.0

    @property
    def sockets(self):
        return self.server.sockets

    def close(self) -> None:
        self.closing = True
        self.server.close()
        for task, busy in list(self.connections.items()):
            if not busy:
                task.cancel()

    async def wait_closed(self, grace: float = 5.0) -> None:
        await self.server.wait_closed()
        tasks = list(self.connections)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.closing or len(self.connections) >= self.max_connections:
            self.refused += 1
            if self.metrics:
                self.metrics.refused.labels("hl7").inc()
            now = asyncio.get_running_loop().time()
            if now - self._refusal_logged >= 10:
                self._refusal_logged = now
                log.warning("MLLP connection refused: %d open, the cap (IV_FEED_MAX_CONNECTIONS); %d refused so far",
                            len(self.connections), self.refused)
            writer.close()
            return
        task = asyncio.current_task()
        self.connections[task] = False
        peer = writer.get_extra_info("peername")
        source = {"feed": "hl7-mllp", "peer": f"{peer[0]}:{peer[1]}" if peer else None}
        frames = _Frames(reader, self.max_bytes, self.idle_timeout)
        try:
            while not self.closing:
                frame = await frames.next()
                if frame is None:
                    return  # the sender closed the connection
                self.connections[task] = True
                received = time.perf_counter()
                if frame.size > self.max_bytes:
                    ack = await too_large(frame.data, frame.size, self.max_bytes, self.bridge, source)
                else:
                    ack = await handle(frame.data, self.bridge, self.drugs, source, self.tz, self.visit_fields,
                                       self.links)
                if self.metrics:
                    self.metrics.observe_answer("hl7", ack_code(ack), time.perf_counter() - received)
                writer.write(START + ack + END)
                async with asyncio.timeout(self.idle_timeout):
                    await writer.drain()
                self.connections[task] = False
                if not frame.complete:
                    return  # an oversized frame still arriving when the time ran out: answered, closed
        except _NotMLLP:
            log.warning("MLLP connection from %s sent bytes outside a <VT>...<FS><CR> block: answered AR, closed",
                        source["peer"])
            with contextlib.suppress(Exception):
                writer.write(START + build_ack(b"", "AR", NOT_MLLP, [NOT_MLLP], "hl7_parse") + END)
                async with asyncio.timeout(1):
                    await writer.drain()
        except TimeoutError:
            log.info("MLLP connection from %s closed: nothing whole received in %g s (IV_FEED_IDLE_TIMEOUT_SECONDS)",
                     source["peer"], self.idle_timeout)
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
            log.info("MLLP connection from %s lost: %s", source["peer"], type(exc).__name__)
        except asyncio.CancelledError:
            pass  # the listener is stopping
        except Exception as exc:  # noqa: BLE001 - one connection's fault must not go unreported or kill others
            log.error("MLLP connection from %s failed: %s", source["peer"], type(exc).__name__)
        finally:
            del self.connections[task]
            writer.close()


async def serve(bridge: Bridge, drugs: DrugClasses, host: str, port: int, tz: tzinfo | None = None, *,
                ssl: SSLContext | None = None, max_bytes: int = 1_048_576, idle_timeout: float = 30.0,
                max_connections: int = 100, metrics=None, visit_fields: tuple[str, ...] = VISIT_FIELDS,
                links: PumpLinks | None = None) -> Listener:
    """Start the MLLP listener (over TLS with `ssl`, gateways.tls.server_context); each connection's
    messages are answered in order. Limits: `max_bytes` a message, `idle_timeout` seconds to receive
    each whole message (idle or half-sent connections are closed), `max_connections` open at once
    (more are closed at once and counted)."""
    listener = Listener(bridge, drugs, tz, max_bytes, idle_timeout, max_connections, metrics, visit_fields, links)
    if metrics:
        metrics.connections.labels("hl7").set_function(lambda: len(listener.connections))
    listener.server = await asyncio.start_server(listener.connected, host, port, ssl=ssl,
                                                 ssl_handshake_timeout=idle_timeout if ssl else None)
    return listener


def client_context(cafile: str | None = None, certfile: str | None = None,
                   keyfile: str | None = None) -> SSLContext:
    """TLS for `send`: the listener's certificate checked against `cafile` (else the system's CAs),
    and our client certificate for mutual TLS when `certfile` is given."""
    context = ssl_module.create_default_context(cafile=cafile)
    context.minimum_version = ssl_module.TLSVersion.TLSv1_2
    if certfile:
        context.load_cert_chain(certfile, keyfile)
    return context


async def send(host: str, port: int, messages: list[bytes], timeout: float = 30.0,
               ssl: SSLContext | None = None) -> AsyncIterator[tuple[bytes, str]]:
    """Send messages over MLLP (over TLS with `ssl`, client_context()) one by one;
    yields (message, ACK text) as each ACK arrives."""
    reader, writer = await hl7.mllp.open_hl7_connection(host, port, ssl=ssl)
    try:
        for raw in messages:
            writer.writeblock(re.sub(rb"\r\n|\n", b"\r", raw).strip(b"\r") + b"\r")
            await writer.drain()
            try:
                ack = await asyncio.wait_for(reader.readblock(), timeout)
            except TimeoutError:
                raise TimeoutError(f"no ACK within {timeout:g} s for message {control_id(raw)}") from None
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


def ack_code(ack: bytes) -> str:
    """MSA-1 of an ACK this listener built (AA, AE or AR)."""
    found = re.search(rb"\rMSA\|(A[AER])", ack)
    return found.group(1).decode() if found else "?"


def control_id(raw: bytes) -> str:
    """MSH-10 of a message, for printing beside its ACK."""
    msh = raw.split(b"\r", 1)[0].decode("utf-8", "replace").split("|")
    return msh[9] if len(msh) > 9 and msh[9] else "?"
