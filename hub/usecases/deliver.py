"""Deliver one delivery: claim it (one transaction), write through the connector (no transaction open),
record the outcome (one transaction; both are shared with other threads' claims and outcomes, see
`Store.together`). Returns what the caller (a Celery task) must schedule next.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from random import Random
from typing import Any

import structlog

from hub.core.errors import TickethubError
from hub.core.ports import Connector, WriteRequest, WriteResult
from hub.core.retry import RetryPolicy, classify
from hub.store.deliveries import Claim
from hub.usecases.alerting import channels_for
from hub.usecases.context import Hub

log = structlog.get_logger("tickethub.delivery")
_JITTER = Random()  # one per process: seeding one per delivery read the OS entropy source every time


@dataclass(frozen=True)
class DeliverOutcome:
    kind: str  # delivered | retry | dead | busy | not_due | gone | in_flight | superseded | late
    countdown: float | None = None  # for retry/busy: when to try again
    follow_ups: list[int] = field(default_factory=list)  # deliveries to publish now
    latency_seconds: float | None = None  # acceptance of the oldest carried event -> delivered


def retry_policy(hub: Hub) -> RetryPolicy:
    d = hub.settings.delivery
    return RetryPolicy(d.backoff_base_seconds, d.backoff_cap_seconds, d.retry_horizon_seconds)


def max_in_flight(hub: Hub, system: str) -> int:
    own = hub.settings.systems[system].max_in_flight if system in hub.settings.systems else None
    return own or hub.settings.delivery.max_in_flight_per_system


def deliver_once(hub: Hub, delivery_id: int, connector_for: Callable[[str], Connector],
                 rng: Random | None = None, worker: str | None = None) -> DeliverOutcome:
    """`worker`: the claiming process's identity (`hub.usecases.liveness`), so that its claims are taken back
    soon after it dies; without one a claim waits out its lease."""
    rng = rng or _JITTER
    started = hub.clock()
    lease = timedelta(seconds=hub.settings.delivery.lease_seconds)
    claim = hub.store.together(
        lambda uow: uow.deliveries.claim(delivery_id, started, lease, lambda system: max_in_flight(hub, system),
                                         worker),
        anywhere=True)
    if isinstance(claim, str):
        countdown = 0.5 + rng.random() if claim == "busy" else None
        return DeliverOutcome(claim, countdown)

    bound = log.bind(ticket_id=claim.ticket_id, system=claim.system, delivery_id=delivery_id, attempt=claim.attempt)
    try:
        connector = connector_for(claim.system)
    except TickethubError as exc:
        result = WriteResult(None, error=str(exc), permanent=True)
    else:
        result = connector.write(WriteRequest(
            delivery_id, claim.ticket_id, claim.system, claim.local_id, claim.system_fields(), claim.attempt))
    return _finish(hub, claim, result, started, rng, bound)


def _finish(hub: Hub, claim: Claim, result: WriteResult, started: datetime, rng: Random,
            bound: Any) -> DeliverOutcome:
    now = hub.clock()
    verdict = classify(result.status_code, result.permanent)
    policy = retry_policy(hub)
    wait = None
    if verdict == "retry":
        wait = policy.delay(claim.attempt, rng, result.retry_after)
        if policy.gives_up((now - claim.created_at).total_seconds(), wait):
            verdict = "dead"
            result = replace(result, error=f"gave up after {claim.attempt} attempts: {result.error}")
    next_at = now + timedelta(seconds=wait) if wait is not None else None

    def record(uow: Any) -> tuple[str, float | None, list[int]]:
        if not uow.deliveries.finish(claim, verdict, now, result.status_code, result.error, next_at):
            uow.deliveries.record_attempt(claim, started, now, "late", result.status_code, result.error,
                                          result.retry_after)
            return "late", None, []
        uow.deliveries.record_attempt(claim, started, now, verdict, result.status_code, result.error,
                                      result.retry_after)
        latency = None
        if verdict == "delivered":
            uow.tickets.record_delivered(claim.ticket_id, claim.system,
                                         {name: f["value"] for name, f in claim.fields.items()}, now)
            if result.local_id and result.local_id != claim.local_id:
                # a new record, or one the write moved the ticket to (a courier's new waybill): linked too,
                # so the system's notices about it find the ticket; the old link stays for its late notices
                uow.tickets.link(claim.ticket_id, claim.system, result.local_id, now)
            accepted = claim.first_accepted_at
            latency = (now - accepted).total_seconds() if accepted else None
        if verdict == "dead":  # an operator should look (and replay once the system is fixed)
            uow.alerts.raise_alert(f"delivery_dead:{claim.delivery_id}", "delivery_dead", now,
                                   channels_for(hub, "delivery_dead"), ticket_id=claim.ticket_id, system=claim.system,
                                   facts={"attempts": claim.attempt, "error": (result.error or "")[:500],
                                          "delivery_id": claim.delivery_id})
        follow_ups = [] if verdict == "retry" else uow.deliveries.schedule(claim.ticket_id, now, [claim.system])
        return verdict, latency, follow_ups

    recorded, latency, follow_ups = hub.store.together(record, anywhere=True)
    if recorded == "late":
        bound.warning("delivery finished after its lease ran out; another attempt owns it")
        return DeliverOutcome("late")
    if verdict == "dead":
        bound.warning("delivery dead-lettered", status_code=result.status_code, error=result.error)
    else:
        bound.info(f"delivery {verdict}", status_code=result.status_code, countdown=wait)
    return DeliverOutcome(verdict, wait, follow_ups, latency)


