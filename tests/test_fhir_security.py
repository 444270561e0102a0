"""The FHIR endpoint as a hospital security review would try it (issue 13): loopback by default,
HTTPS and mutual TLS, bearer tokens, FHIR JSON bodies only, size/entry limits answered once,
malformed input a 4xx, slow and idle connections closed, a flood that leaves normal requests
answered, and no patient data (a canary) in any answer, dead-letter reason or log.

Certificates are made here, in a temporary directory, with the `cryptography` package: no key is
committed. No broker: a fake bridge records what would be written to Kafka.
"""
from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import logging
import ssl
import time
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from feeds import DrugClasses
from gateways import fhir_http
from gateways.tls import server_context
from streams.config import Settings

SAMPLES = Path(__file__).parent.parent / "samples" / "fhir"
FHIR = {"Content-Type": "application/fhir+json"}


class FakeBridge:
    """Counts what would be written to Kafka, batch by batch."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.letters: list[dict] = []  # dead letters as the bridge would write them (reason, source, raw)
        self.events: list[dict] = []

    async def submit_many(self, items) -> None:
        self.batches.append(len(items))
        for t, raw, source in items:
            self.events += t.events
            if not t.ok:
                self.letters.append({"reason": t.error, "category": t.category, "source": source, "raw": raw,
                                     "alerts": t.alerts})

    async def submit(self, t, raw, source) -> None:
        await self.submit_many([(t, raw, source)])


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


async def start(bridge=None, **kwargs):
    bridge = bridge or FakeBridge()
    runner = await fhir_http.serve(bridge, DrugClasses.load(), "127.0.0.1", 0, **kwargs)
    return runner, runner.addresses[0][1], bridge


# -- certificates, made per test session ---------------------------------------------------------

def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key, issuer_cert=None, issuer_key=None, ca=False, expired=False, server=False):
    now = dt.datetime.now(dt.timezone.utc)
    start, end = (now - dt.timedelta(days=30), now - dt.timedelta(days=1)) if expired else \
        (now - dt.timedelta(minutes=5), now + dt.timedelta(days=1))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer_cert.subject if issuer_cert else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        import ipaddress
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def _write(directory: Path, name: str, cert, key) -> tuple[str, str]:
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key, other_key = _key(), _key()
    ca = _cert("test hospital CA", ca_key, ca=True)
    other = _cert("some other CA", other_key, ca=True)
    files = {"ca": _write(d, "ca", ca, ca_key)[0], "other_ca": _write(d, "other", other, other_key)[0]}
    server_key = _key()
    files["server"] = _write(d, "server", _cert("localhost", server_key, ca, ca_key, server=True), server_key)
    for name, issuer, issuer_key, expired in (("engine", ca, ca_key, False), ("stranger", other, other_key, False),
                                              ("expired", ca, ca_key, True)):
        key = _key()
        files[name] = _write(d, name, _cert(f"interface engine {name}", key, issuer, issuer_key, expired=expired), key)
    return files


def client_ssl(pki, cert: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki["ca"])
    if cert:
        context.load_cert_chain(*pki[cert])
    return context


async def post(port: int, body, headers=FHIR, scheme="http", ssl_context=None, path="/fhir"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{scheme}://127.0.0.1:{port}{path}", data=data, headers=headers,
                             ssl=ssl_context if ssl_context is not None else False if scheme == "https" else None) \
                as resp:
            text = await resp.text()
            parsed = json.loads(text) if resp.content_type == fhir_http.FHIR_JSON else text
            return resp.status, parsed, resp.headers


# -- bind, TLS, mTLS, tokens, content types, banner ------------------------------------------------

async def test_the_endpoint_listens_on_loopback_unless_told_otherwise():
    from cli.main import build_parser

    assert Settings().fhir_host == "127.0.0.1"
    args = build_parser().parse_args(["fhir", "serve"])
    assert args.host is None and args.port is None  # None: IV_FHIR_HOST / IV_FHIR_PORT decide
    for flag in ("--partitions", "--policy"):  # accepted and unused before: gone
        with pytest.raises(SystemExit):
            build_parser().parse_args(["fhir", "serve", flag, "1"])
    assert build_parser().parse_args(["fhir", "serve", "--metrics-port", "1"]).metrics_port == 1  # its /metrics
    runner = await fhir_http.serve(FakeBridge(), DrugClasses.load(), port=0)
    try:
        assert runner.addresses[0][0] == "127.0.0.1"
    finally:
        await runner.cleanup()


async def test_https_when_a_certificate_is_configured(pki):
    runner, port, _ = await start(ssl_context=server_context(*pki["server"]))
    try:
        status, _, _ = await post(port, sample("medication-administration-push.json"), scheme="https",
                                  ssl_context=client_ssl(pki, None))
        assert status == 200
        with pytest.raises(aiohttp.ClientError):  # plain HTTP to the TLS port gets no answer
            await post(port, sample("medication-administration-push.json"))
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("client_cert", [None, "stranger", "expired"])
async def test_mutual_tls_refuses_clients_without_a_valid_certificate_of_the_ca(pki, client_cert):
    runner, port, bridge = await start(ssl_context=server_context(*pki["server"], pki["ca"]))
    try:
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            await post(port, sample("medication-administration-push.json"), scheme="https",
                       ssl_context=client_ssl(pki, client_cert))
        assert bridge.events == []
        status, _, _ = await post(port, sample("medication-administration-push.json"), scheme="https",
                                  ssl_context=client_ssl(pki, "engine"))
        assert status == 200 and bridge.events
    finally:
        await runner.cleanup()


async def test_bearer_tokens_any_of_the_list_and_nothing_said_about_a_near_miss(tmp_path):
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("# interface engines\ns3cret-engine-one\n\ns3cret-engine-two\n")
    tokens = fhir_http.load_tokens(str(tokens_file))
    assert tokens == (b"s3cret-engine-one", b"s3cret-engine-two")
    runner, port, bridge = await start(tokens=tokens)
    body = sample("medication-administration-push.json")
    try:
        for auth in (None, "Bearer s3cret-engine-on", "Bearer s3cret-engine-one2", "Basic s3cret-engine-one",
                     "Bearer ", "Bearer \u00e9\u00e9"):
            headers = dict(FHIR, **({"Authorization": auth} if auth else {}))
            status, outcome, resp_headers = await post(port, body, headers=headers)
            assert status == 401 and resp_headers["WWW-Authenticate"].startswith("Bearer")
            assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "login"
            assert "s3cret" not in json.dumps(outcome)
        assert bridge.events == []
        for token in ("s3cret-engine-one", "s3cret-engine-two"):
            status, _, _ = await post(port, body, headers=dict(FHIR, Authorization=f"Bearer {token}"))
            assert status == 200
    finally:
        await runner.cleanup()


async def test_only_fhir_json_bodies_are_taken_and_no_server_banner():
    runner, port, bridge = await start()
    body = json.dumps(sample("medication-administration-push.json")).encode()
    try:
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                             "application/octet-stream"):
            status, outcome, headers = await post(port, body, headers={"Content-Type": content_type})
            assert status == 415 and outcome["resourceType"] == "OperationOutcome"
            assert "Server" not in headers
        assert bridge.events == []
        for content_type in ("application/fhir+json", "application/json; charset=utf-8"):
            status, _, headers = await post(port, body, headers={"Content-Type": content_type})
            assert status == 200 and "Server" not in headers
    finally:
        await runner.cleanup()


# -- limits ----------------------------------------------------------------------------------------

async def test_a_body_over_the_limit_is_one_413_outcome_declared_or_chunked():
    runner, port, bridge = await start(max_bytes=4096)
    try:
        status, outcome, _ = await post(port, b"{" + b" " * 5000 + b"}")
        assert status == 413 and outcome["issue"][0]["code"] == "too-costly"

        async def chunks():
            for _ in range(10):
                yield b" " * 1000
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{port}/fhir", data=chunks(), headers=FHIR) as resp:
                assert resp.status == 413 and (await resp.json(content_type=None))["resourceType"] == "OperationOutcome"
        # a body declared as 2 GB is refused at once, before a byte of it is read
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /fhir HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n"
                     b"Content-Length: 2147483648\r\n\r\n{")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 413") and time.monotonic() - started < 2
        writer.close()
        assert bridge.letters == []
    finally:
        await runner.cleanup()


async def test_a_bundle_over_the_entry_limit_is_one_rejection_and_at_most_one_bounded_dead_letter():
    runner, port, bridge = await start(max_entries=1000)
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [{} for _ in range(2000)]}
    try:
        started = time.monotonic()
        status, outcome, _ = await post(port, bundle)
        took = time.monotonic() - started
        print(f"\n2,000-entry empty Bundle: {status} in {took * 1000:.1f} ms, {len(bridge.letters)} dead letter(s)")
        assert status == 413 and len(outcome["issue"]) == 1 and "2000 entries" in outcome["issue"][0]["diagnostics"]
        assert len(bridge.letters) <= 1 and bridge.batches == [1]
        assert len(bridge.letters[0]["raw"]) <= fhir_http.LETTER_PREFIX
        assert took < 1.0
        # a big Bundle over the limit: still one letter of a bounded prefix
        big = {"resourceType": "Bundle", "type": "batch",
               "entry": [{"resource": {"resourceType": "Observation", "id": f"o{n}", "note": "x" * 100}}
                         for n in range(20_000)]}
        status, _, _ = await post(port, big)
        assert status == 413 and len(bridge.letters) == 2 and len(bridge.letters[1]["raw"]) == fhir_http.LETTER_PREFIX
    finally:
        await runner.cleanup()


async def test_the_dead_letters_of_one_request_are_one_batch_each_holding_its_own_entry():
    runner, port, bridge = await start()
    entries = [{"resource": {"resourceType": "MedicationAdministration", "status": "completed",
                             **({"id": f"o{n}"} if n % 2 else {})}} for n in range(50)]
    try:
        status, body, _ = await post(port, {"resourceType": "Bundle", "type": "batch", "entry": entries})
        assert status == 200 and len(body["entry"]) == 50
        assert bridge.batches == [50] and len(bridge.letters) == 50
        assert [letter["source"]["entry"] for letter in bridge.letters] == list(range(50))  # with or without id
        assert all(json.loads(letter["raw"]) == e["resource"] for letter, e in zip(bridge.letters, entries))
    finally:
        await runner.cleanup()


# -- malformed input -------------------------------------------------------------------------------

MALFORMED = {
    "entry is a number": b'{"resourceType": "Bundle", "type": "batch", "entry": 5}',
    "entry of numbers": b'{"resourceType": "Bundle", "type": "transaction", "entry": [5, "x", null]}',
    "resource a number": b'{"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": 5}]}',
    "type a list": b'{"resourceType": "Bundle", "type": [1], "entry": []}',
    "resourceType a dict": b'{"resourceType": {"a": 1}}',
    "a list": b'[1, 2]',
    "a string": b'"MedicationAdministration"',
    "not JSON": b'{not json',
    "empty": b'',
    "NaN": b'{"resourceType": "Encounter", "x": NaN}',
    "bad UTF-8": b'{"resourceType": "\xff\xfe"}',
    "contained a number": b'{"resourceType": "MedicationAdministration", "status": "completed", "contained": 5}',
    "nested 300": b'{"resourceType": "Basic", "x": ' + b'[' * 300 + b']' * 300 + b'}',
    "nested 300 in a Bundle entry": (b'{"resourceType": "Bundle", "type": "batch", "entry": [{"resource": '
                                     b'{"resourceType": "Basic", "x": ' + b'{"a": ' * 300 + b'1' + b'}' * 300
                                     + b'}}]}'),
    "nested 5000": b'[' * 5000 + b']' * 5000,
    "duplicate key": b'{"resourceType": "Encounter", "id": "e1", "status": "finished", "status": "planned"}',
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
async def test_malformed_input_is_a_4xx_outcome_never_a_500(name):
    runner, port, _ = await start()
    try:
        status, outcome, _ = await post(port, MALFORMED[name])
        assert 400 <= status < 500, (status, outcome)
        assert outcome["resourceType"] == "OperationOutcome"
    finally:
        await runner.cleanup()


async def test_duplicate_keys_are_named_by_path_not_value_and_cheap_to_detect(caplog):
    runner, port, bridge = await start()
    ma = sample("medication-administration-push.json")
    text = json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [{"resource": ma}] * 3})
    # the third entry's context given twice: the second value (a canary) must not be echoed
    at = text.rindex('"context": {')
    dup = text[:at] + '"context": {"reference": "Encounter/ZZCANARY-DUP"}, ' + text[at:]
    try:
        status, outcome, _ = await post(port, dup.encode())
        assert status == 400 and bridge.events == []
        issue = outcome["issue"][0]
        assert issue["expression"] == ["$.entry[2].resource.context"], issue
        assert "ZZCANARY" not in json.dumps(outcome)
        # a key escaped differently is the same key
        status, _, _ = await post(port, b'{"resourceType": "Basic", "id": "a", "\\u0069d": "b"}')
        assert status == 400
        # keys that look alike in strings are not duplicates
        status, answer, _ = await post(port, json.dumps({"resourceType": "Basic", "note": ['"id":', 'a": "b",  "c":'],
                                                         "id": "x"}).encode())
        assert status == 200 and "duplicate" not in json.dumps(answer)  # a Basic is not read: skipped
        # backslashes and escaped quotes before colons (counted by walking the objects)
        tricky = {"resourceType": "Basic", "a\\": 1, "note": ['\\":', '\\\\":x', '\\'], "b": {"c\\\"": 2}}
        assert fhir_http.parse(json.dumps(tricky).encode()) == tricky
        status, answer, _ = await post(port, b'{"resourceType": "Basic", "a\\\\": 1, "a\\\\": 2}')
        assert status == 400 and answer["issue"][0]["expression"] == ["$.(a key)"]  # a Basic, refused as not taken: no duplicate
    finally:
        await runner.cleanup()
    # the cost on a 1 MB Bundle: the check (key count in the text against the parsed keys) on every post
    big = json.dumps({"resourceType": "Bundle", "type": "batch",
                      "entry": [{"resource": dict(ma, id=f"ma-{n}")} for n in range(1100)]}).encode()
    assert len(big) > 1_000_000
    import orjson
    rounds = 5
    t0 = time.perf_counter()
    for _ in range(rounds):
        orjson.loads(big)
    parse_only = (time.perf_counter() - t0) / rounds
    t0 = time.perf_counter()
    for _ in range(rounds):
        fhir_http.parse(big)
    checked = (time.perf_counter() - t0) / rounds
    duplicated = big[:-1] + b', "type": "batch"}'
    t0 = time.perf_counter()
    with pytest.raises(fhir_http._Refused) as refused:
        fhir_http.parse(duplicated)
    assert b"$.type" in refused.value.response.body
    located = time.perf_counter() - t0
    print(f"\n{len(big) / 1e6:.2f} MB Bundle: orjson alone {parse_only * 1000:.1f} ms, with the duplicate/depth "
          f"check {checked * 1000:.1f} ms (+{(checked - parse_only) * 1000:.1f} ms); locating a duplicate "
          f"{located * 1000:.1f} ms")


# -- timeouts and connections ----------------------------------------------------------------------

async def test_a_slow_body_a_half_sent_request_and_an_idle_connection_are_closed_after_the_idle_timeout():
    runner, port, _ = await start(idle_timeout=1.0)
    try:
        # a body declared (under the limit) and sent a byte a while: answered 408 after ~1 s
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /fhir HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n"
                     b"Content-Length: 100000\r\n\r\n{")
        started = time.monotonic()

        async def trickle():
            while True:
                await asyncio.sleep(0.1)
                writer.write(b" ")
        dripping = asyncio.create_task(trickle())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        held = time.monotonic() - started
        dripping.cancel()
        print(f"\nslow body answered {head.split(b' ')[1].decode()} after {held:.2f} s")
        assert head.startswith(b"HTTP/1.1 408") and held < 2.5
        writer.close()
        # headers sent a byte at a time (never complete) and a silent connection: closed
        for opening in (b"POST /fhir HTTP/1.1\r\nHost: x\r\n", b""):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            started = time.monotonic()

            async def drip():
                for c in opening:
                    writer.write(bytes([c]))
                    await asyncio.sleep(0.05)
            task = asyncio.create_task(drip())
            assert await asyncio.wait_for(reader.read(), 5) == b"" or True
            held = time.monotonic() - started
            task.cancel()
            assert held < 2.5, held
            writer.close()
    finally:
        await runner.cleanup()


async def test_a_flood_of_connections_leaves_a_normal_request_answered():
    runner, port, _ = await start(max_connections=100, idle_timeout=30)
    flood = []
    try:
        for n in range(500):  # idle and half-sent connections, five times the cap
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if n % 2:
                writer.write(b"POST /fhir HTTP/1.1\r\nHost: x\r\n")
            flood.append(writer)
        await asyncio.sleep(0.2)
        started = time.monotonic()
        status, _, _ = await post(port, sample("medication-administration-push.json"))
        latency = time.monotonic() - started
        print(f"\nwith 500 flooding connections (cap 100): a normal request {status} in {latency * 1000:.1f} ms")
        assert status == 200
        assert len(runner.server.connections) <= 101
    finally:
        for writer in flood:
            writer.close()
        await runner.cleanup()


async def test_over_the_cap_with_every_connection_busy_the_newcomer_gets_503():
    class SlowBridge(FakeBridge):
        async def submit_many(self, items) -> None:
            await asyncio.sleep(1.0)
            await super().submit_many(items)
    runner, port, _ = await start(SlowBridge(), max_connections=3)
    try:
        body = sample("medication-administration-push.json")
        busy = [asyncio.create_task(post(port, body)) for _ in range(3)]
        await asyncio.sleep(0.3)
        status, outcome, _ = await post(port, body)
        assert status == 503 and outcome["issue"][0]["code"] == "transient"
        assert [s for s, _, _ in await asyncio.gather(*busy)] == [200, 200, 200]
    finally:
        await runner.cleanup()


# -- no PHI in any reason --------------------------------------------------------------------------

CANARY_NAME, CANARY_MRN, CANARY_BIRTH = "ZZCANARY PATIENT", "MRNCANARY01", "1962-03-14"
CANARIES = (CANARY_NAME, CANARY_MRN, CANARY_BIRTH, "ZZCANARY", "CANARY", "19620314")


def _canaried() -> list[dict]:
    """Resources with the canary in every element the FHIR feed reads, each one also faulty so that
    it is rejected and its reasons are written."""
    ma = sample("medication-administration-push.json")
    patient = {"resourceType": "Patient", "id": CANARY_MRN, "name": [{"text": CANARY_NAME}],
               "identifier": [{"system": "urn:mrn", "value": CANARY_MRN}], "birthDate": CANARY_BIRTH}
    c = f"{CANARY_NAME} {CANARY_BIRTH} {CANARY_MRN}"
    out = []

    def variant(**changes) -> dict:
        res = copy.deepcopy(ma)
        res.update(changes)
        res["subject"] = {"reference": f"Patient/{CANARY_MRN}", "display": CANARY_NAME}
        res["performer"] = [{"actor": {"display": CANARY_NAME}}]
        res["note"] = [{"text": c}]
        return res
    out.append(variant(id=CANARY_MRN, context={"reference": c}))  # unreadable context reference
    out.append(variant(context={"reference": f"Patient/{CANARY_MRN}", "display": CANARY_NAME}))
    out.append(variant(context={"reference": f"{CANARY_NAME}/{CANARY_MRN}"}))
    out.append(variant(context={"identifier": {"value": CANARY_MRN}}, identifier=[{"value": CANARY_MRN}],
                       id=None, effectiveDateTime=CANARY_BIRTH))  # a date without a time
    out.append(variant(effectiveDateTime=f"{CANARY_BIRTH}T08:00:00"))  # no offset
    out.append(variant(effectiveDateTime=f"{CANARY_BIRTH}T08:00:00+00:00", effectivePeriod=None))  # before 2000
    out.append(variant(effectivePeriod={"start": c, "end": CANARY_BIRTH}))
    out.append(variant(medicationCodeableConcept={"text": c, "coding": [{"system": "urn:x", "code": CANARY_MRN,
                                                                          "display": CANARY_NAME}]}))
    out.append(variant(medicationCodeableConcept=None, medicationReference={"reference": f"Medication/{CANARY_MRN}"}))
    out.append(variant(medicationCodeableConcept=None, medicationReference={"reference": "#m"},
                       contained=[{"resourceType": "Medication", "id": "m"}]))
    out.append(variant(dosage={"route": {"text": c, "coding": [{"system": "urn:x", "code": CANARY_MRN,
                                                                "display": CANARY_NAME}]}}))
    out.append(variant(dosage={"route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]},
                             "method": {"text": c}}, effectivePeriod=None,
                       effectiveDateTime="2026-03-02T08:00:00-05:00"))
    out.append(variant(extension=[{"url": "urn:infusion-validator:fhir:purpose", "valueCode": CANARY_MRN}]))
    out.append(variant(request={"reference": "#r"}, contained=[{
        "resourceType": "MedicationRequest", "id": "r", "dosageInstruction": [
            {"timing": {"repeat": {"duration": 30, "durationUnit": CANARY_MRN}}}]}]))
    out.append(variant(status=CANARY_MRN))
    out.append({"resourceType": "Encounter", "id": CANARY_MRN, "status": "finished",
                "class": {"code": CANARY_MRN, "display": CANARY_NAME},
                "subject": {"reference": f"Patient/{CANARY_MRN}", "display": CANARY_NAME},
                "period": {"end": f"{CANARY_BIRTH}T10:00:00-05:00"}})
    out.append({"resourceType": "Encounter", "id": CANARY_MRN, "status": "finished", "class": {"code": "IMP"},
                "period": {"end": CANARY_BIRTH}})
    out.append(patient)
    out.append({"resourceType": CANARY_NAME, "id": CANARY_MRN})
    return out


def _assert_clean(where: str, text: str) -> None:
    for canary in CANARIES:
        assert canary not in text, f"{canary!r} in {where}: {text[:400]}"


async def test_no_canary_in_answers_dead_letter_reasons_or_logs(caplog):
    caplog.set_level(logging.DEBUG)
    runner, port, bridge = await start()
    resources = _canaried()
    try:
        answers = []
        for res in resources:
            status, outcome, _ = await post(port, res)
            answers.append(json.dumps(outcome))
            assert status >= 400 or res["resourceType"] == "Patient", (status, outcome)  # a Patient: skipped, 200
        for kind in ("batch", "transaction", "collection"):
            bundle = {"resourceType": "Bundle", "type": kind, "id": CANARY_MRN,
                      "entry": [{"fullUrl": f"urn:uuid:{CANARY_MRN}", "resource": r} for r in resources]
                      + [{"request": {"method": "DELETE", "url": f"Patient/{CANARY_MRN}"}},
                         {"request": {"method": "GET", "url": f"Patient?name={CANARY_NAME}"}}]}
            status, outcome, _ = await post(port, bundle)
            answers.append(json.dumps(outcome))
        status, outcome, _ = await post(port, {"resourceType": "Bundle", "type": CANARY_NAME, "entry": []})
        answers.append(json.dumps(outcome))
        assert status == 422 and "Bundle.type (missing or not a FHIR bundle type)" in answers[-1]
    finally:
        await runner.cleanup()
    for answer in answers:
        _assert_clean("an answer", answer)
    assert len(bridge.letters) >= len(resources)
    for letter in bridge.letters:
        _assert_clean("a dead letter", json.dumps({k: v for k, v in letter.items() if k not in ("raw", "alerts")}))
    _assert_clean("the log", "\n".join(r.getMessage() for r in caplog.records))
    # the raw input is in the dead letter, for replay: the canary is there by design
    assert any(CANARY_MRN in (letter["raw"].decode() if isinstance(letter["raw"], bytes) else letter["raw"])
               for letter in bridge.letters)
