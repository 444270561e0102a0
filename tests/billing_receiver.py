"""A hospital billing system's DFT^P03 charge interface, as a test double.

An asyncio MLLP listener that answers each HL7 v2 DFT^P03 (Post Detail Financial Transaction) the
way a patient-accounting system's inbound charge interface does, so the sender that the
infusion-validator is going to grow (charge records -> DFT^P03 over MLLP) can be tested against it:

* every message is parsed with python-hl7 (``hl7.parse``); each answer is an original-mode ACK
  built with python-hl7's ``Message.create_ack``: MSA-1 the code, MSA-2 the message's MSH-10;
* AA when every FT1 line was taken; the FT1-2 transaction ids it posted are kept in ``ledger``;
* AE with one ERR segment per problem (ERR-2 the location ``FT1^<set>^<field>``, ERR-3 the HL7
  table 0357 condition, ERR-4 ``E``, ERR-8 a plain sentence) for a line it refuses: an FT1-7
  charge code not in the configured chargemaster, a missing required field, a transaction type
  it does not take, a credit (FT1-6 ``CD``) whose original it never posted, a second posting of
  an FT1-2 it already has (only when ``duplicates="reject"``), a value of the wrong HL7 type
  (only with ``strict_types``, e.g. a 12-character reference in FT1-31, which v2.5.1 types SI);
* AR for what it does not take at all: bytes python-hl7 cannot parse, a message that is not
  DFT^P03, an HL7 version outside ``versions``;
* duplicates (the same FT1-2 posted twice) are configurable, because real receivers differ:
  ``"ignore"`` answers AA and posts nothing (what many billing interfaces do: the resend after a
  lost ACK must not double-bill), ``"reject"`` answers AE with ``205^Duplicate key identifier``,
  ``"post"`` posts it again (a receiver with no duplicate check: the double charge is then the
  sender's fault);
* faults for reconnect/resend tests: ``drop_after=N`` closes the connection on the N-th message
  (counted over the receiver's life) without answering it, either before posting it
  (``drop_mode="before_post"``: the message is lost, the resend is new) or after
  (``"after_post"``: the ACK is lost, the resend is a duplicate); ``ack_delay`` answers late (a
  sender's ACK timeout fires and it resends on the same or a new connection).

Python-hl7 and the standard library only (and the product's FT1-2 derivation). Nothing here is a real billing
system's behaviour copied from one; the defaults follow the HL7 v2.5.1 standard (FT1 field
positions and types, tables 0008, 0017 and 0357) and the behaviours named above are settings.
``synthetic_dft`` builds SYNTHETIC test messages (made-up data, no real patient).
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import hl7

from billing import dft

START, END = b"\x0b", b"\x1c\x0d"  # MLLP: <VT> message <FS><CR>
DEFAULT_VERSIONS = frozenset({"2.3", "2.3.1", "2.4", "2.5", "2.5.1"})

# HL7 table 0357 (message error condition codes), the ones this receiver uses.
SEGMENT_SEQUENCE = ("100", "Segment sequence error")
REQUIRED_MISSING = ("101", "Required field missing")
DATA_TYPE = ("102", "Data type error")
TABLE_VALUE = ("103", "Table value not found")
UNSUPPORTED_TYPE = ("200", "Unsupported message type")
UNSUPPORTED_EVENT = ("201", "Unsupported event code")
UNSUPPORTED_VERSION = ("203", "Unsupported version id")
UNKNOWN_KEY = ("204", "Unknown key identifier")
DUPLICATE_KEY = ("205", "Duplicate key identifier")


@dataclass(frozen=True)
class Problem:
    """One ERR segment: where (segment, set id / sequence, field), what (table 0357), why."""

    condition: tuple[str, str]
    text: str
    segment: str = ""
    sequence: int = 0
    field: int = 0


@dataclass(frozen=True)
class Posting:
    """One FT1 line the billing system posted to an account."""

    transaction_id: str  # FT1-2
    transaction_type: str  # FT1-6: CG or CD
    charge_code: str  # FT1-7.1
    quantity: str  # FT1-10 as sent
    account: str  # PV1-19.1
    procedure: str  # FT1-25.1
    modifiers: tuple[str, ...]  # FT1-26, each repetition's first component
    reverses: str | None  # on a CD: the FT1-2 of the charge it credits
    control_id: str  # MSH-10 of the message that carried it
    set_id: str  # FT1-1


@dataclass
class Exchange:
    """One message received and what was answered (``ack`` is None when the connection was dropped)."""

    raw: bytes
    control_id: str
    ack_code: str | None
    problems: list[Problem]
    ack: bytes | None


@dataclass
class ReceiverConfig:
    """How this billing system behaves. Every default is the HL7 v2.5.1 reading; the rest are the
    ways real receivers differ."""

    # FT1-7.1 must be one of these (the hospital's chargemaster); None accepts any code.
    known_charge_codes: frozenset[str] | None = None
    # FT1-6 values taken (HL7 table 0017 is user-defined: CG charge, CD credit, AJ, PY, CO...).
    transaction_types: frozenset[str] = frozenset({"CG", "CD"})
    # What a second posting of a key it already holds gets (see the module docstring).
    duplicates: Literal["ignore", "reject", "post"] = "ignore"
    # What makes two lines "the same": FT1-2 alone, or with the account (PV1-19) and/or FT1-6.
    duplicate_key: tuple[Literal["account", "transaction_id", "type"], ...] = ("transaction_id",)
    # Where a credit (CD) names the charge it reverses: an FT1 field number (31 = FT1-31
    # Transaction Reference Key, billing.md's default), 2 = the credit repeats the original's
    # FT1-2 (then "type" must be part of duplicate_key), None = credits are not matched.
    reversal_ref_field: int | None = 31
    # A credit whose original was never posted (or was already credited) is refused (AE 204/205).
    require_known_original: bool = True
    # FT1-2 must be valued (a billing system that de-duplicates on it needs it).
    require_transaction_id: bool = True
    # Check HL7 data types: FT1-2 ST max 12, FT1-4 starts with a date, FT1-10 NM, FT1-31 SI (1-4 digits).
    strict_types: bool = False
    # One refused line refuses the whole message (nothing of it is posted); False posts the good lines.
    atomic: bool = True
    # HL7 versions (MSH-12.1) taken; others are answered AR 203.
    versions: frozenset[str] = DEFAULT_VERSIONS
    # MSA-3 text beside the code (kept in v2.5.1 for backward compatibility; ERR is the v2.5 way,
    # but many senders and engines still show MSA-3).
    ack_text: bool = True
    # Faults.
    drop_after: int | None = None  # close the connection on the N-th message received (1-based)
    drop_mode: Literal["before_post", "after_post"] = "before_post"
    drop_repeat: bool = False  # drop on every N-th message, not only the first time
    ack_delay: float = 0.0  # seconds to wait before answering
    hold_after: int | None = None  # the N-th message is read, neither posted nor answered (a hung system)
    # The ACK's sender (MSH-3 / MSH-4).
    application: str = "BILLING"
    facility: str = "HOSPITAL"
    max_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        if self.reversal_ref_field == 2 and "type" not in self.duplicate_key:
            raise ValueError("a credit that repeats its original's FT1-2 needs 'type' in duplicate_key")
        if self.duplicates not in ("ignore", "reject", "post"):
            raise ValueError(f"duplicates: {self.duplicates!r}")
        if self.drop_after is not None and self.drop_after < 1:
            raise ValueError("drop_after counts messages from 1")


class BillingReceiver:
    """The listener. ``async with BillingReceiver(config) as rx:`` starts it on 127.0.0.1 and a free
    port (``rx.port``); ``rx.ledger`` holds what it posted, ``rx.exchanges`` every message and answer."""

    def __init__(self, config: ReceiverConfig | None = None, host: str = "127.0.0.1", port: int = 0,
                 ssl=None) -> None:
        self.config = config or ReceiverConfig()
        self.host, self.port, self.ssl = host, port, ssl  # ssl: a server SSLContext (TLS, mutual TLS)
        self.postings: list[Posting] = []  # every posting, in order (duplicates too when duplicates="post")
        self.ledger: dict[tuple[str, ...], Posting] = {}  # duplicate key -> first posting
        self.credited: dict[str, Posting] = {}  # original FT1-2 -> the credit that reversed it
        self.exchanges: list[Exchange] = []
        self.duplicates_ignored = 0
        self.connections = 0
        self.drops = 0
        self.held: list[str] = []  # MSH-10 of the messages held (hold_after)
        self._received = 0
        self._ack_ids = itertools.count(1)
        self._server: asyncio.base_events.Server | None = None
        self._lock = asyncio.Lock()  # one message is processed at a time, whatever the connection

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> BillingReceiver:
        self._server = await asyncio.start_server(self._connected, self.host, self.port, limit=self.config.max_bytes,
                                                  ssl=self.ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def __aenter__(self) -> BillingReceiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- what was posted --------------------------------------------------------------------------
    def posted_ids(self) -> list[str]:
        """FT1-2 of every posting, in order (a duplicate posted twice appears twice)."""
        return [p.transaction_id for p in self.postings]

    def standing(self) -> list[Posting]:
        """Charges posted and not credited."""
        return [p for p in self.postings if p.transaction_type == "CG" and p.transaction_id not in self.credited]

    # -- the connection ---------------------------------------------------------------------------
    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    block = await reader.readuntil(END)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                except asyncio.LimitOverrunError:
                    return  # over max_bytes: a real receiver would AR it; a test double just hangs up
                start = block.find(START)
                raw = block[start + 1 : -len(END)] if start >= 0 else block[: -len(END)]
                async with self._lock:
                    self._received += 1
                    hold = self._received == self.config.hold_after
                    if hold:
                        self.held.append(_control_id_of(raw))
                    else:
                        drop = self._should_drop(self._received)
                        if drop and self.config.drop_mode == "before_post":
                            self._dropped(raw)
                            return
                        ack, exchange = self._answer(raw)
                        if drop:  # after_post: posted, but the sender never hears so
                            exchange.ack_code, exchange.ack = None, None
                            self.exchanges.append(exchange)
                            self.drops += 1
                            return
                        self.exchanges.append(exchange)
                if hold:  # hung: nothing posted, no answer, until the sender hangs up
                    await reader.read()
                    return
                if self.config.ack_delay:
                    await asyncio.sleep(self.config.ack_delay)
                writer.write(START + ack + END)
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _should_drop(self, n: int) -> bool:
        every = self.config.drop_after
        if every is None:
            return False
        return n % every == 0 if self.config.drop_repeat else n == every

    def _dropped(self, raw: bytes) -> None:
        self.drops += 1
        self.exchanges.append(Exchange(raw, _control_id_of(raw), None, [], None))

    # -- one message ------------------------------------------------------------------------------
    def _answer(self, raw: bytes) -> tuple[bytes, Exchange]:
        text = _decode(raw)
        normal = re.sub(r"\r\n|\n", "\r", text).strip("\r\n\x00 ")
        try:
            msg = hl7.parse(normal)
            msg.segment("MSH")
        except Exception:
            problem = Problem(SEGMENT_SEQUENCE, "not an HL7 v2 message python-hl7 can parse (no readable MSH)")
            ack = self._fallback_ack(text, "AR", [problem])
            return ack, Exchange(raw, _control_id_of(raw), "AR", [problem], ack)
        control = _get(msg, "MSH", 1, 10)
        code, problems = self._process(msg, control)
        ack = self._ack(msg, text, code, problems)
        return ack, Exchange(raw, control, code, problems, ack)

    def _process(self, msg: hl7.Message, control: str) -> tuple[str, list[Problem]]:
        cfg = self.config
        mtype, event = _get(msg, "MSH", 1, 9, 1, 1), _get(msg, "MSH", 1, 9, 1, 2)
        version = _get(msg, "MSH", 1, 12, 1, 1)
        if mtype != "DFT":
            return "AR", [Problem(UNSUPPORTED_TYPE, f"this interface takes DFT^P03, not {mtype or '(empty)'}", "MSH", 1, 9)]
        if event != "P03":
            return "AR", [Problem(UNSUPPORTED_EVENT, f"this interface takes DFT^P03, not DFT^{event or '(empty)'}", "MSH", 1, 9)]
        if version not in cfg.versions:
            return "AR", [Problem(UNSUPPORTED_VERSION, f"HL7 version {version or '(empty)'} is not taken here", "MSH", 1, 12)]
        ft1s = _segments(msg, "FT1")
        if not ft1s:
            return "AE", [Problem(SEGMENT_SEQUENCE, "no FT1 segment: nothing to post", "FT1", 1, 0)]
        account = _get(msg, "PV1", 1, 19) if _segments(msg, "PV1") else ""

        problems: list[Problem] = []
        accepted: list[Posting] = []
        seen_here: set[tuple[str, ...]] = set()
        for n in range(1, len(ft1s) + 1):
            line, line_problems = self._line(msg, n, account, control)
            if line is None or line_problems:
                problems += line_problems
                continue
            key = self._key(line)
            if key in self.ledger or key in seen_here:
                if cfg.duplicates == "reject":
                    problems.append(Problem(DUPLICATE_KEY, f"transaction {line.transaction_id} was already posted",
                                            "FT1", n, 2))
                    continue
                if cfg.duplicates == "ignore":
                    self.duplicates_ignored += 1
                    continue
            credit_problem = self._credit_check(line, n, accepted)
            if credit_problem:
                problems.append(credit_problem)
                continue
            seen_here.add(key)
            accepted.append(line)

        if problems and cfg.atomic:
            return "AE", problems
        for line in accepted:
            self.postings.append(line)
            self.ledger.setdefault(self._key(line), line)
            if line.transaction_type == "CD" and line.reverses:
                self.credited.setdefault(line.reverses, line)
        return ("AE" if problems else "AA"), problems

    def _line(self, msg: hl7.Message, n: int, account: str, control: str) -> tuple[Posting | None, list[Problem]]:
        cfg = self.config
        f = lambda field, rep=1, comp=1: _get(msg, "FT1", n, field, rep, comp)  # noqa: E731
        set_id = f(1) or str(n)
        tid, date, ttype, code, qty = f(2), f(4), f(6), f(7), f(10)
        problems: list[Problem] = []
        if not tid and cfg.require_transaction_id:
            problems.append(Problem(REQUIRED_MISSING, "FT1-2 transaction id is empty", "FT1", n, 2))
        if not date:
            problems.append(Problem(REQUIRED_MISSING, "FT1-4 transaction date is empty", "FT1", n, 4))
        if not ttype:
            problems.append(Problem(REQUIRED_MISSING, "FT1-6 transaction type is empty", "FT1", n, 6))
        elif ttype not in cfg.transaction_types:
            problems.append(Problem(TABLE_VALUE, f"transaction type {ttype} is not taken by this interface", "FT1", n, 6))
        if not code:
            problems.append(Problem(REQUIRED_MISSING, "FT1-7 transaction code is empty", "FT1", n, 7))
        elif cfg.known_charge_codes is not None and code not in cfg.known_charge_codes:
            problems.append(Problem(TABLE_VALUE, f"charge code {code} is not in the chargemaster", "FT1", n, 7))
        ref: str | None = None
        if ttype == "CD" and cfg.reversal_ref_field is not None:
            ref = tid if cfg.reversal_ref_field == 2 else f(cfg.reversal_ref_field)
        if cfg.strict_types:
            if len(tid) > 12:
                problems.append(Problem(DATA_TYPE, f"FT1-2 is {len(tid)} characters, the maximum is 12", "FT1", n, 2))
            if date and not re.fullmatch(r"\d{8}(\d{2,6}(\.\d{1,4})?)?([+-]\d{4})?", date):
                problems.append(Problem(DATA_TYPE, f"FT1-4 {date!r} is not a date", "FT1", n, 4))
            if qty and not re.fullmatch(r"[+-]?\d+(\.\d+)?", qty):
                problems.append(Problem(DATA_TYPE, f"FT1-10 {qty!r} is not a number", "FT1", n, 10))
            for rep in _repetitions(msg, n, 31):
                if not re.fullmatch(r"\d{1,4}", rep):
                    problems.append(Problem(DATA_TYPE, f"FT1-31 {rep!r} is not a set id (SI, 1-4 digits)", "FT1", n, 31))
                    break
        if ttype == "CD" and cfg.reversal_ref_field is not None and not ref:
            problems.append(Problem(REQUIRED_MISSING,
                                    f"credit names no original charge in FT1-{cfg.reversal_ref_field}", "FT1", n,
                                    cfg.reversal_ref_field))
        line = Posting(transaction_id=tid, transaction_type=ttype, charge_code=code, quantity=qty or "1",
                       account=account, procedure=f(25), modifiers=tuple(_repetitions(msg, n, 26)),
                       reverses=ref or None, control_id=control, set_id=set_id)
        return line, problems

    def _credit_check(self, line: Posting, n: int, accepted: Sequence[Posting]) -> Problem | None:
        cfg = self.config
        if line.transaction_type != "CD" or not line.reverses or not cfg.require_known_original:
            return None
        originals = {p.transaction_id for p in self.postings if p.transaction_type == "CG"}
        originals |= {p.transaction_id for p in accepted if p.transaction_type == "CG"}
        field_no = cfg.reversal_ref_field or 0
        if line.reverses not in originals:
            return Problem(UNKNOWN_KEY, f"credit for transaction {line.reverses}, which was never posted", "FT1", n,
                           field_no)
        if line.reverses in self.credited or any(p.reverses == line.reverses for p in accepted):
            return Problem(DUPLICATE_KEY, f"transaction {line.reverses} was already credited", "FT1", n, field_no)
        return None

    def _key(self, line: Posting) -> tuple[str, ...]:
        parts = {"account": line.account, "transaction_id": line.transaction_id, "type": line.transaction_type}
        return tuple(parts[k] for k in self.config.duplicate_key)

    # -- the answer -------------------------------------------------------------------------------
    def _ack(self, msg: hl7.Message, text: str, code: str, problems: list[Problem]) -> bytes:
        try:
            ack = msg.create_ack(code, message_id=f"ACK{next(self._ack_ids):06d}",
                                 application=self.config.application, facility=self.config.facility)
            head = str(ack).strip("\r").split("\r")
        except Exception:  # an MSH python-hl7 cannot echo (e.g. MSH-9 without components)
            return self._fallback_ack(text, code, problems)
        version = _get(msg, "MSH", 1, 12, 1, 1)
        if self.config.ack_text and problems:
            head[1] += "|" + msg.escape(_summary(code, problems))[:80]
        lines = head + [_err(msg.escape, p, version) for p in problems]
        return ("\r".join(lines) + "\r").encode("utf-8")

    def _fallback_ack(self, text: str, code: str, problems: list[Problem]) -> bytes:
        """An ACK for bytes python-hl7 could not read: MSA-2 is whatever looks like MSH-10."""
        control = _control_id_of(text.encode("utf-8", "replace"))
        esc = _escape_default
        lines = [f"MSH|^~\\&|{esc(self.config.application)}|{esc(self.config.facility)}|||"
                 f"||ACK|ACK{next(self._ack_ids):06d}|P|2.5.1",
                 f"MSA|{code}|{esc(control)}" + (f"|{esc(_summary(code, problems))[:80]}" if self.config.ack_text else "")]
        lines += [_err(esc, p, "2.5.1") for p in problems]
        return ("\r".join(lines) + "\r").encode("utf-8")


# -- helpers ----------------------------------------------------------------------------------------
def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _control_id_of(raw: bytes) -> str:
    first = re.split(rb"\r|\n", raw.lstrip(START), maxsplit=1)[0].decode("latin-1")
    fields = first.split("|")
    return fields[9] if first.startswith("MSH") and len(fields) > 9 else ""


def _segments(msg: hl7.Message, seg: str) -> list:
    try:
        return msg.segments(seg)
    except KeyError:
        return []


def _get(msg: hl7.Message, seg: str, num: int, field_no: int, rep: int = 1, comp: int = 1) -> str:
    """A field's component, HL7 escapes undone ('' when absent)."""
    try:
        return str(msg.extract_field(seg, num, field_no, rep, comp))
    except (IndexError, KeyError):
        return ""


def _repetitions(msg: hl7.Message, num: int, field_no: int) -> list[str]:
    """First component of every repetition of FT1-<field_no> that is valued."""
    out = []
    for rep in itertools.count(1):
        try:
            value = str(msg.extract_field("FT1", num, field_no, rep, 1))
        except (IndexError, KeyError):
            break
        if value:
            out.append(value)
        if rep > 50:
            break
    return out


def _summary(code: str, problems: list[Problem]) -> str:
    if not problems:
        return ""
    first = problems[0].text
    return first if len(problems) == 1 else f"{first} (+{len(problems) - 1} more)"


def _err(escape, p: Problem, version: str) -> str:
    """ERR for v2.5+ (ERR-2 location, ERR-3 condition, ERR-4 severity, ERR-8 user message); before
    v2.5 the location and code go in ERR-1 (ELD: segment^sequence^field^code&text&HL70357)."""
    code, name = p.condition
    if version.startswith(("2.3", "2.4")):
        return f"ERR|{p.segment}^{p.sequence or ''}^{p.field or ''}^{code}&{escape(name)}&HL70357"
    location = f"{p.segment}^{p.sequence}^{p.field}" if p.segment else ""
    return f"ERR||{location}|{code}^{escape(name)}^HL70357|E||||{escape(p.text)}"


def _escape_default(value: str) -> str:
    out = value.replace("\\", "\\E\\")
    for ch, seq in (("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\")):
        out = out.replace(ch, seq)
    return out.replace("\r", " ").replace("\n", " ")


# -- a client, for tests ----------------------------------------------------------------------------
def frame(message: bytes | str) -> bytes:
    """One MLLP block: <VT> message with CR segment ends <FS><CR>."""
    data = message.encode("utf-8") if isinstance(message, str) else message
    data = re.sub(rb"\r\n|\n", b"\r", data).strip(b"\r") + b"\r"
    return START + data + END


class Dropped(ConnectionError):
    """The receiver closed the connection before answering message ``index`` (0-based)."""

    def __init__(self, index: int, acks: list[bytes]) -> None:
        super().__init__(f"connection closed before the ACK of message {index}")
        self.index, self.acks = index, acks


async def exchange(host: str, port: int, messages: Iterable[bytes | str], timeout: float = 5.0) -> list[bytes]:
    """Send messages one by one on one connection, waiting for each ACK; the ACK texts (without
    framing). Raises Dropped (with the ACKs received so far) when the receiver hangs up."""
    reader, writer = await asyncio.open_connection(host, port)
    acks: list[bytes] = []
    try:
        for i, message in enumerate(messages):
            writer.write(frame(message))
            await writer.drain()
            try:
                block = await asyncio.wait_for(reader.readuntil(END), timeout)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                raise Dropped(i, acks) from exc
            acks.append(block[block.find(START) + 1 : -len(END)])
        return acks
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def read_ack(ack: bytes) -> dict:
    """An ACK's MSA-1, MSA-2, MSA-3 and ERR segments (as raw field lists), parsed with python-hl7."""
    msg = hl7.parse(ack.decode("utf-8").strip("\r"))
    msa = msg.segment("MSA")
    errs = [[str(f) for f in seg] for seg in _segments(msg, "ERR")]
    return {"code": _get(msg, "MSA", 1, 1), "control_id": _get(msg, "MSA", 1, 2),
            "text": _get(msg, "MSA", 1, 3) if len(msa) > 3 else "", "errors": errs,
            "type": str(msg.segment("MSH")[9]), "version": _get(msg, "MSH", 1, 12)}


# -- FT1-2 from a charge_id: the product's own derivation (billing/dft.py), re-exported for the tests ----
transaction_id = dft.transaction_id
collision_probability = dft.collision_probability


# -- SYNTHETIC messages for tests (made-up data: no real patient, account or hospital) --------------
@dataclass
class Line:
    transaction_id: str
    charge_code: str
    cpt: str
    units: int = 1
    modifiers: Sequence[str] = ()
    service_date: str = "20260302"
    transaction_type: str = "CG"
    department: str = "INF"
    reference: str = ""  # FT1-31 (or wherever the test puts it) on a credit


def synthetic_dft(control_id: str, lines: Sequence[Line], account: str = "SYN-V0001",
                  patient: str = "SYN-P0001^^^SYNHOSP^MR", version: str = "2.5.1",
                  patient_class: str = "O", extra_fields: dict[int, str] | None = None) -> str:
    """A SYNTHETIC DFT^P03 in the layout of billing/dft.py (MSH, EVN, PID, PV1, FT1...).
    ``extra_fields`` puts a raw value in an FT1 field of every line (e.g. {23: ...})."""
    segs = [
        f"MSH|^~\\&|INFUSION-VALIDATOR|SYNHOSP|BILLING|SYNHOSP|20260302120000||DFT^P03^DFT_P03|{control_id}|P|{version}",
        "EVN|P03|20260302120000",
        f"PID|1||{patient}||SYNTHETIC^PATIENT",
        f"PV1|1|{patient_class}|||||||||||||||||{account}",
    ]
    esc = _escape_default
    for n, ln in enumerate(lines, 1):
        fields = [""] * 32
        fields[1], fields[2], fields[4], fields[6] = str(n), esc(ln.transaction_id), ln.service_date, ln.transaction_type
        fields[7] = f"{esc(ln.charge_code)}^^CDM"
        fields[10], fields[13] = str(ln.units), esc(ln.department)
        fields[25] = f"{esc(ln.cpt)}^^C4"
        fields[26] = "~".join(f"{esc(m)}^^CPTM" for m in ln.modifiers)
        fields[31] = esc(ln.reference)
        for k, v in (extra_fields or {}).items():
            fields[k] = v
        segs.append(("FT1|" + "|".join(fields[1:])).rstrip("|"))
    return "\r".join(segs) + "\r"


__all__ = [
    "BillingReceiver", "ReceiverConfig", "Posting", "Problem", "Exchange", "Dropped", "Line",
    "exchange", "frame", "read_ack", "synthetic_dft", "transaction_id", "collision_probability",
]
