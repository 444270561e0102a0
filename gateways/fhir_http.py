"""FHIR R4 in over HTTP: an endpoint a FHIR server's subscription (or any client) posts to.

POST {base} or {base}/{ResourceType} with a Bundle or a single MedicationAdministration /
Encounter, as FHIR JSON. Every resource is translated by feeds.fhir and written to Kafka before the
answer (aiohttp, which faust already brings):

- batch Bundle: 200 with a `batch-response` Bundle, entry by entry in request order: `200 OK`, or
  `422 Unprocessable Entity` (`400 Bad Request` for a kind of resource not taken) with an
  OperationOutcome of that entry's problems. Accepted entries are stored, rejected ones
  dead-lettered (FHIR batch: entries are independent).
- transaction Bundle: all or nothing (FHIR transaction). Any entry rejected: no event of any entry
  is published and the answer is 422 (400 if an entry is of a kind not taken) with one
  OperationOutcome listing every rejected entry's problems; the rejected entries are still
  dead-lettered and their alerts (DRUG_CLASS_UNKNOWN, METHOD_MISSING) raised, so nursing and
  pharmacy see what to fix even if the sender only logs the error. All accepted: 200 with a
  `transaction-response` Bundle, entry by entry. (Kafka has no cross-topic transaction here: a
  503 midway may leave part stored; the resend is harmless, event ids are deterministic.)
- anything else (a resource, collection, searchset, history, subscription notification):
  200 every resource accepted (OperationOutcome, information); 422 some rejected: they are
  dead-lettered and listed (the accepted ones are stored).
- 400 not JSON, nested deeper than 64 levels, or an object with a duplicate key (named by its path);
  503 Kafka could not be written: resend. An OperationOutcome lists at most 100 issues of at most
  2,000 characters each.

Secure by default (`serve`): loopback unless a host is given; HTTPS when a certificate is given,
mutual TLS when a client CA is (server_context in gateways/tls.py); a bearer token when tokens are
given (401 with `WWW-Authenticate: Bearer` otherwise, any of the tokens, compared in constant time);
only `application/fhir+json` or `application/json` bodies (415: a web page a clinician opens cannot
post a form or text/plain here); no `Server` banner. Limits: a body over `max_bytes` is 413, a
Bundle of more than `max_entries` entries one 413 and one dead letter of a bounded prefix of the body
(never one per entry); a body not received within `idle_timeout` seconds is 408 and a connection
silent or with a half-sent request that long is closed; over `max_connections` open connections, the
longest idle one is closed to make room, and when none is idle the newcomer gets 503.

No PHI in any answer or log: issues name the entry's position and resource type and the element,
never a value the sender wrote (see feeds/fhir.py); the raw input stays only in a dead letter's `raw`.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import ssl
import time
from pathlib import Path

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiokafka.errors import KafkaError

from feeds import DrugClasses, Translation, translate_fhir
from feeds.fhir import type_name
from feeds.fhir_link import Encounters
from feeds.translation import NOT_TAKEN
from gateways.bridge import Bridge

log = logging.getLogger(__name__)
FHIR_JSON = "application/fhir+json"
ACCEPTED_TYPES = (FHIR_JSON, "application/json")
MAX_BODY = 4 * 1024 * 1024
MAX_ENTRIES = 1000
MAX_ISSUES = 100
MAX_TEXT = 2000
MAX_DEPTH = 255  # JSON nesting, orjson's limit (a FHIR resource needs about 12)
LETTER_PREFIX = 64 * 1024  # bytes of a refused body kept in its one dead letter


def _issues(issues: list[tuple]) -> dict:
    """issues: (severity, code, text[, expression]) as FHIR OperationOutcome.issue, bounded."""
    shown = []
    for severity, code, text, *where in issues[:MAX_ISSUES]:
        issue = {"severity": severity, "code": code, "diagnostics": text[:MAX_TEXT]}
        if where and where[0]:
            issue["expression"] = [where[0]]
        shown.append(issue)
    if len(issues) > MAX_ISSUES:
        shown.append({"severity": "error", "code": "too-costly",
                      "diagnostics": f"and {len(issues) - MAX_ISSUES} more issue(s) not listed"})
    return {"resourceType": "OperationOutcome", "issue": shown}


def outcome(issues: list[tuple], status: int, headers: dict | None = None) -> web.Response:
    return _json(_issues(issues), status, headers)


def _json(body: dict, status: int, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type=FHIR_JSON, headers=headers)


def _problems(t: Translation, prefix: str, expression: str | None) -> list[tuple]:
    code = "not-supported" if t.category in NOT_TAKEN else "invalid"
    return [("error", code, f"{prefix}{p}", expression) for p in t.problems]


def _status(translations: list[Translation]) -> int:
    return 400 if any(not t.ok and t.category in NOT_TAKEN for t in translations) else 422


def load_tokens(path: str | None) -> tuple[bytes, ...]:
    """The bearer tokens of a file, one a line (blank lines and # comments skipped); () without a file."""
    if not path:
        return ()
    lines = Path(path).read_text().splitlines()
    tokens = tuple(t.strip().encode() for t in lines if t.strip() and not t.strip().startswith("#"))
    if not tokens:
        raise ValueError(f"IV_FHIR_TOKENS_FILE={path}: no token in it (one a line); give at least one")
    return tokens


def _authorized(header: str | None, tokens: tuple[bytes, ...]) -> bool:
    """Any of the tokens, each compared in constant time, every one of them always compared (the time
    taken does not say which token, or how much of one, matched)."""
    scheme, _, given = (header or "").partition(" ")
    given_b = given.strip().encode("utf-8", "replace")
    ok = False
    for token in tokens:
        ok |= hmac.compare_digest(given_b, token)
    return ok and scheme.lower() == "bearer"


class _Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"(\s*:)?')  # a JSON string, and the colon after it if a key


def parse(raw: bytes):
    """The JSON resource of a body, or _Refused with a 400 OperationOutcome: not JSON, nested past
    MAX_DEPTH, or an object with a duplicate key (orjson would silently keep the last one; which
    value was meant cannot be told). Duplicates are detected cheaply, by the keys in the text
    against the keys parsed, and only then located by a second parse that keeps every key."""
    try:
        resource = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}" if exc.lineno else "the body"
        deep = "recursion" in str(exc).lower()
        raise _Refused(outcome([("error", "structure", f"body is nested deeper than {MAX_DEPTH} levels: not a FHIR "
                                 "resource" if deep else f"body is not JSON (at {where}): post FHIR JSON")], 400))
    try:
        compact = orjson.dumps(resource)  # also what stops at MAX_DEPTH (orjson's own limit)
    except orjson.JSONEncodeError:
        raise _Refused(outcome([("error", "structure", f"body is nested deeper than {MAX_DEPTH} levels: not a FHIR "
                                 "resource")], 400)) from None
    if _keys_parsed(resource, compact) != _keys_in(raw):
        path = _duplicate(raw)
        raise _Refused(outcome([("error", "structure", f"duplicate JSON key at {path}: each element may "
                                 "appear once in an object", path)], 400))
    return resource


def _keys_in(raw: bytes) -> int:
    """Keys in a JSON text (strings followed by a colon)."""
    found = _STRINGS.findall(raw)
    return len(found) - found.count(b"")


def _keys_parsed(resource, compact: bytes) -> int:
    """Keys of the parsed objects. In orjson's compact output a key is the only string followed by a
    colon, so they are counted in C; a text with backslashes (an escaped quote before a colon) is
    counted by walking the objects instead."""
    if b"\\" not in compact:
        return compact.count(b'":')
    keys, stack = 0, [resource]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            keys += len(node)
            stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return keys


class _Pairs(list):
    """An object as json.loads read it: every (key, value) pair, duplicates kept."""


def _duplicate(raw: bytes) -> str:
    """The FHIRPath-like path of the first duplicate key (element names and positions only)."""
    tree = json.loads(raw, object_pairs_hook=_Pairs)
    stack = [(tree, "$")]
    while stack:
        node, path = stack.pop(0)
        if isinstance(node, _Pairs):
            seen = set()
            for key, value in node:
                shown = key if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", key) else "(a key)"
                if key in seen:
                    return f"{path}.{shown}"
                seen.add(key)
                stack.append((value, f"{path}.{shown}"))
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{n}]") for n, v in enumerate(node))
    return "$"


def make_app(bridge: Bridge, drugs: DrugClasses, base: str = "/fhir", *, tokens: tuple[bytes, ...] = (),
             max_bytes: int = MAX_BODY, max_entries: int = MAX_ENTRIES, read_timeout: float = 30.0,
             metrics=None) -> web.Application:
    # The visits received so far, by patient: an administration sent without `context` is linked to the
    # one covering it (feeds/fhir_link.py: bounded, memory only).
    encounters = Encounters()

    async def receive(request: web.Request) -> web.Response:
        handler = request.protocol
        busy = isinstance(handler, _Handler)
        if busy:
            handler.busy += 1
        try:
            return await _receive(request)
        except _Refused as refused:
            return refused.response
        finally:
            if busy:
                handler.busy -= 1
                handler.arm()

    async def _receive(request: web.Request) -> web.Response:
        if tokens and not _authorized(request.headers.get("Authorization"), tokens):
            raise _Refused(_closing(outcome([("error", "login", "a valid bearer token is required (Authorization: "
                                              "Bearer <token>)")], 401,
                                            {"WWW-Authenticate": 'Bearer realm="fhir", error="invalid_token"'})))
        if request.content_type not in ACCEPTED_TYPES:
            raise _Refused(_closing(outcome([("error", "not-supported", f"Content-Type must be {FHIR_JSON} (or "
                                              "application/json)")], 415)))
        if request.content_length is not None and request.content_length > max_bytes:
            raise _Refused(_too_large(max_bytes))
        try:
            async with asyncio.timeout(read_timeout):
                raw = await request.read()
        except TimeoutError:
            raise _Refused(_closing(outcome([("error", "timeout", f"the body did not arrive within {read_timeout:g} "
                                              "s")], 408))) from None
        except web.HTTPRequestEntityTooLarge:
            raise _Refused(_too_large(max_bytes)) from None
        resource = parse(raw)
        if not isinstance(resource, dict):
            return outcome([("error", "structure", "body is not a FHIR resource (a JSON object)")], 400)
        source = {"feed": "fhir-http", "peer": request.remote}
        entries = resource.get("entry") if resource.get("resourceType") == "Bundle" else None
        if isinstance(entries, list) and len(entries) > max_entries:
            return await _too_many(bridge, raw, len(entries), max_entries, source)
        try:
            translations = translate_fhir(resource, drugs, encounters)
        except Exception as exc:  # a translator bug must not be a 500 that senders retry forever
            log.error("FHIR post not translated, answered 422: %s", type(exc).__name__)
            return outcome([("error", "exception", "the resource could not be translated; it was not stored")], 422)
        raws = _entry_raws(resource, len(translations))
        kind = resource.get("type") if raws is not None else None
        publish = translations
        if kind == "transaction" and not all(t.ok for t in translations):
            publish = [t for t in translations if not t.ok]  # all or nothing: only the refusals are recorded
        try:
            await _submit(bridge, translations, publish, raws or [raw] * len(translations), source, raws is not None)
        except KafkaError as exc:
            log.error("FHIR post not stored, answered 503: %s", type(exc).__name__)
            return outcome([("error", "transient", "could not store in Kafka; resend")], 503)
        return _answer(kind, translations, _types(resource, raws is not None))

    async def no_banner(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.pop("Server", None)

    @web.middleware
    async def observed(request: web.Request, handler) -> web.StreamResponse:
        """Every answer counted by status, with its time (gateways.ops.FeedMetrics)."""
        began = time.perf_counter()
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.observe_answer("fhir", str(status), time.perf_counter() - began)

    app = web.Application(client_max_size=max_bytes, middlewares=[observed] if metrics else [])
    app.on_response_prepare.append(no_banner)
    app.router.add_post(base, receive)
    app.router.add_post(base + "/{resource_type}", receive)
    return app


def _closing(response: web.Response) -> web.Response:
    response.force_close()  # the body was not read: the connection cannot carry another request
    return response


def _too_large(max_bytes: int) -> web.Response:
    return _closing(outcome([("error", "too-costly", f"body over {max_bytes} bytes: split the Bundle")], 413))


async def _too_many(bridge: Bridge, raw: bytes, count: int, max_entries: int, source: dict) -> web.Response:
    """One rejection and one dead letter (a bounded prefix of the body) for a Bundle over the entry
    limit: not a translation per entry, each with the whole body."""
    text = f"Bundle of {count} entries: at most {max_entries} are taken in one request; split it"
    t = Translation([], problems=[text], category="fhir_invalid", message_id="Bundle")
    try:
        await _batch(bridge, [(t, raw[:LETTER_PREFIX], dict(source, resource="Bundle", truncated=len(raw) > LETTER_PREFIX))])
    except KafkaError as exc:
        log.error("FHIR post not stored, answered 503: %s", type(exc).__name__)
        return outcome([("error", "transient", "could not store in Kafka; resend")], 503)
    return outcome([("error", "too-costly", text, "Bundle.entry")], 413)


async def _batch(bridge, items: list[tuple]) -> None:
    many = getattr(bridge, "submit_many", None)
    if many is not None:
        await many(items)
    else:  # a bridge without batches (a test's fake)
        await asyncio.gather(*(bridge.submit(*item) for item in items))


async def _submit(bridge: Bridge, translations: list[Translation], publish: list[Translation], raws: list[bytes],
                  source: dict, entries: bool) -> None:
    """The request's records in one batch; each dead letter holds its own entry (and says which)."""
    chosen = {id(t) for t in publish}
    items = []
    for n, (t, entry_raw) in enumerate(zip(translations, raws)):
        if id(t) in chosen:
            where = {"entry": n} if entries else {}
            items.append((t, entry_raw, dict(source, resource=type_name(t.message_id and t.message_id.split("/")[0]),
                                             **where)))
    if items:
        await _batch(bridge, items)


def _types(resource: dict, entries: bool) -> list[str]:
    """The resource type of each translation's resource, as a reason may name it."""
    if not entries:
        return [type_name(resource.get("resourceType"))]
    out = []
    for e in resource["entry"]:
        res = e.get("resource") if isinstance(e, dict) else None
        out.append(type_name(res.get("resourceType")) if isinstance(res, dict) else "no resource")
    return out


def _answer(kind: str | None, translations: list[Translation], types: list[str]) -> web.Response:
    rejected = [(n, t) for n, t in enumerate(translations) if not t.ok]
    if kind == "transaction" and rejected:
        issues = [i for n, t in rejected for i in _problems(t, f"entry {n} ({types[n]}): ", f"Bundle.entry[{n}]")]
        return outcome([("error", "processing", "transaction rejected: nothing was stored; fix every entry "
                         "listed and resend the whole Bundle"), *issues], _status(translations))
    if kind in ("batch", "transaction"):
        return _json({"resourceType": "Bundle", "type": f"{kind}-response",
                      "entry": [_entry_response(t, types[n]) for n, t in enumerate(translations)]}, 200)
    if rejected:
        if len(types) == len(translations):  # a Bundle's entries: say which
            return outcome([i for n, t in rejected for i in _problems(t, f"entry {n} ({types[n]}): ",
                                                                      f"Bundle.entry[{n}]")], 422)
        return outcome([i for _, t in rejected for i in _problems(t, f"{types[0]}: ", None)], 422)
    skipped = sum(t.skipped for t in translations)
    said = f"{len(translations) - skipped} resource(s) accepted" + (
        f", {skipped} of types not read skipped" if skipped else "")
    return outcome([("information", "informational", said)], 200)


def _entry_response(t: Translation, rtype: str) -> dict:
    if t.skipped:
        return {"response": {"status": "200 OK", "outcome": _issues([("information", "informational",
                                                                      f"{rtype}: not read by this validator, skipped")])}}
    if t.ok:
        return {"response": {"status": "200 OK"}}
    status = "400 Bad Request" if t.category in NOT_TAKEN else "422 Unprocessable Entity"
    return {"response": {"status": status, "outcome": _issues(_problems(t, f"{rtype}: ", None))}}


def _entry_raws(resource: dict, count: int) -> list[bytes] | None:
    """Each Bundle entry's JSON in entry order (a dead letter keeps the entry, not the Bundle), or
    None when the translations are not one per entry (not a Bundle, or one rejected whole)."""
    entries = resource.get("entry") if resource.get("resourceType") == "Bundle" else None
    if not isinstance(entries, list) or len(entries) != count:
        return None
    return [orjson.dumps(e.get("resource", e) if isinstance(e, dict) else e) for e in entries]


# -- the listener: TLS, idle timeout, connection cap -----------------------------------------------

class _Handler(RequestHandler):
    """aiohttp's connection handler, closed when it has been silent or half-sent a request for
    `idle` seconds (aiohttp's keep-alive timer restarts on every byte: a request sent a byte at a
    time would be held forever). Time in the request handler does not count (its body read has its
    own timeout, and storing in Kafka is not the sender's silence)."""

    def __init__(self, manager, *, idle: float, **kwargs) -> None:
        super().__init__(manager, **kwargs)
        self.idle, self.busy, self.since, self._timer = idle, 0, 0.0, None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.arm()

    def arm(self) -> None:
        """Start the idle clock (at the connection's start and after each answer)."""
        loop = asyncio.get_running_loop()
        self.since = loop.time()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_later(self.idle, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self.busy:
            self.arm()
        else:
            self.force_close()

    def connection_lost(self, exc) -> None:
        if self._timer is not None:
            self._timer.cancel()
        super().connection_lost(exc)


class _Busy(asyncio.Protocol):
    """The answer to a connection over the cap when no open one is idle: 503, closed."""
    BODY = orjson.dumps(_issues([("error", "transient", "too many connections; retry shortly")]))

    def connection_made(self, transport) -> None:
        transport.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: " + FHIR_JSON.encode()
                        + b"\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: "
                        + str(len(self.BODY)).encode() + b"\r\n\r\n" + self.BODY)
        transport.close()


class _Server(web.Server):
    """aiohttp's server with the idle handler and a cap on open connections: over the cap, the
    longest-idle connection is closed to make room (an idle flood cannot lock senders out); when
    every connection is in a request, the newcomer is answered 503."""

    def __init__(self, *args, idle: float, max_connections: int, metrics=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.idle, self.max_connections, self.metrics = idle, max_connections, metrics
        if metrics:
            metrics.connections.labels("fhir").set_function(lambda: len(self._connections))

    def __call__(self):
        open_ = [h for h in self._connections if not h._force_close]
        if len(open_) >= self.max_connections:
            idle = [h for h in open_ if isinstance(h, _Handler) and not h.busy]
            if not idle:
                if self.metrics:
                    self.metrics.refused.labels("fhir").inc()
                return _Busy()
            min(idle, key=lambda h: h.since).force_close()
        return _Handler(self, idle=self.idle, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    def __init__(self, app: web.Application, *, idle: float, max_connections: int, metrics=None, **kwargs) -> None:
        super().__init__(app, **kwargs)
        self._idle, self._max_connections, self._metrics = idle, max_connections, metrics

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return _Server(plain.request_handler, request_factory=plain.request_factory,
                       handler_cancellation=plain.handler_cancellation, loop=plain._loop,
                       idle=self._idle, max_connections=self._max_connections, metrics=self._metrics, **plain._kwargs)


class _Site(web.TCPSite):
    """TCPSite with the TLS handshake bounded by the idle timeout too."""

    def __init__(self, *args, handshake_timeout: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._handshake_timeout = handshake_timeout

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        extra = {"ssl_handshake_timeout": self._handshake_timeout} if self._ssl_context else {}
        self._server = await loop.create_server(self._runner.server, self._host, self._port, ssl=self._ssl_context,
                                                backlog=self._backlog, reuse_address=self._reuse_address,
                                                reuse_port=self._reuse_port, **extra)
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port


async def serve(bridge: Bridge, drugs: DrugClasses, host: str = "127.0.0.1", port: int = 8080, *,
                ssl_context: ssl.SSLContext | None = None, tokens: tuple[bytes, ...] = (),
                max_bytes: int = MAX_BODY, max_entries: int = MAX_ENTRIES, idle_timeout: float = 30.0,
                max_connections: int = 100, metrics=None) -> web.AppRunner:
    """The endpoint on host:port (loopback by default). runner.addresses gives the bound port.
    `metrics`: a gateways.ops.FeedMetrics to count answers, connections and refusals in."""
    app = make_app(bridge, drugs, tokens=tokens, max_bytes=max_bytes, max_entries=max_entries,
                   read_timeout=idle_timeout, metrics=metrics)
    runner = _Runner(app, idle=idle_timeout, max_connections=max_connections, metrics=metrics,
                     access_log=None,  # no request lines: ids are patient data
                     keepalive_timeout=idle_timeout,
                     lingering_time=1.0)  # the unread rest of a refused body is drained 1 s, not aiohttp's 10
    await runner.setup()
    await _Site(runner, host, port, ssl_context=ssl_context, backlog=max(128, max_connections),
                handshake_timeout=idle_timeout).start()
    return runner
