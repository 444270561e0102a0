"""Worker configuration from environment variables (IV_*) and flags, checked at start.

Bad configuration fails before anything connects, with a message that names the variable and
says what to put there. Secrets (SASL password) come only from the environment or a file.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from datetime import tzinfo
from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from models.events import EVENT_TYPES
from rules.policy import Policy, PolicyError, load_policy

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class ConfigError(ValueError):
    """Configuration that cannot work; the message says which setting and what to do."""


@dataclass(frozen=True)
class Topics:
    started: str = "mar.administration.started"
    stopped: str = "mar.administration.stopped"
    voided: str = "mar.administration.voided"
    discharged: str = "adt.encounter.discharged"
    discharge_cancelled: str = "adt.encounter.discharge-cancelled"
    submitted: str = "billing.charges.submitted"
    charges: str = "billing.charges.coded"
    chargeitems: str = "billing.chargeitems.fhir"  # the same charge lines as FHIR R4 ChargeItem
    alerts: str = "nursing.documentation.alerts"
    dead_letters: str = "validator.dead-letters"
    ticks: str = "validator.clock-ticks"  # internal: the timer's route into the partitions
    repartition: str = "validator.repartition"  # internal: input records forwarded to their owner partition

    @property
    def inputs(self) -> tuple[str, ...]:
        """In the order of models.events.EVENT_TYPES: the topic of each event type."""
        return (self.started, self.stopped, self.voided, self.discharged, self.discharge_cancelled, self.submitted)

    @cached_property
    def by_type(self) -> dict[str, str]:
        """Event type -> the input topic that carries it."""
        return dict(zip(EVENT_TYPES, self.inputs))

    @property
    def outputs(self) -> tuple[str, ...]:
        """The topics of output records (kind charge / alert / dead_letter)."""
        return (self.charges, self.alerts, self.dead_letters)

    @property
    def all(self) -> tuple[str, ...]:
        return self.inputs + self.outputs + (self.chargeitems, self.ticks, self.repartition)


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = "127.0.0.1:9092"
    app_id: str = "infusion-validator"
    partitions: int = 8
    replication_factor: int = 1
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    # Static group membership (Kafka's group.instance.id, KIP-345): a worker restarted under the same
    # id takes its partitions back at once instead of after the old member's session timeout (6 s)
    # and a rebalance of every worker. Unique per worker (deploy/k8s: the pod's name); unset:
    # dynamic membership.
    group_instance_id: str | None = None
    # Copies of each table partition kept warm on other workers (faust's table_standby_replicas): a
    # worker that takes over a partition has its state at once instead of reading its changelog,
    # but every worker also applies the others' changelog writes: with 2 workers, 2x the CPU.
    standby_replicas: int = 1
    store: str = "memory://"
    data_dir: str = "./validator-data"
    metrics_port: int = 9108
    tick_seconds: float = 10.0
    # Longest a fetch may wait for data. faust fixes it at 1500 ms; a broker that does not answer a
    # waiting fetch when data arrives (Tansu) then adds up to that to every event's latency.
    fetch_max_wait_ms: int = 20
    # Longest a partition waits for an input topic that is behind (data at the broker not yet read,
    # or another partition's forwards) before it processes what it has (time-aligned reading; Kafka
    # Streams' max.task.idle.ms): bounds the delay a stalled fetch adds; a discharge processed before
    # its stops is still coded right, with churn.
    align_max_wait_ms: int = 10_000
    retention_days: int = 14
    policy_file: str | None = None
    drug_classes_file: str | None = None  # the hospital's drug-class table (HL7/FHIR feeds); see feeds/drugs.py
    timezone: str | None = None  # IANA name of the sending facility's zone: HL7 times sent without an offset
    log_level: str = "info"
    log_format: str = "json"  # or "text"
    # -- listeners: loopback unless configured; TLS and authentication when given ------------
    metrics_host: str = "127.0.0.1"  # the worker's /metrics, /healthz, /readyz
    hl7_host: str = "127.0.0.1"
    hl7_port: int = 2575
    hl7_tls_certfile: str | None = None  # MLLP over TLS when set (with the key)
    hl7_tls_keyfile: str | None = None
    hl7_tls_client_cafile: str | None = None  # mutual TLS: interface engines' client certificates signed by it
    hl7_max_bytes: int = 1_048_576  # one HL7 message (MLLP frame)
    fhir_host: str = "127.0.0.1"
    fhir_port: int = 8080
    fhir_tls_certfile: str | None = None  # HTTPS when set (with the key)
    fhir_tls_keyfile: str | None = None
    fhir_tls_client_cafile: str | None = None  # mutual TLS
    fhir_tokens_file: str | None = field(default=None, repr=False)  # bearer tokens accepted, one per line
    fhir_max_bytes: int = 4_194_304  # one request body
    fhir_max_entries: int = 1000  # entries of one Bundle
    feed_idle_timeout_seconds: float = 30.0  # a connection silent or half-sent this long is closed
    feed_max_connections: int = 100  # per listener
    topics: Topics = Topics()

    def __post_init__(self) -> None:
        _check(self)

    @property
    def tzinfo(self) -> tzinfo | None:
        """The facility's time zone for HL7 times without a UTC offset (None: such times are rejected)."""
        return ZoneInfo(self.timezone) if self.timezone else None

    @property
    def policy(self) -> Policy:
        try:
            return load_policy(self.policy_file)
        except PolicyError as exc:
            raise ConfigError(f"IV_POLICY_FILE: {exc}") from None


_TOPIC_ENV = {f"IV_TOPIC_{f.name.upper()}": f.name for f in fields(Topics)}
_INTS = {"partitions", "replication_factor", "standby_replicas", "metrics_port", "retention_days", "fetch_max_wait_ms", "align_max_wait_ms",
         "hl7_port", "hl7_max_bytes", "fhir_port", "fhir_max_bytes", "fhir_max_entries", "feed_max_connections"}
_FLOATS = {"tick_seconds", "feed_idle_timeout_seconds"}


def from_env(env: dict[str, str] | None = None, **overrides) -> Settings:
    """Settings from IV_<NAME> variables (e.g. IV_BOOTSTRAP_SERVERS), then explicit overrides."""
    env = os.environ if env is None else env
    values: dict = {}
    for f in fields(Settings):
        name = f"IV_{f.name.upper()}"
        if f.name != "topics" and env.get(name):
            values[f.name] = _convert(name, f.name, env[name])
    if env.get("IV_SASL_PASSWORD_FILE"):
        values["sasl_password"] = _read_secret(env["IV_SASL_PASSWORD_FILE"])
    topics = {attr: env[var] for var, attr in _TOPIC_ENV.items() if env.get(var)}
    values["topics"] = replace(Topics(), **topics)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)


def _convert(var: str, name: str, raw: str):
    try:
        if name in _INTS:
            return int(raw)
        if name in _FLOATS:
            return float(raw)
    except ValueError:
        raise ConfigError(f"{var}={raw!r}: give a number") from None
    return raw


def _read_secret(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"IV_SASL_PASSWORD_FILE: cannot read {path}: {exc.strerror}") from None


def _check(s: Settings) -> None:
    if not s.bootstrap_servers or any(":" not in h for h in s.bootstrap_servers.split(",")):
        raise ConfigError(f"IV_BOOTSTRAP_SERVERS={s.bootstrap_servers!r}: give host:port[,host:port...]")
    if s.partitions < 1:
        raise ConfigError("IV_PARTITIONS: give a whole number of partitions, 1 or more")
    if s.replication_factor < 1:
        raise ConfigError("IV_REPLICATION_FACTOR: give 1 or more")
    if s.standby_replicas < 0:
        raise ConfigError("IV_STANDBY_REPLICAS: give 0 (no warm copies) or more")
    if s.group_instance_id is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", s.group_instance_id):
        raise ConfigError(f"IV_GROUP_INSTANCE_ID={s.group_instance_id!r}: give up to 249 letters, digits, '.', "
                          "'_' or '-', unique per worker (e.g. the pod's name)")
    if s.security_protocol not in SECURITY_PROTOCOLS:
        raise ConfigError(f"IV_SECURITY_PROTOCOL={s.security_protocol!r}: choose one of {', '.join(SECURITY_PROTOCOLS)}")
    if s.security_protocol.startswith("SASL"):
        if s.sasl_mechanism not in SASL_MECHANISMS:
            raise ConfigError(f"IV_SASL_MECHANISM={s.sasl_mechanism!r}: choose one of {', '.join(SASL_MECHANISMS)}")
        if not s.sasl_username or not s.sasl_password:
            raise ConfigError(f"{s.security_protocol} needs IV_SASL_USERNAME and IV_SASL_PASSWORD "
                              "(or IV_SASL_PASSWORD_FILE)")
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "hl7_tls_certfile", "hl7_tls_keyfile",
                 "hl7_tls_client_cafile", "fhir_tls_certfile", "fhir_tls_keyfile", "fhir_tls_client_cafile",
                 "fhir_tokens_file"):
        path = getattr(s, name)
        if path and not Path(path).is_file():
            raise ConfigError(f"IV_{name.upper()}={path}: no such file")
    for feed in ("hl7", "fhir"):
        cert, key, ca = (getattr(s, f"{feed}_tls_{n}") for n in ("certfile", "keyfile", "client_cafile"))
        if bool(cert) != bool(key) or (ca and not cert):
            raise ConfigError(f"IV_{feed.upper()}_TLS_CERTFILE and IV_{feed.upper()}_TLS_KEYFILE go together "
                              f"(IV_{feed.upper()}_TLS_CLIENT_CAFILE needs them too): give the listener's "
                              "certificate and its private key")
    for name in ("hl7_port", "fhir_port"):
        if not 0 <= getattr(s, name) < 65536:
            raise ConfigError(f"IV_{name.upper()}={getattr(s, name)}: give a TCP port (0: any free one)")
    if s.hl7_max_bytes < 1024 or s.fhir_max_bytes < 1024 or s.fhir_max_entries < 1:
        raise ConfigError("IV_HL7_MAX_BYTES / IV_FHIR_MAX_BYTES: give 1024 bytes or more; IV_FHIR_MAX_ENTRIES: 1 or more")
    if s.feed_idle_timeout_seconds <= 0 or s.feed_max_connections < 1:
        raise ConfigError("IV_FEED_IDLE_TIMEOUT_SECONDS: give seconds above 0; IV_FEED_MAX_CONNECTIONS: 1 or more")
    if s.timezone:
        check_timezone(s.timezone, "IV_TIMEZONE")
    if s.drug_classes_file and not Path(s.drug_classes_file).is_file():
        raise ConfigError(f"IV_DRUG_CLASSES_FILE={s.drug_classes_file}: no such file")
    if s.store not in ("memory://", "rocksdb://"):
        raise ConfigError(f"IV_STORE={s.store!r}: use memory:// (recovers from the changelog at start) or "
                          "rocksdb:// (persistent in IV_DATA_DIR, faster restarts; uses the rocksdict package)")
    if not 0 < s.metrics_port < 65536:
        raise ConfigError(f"IV_METRICS_PORT={s.metrics_port}: give a TCP port")
    if s.tick_seconds <= 0 or s.tick_seconds > 60:
        raise ConfigError("IV_TICK_SECONDS: give a number of seconds above 0 and at most 60 "
                          "(overdue alerts must fire within 60 s)")
    if not 1 <= s.fetch_max_wait_ms <= 1500:
        raise ConfigError("IV_FETCH_MAX_WAIT_MS: give milliseconds from 1 to 1500")
    if not 0 <= s.align_max_wait_ms <= 60_000:
        raise ConfigError("IV_ALIGN_MAX_WAIT_MS: give milliseconds from 0 (never wait for a lagging input "
                          "topic) to 60000")
    if s.retention_days < 1:
        raise ConfigError("IV_RETENTION_DAYS: give 1 or more days")
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"IV_LOG_LEVEL={s.log_level!r}: choose debug, info, warning, error or critical")
    if s.log_format not in ("json", "text"):
        raise ConfigError(f"IV_LOG_FORMAT={s.log_format!r}: choose json (one object per line) or text")
    if len(set(s.topics.all)) != len(s.topics.all):
        raise ConfigError("IV_TOPIC_*: every topic needs its own name")


def check_timezone(name: str, where: str) -> ZoneInfo:
    """The zone an IANA name means, or a ConfigError that says what to give."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}={name!r}: give an IANA time zone name, e.g. America/New_York or "
                          "Europe/Amsterdam (the facility's, for HL7 times sent without a UTC offset)") from None
