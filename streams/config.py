"""Worker configuration from environment variables (IV_*) and flags, checked at start.

Bad configuration fails before anything connects, with a message that names the variable and
says what to put there. Secrets (SASL password) come only from the environment or a file.
"""
from __future__ import annotations

import os
import re
import textwrap
from dataclasses import dataclass, field, fields, replace
from datetime import tzinfo
from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from feeds.hl7v2 import VISIT_FIELD
from models.events import EVENT_TYPES
from billing.dft import Interface
from rules.edits import EditFileError
from rules.policy import Policy, PolicyError, load_policy
from streams.edit_files import load_edits

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class ConfigError(ValueError):
    """Configuration that cannot work; the message says which setting and what to do."""


@dataclass(frozen=True)
class Topics:
    started: str = "mar.administration.started"
    stopped: str = "mar.administration.stopped"
    voided: str = "mar.administration.voided"
    deliveries: str = "devices.pump.delivery"  # infusion pumps' evidence (contract v1.2 device.delivery)
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
        return (self.started, self.stopped, self.voided, self.deliveries, self.discharged, self.discharge_cancelled,
                self.submitted)

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


def _setting(default, help: str, group: str, *, secret: bool = False):
    """A setting: its default, the one line `--help` shows for its IV_* variable, and the group of
    commands it concerns (GROUPS)."""
    return field(default=default, repr=not secret, metadata={"help": help, "group": group})


# The groups of settings, in the order help lists them; each command's help shows the ones it reads.
GROUPS = {
    "kafka": "Kafka connection (every command that reads or writes Kafka)",
    "worker": "Stream processor",
    "coding": "Coding and translation",
    "hl7": "HL7 v2 MLLP listener (hl7 listen)",
    "fhir": "FHIR endpoint (fhir serve)",
    "worklist": "Nursing worklist (worklist)",
    "billing": "Billing interface: DFT^P03 to the billing system (billing send; billing export reads the DFT ones)",
    "feeds": "Both feeds' listeners",
    "process": "Health, metrics and logs (worker, hl7 listen, fhir serve, worklist)",
}


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = _setting("127.0.0.1:9092", "host:port[,host:port...] of the Kafka cluster", "kafka")
    app_id: str = _setting("infusion-validator", "consumer group of the workers; prefix of the table's changelog topic",
                           "kafka")
    partitions: int = _setting(8, "partitions of every topic (`topics create`; co-partitioned)", "kafka")
    replication_factor: int = _setting(1, "replicas of every topic `topics create` makes", "kafka")
    security_protocol: str = _setting("PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", "kafka")
    sasl_mechanism: str = _setting("PLAIN", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", "kafka")
    sasl_username: str | None = _setting(None, "SASL user", "kafka")
    sasl_password: str | None = _setting(None, "SASL password (better: IV_SASL_PASSWORD_FILE, a file holding it)",
                                         "kafka", secret=True)
    ssl_cafile: str | None = _setting(None, "CA certificate(s) of the brokers (PEM)", "kafka")
    ssl_certfile: str | None = _setting(None, "client certificate for mutual TLS with the brokers (PEM)", "kafka")
    ssl_keyfile: str | None = _setting(None, "its private key", "kafka")
    # Static group membership (Kafka's group.instance.id, KIP-345): a worker restarted under the same
    # id takes its partitions back at once instead of after the old member's session timeout (6 s)
    # and a rebalance of every worker.
    group_instance_id: str | None = _setting(
        None, "unique per worker (e.g. the pod's name): a restart takes its partitions back at once (unset: "
        "dynamic membership)", "worker")
    # faust's table_standby_replicas: a worker that takes over a partition has its state at once
    # instead of reading its changelog, but every worker also applies the others' changelog writes.
    standby_replicas: int = _setting(1, "warm copies of each table partition on other workers (0 halves the CPU "
                                     "of 2 workers)", "worker")
    store: str = _setting("memory://", "table store: memory:// (rebuilt from the changelog at start) or rocksdb:// "
                          "(kept in IV_DATA_DIR)", "worker")
    data_dir: str = _setting("./validator-data", "the worker's data directory (the rocksdb table store)", "worker")
    tick_seconds: float = _setting(10.0, "seconds between overdue checks (at most 60)", "worker")
    # faust fixes it at 1500 ms; a broker that does not answer a waiting fetch when data arrives
    # (Tansu) then adds up to that to every event's latency.
    fetch_max_wait_ms: int = _setting(20, "longest a fetch waits for data, 1-1500 ms", "worker")
    # Time-aligned reading (Kafka Streams' max.task.idle.ms): bounds the delay a stalled fetch adds;
    # a discharge processed before its stops is still coded right, with churn.
    align_max_wait_ms: int = _setting(10_000, "longest a partition waits for an input topic that is behind, "
                                      "0-60000 ms", "worker")
    # faust's producer_request_timeout: an output Kafka has not taken by then fails the agent, and the
    # worker exits 1 (docs/operations.md, "The Kafka cluster is unreachable").
    kafka_send_timeout_seconds: float = _setting(1200.0, "longest the worker waits for Kafka to take an output; "
                                                 "then it exits 1 and its next start reads again what it had "
                                                 "not finished", "worker")
    retention_days: int = _setting(14, "days a discharged encounter is kept for late documentation", "worker")
    policy_file: str | None = _setting(None, "coding policy TOML (default: the specification's defaults)", "worker")
    mue_file: str | None = _setting(None, "CMS MUE table(s) as published (CSV): the Outpatient Hospital Services table, "
                                    "and/or the Practitioner one, comma-separated (coding-rules §7)", "worker")
    ptp_files: str | None = _setting(None, "CMS NCCI procedure-to-procedure edit files as published (tab-delimited "
                                     "text or CSV), comma-separated (coding-rules §7)", "worker")
    drug_classes_file: str | None = _setting(None, "the hospital's drug-class table TOML, extending the shipped "
                                             "one (feeds/drugs.py)", "coding")
    timezone: str | None = _setting(None, "IANA zone of the sending facility: HL7 times sent without a UTC offset "
                                    "(unset: such times are rejected)", "coding")
    # -- listeners: loopback unless configured; TLS and authentication when given ------------
    metrics_host: str = _setting("127.0.0.1", "address of /metrics, /healthz, /readyz (0.0.0.0 in a pod)", "process")
    metrics_port: int = _setting(9108, "port of /metrics, /healthz, /readyz", "process")
    kafka_unreachable_seconds: float = _setting(30.0, "/readyz answers 503 once the Kafka cluster has not answered "
                                                "for this long", "process")
    log_level: str = _setting("info", "debug, info, warning, error or critical", "process")
    log_format: str = _setting("json", "json (one object per line) or text", "process")
    hl7_host: str = _setting("127.0.0.1", "address the MLLP listener binds (loopback: this machine only)", "hl7")
    hl7_port: int = _setting(2575, "its port", "hl7")
    hl7_tls_certfile: str | None = _setting(None, "MLLP over TLS: the listener's certificate (with the key)", "hl7")
    hl7_tls_keyfile: str | None = _setting(None, "its private key", "hl7")
    hl7_tls_client_cafile: str | None = _setting(None, "mutual TLS: only senders with a certificate signed by this "
                                                 "CA connect", "hl7")
    hl7_max_bytes: int = _setting(1_048_576, "largest HL7 message (MLLP frame); more is answered AR", "hl7")
    hl7_visit_fields: str = _setting("PV1-19,PID-18", "where the visit number (the encounter id) is read, in order: "
                                     "PV1-n or PID-n fields, comma-separated", "coding")
    fhir_host: str = _setting("127.0.0.1", "address the FHIR endpoint binds (loopback: this machine only)", "fhir")
    fhir_port: int = _setting(8080, "its port", "fhir")
    fhir_tls_certfile: str | None = _setting(None, "HTTPS: the endpoint's certificate (with the key)", "fhir")
    fhir_tls_keyfile: str | None = _setting(None, "its private key", "fhir")
    fhir_tls_client_cafile: str | None = _setting(None, "mutual TLS: only clients with a certificate signed by this "
                                                  "CA connect", "fhir")
    fhir_tokens_file: str | None = _setting(None, "bearer tokens accepted, one a line (unset: no token asked)",
                                            "fhir", secret=True)
    fhir_max_bytes: int = _setting(4_194_304, "largest request body", "fhir")
    fhir_max_entries: int = _setting(1000, "most entries of one Bundle", "fhir")
    worklist_hosts: str = _setting("", "host names the worklist answers to besides loopback's (the name nurses "
                                   "open, behind the sign-on proxy), comma-separated; others get 421", "worklist")
    # -- the billing interface (issue 24): charges out as DFT^P03 over MLLP ----------------------
    billing_host: str = _setting("127.0.0.1", "the billing system's MLLP host (its charge interface)", "billing")
    billing_port: int = _setting(2575, "its port", "billing")
    billing_tls: str = _setting("off", "on: MLLP over TLS, the billing system's certificate checked against "
                                "IV_BILLING_TLS_CAFILE, else the system's CAs (on when a CA or certificate is given)",
                                "billing")
    billing_tls_cafile: str | None = _setting(None, "CA certificate(s) of the billing system's certificate (PEM)",
                                              "billing")
    billing_tls_certfile: str | None = _setting(None, "mutual TLS: our client certificate (PEM)", "billing")
    billing_tls_keyfile: str | None = _setting(None, "its private key", "billing")
    billing_chargemaster_file: str | None = _setting(None, "the hospital's chargemaster extract (CSV, header "
                                                     "charge_code,description,cpt,revenue_code,department): "
                                                     "required by billing send", "billing")
    billing_ack_timeout_seconds: float = _setting(30.0, "longest wait for a message's ACK; then the connection is "
                                                  "closed and the same message sent again", "billing")
    billing_retry_max_seconds: float = _setting(60.0, "longest wait between reconnection attempts (the backoff "
                                                "doubles from 0.5 s up to it)", "billing")
    billing_sending_application: str = _setting("INFUSION-VALIDATOR", "MSH-3 of the DFT messages", "billing")
    billing_sending_facility: str = _setting("", "MSH-4", "billing")
    billing_receiving_application: str = _setting("BILLING", "MSH-5: the billing system", "billing")
    billing_receiving_facility: str = _setting("", "MSH-6", "billing")
    billing_processing_id: str = _setting("P", "MSH-11: P production, T test", "billing")
    billing_reversal_reference: str = _setting("FT1-31", "where a credit names the FT1-2 of the charge it reverses: "
                                               "FT1-n (an FT1 field the interface leaves empty) or none", "billing")
    feed_idle_timeout_seconds: float = _setting(30.0, "a connection silent or half-sent this long is closed", "feeds")
    feed_max_connections: int = _setting(100, "open connections per listener; more are refused", "feeds")
    # Under the senders' ACK timeouts (an interface engine's is often 30 s; `hl7 send` waits 30 s), so
    # a sender hears AE "resend" while it still waits, instead of timing out and resending blind.
    feed_store_timeout_seconds: float = _setting(10.0, "longest a message waits for Kafka to store it before the "
                                                 "sender is answered AE (HL7) or 503 (FHIR) to resend it", "feeds")
    topics: Topics = Topics()

    def __post_init__(self) -> None:
        _check(self)

    @property
    def tzinfo(self) -> tzinfo | None:
        """The facility's time zone for HL7 times without a UTC offset (None: such times are rejected)."""
        return ZoneInfo(self.timezone) if self.timezone else None

    @property
    def visit_fields(self) -> tuple[str, ...]:
        """IV_HL7_VISIT_FIELDS as the translator takes it."""
        return tuple(f.strip().upper() for f in self.hl7_visit_fields.split(",") if f.strip())

    @property
    def worklist_host_names(self) -> tuple[str, ...]:
        return tuple(h.strip().lower() for h in self.worklist_hosts.split(",") if h.strip())

    @property
    def billing_interface(self) -> Interface:
        """The DFT^P03 identities and the reversal reference (billing/dft.py)."""
        ref = self.billing_reversal_reference.strip().upper()
        return Interface(self.billing_sending_application, self.billing_sending_facility,
                         self.billing_receiving_application, self.billing_receiving_facility,
                         self.billing_processing_id, None if ref == "NONE" else int(ref[4:]))

    @property
    def policy(self) -> Policy:
        try:
            policy = load_policy(self.policy_file)
        except PolicyError as exc:
            raise ConfigError(f"IV_POLICY_FILE: {exc}") from None
        try:
            edits = load_edits(_paths(self.mue_file), _paths(self.ptp_files))
        except EditFileError as exc:
            raise ConfigError(f"IV_MUE_FILE / IV_PTP_FILES: {exc}") from None
        return replace(policy, edits=edits) if edits else policy


def _paths(value: str | None) -> list[str]:
    return [p.strip() for p in (value or "").split(",") if p.strip()]


def settings_help(*groups: str) -> str:
    """The IV_* settings of `groups`, for a command's --help: generated from Settings, so it lists
    every one (and never one that does not exist)."""
    lines = []

    def entry(name: str, text: str) -> None:
        lines.extend(textwrap.wrap(text, 100, initial_indent=f"  {name:<30} ", subsequent_indent=" " * 33))

    for group in groups:
        lines.append(f"{GROUPS[group]}:")
        for f in fields(Settings):
            if f.metadata.get("group") == group:
                secret = not f.repr
                default = "" if f.default is None or secret else f" (default {f.default})"
                entry(f"IV_{f.name.upper()}", f.metadata["help"] + default)
                if f.name == "sasl_password":
                    entry("IV_SASL_PASSWORD_FILE", "a file holding the SASL password")
        if group == "kafka":
            entry("IV_TOPIC_<NAME>", "topic names: " + ", ".join(f"IV_TOPIC_{f.name.upper()} ({f.default})"
                                                                 for f in fields(Topics)))
    return "\n".join(lines)


_TOPIC_ENV = {f"IV_TOPIC_{f.name.upper()}": f.name for f in fields(Topics)}
_INTS = {f.name for f in fields(Settings) if f.type == "int"}
_FLOATS = {f.name for f in fields(Settings) if f.type == "float"}


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
                 "fhir_tokens_file", "billing_tls_cafile", "billing_tls_certfile", "billing_tls_keyfile",
                 "billing_chargemaster_file"):
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
    _check_billing(s)
    if s.kafka_unreachable_seconds <= 0:
        raise ConfigError("IV_KAFKA_UNREACHABLE_SECONDS: give seconds above 0")
    if s.feed_idle_timeout_seconds <= 0 or s.feed_max_connections < 1:
        raise ConfigError("IV_FEED_IDLE_TIMEOUT_SECONDS: give seconds above 0; IV_FEED_MAX_CONNECTIONS: 1 or more")
    if not 1 <= s.feed_store_timeout_seconds <= 300:
        raise ConfigError("IV_FEED_STORE_TIMEOUT_SECONDS: give 1 to 300 seconds, under the senders' ACK timeout")
    if s.kafka_send_timeout_seconds < 10:
        raise ConfigError("IV_KAFKA_SEND_TIMEOUT_SECONDS: give 10 seconds or more")
    if not s.visit_fields or any(not VISIT_FIELD.match(f) for f in s.visit_fields):
        raise ConfigError(f"IV_HL7_VISIT_FIELDS={s.hl7_visit_fields!r}: give PV1-n or PID-n fields, comma-separated, "
                          "in the order they are read (default PV1-19,PID-18)")
    if s.timezone:
        check_timezone(s.timezone, "IV_TIMEZONE")
    for var, value in (("IV_MUE_FILE", s.mue_file), ("IV_PTP_FILES", s.ptp_files)):
        missing = [p for p in _paths(value) if not Path(p).is_file()]
        if missing:
            raise ConfigError(f"{var}: no such file {missing[0]} (give the files as CMS publishes them, comma-separated)")
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


def _check_billing(s: Settings) -> None:
    if not 0 < s.billing_port < 65536:
        raise ConfigError(f"IV_BILLING_PORT={s.billing_port}: give the billing system's TCP port")
    if s.billing_tls not in ("on", "off"):
        raise ConfigError(f"IV_BILLING_TLS={s.billing_tls!r}: give on or off")
    if s.billing_tls_keyfile and not s.billing_tls_certfile:
        raise ConfigError("IV_BILLING_TLS_KEYFILE goes with IV_BILLING_TLS_CERTFILE: give the client certificate too")
    if not 1 <= s.billing_ack_timeout_seconds <= 600 or not 1 <= s.billing_retry_max_seconds <= 3600:
        raise ConfigError("IV_BILLING_ACK_TIMEOUT_SECONDS: give 1 to 600 seconds; IV_BILLING_RETRY_MAX_SECONDS: "
                          "1 to 3600")
    ref = s.billing_reversal_reference.strip().upper()
    if ref != "NONE" and not re.fullmatch(r"FT1-\d{1,2}", ref):
        raise ConfigError(f"IV_BILLING_REVERSAL_REFERENCE={s.billing_reversal_reference!r}: give FT1-n (default "
                          "FT1-31) or none")
    try:
        s.billing_interface
    except ValueError as exc:
        raise ConfigError(f"IV_BILLING_REVERSAL_REFERENCE / IV_BILLING_PROCESSING_ID: {exc}") from None


def check_timezone(name: str, where: str) -> ZoneInfo:
    """The zone an IANA name means, or a ConfigError that says what to give."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}={name!r}: give an IANA time zone name, e.g. America/New_York or "
                          "Europe/Amsterdam (the facility's, for HL7 times sent without a UTC offset)") from None
