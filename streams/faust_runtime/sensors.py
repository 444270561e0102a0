"""faust's own Prometheus sensors, trimmed to what the rules and dashboard use."""
from __future__ import annotations

from faust.sensors.prometheus import PrometheusMonitor


class FaustSensors(PrometheusMonitor):
    """faust's own Prometheus sensors (faust_*) without the per-message and per-table-access ones.

    Those ran for every record four times (received, into the stream, out of it, acked) and for
    every table read and write: about a sixth of the worker's CPU on a backlog (py-spy, 2026-11-29),
    to count what iv_events_consumed_total already counts. Kept: end offsets and committed offsets
    (consumer lag), commits, sends and their errors, rebalances: what deploy/prometheus/rules.yaml
    and docs/operations.md use."""

    def on_message_in(self, tp, offset, message) -> None:
        pass

    def on_stream_event_in(self, tp, offset, stream, event):
        return None

    def on_stream_event_out(self, tp, offset, stream, event, state=None) -> None:
        pass

    def on_message_out(self, tp, offset, message) -> None:
        pass

    def on_table_get(self, table, key) -> None:
        pass

    def on_table_set(self, table, key, value) -> None:
        pass

    def on_table_del(self, table, key) -> None:
        pass
