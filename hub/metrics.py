"""Prometheus metrics. Counters live in the process that counts; delivery states and dead-letter depth
are read from the database at scrape time, so any API instance reports the whole pipeline.

Processes started by `tickethub up` share PROMETHEUS_MULTIPROC_DIR, so the API's /metrics also
includes what the worker counted (apply latency, end-to-end latency, delivery outcomes).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

EVENTS = Counter("tickethub_events_total", "Inbound webhooks by outcome",
                 ["system", "outcome"])  # outcome: accepted | duplicate | rejected_<reason>
APPLY_SECONDS = Histogram("tickethub_apply_seconds", "Time to process one event into the golden record",
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
DELIVERIES = Counter("tickethub_deliveries_total", "Delivery attempts by outcome", ["outcome"])
ALERTS = Counter("tickethub_alerts_total", "Alerts raised by kind and subject (system, or state for dwell)",
                 ["kind", "subject"])
ALERT_SENDS = Counter("tickethub_alert_sends_total", "Alert send attempts by channel and outcome",
                      ["channel", "outcome"])
END_TO_END_SECONDS = Histogram(
    "tickethub_end_to_end_seconds", "From accepting an event to delivering its last write",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600))


def record_delivery(outcome: Any) -> None:
    DELIVERIES.labels(outcome.kind).inc()
    if outcome.latency_seconds is not None:
        END_TO_END_SECONDS.observe(outcome.latency_seconds)


class DeliveryStateCollector:
    """Deliveries by system and state, and the dead-letter depth, from the database."""

    def __init__(self, hub: Any):
        self.hub = hub

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_state = GaugeMetricFamily("tickethub_deliveries", "Deliveries by system and state",
                                     labels=["system", "state"])
        dead = GaugeMetricFamily("tickethub_dead_letters", "Dead-lettered deliveries awaiting replay",
                                 labels=["system"])
        with self.hub.store.unit_of_work() as uow:
            counts = uow.deliveries.counts()
        dead_by_system: dict[str, int] = {}
        for system, state, count in counts:
            by_state.add_metric([system, state], count)
            if state == "dead":
                dead_by_system[system] = count
        for system in self.hub.settings.systems:
            dead.add_metric([system], dead_by_system.get(system, 0))
        yield by_state
        yield dead


def render(hub: Any, service: Any = None) -> bytes:
    """The text exposition: this process's counters (or every tickethub process's, in multiprocess
    mode) and the delivery states read from the database."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        counters = generate_latest(registry)
    else:
        counters = generate_latest(REGISTRY)
    states = CollectorRegistry()
    states.register(DeliveryStateCollector(hub))  # type: ignore[arg-type]
    if service is not None:
        states.register(ServiceCollector(service))  # type: ignore[arg-type]
    return counters + generate_latest(states)


class ServiceCollector:
    """The service metrics over the last 24 hours (`tickethub stats`), read from the database at scrape time,
    so that every API instance reports the same figures."""

    def __init__(self, stats: Any):
        self.stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self.stats
        flow = GaugeMetricFamily("tickethub_flow_seconds", "Created in the hub -> present in every written system, "
                                 "last 24 h", labels=["quantile"])
        for quantile, value in (("0.5", s.flow_seconds.p50), ("0.95", s.flow_seconds.p95)):
            if value is not None:
                flow.add_metric([quantile], value)
        waiting = GaugeMetricFamily("tickethub_flow_waiting_tickets", "Tickets of the last 24 h some written "
                                    "system does not have yet")
        waiting.add_metric([], s.flow_waiting)
        states = GaugeMetricFamily("tickethub_state_seconds", "Time tickets stayed in a status, last 24 h",
                                   labels=["state", "quantile"])
        for state, spread in s.state_seconds.items():
            for quantile, value in (("0.5", spread.p50), ("0.95", spread.p95)):
                if value is not None:
                    states.add_metric([state, quantile], value)
        share = GaugeMetricFamily("tickethub_status_evidence_ratio", "Accepted status changes over accepted plus "
                                  "refused for missing evidence, last 24 h")
        if s.evidence_share is not None:
            share.add_metric([], s.evidence_share)
        refused = GaugeMetricFamily("tickethub_status_refused", "Status changes refused, last 24 h",
                                    labels=["reason", "system"])
        for reason, systems in s.status_refused.items():
            for system, count in systems.items():
                refused.add_metric([reason, system], count)
        dwell = GaugeMetricFamily("tickethub_dwell_breaches", "Dwell alerts and escalations raised, last 24 h",
                                  labels=["kind", "state"])
        for kind, by_state in s.dwell_breaches.items():
            for state, count in by_state.items():
                dwell.add_metric([kind, state], count)
        first = GaugeMetricFamily("tickethub_first_attempt_success_ratio", "Deliveries delivered at their first "
                                  "attempt, per system, last 24 h", labels=["system"])
        for system, ratio in s.first_attempt_success.items():
            first.add_metric([system], ratio)
        yield from (flow, waiting, states, share, refused, dwell, first)
