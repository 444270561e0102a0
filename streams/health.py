"""Liveness and readiness of a worker, served beside /metrics on IV_METRICS_PORT.

/healthz: 200 while the event loop is turning (a timer beats every second); 503 once it has been
stuck for `stale_after` seconds, so an orchestrator restarts a wedged worker.
/readyz: 200 only once partitions are assigned and their tables recovered; 503 during a rebalance
or recovery, so a rolling upgrade waits for the new worker to really process.
"""
from __future__ import annotations

import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from socketserver import ThreadingMixIn

from prometheus_client import CollectorRegistry, make_wsgi_app


class Health:
    def __init__(self, stale_after: float = 30.0, clock=time.monotonic) -> None:
        self.stale_after, self.clock = stale_after, clock
        self.ready = False
        self._beat = clock()

    def beat(self) -> None:
        self._beat = self.clock()

    @property
    def live(self) -> bool:
        return self.clock() - self._beat < self.stale_after


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
            ok = health.live and (path == "/healthz" or health.ready)
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ok\n" if ok else (b"not ready\n" if health.live else b"event loop stuck\n")]
        return metrics(environ, start_response)

    server = make_server(addr, port, app, server_class=_Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
