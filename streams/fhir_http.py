"""FHIR R4 in over HTTP: an endpoint a FHIR server's subscription (or any client) posts to.

POST {base} or {base}/{ResourceType} with a Bundle (transaction, batch, collection, searchset or a
subscription notification) or a single MedicationAdministration / Encounter, as FHIR JSON. Every
resource is translated by feeds.fhir and written to Kafka before the answer (aiohttp, which faust
already brings):
  200 every resource accepted (OperationOutcome, information);
  422 some rejected: they are dead-lettered with their reason and listed in the OperationOutcome
      (the accepted ones are stored; resending the bundle is harmless, event ids are deterministic);
  400 not JSON; 503 Kafka could not be written: resend.
"""
from __future__ import annotations

import logging

import orjson
from aiohttp import web
from aiokafka.errors import KafkaError

from feeds import DrugClasses, translate_fhir
from streams.bridge import Bridge

log = logging.getLogger(__name__)
FHIR_JSON = "application/fhir+json"


def outcome(issues: list[tuple[str, str, str]], status: int) -> web.Response:
    """issues: (severity, code, text) as FHIR OperationOutcome.issue."""
    body = {"resourceType": "OperationOutcome",
            "issue": [{"severity": s, "code": c, "diagnostics": t} for s, c, t in issues]}
    return web.Response(status=status, body=orjson.dumps(body), content_type=FHIR_JSON)


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
        source = {"feed": "fhir-http", "peer": request.remote}
        entries = _entries(resource)
        try:
            for t in translations:
                await bridge.submit(t, entries.get(t.message_id, raw), dict(source, resource=t.message_id))
        except KafkaError as exc:
            log.error("FHIR post not stored, answered 503: %s", type(exc).__name__)
            return outcome([("error", "transient", "could not store in Kafka; resend")], 503)
        rejected = [t for t in translations if not t.ok]
        if rejected:
            return outcome([("error", "invalid", f"{t.message_id or 'resource'}: {t.error}") for t in rejected], 422)
        return outcome([("information", "informational", f"{len(translations)} resource(s) accepted")], 200)

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post(base, receive)
    app.router.add_post(base + "/{resource_type}", receive)
    return app


def _entries(resource: dict) -> dict[str, bytes]:
    """Each bundle entry's JSON by "Type/id", so a dead letter keeps the entry, not the bundle."""
    found = {}
    for entry in resource.get("entry") or () if resource.get("resourceType") == "Bundle" else ():
        r = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(r, dict):
            found[f"{r.get('resourceType')}/{r.get('id')}"] = orjson.dumps(r)
    return found


async def serve(bridge: Bridge, drugs: DrugClasses, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(make_app(bridge, drugs), access_log=None)  # no request lines: ids are patient data
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
