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
- 400 not JSON; 503 Kafka could not be written: resend. The body is at most 4 MiB and an
  OperationOutcome lists at most 100 issues of at most 2,000 characters each.
"""
from __future__ import annotations

import logging

import orjson
from aiohttp import web
from aiokafka.errors import KafkaError

from feeds import DrugClasses, Translation, translate_fhir
from feeds.translation import NOT_TAKEN
from gateways.bridge import Bridge

log = logging.getLogger(__name__)
FHIR_JSON = "application/fhir+json"
MAX_BODY = 4 * 1024 * 1024
MAX_ISSUES = 100
MAX_TEXT = 2000


def _issues(issues: list[tuple[str, str, str]]) -> dict:
    """issues: (severity, code, text) as FHIR OperationOutcome.issue, bounded."""
    shown = [{"severity": s, "code": c, "diagnostics": t[:MAX_TEXT]} for s, c, t in issues[:MAX_ISSUES]]
    if len(issues) > MAX_ISSUES:
        shown.append({"severity": "error", "code": "too-costly",
                      "diagnostics": f"and {len(issues) - MAX_ISSUES} more issue(s) not listed"})
    return {"resourceType": "OperationOutcome", "issue": shown}


def outcome(issues: list[tuple[str, str, str]], status: int) -> web.Response:
    return _json(_issues(issues), status)


def _json(body: dict, status: int) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type=FHIR_JSON)


def _problems(t: Translation, prefix: str) -> list[tuple[str, str, str]]:
    code = "not-supported" if t.category in NOT_TAKEN else "invalid"
    return [("error", code, f"{prefix}{t.message_id or 'resource'}: {p}") for p in t.problems]


def _status(translations: list[Translation]) -> int:
    return 400 if any(not t.ok and t.category in NOT_TAKEN for t in translations) else 422


def make_app(bridge: Bridge, drugs: DrugClasses, base: str = "/fhir") -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            resource = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return outcome([("error", "structure", f"body is not JSON ({exc}): post FHIR JSON")], 400)
        if not isinstance(resource, dict):
            return outcome([("error", "structure", "body is not a FHIR resource (a JSON object)")], 400)
        translations = translate_fhir(resource, drugs)
        raws = _entry_raws(resource, len(translations))
        kind = resource.get("type") if raws is not None else None
        publish = translations
        if kind == "transaction" and not all(t.ok for t in translations):
            publish = [t for t in translations if not t.ok]  # all or nothing: only the refusals are recorded
        try:
            await _submit(bridge, translations, publish, raws or [raw] * len(translations), request.remote)
        except KafkaError as exc:
            log.error("FHIR post not stored, answered 503: %s", type(exc).__name__)
            return outcome([("error", "transient", "could not store in Kafka; resend")], 503)
        return _answer(kind, translations)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(base, receive)
    app.router.add_post(base + "/{resource_type}", receive)
    return app


async def _submit(bridge: Bridge, translations: list[Translation], publish: list[Translation], raws: list[bytes],
                  peer: str | None) -> None:
    source = {"feed": "fhir-http", "peer": peer}
    chosen = {id(t) for t in publish}
    for t, entry_raw in zip(translations, raws):
        if id(t) in chosen:
            await bridge.submit(t, entry_raw, dict(source, resource=t.message_id))


def _answer(kind: str | None, translations: list[Translation]) -> web.Response:
    rejected = [(n, t) for n, t in enumerate(translations) if not t.ok]
    if kind == "transaction" and rejected:
        issues = [i for n, t in rejected for i in _problems(t, f"entry {n}: ")]
        return outcome([("error", "processing", "transaction rejected: nothing was stored; fix every entry "
                         "listed and resend the whole Bundle"), *issues], _status(translations))
    if kind in ("batch", "transaction"):
        return _json({"resourceType": "Bundle", "type": f"{kind}-response",
                      "entry": [_entry_response(t) for t in translations]}, 200)
    if rejected:
        return outcome([i for _, t in rejected for i in _problems(t, "")], 422)
    return outcome([("information", "informational", f"{len(translations)} resource(s) accepted")], 200)


def _entry_response(t: Translation) -> dict:
    if t.ok:
        return {"response": {"status": "200 OK"}}
    status = "400 Bad Request" if t.category in NOT_TAKEN else "422 Unprocessable Entity"
    return {"response": {"status": status, "outcome": _issues(_problems(t, ""))}}


def _entry_raws(resource: dict, count: int) -> list[bytes] | None:
    """Each Bundle entry's JSON in entry order (a dead letter keeps the entry, not the Bundle), or
    None when the translations are not one per entry (not a Bundle, or one rejected whole)."""
    entries = resource.get("entry") if resource.get("resourceType") == "Bundle" else None
    if not isinstance(entries, list) or len(entries) != count:
        return None
    return [orjson.dumps(e.get("resource", e) if isinstance(e, dict) else e) for e in entries]


async def serve(bridge: Bridge, drugs: DrugClasses, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(make_app(bridge, drugs), access_log=None)  # no request lines: ids are patient data
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
