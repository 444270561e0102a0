"""Worker configuration, Kafka security settings, health endpoints and log format: no broker needed."""
import asyncio
import io
import json
import logging
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest

from streams.config import ConfigError, from_env
from streams.health import Health
from streams.faust_runtime.connection import faust_credentials
from streams.kafka import client_kwargs
from streams.logs import JsonFormatter
from streams.metrics import Metrics


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed CA certificate and key (openssl is part of the base system)."""
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=kafka",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")], check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


def test_numbers_and_topics_come_from_iv_variables():
    s = from_env({"IV_PARTITIONS": "12", "IV_TICK_SECONDS": "2.5", "IV_TOPIC_CHARGES": "hosp.charges",
                  "IV_FETCH_MAX_WAIT_MS": "50", "IV_LOG_FORMAT": "text"})
    assert (s.partitions, s.tick_seconds, s.topics.charges, s.fetch_max_wait_ms, s.log_format) == \
        (12, 2.5, "hosp.charges", 50, "text")


@pytest.mark.parametrize("env,names", [
    ({"IV_PARTITIONS": "eight"}, "IV_PARTITIONS"),
    ({"IV_BOOTSTRAP_SERVERS": "kafka"}, "IV_BOOTSTRAP_SERVERS"),
    ({"IV_SECURITY_PROTOCOL": "SASL_SSL"}, "IV_SASL_USERNAME"),
    ({"IV_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "IV_SASL_MECHANISM": "MD5", "IV_SASL_USERNAME": "u",
      "IV_SASL_PASSWORD": "p"}, "IV_SASL_MECHANISM"),
    ({"IV_SSL_CAFILE": "/nonexistent/ca.pem"}, "IV_SSL_CAFILE"),
    ({"IV_SASL_PASSWORD_FILE": "/nonexistent/secret"}, "IV_SASL_PASSWORD_FILE"),
    ({"IV_LOG_FORMAT": "xml"}, "IV_LOG_FORMAT"),
    ({"IV_LOG_LEVEL": "loud"}, "IV_LOG_LEVEL"),
    ({"IV_FETCH_MAX_WAIT_MS": "0"}, "IV_FETCH_MAX_WAIT_MS"),
    ({"IV_TOPIC_ALERTS": "billing.charges.coded"}, "IV_TOPIC_"),
])
def test_bad_configuration_names_the_variable_to_fix(env, names):
    with pytest.raises(ConfigError, match=names):
        from_env(env)


def _scram_over_tls(tmp_path, tls_files, **overrides):
    """Settings for SASL_SSL with SCRAM-SHA-512, a CA file, a client certificate and a password file."""
    cert, key = tls_files
    (tmp_path / "secret").write_text("s3cret\n")
    return from_env({"IV_SECURITY_PROTOCOL": "SASL_SSL", "IV_SASL_MECHANISM": "SCRAM-SHA-512",
                     "IV_SASL_USERNAME": "validator", "IV_SASL_PASSWORD_FILE": str(tmp_path / "secret"),
                     "IV_SSL_CAFILE": str(cert), "IV_SSL_CERTFILE": str(cert), "IV_SSL_KEYFILE": str(key)},
                    **overrides)


def test_sasl_scram_over_tls_reaches_aiokafka_and_faust_alike(tmp_path, tls_files):
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    s = _scram_over_tls(tmp_path, tls_files)
    assert "s3cret" not in repr(s)  # the password never reaches a log line through the settings
    ours = client_kwargs(s)
    theirs = credentials_to_aiokafka_auth(faust_credentials(s))
    for kwargs in (ours, theirs):
        assert kwargs["security_protocol"] == "SASL_SSL"
        assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
        assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("validator", "s3cret")
        assert kwargs["ssl_context"] is not None


class _NotConnecting(Exception):
    """Raised where a recorded client would connect: no broker needed."""


def _recording(made: list):
    """Stands in for an aiokafka client class: records the keyword arguments of each client built."""
    class Client:
        def __init__(self, *topics, **kwargs):
            made.append(kwargs)

        async def start(self):
            raise _NotConnecting
    return Client


async def test_every_kafka_client_connects_with_the_same_security_settings(tmp_path, tls_files, monkeypatch):
    """The HL7/FHIR gateway's producer, the admin of `topics create`, faust's own consumer and
    producer, and the consumer table recovery opens for end offsets (streams/faust_runtime/compat.py): each is
    built with the SASL_SSL settings and the brokers of IV_*, none with the address alone."""
    import aiokafka
    from faust.types import TP

    from gateways import gateway
    from streams import topics
    from streams.faust_runtime.app import build_app

    s = _scram_over_tls(tmp_path, tls_files, bootstrap_servers="kafka-1:9093,kafka-2:9093")
    made: list[dict] = []
    for module, name in ((gateway, "AIOKafkaProducer"), (topics, "AIOKafkaAdminClient"),
                         (aiokafka, "AIOKafkaConsumer"), (aiokafka, "AIOKafkaProducer")):  # faust's and compat's
        monkeypatch.setattr(module, name, _recording(made))
    with pytest.raises(_NotConnecting):
        async with gateway.bridge(s):
            pass
    with pytest.raises(_NotConnecting):
        await topics.create_topics(s)
    app = build_app(s, Metrics())
    thread = app.consumer._thread  # faust's consumer thread, not started
    thread._consumer = thread._create_consumer(asyncio.get_running_loop())
    app.producer._new_producer()
    with pytest.raises(_NotConnecting):
        await thread._highwaters([TP(s.topics.started, 0)])  # what table recovery asks first

    clients = ["gateway producer", "topics admin", "faust consumer", "faust producer", "table recovery consumer"]
    assert len(made) == len(clients)
    for client, kwargs in zip(clients, made):
        servers = kwargs["bootstrap_servers"]
        assert (servers.split(",") if isinstance(servers, str) else servers) == ["kafka-1:9093", "kafka-2:9093"], client
        assert {k: kwargs.get(k) for k in ("security_protocol", "sasl_mechanism", "sasl_plain_username",
                                           "sasl_plain_password")} == \
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "validator",
             "sasl_plain_password": "s3cret"}, client
        context = kwargs["ssl_context"]
        assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "kafka"),),)], client  # the CA file
        assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True), client


def test_tls_without_sasl_and_plaintext(tls_files):
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    s = from_env({"IV_SECURITY_PROTOCOL": "SSL", "IV_SSL_CAFILE": str(tls_files[0])})
    assert client_kwargs(s)["security_protocol"] == credentials_to_aiokafka_auth(faust_credentials(s))[
        "security_protocol"] == "SSL"
    assert "sasl_mechanism" not in client_kwargs(s)
    assert faust_credentials(from_env({})) is None


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_health_endpoints_follow_the_event_loop_and_recovery():
    from streams.broker import free_port

    now = [0.0]
    health = Health(stale_after=30, clock=lambda: now[0])
    port = free_port()
    server = Metrics().serve(port, "127.0.0.1", health=health)
    base = f"http://127.0.0.1:{port}"
    try:
        assert _get(base + "/healthz")[0] == 200
        assert _get(base + "/readyz") == (503, "not ready\n")  # tables not recovered yet
        health.ready = True
        assert _get(base + "/readyz")[0] == 200
        now[0] = 31.0  # no beat for 31 s: the loop is stuck
        assert _get(base + "/healthz") == (503, "event loop stuck\n")
        assert _get(base + "/readyz")[0] == 503
        health.beat()
        assert _get(base + "/healthz")[0] == 200
        status, body = _get(base + "/metrics")
        assert status == 200 and "iv_events_consumed_total" in body
    finally:
        server.shutdown()


def test_json_log_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("test.json")
    log.addHandler(handler)
    try:
        log.warning("partition %d recovered", 3)
        try:
            1 / 0
        except ZeroDivisionError:
            log.exception("internal error on %s/%s/%s", "topic", 1, 2)
    finally:
        log.removeHandler(handler)
    first, second = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    assert (first["level"], first["logger"], first["message"]) == ("warning", "test.json", "partition 3 recovered")
    assert first["time"].endswith("+00:00")
    assert "ZeroDivisionError" in second["exception"]


def test_debug_logging_keeps_kafka_records_out_of_the_logs():
    import logging

    from streams.logs import configure

    configure("debug", "text")
    try:
        assert logging.getLogger().level == logging.DEBUG
        assert not logging.getLogger("aiokafka.producer").isEnabledFor(logging.DEBUG)
    finally:
        configure("warning", "text")


def test_a_group_instance_id_is_checked_and_reaches_faust():
    from streams.faust_runtime.app import build_app
    from streams.metrics import Metrics

    with pytest.raises(ConfigError, match="IV_GROUP_INSTANCE_ID"):
        from_env({"IV_GROUP_INSTANCE_ID": "two words"})
    s = from_env({"IV_GROUP_INSTANCE_ID": "infusion-validator-7d9f-x2"})
    assert build_app(s, Metrics()).conf.consumer_group_instance_id == "infusion-validator-7d9f-x2"
    assert from_env({}).group_instance_id is None  # dynamic membership unless configured


def test_standby_replicas_are_checked_and_reach_faust():
    from streams.faust_runtime.app import build_app
    from streams.metrics import Metrics

    with pytest.raises(ConfigError, match="IV_STANDBY_REPLICAS"):
        from_env({"IV_STANDBY_REPLICAS": "-1"})
    assert build_app(from_env({"IV_STANDBY_REPLICAS": "0"}), Metrics()).conf.table_standby_replicas == 0
    assert from_env({}).standby_replicas == 1


def test_readyz_names_the_first_failing_check():
    from streams.broker import free_port

    health, reason = Health(), [None]
    health.ready = True
    health.checks.append(lambda: reason[0])
    port = free_port()
    server = Metrics().serve(port, "127.0.0.1", health=health)
    try:
        assert _get(f"http://127.0.0.1:{port}/readyz") == (200, "ok\n")
        reason[0] = "Kafka unreachable for 31 s"
        assert _get(f"http://127.0.0.1:{port}/readyz") == (503, "Kafka unreachable for 31 s\n")
        assert _get(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")  # alive: not a restart
    finally:
        server.shutdown()


class _Client:
    """An aiokafka client's two calls BrokerWatch makes: answered or not, as the test says."""

    def __init__(self) -> None:
        self.up = True

    async def bootstrap(self):
        if not self.up:
            raise ConnectionError("unreachable")

    async def force_metadata_update(self):
        if not self.up:
            await asyncio.sleep(10)  # a request the cluster never answers
        return True


async def test_the_broker_watch_counts_unreachable_from_the_first_unanswered_request():
    from prometheus_client import Gauge, CollectorRegistry

    from streams.reachability import BrokerWatch

    now, client = [100.0], _Client()
    gauge = Gauge("reachable", "", registry=CollectorRegistry())
    watch = BrokerWatch(client, unreachable_after=30, timeout=0.05, gauge=gauge, clock=lambda: now[0],
                        bootstrapped=False)
    client.up = False
    assert await watch.probe() is False and gauge._value.get() == 0  # not even bootstrapped: unreachable
    now[0] += 29
    assert watch.check() is None  # within IV_KAFKA_UNREACHABLE_SECONDS
    now[0] += 2
    assert await watch.probe() is False and watch.check() == "Kafka unreachable for 31 s"
    client.up = True
    assert await watch.probe() is True and watch.check() is None and gauge._value.get() == 1
    client.up = False
    assert await watch.probe() is False and watch.unreachable_for == 0  # the clock starts again now


async def test_the_waiting_clock_stands_still_while_the_cluster_is_away():
    """Time-aligned reading measures waits on it: a partition blocked before an outage has waited
    only its reachable seconds after it. An outage counts from the start of the request that failed."""
    from streams.reachability import BrokerWatch

    now, client = [0.0], _Client()

    def clock():
        return now[0]

    watch = BrokerWatch(client, unreachable_after=30, timeout=0.05, clock=clock)
    await watch.probe()
    now[0] = 10.0
    client.up = False
    assert await watch.probe() is False  # the request made at 10 s
    now[0] = 40.0
    assert watch.waiting_clock() == 10.0 and watch.recent_outage(600) == 30.0
    client.up = True
    assert await watch.probe() is True
    now[0] = 45.0
    assert watch.waiting_clock() == 15.0  # 45 s, less the 30 s away
    assert watch.recent_outage(600) == 30.0 and watch.recent_outage(4) is None  # it ended 5 s ago


def test_every_command_s_help_lists_the_settings_it_reads_generated_from_them():
    from dataclasses import fields

    from cli.main import build_parser
    from streams.config import Settings

    def help_of(*argv) -> str:
        parser = build_parser()
        for word in argv:
            parser = next(a for a in parser._actions if a.dest.endswith("command")).choices[word]
        return parser.format_help()

    worker = help_of("worker")
    for f in fields(Settings):
        if f.metadata.get("group") in ("kafka", "worker", "process"):
            assert f"IV_{f.name.upper()}" in worker, f.name
    for name in ("IV_REPLICATION_FACTOR", "IV_FETCH_MAX_WAIT_MS", "IV_METRICS_HOST", "IV_LOG_LEVEL", "IV_LOG_FORMAT",
                 "IV_SASL_PASSWORD_FILE", "IV_TOPIC_ALERTS"):
        assert name in worker
    listen = help_of("hl7", "listen")
    assert "IV_HL7_TLS_CLIENT_CAFILE" in listen and "IV_TIMEZONE" in listen and "IV_POLICY_FILE" not in listen
    assert "IV_FHIR_TOKENS_FILE" in help_of("fhir", "serve")


@pytest.mark.parametrize("argv", [["topics", "create", "--policy", "p.toml"], ["topics", "create", "--metrics-port", "1"],
                                  ["hl7", "replay", "--policy", "p.toml", "f"], ["hl7", "replay", "--metrics-port", "1", "f"],
                                  ["fhir", "load", "--policy", "p.toml", "f"], ["fhir", "load", "--partitions", "2", "f"]])
def test_flags_that_mean_nothing_to_a_command_are_refused(argv):
    from cli.main import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
