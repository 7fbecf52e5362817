"""Celery tasks: thin. They take IDs, call a service, and publish what comes next.

Retries of deliveries are scheduled here, by Celery (a countdown), and nowhere else.
"""

from __future__ import annotations

import time

import structlog

from hub import metrics, polling, services
from hub.celery_app import celery_app
from hub.delivery import deliver_once
from hub.pipeline import sweep_once
from hub.runtime import current_runtime

log = structlog.get_logger("tickethub.tasks")


@celery_app.task(name="tickethub.process_events", acks_late=True, reject_on_worker_lost=True)
def process_events(event_ids: list[str]) -> None:
    """Events the relay published in one message. Each is processed on its own: one that must wait (its
    system cannot be read now) is left received for the sweeper and does not hold back the others."""
    runtime = current_runtime()
    for event_id in event_ids:
        started = time.perf_counter()
        try:
            processed = services.process_event(runtime.hub, event_id, runtime.connector)
        except Exception:  # noqa: BLE001 (logged; the event stays received and the sweeper publishes it again)
            log.exception("event left for the sweeper", event_id=event_id)
            continue
        metrics.APPLY_SECONDS.observe(time.perf_counter() - started)
        runtime.publish_deliveries(processed.deliveries)


@celery_app.task(name="tickethub.process_event", acks_late=True, reject_on_worker_lost=True)
def process_event(event_id: str) -> None:
    """One event (messages published before events were batched)."""
    process_events([event_id])


@celery_app.task(name="tickethub.deliver", acks_late=True, reject_on_worker_lost=True)
def deliver(delivery_id: int) -> None:
    runtime = current_runtime()
    outcome = deliver_once(runtime.hub, delivery_id, runtime.connector)
    metrics.record_delivery(outcome)
    if outcome.kind in ("retry", "busy"):
        runtime.publish_deliveries([delivery_id], countdown=outcome.countdown)
    runtime.publish_deliveries(outcome.follow_ups)


@celery_app.task(name="tickethub.sweep", acks_late=True)
def sweep() -> None:
    runtime = current_runtime()
    events, delivery_ids = sweep_once(runtime.hub)
    runtime.publish_events(events)
    runtime.publish_deliveries(delivery_ids)


@celery_app.task(name="tickethub.poll", acks_late=True)
def poll(system: str) -> None:
    """Read what changed in a system that sends no webhooks (beat runs this per system)."""
    runtime = current_runtime()
    polling.poll_system(runtime.hub, system, runtime.connector(system), runtime.publish_events)  # type: ignore[arg-type]
