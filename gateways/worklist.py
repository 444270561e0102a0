"""The nursing worklist: a web page a charge nurse keeps open (`infusion-validator worklist`).

It reads `nursing.documentation.alerts` with its own consumer group, from the beginning of the topic
at every start (the view is rebuilt, so a restart or a second replica shows the same list), keeps
the open documentation problems in a `Board` and serves:
  GET /               the page (gateways/worklist.html: plain HTML, CSS and JavaScript, no network);
  GET /events?unit=U  server-sent events: a snapshot, then each alert added or removed as it is read
                      (a resolved alert leaves the page within a second; no reload);
  GET /api/alerts?unit=U  the open items as JSON.
`infusion-validator worklist` (run) serves /healthz, /readyz and /metrics on IV_METRICS_PORT, apart.
Safe by default: loopback unless a host is given, at most `max_clients` event streams (each with a
bounded queue: a page too slow to keep up is sent a fresh snapshot instead), GET only, no server
banner. It shows what the alerts carry and nothing more: no patient names exist
in them.
"""
from __future__ import annotations

import asyncio
import logging
import time
from importlib.resources import files

import orjson
from aiohttp import web

from gateways.board import Board

log = logging.getLogger(__name__)
QUEUE = 1000  # changes buffered per page before the page is dropped (it reconnects)
STOP_SECONDS = 10


class Worklist:
    """The board and the pages watching it."""

    def __init__(self, max_clients: int = 200) -> None:
        self.board = Board()
        self.clients: set[tuple[asyncio.Queue, str | None]] = set()
        self.max_clients = max_clients
        self.caught_up = False  # the topic read to its end once since start

    def apply(self, record: dict, since: float) -> None:
        change = self.board.apply(record, since)
        if change is None:
            return
        kind, data = change
        for queue, unit in self.clients:
            if unit is not None and data.get("unit") != unit:
                continue
            try:
                queue.put_nowait((kind, data))
            except asyncio.QueueFull:  # a page too slow to keep up: it gets a fresh snapshot instead
                _instead(queue, "resync")

    def snapshot(self, unit: str | None) -> dict:
        return {"units": self.board.units(), "items": self.board.snapshot(unit), "caught_up": self.caught_up}


def make_app(worklist: Worklist, metrics=None, hosts: tuple[str, ...] = ()) -> web.Application:
    """The page's routes. `hosts`: the host names it answers to besides loopback's (IV_WORKLIST_HOSTS):
    a page another site opened at a name it controls (DNS rebinding) gets 421, never the visits."""
    page = files("gateways").joinpath("worklist.html").read_bytes()
    policy = csp(page)
    allowed = {h.lower() for h in LOOPBACK + tuple(hosts)}

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8",
                            headers={"Content-Security-Policy": policy})

    async def alerts(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(worklist.snapshot(_unit(request))), content_type="application/json")

    async def events(request: web.Request) -> web.StreamResponse:
        if len(worklist.clients) >= worklist.max_clients:
            return web.Response(status=503, text="too many open worklist pages; close some and retry")
        unit = _unit(request)
        queue: asyncio.Queue = asyncio.Queue(QUEUE)
        client = (queue, unit)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        worklist.clients.add(client)
        try:
            await _send(response, "snapshot", worklist.snapshot(unit))
            while True:
                try:
                    kind, data = await asyncio.wait_for(queue.get(), timeout=15)
                except asyncio.TimeoutError:
                    await response.write(b": keep-alive\n\n")  # proxies close silent streams
                    continue
                if kind == "close":
                    break
                if kind == "resync":
                    kind, data = "snapshot", worklist.snapshot(unit)
                await _send(response, kind, data)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            worklist.clients.discard(client)
        return response

    async def no_banner(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.pop("Server", None)
        response.headers.update(SAFE_HEADERS)  # every answer lists visits or could: no cache, no sniffing, no referrer

    @web.middleware
    async def known_host(request: web.Request, handler) -> web.StreamResponse:
        if _hostname(request.host) not in allowed:
            return web.Response(status=421, text="this worklist does not answer to that host name "
                                "(IV_WORKLIST_HOSTS lists the names it answers to)")
        return await handler(request)

    async def close_streams(app: web.Application) -> None:  # else shutdown waits for each open page
        for queue, _ in list(worklist.clients):
            _instead(queue, "close")

    @web.middleware
    async def observed(request: web.Request, handler) -> web.StreamResponse:
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.requests.labels(str(status)).inc()

    app = web.Application(client_max_size=1024, middlewares=[known_host, *([observed] if metrics else [])])
    app.on_response_prepare.append(no_banner)
    app.on_shutdown.append(close_streams)
    app.router.add_get("/", index)
    app.router.add_get("/events", events)
    app.router.add_get("/api/alerts", alerts)
    return app


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
SAFE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                "X-Frame-Options": "DENY"}


def csp(page: bytes) -> str:
    """The page's policy: its own inline script and style by their hashes (no 'unsafe-inline'), the
    event stream from the same origin, nothing else, and never in a frame."""
    import base64
    import hashlib
    import re

    def hashes(tag: str) -> str:
        blocks = re.findall(rb"<" + tag.encode() + rb">(.*?)</" + tag.encode() + rb">", page, re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b).digest()).decode()}'" for b in blocks)

    return (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; connect-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _hostname(host: str | None) -> str:
    """The Host header's name without its port ([::1]:8090 -> [::1])."""
    host = (host or "").strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _instead(queue: asyncio.Queue, kind: str) -> None:
    """Drop what a page has not read yet and tell it `kind` (resync: a fresh snapshot; close)."""
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait((kind, None))


def _unit(request: web.Request) -> str | None:
    unit = request.query.get("unit", "").strip()
    return unit[:64] or None


async def _send(response: web.StreamResponse, kind: str, data) -> None:
    await response.write(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")


async def follow(consumer, worklist: Worklist, stop: asyncio.Event) -> None:
    """Read the alerts topic into the worklist until `stop`: from its beginning, then as it grows."""
    await consumer.seek_to_beginning()
    ends = await consumer.end_offsets(list(consumer.assignment()))
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=200, max_records=2000)
        for tp, messages in batches.items():
            for message in messages:
                try:
                    record = orjson.loads(message.value)
                except (orjson.JSONDecodeError, TypeError):
                    continue  # not ours to judge: the worker writes this topic
                since = message.timestamp / 1000 if message.timestamp else time.time()
                worklist.apply(record, since)
        if not worklist.caught_up and await _reached(consumer, ends):
            worklist.caught_up = True
            log.info("worklist caught up: %d open documentation problems", len(worklist.board.items))


async def _reached(consumer, ends: dict) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


async def serve(worklist: Worklist, host: str, port: int, metrics=None, hosts: tuple[str, ...] = ()) -> web.AppRunner:
    runner = web.AppRunner(make_app(worklist, metrics, hosts), access_log=None,  # request lines carry units: keep logs clean
                           shutdown_timeout=5)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def consume(s, worklist: Worklist, stop: asyncio.Event) -> None:
    """The worklist's consumer: its own group (for lag monitoring), every partition of the alerts
    topic assigned to it (every replica shows the whole list), read from the beginning."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.kafka import client_kwargs

    consumer = AIOKafkaConsumer(**client_kwargs(s), group_id=f"{s.app_id}-worklist", enable_auto_commit=True,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = None
        while not partitions and not stop.is_set():
            partitions = consumer.partitions_for_topic(s.topics.alerts) or None
            if not partitions:
                log.warning("topic %s not found yet: create the topics (infusion-validator topics create)",
                            s.topics.alerts)
                await consumer.force_metadata_update()
                await asyncio.sleep(2)
        if partitions:
            consumer.assign([TopicPartition(s.topics.alerts, p) for p in sorted(partitions)])
            await follow(consumer, worklist, stop)
    finally:
        try:  # its last offset commit retries for as long as the cluster is away: a stop must not wait on it
            await asyncio.wait_for(consumer.stop(), STOP_SECONDS)
        except asyncio.TimeoutError:
            log.warning("Kafka did not answer within %d s while stopping: the worklist's offsets (kept for lag "
                        "monitoring only) were not committed", STOP_SECONDS)


async def run(s, host: str, port: int, announce=print) -> int:
    """`infusion-validator worklist`: serve the page until SIGTERM or Ctrl-C, with /healthz, /readyz
    (caught up with the alerts topic, Kafka reachable) and /metrics on IV_METRICS_PORT."""
    import signal

    from gateways.ops import WorklistMetrics, operated
    from streams import logs

    logs.configure(s.log_level, s.log_format)
    worklist, stop, metrics = Worklist(), asyncio.Event(), WorklistMetrics()
    metrics.items.set_function(lambda: len(worklist.board.items))
    metrics.pages.set_function(lambda: len(worklist.clients))
    metrics.caught_up.set_function(lambda: int(worklist.caught_up))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with operated(s, metrics) as health:
        health.checks.append(lambda: None if worklist.caught_up else "catching up with the alerts topic")
        runner = await serve(worklist, host, port, metrics, s.worklist_host_names)
        health.ready = True
        announce(f"nursing worklist on http://{host}:{port}/ (alerts from {s.topics.alerts}); health and metrics "
                 f"on {s.metrics_host}:{s.metrics_port}; Ctrl-C stops it")
        try:
            await consume(s, worklist, stop)
        finally:
            await runner.cleanup()
    return 0
