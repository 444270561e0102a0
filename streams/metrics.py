"""Prometheus metrics of the worker, on a dedicated registry.

Labels have bounded cardinality: topic names (configuration), event types, CPT codes, alert codes,
dead-letter categories. Never an encounter id or anything else about a patient.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from streams.health import serve
from streams.reachability import reachable_gauge

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter("iv_events_consumed_total", "Input events consumed", ["topic", "type"], registry=r)
        self.charges = Counter("iv_charges_total", "Charge lines emitted", ["cpt", "action"], registry=r)
        self.charge_units = Counter("iv_charge_units_total", "Charge units emitted (reversals negative "
                                    "are counted under action=reverse)", ["cpt", "action"], registry=r)
        self.alerts = Counter("iv_alerts_total", "Alerts emitted", ["code", "severity", "state"], registry=r)
        self.dead_letters = Counter("iv_dead_letters_total", "Input rejected to the dead-letter topic",
                                    ["reason"], registry=r)
        self.duplicates = Counter("iv_duplicate_events_total", "Events ignored as repeats of an event_id",
                                  registry=r)
        self.open_encounters = Gauge("iv_open_encounters", "Encounters not yet discharged, on this worker",
                                     registry=r)
        self.open_administrations = Gauge("iv_open_administrations",
                                          "Administrations started and not stopped, on this worker", registry=r)
        self.discharge_to_charge = Histogram(
            "iv_discharge_to_charge_seconds", "From the discharge message's broker timestamp to its charges "
            "being sent", buckets=LATENCY_BUCKETS, registry=r)
        self.ticks = Counter("iv_clock_ticks_total", "Clock ticks sent by the timer to check overdue "
                             "infusions and retention", registry=r)
        self.repartitioned = Counter("iv_repartitioned_total", "Input records found on a partition that does "
                                     "not own their key (the producer does not partition by murmur2), "
                                     "forwarded to their owner", ["topic"], registry=r)
        self.held = Gauge("iv_held_records", "Input records held for time-aligned reading", registry=r)
        self.forwarding = Gauge("iv_forwarding_mode", "1 while a producer mis-partitions (within 10 minutes of a "
                                "forward): records wait for every partition's watermark", registry=r)
        self.alignment_wait = Counter("iv_alignment_wait_seconds_total", "Seconds partitions waited for an "
                                      "input topic that was behind before processing", registry=r)
        self.late = Counter("iv_late_records_total", "Input records that reached the worker more than a second "
                            "(by broker timestamp) after records of their partition it had already processed: "
                            "processed out of time order", ["topic"], registry=r)
        self.alignment_forced = Counter("iv_alignment_forced_total", "Records processed after the longest wait "
                                        "(IV_ALIGN_MAX_WAIT_MS) although an input was still behind",
                                        ["reason"], registry=r)
        self.reads_again = Counter("iv_reads_again_total", "Partitions read again from a record the agent "
                                   "never received (lost between the fetch and the agent, or passed by the consumer)", ["reason"], registry=r)

        self.kafka_reachable = reachable_gauge(r)

        self._children: dict = {}  # (metric, labels) -> child: labels() costs ~5% of a backlog's CPU

    def child(self, metric, *labels):
        """`metric.labels(*labels)`, remembered (labels are bounded: see above)."""
        try:
            return self._children[metric, labels]
        except KeyError:
            c = self._children[metric, labels] = metric.labels(*labels)
            return c

    def count_output(self, rec: dict) -> None:
        kind, child = rec["kind"], self.child
        if kind == "charge":
            child(self.charges, rec["cpt"], rec["action"]).inc()
            child(self.charge_units, rec["cpt"], rec["action"]).inc(rec["units"])
        elif kind == "alert":
            child(self.alerts, rec["code"], rec["severity"], rec["state"]).inc()
        else:
            child(self.dead_letters, rec["category"]).inc()

    def serve(self, port: int, addr: str = "127.0.0.1", health=None):
        """Expose /metrics (and /healthz, /readyz given a streams.health.Health) on `port`;
        returns the server so the caller can shut it down."""
        return serve(self.registry, health, port, addr)
