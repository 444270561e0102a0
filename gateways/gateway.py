"""The feed commands: `hl7 listen|replay|send` and `fhir serve|load` (CLI glue over gateways.mllp,
gateways.fhir_http and gateways.bridge)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import ssl as ssl_module
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from feeds import DrugClasses, PumpLinks, translate_fhir, translate_hl7
from feeds.fhir_link import Encounters
from gateways import fhir_http, mllp, ops, tls
from gateways.ops import FeedMetrics
from streams import logs
from gateways.bridge import Bridge
from gateways.pump_orders import OrderFollower
from gateways.tls import server_context
from streams.config import Settings
from streams.kafka import client_kwargs

log = logging.getLogger("infusion_validator.gateway")


def drug_classes(s: Settings) -> DrugClasses:
    return DrugClasses.load(s.drug_classes_file)


@contextlib.asynccontextmanager
async def bridge(s: Settings, metrics: FeedMetrics | None = None):
    # A batch Kafka has not taken within the store timeout expires in the producer too: a message
    # answered AE is not stored behind the sender's back when the cluster returns later.
    timeout = s.feed_store_timeout_seconds
    producer = AIOKafkaProducer(**client_kwargs(s), linger_ms=5, acks="all", request_timeout_ms=int(timeout * 1000))
    await producer.start()
    try:
        yield Bridge(producer, s.topics, on_rejected=metrics.observe_rejection if metrics else None,
                     on_noted=metrics.observe_note if metrics else None, timeout=timeout)
    finally:
        await producer.stop()


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def listen_hl7(s: Settings) -> int:
    """The MLLP listener on IV_HL7_HOST:IV_HL7_PORT (loopback by default), over TLS when
    IV_HL7_TLS_CERTFILE/KEYFILE are set (mutual TLS with IV_HL7_TLS_CLIENT_CAFILE), with the size,
    idle and connection limits of the settings."""
    context = tls.server_context(s.hl7_tls_certfile, s.hl7_tls_keyfile, s.hl7_tls_client_cafile)

    async def start(b: Bridge, drugs: DrugClasses, metrics: FeedMetrics):
        links = PumpLinks()
        orders = OrderFollower(s, links)  # every replica links pumps through any replica's MAR orders
        orders.start()
        server = await mllp.serve(b, drugs, s.hl7_host, s.hl7_port, s.tzinfo, ssl=context, max_bytes=s.hl7_max_bytes,
                                  idle_timeout=s.feed_idle_timeout_seconds, max_connections=s.feed_max_connections,
                                  metrics=metrics, visit_fields=s.visit_fields, links=links)

        async def stop() -> None:
            server.close()
            await server.wait_closed()
            await orders.stop()
            if server.refused:
                log.info("HL7 listener refused %d connections over IV_FEED_MAX_CONNECTIONS", server.refused)
        return stop
    security = ("mutual TLS" if s.hl7_tls_client_cafile else "TLS") if context else "plain TCP, no TLS"
    return await _serve(s, f"HL7 MLLP listener on {s.hl7_host}:{s.hl7_port} ({security})", start)


async def serve_fhir(s: Settings, host: str | None = None, port: int | None = None) -> int:
    """The FHIR endpoint as configured: IV_FHIR_HOST (loopback by default), HTTPS/mTLS and bearer
    tokens when their files are given, the size, entry, idle and connection limits."""
    host = s.fhir_host if host is None else host
    port = s.fhir_port if port is None else port
    context = server_context(s.fhir_tls_certfile, s.fhir_tls_keyfile, s.fhir_tls_client_cafile)
    tokens = fhir_http.load_tokens(s.fhir_tokens_file)
    scheme = "https" if context else "http"
    guard = ", ".join(filter(None, ["client certificates required" if s.fhir_tls_client_cafile else "",
                                    f"{len(tokens)} bearer token(s)" if tokens else ""])) or "no authentication"

    async def start(b: Bridge, drugs: DrugClasses, metrics: FeedMetrics):
        runner = await fhir_http.serve(b, drugs, host, port, ssl_context=context, tokens=tokens,
                                       max_bytes=s.fhir_max_bytes, max_entries=s.fhir_max_entries,
                                       idle_timeout=s.feed_idle_timeout_seconds,
                                       max_connections=s.feed_max_connections, metrics=metrics)
        return runner.cleanup
    return await _serve(s, f"FHIR endpoint on {scheme}://{host}:{port}/fhir ({guard})", start)


async def _serve(s: Settings, what: str, start) -> int:
    """Run a feed server (`start` returns its stop) until SIGINT/SIGTERM, with /healthz, /readyz and
    /metrics on IV_METRICS_HOST:IV_METRICS_PORT (gateways.ops)."""
    logs.configure(s.log_level, s.log_format)
    drugs = drug_classes(s)
    metrics = FeedMetrics()
    async with ops.operated(s, metrics) as health, bridge(s, metrics) as b:
        stop = await start(b, drugs, metrics)
        health.ready = True
        log.info("%s, writing to %s; health and metrics on %s:%d", what, s.bootstrap_servers, s.metrics_host,
                 s.metrics_port)
        try:
            await _until_stopped()
        finally:
            health.ready = False
            await stop()
        log.info("stopped: %d messages accepted, %d rejected", b.accepted, b.rejected)
    return 0


async def replay_hl7(s: Settings, files: list[str], out=print) -> int:
    """Every message of the archive files into Kafka, as the listener would; exit 2 if any rejected."""
    drugs, links = drug_classes(s), PumpLinks()
    async with bridge(s) as b:
        for path in files:
            for n, raw in enumerate(mllp.split_messages(read_file(path)), 1):
                t = translate_hl7(raw, drugs, s.tzinfo, s.visit_fields, links)
                await b.submit(t, raw, {"feed": "hl7-file", "file": Path(path).name, "message": n})
                if not t.ok:
                    out(f"{path} message {n}: {t.ack} {t.error}")
        out(f"{b.accepted} messages accepted, {b.rejected} rejected (dead-lettered)")
        return 2 if b.rejected else 0


async def load_fhir(s: Settings, files: list[str], out=print) -> int:
    drugs, encounters = drug_classes(s), Encounters()
    async with bridge(s) as b:
        for path in files:
            try:
                resource = orjson.loads(read_file(path))
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path} is not JSON ({exc}): give FHIR JSON files") from None
            translations = translate_fhir(resource, drugs, encounters)
            raws = fhir_http._entry_raws(resource, len(translations)) if isinstance(resource, dict) else None
            for n, t in enumerate(translations):
                where = {"entry": n} if raws is not None else {}
                # the dead letter keeps its entry, not the whole file; the printed line names the position
                await b.submit(t, raws[n] if raws is not None else orjson.dumps(resource),
                               {"feed": "fhir-file", "file": Path(path).name, **where})
                if not t.ok:
                    out(f"{path}{f' entry {n}' if raws is not None else ''}: {t.error}")
        out(f"{b.accepted} resources accepted, {b.rejected} rejected (dead-lettered)")
        return 2 if b.rejected else 0


async def send_hl7(host: str, port: int, files: list[str], out=print, ssl: ssl_module.SSLContext | None = None,
                   timeout: float = 30.0) -> int:
    """Send archive files' messages to an MLLP listener (over TLS with `ssl`) and print each ACK as
    it arrives (MSA-3's text unescaped); exit 2 unless all AA."""
    messages = [m for path in files for m in mllp.split_messages(read_file(path))]
    refused = 0
    try:
        async for raw, ack in mllp.send(host, port, messages, timeout, ssl=ssl):
            code, text = mllp.read_ack(ack)
            refused += code != "AA"
            out(f"{mllp.control_id(raw)}: {code}" + (f" {text}" if text else ""))
    except ConnectionRefusedError:
        raise OSError(f"no MLLP listener on {host}:{port}: start `infusion-validator hl7 listen` "
                      "(or `make demo`, which listens on 2575), or give --host/--port") from None
    except TimeoutError as exc:  # the listener took the message and did not answer in time
        raise OSError(f"{exc} from {host}:{port}; it may or may not be stored (is the listener's Kafka cluster "
                      "reachable? see its /readyz): resend it, a repeat is recognised by its event ids") from None
    return 2 if refused else 0


def read_file(path: str) -> bytes:
    """A file's bytes (`-`: standard input's), or OSError saying which file is missing (the feed
    commands' inputs)."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise OSError(f"no such file: {path}") from None
