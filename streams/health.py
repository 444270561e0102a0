"""Liveness and readiness of a worker, served beside /metrics on IV_METRICS_PORT.

/healthz: 200 while the event loop is turning (a timer beats every second); 503 once it has been
stuck for `stale_after` seconds, so an orchestrator restarts a wedged worker.
/readyz: 200 only once the process is ready (a worker: partitions assigned and tables recovered, so a
rolling upgrade waits for the new worker to really process; a feed: listening) and every check
passes (the Kafka cluster reachable: streams/reachability.py); else 503 with the reason.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from socketserver import ThreadingMixIn

from prometheus_client import CollectorRegistry, make_wsgi_app


class Health:
    """`ready` is the process's own state (the worker: partitions assigned and tables recovered; a
    feed: listening); `checks` are further conditions, each returning None when fine or a short
    reason (e.g. the broker unreachable), which /readyz answers with."""

    def __init__(self, stale_after: float = 30.0, clock=time.monotonic) -> None:
        self.stale_after, self.clock = stale_after, clock
        self.ready = False
        self.checks: list[Callable[[], str | None]] = []
        self._beat = clock()

    def beat(self) -> None:
        self._beat = self.clock()

    @property
    def live(self) -> bool:
        return self.clock() - self._beat < self.stale_after

    def not_ready(self) -> str | None:
        """Why /readyz answers 503, or None."""
        if not self.live:
            return "event loop stuck"
        if not self.ready:
            return "not ready"
        for check in self.checks:
            if (reason := check()) is not None:
                return reason
        return None


MAX_CONNECTIONS = 32  # scrapes and probes: a handful at a time; more is a flood, closed at once


class _Server(ThreadingMixIn, WSGIServer):
    """One thread per connection, at most MAX_CONNECTIONS at a time; a listen queue that holds a
    burst instead of the default 5."""
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, *args, **kwargs) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Quiet(WSGIRequestHandler):
    timeout = 10  # seconds a connection may stay idle or half-sent
    server_version = "metrics"  # no version banner
    sys_version = ""

    def log_message(self, *args) -> None:  # probes every few seconds would flood the log
        pass


def serve(registry: CollectorRegistry, health: Health | None, port: int, addr: str = "127.0.0.1"):
    """/metrics, /healthz and /readyz on one port; returns the server (call .shutdown())."""
    metrics = make_wsgi_app(registry)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if health is not None and path in ("/healthz", "/readyz"):
            reason = (None if health.live else "event loop stuck") if path == "/healthz" else health.not_ready()
            start_response("200 OK" if reason is None else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ok\n" if reason is None else reason.encode() + b"\n"]
        return metrics(environ, start_response)

    server = make_server(addr, port, app, server_class=_Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
