"""Entrypoint: the Celery tasks. Thin: they take IDs, call a use case, and publish what comes next.

Retries of deliveries are scheduled here, by Celery (a countdown), and nowhere else.
"""

from __future__ import annotations

import time

import structlog

from hub import metrics
from hub.bootstrap import current_runtime
from hub.messaging import publisher
from hub.messaging.celery_app import celery_app
from hub.store.reconcile import RunInProgress
from hub.usecases.alerting import due_sends, raise_dwell_breaches, send_one
from hub.usecases.deliver import deliver_many
from hub.usecases.poll import poll_system
from hub.usecases.process import process_events as process_events_now
from hub.usecases.reconcile import (
    ReconcileRequest,
    compare_part,
    finish_run,
    full_tonight,
    plan_compare,
    read_part,
    report_dir,
    start_run,
    write_reports,
)
from hub.usecases.sweep import sweep_once

log = structlog.get_logger("tickethub.tasks")


@celery_app.task(name=publisher.PROCESS_EVENTS, acks_late=True, reject_on_worker_lost=True)
def process_events(event_ids: list[str]) -> None:
    """Events the relay published in one message, processed together (see `hub.usecases.process.process_events`); one
    that cannot be processed now (its system cannot be read, say) stays received for the sweeper and does
    not hold back the others. Their deliveries are published at once, together."""
    runtime = current_runtime()
    started = time.perf_counter()
    results = process_events_now(runtime.hub, event_ids, runtime.connector)
    each = (time.perf_counter() - started) / max(len(event_ids), 1)  # processed together: each its share
    deliveries: list[int] = []
    for event_id, result in zip(event_ids, results, strict=True):
        if isinstance(result, Exception):
            log.error("event left for the sweeper", event_id=event_id, exc_info=result)
            continue
        metrics.APPLY_SECONDS.observe(each)
        deliveries.extend(result.deliveries)
    runtime.publish_deliveries(deliveries)


@celery_app.task(name=publisher.DELIVER_BATCH, acks_late=True, reject_on_worker_lost=True)
def deliver_batch(delivery_ids: list[int]) -> None:
    """Deliveries published together: claimed, sent (HTTP writes all at once on the worker's event loop) and
    recorded together, each with its own outcome; retries are scheduled by Celery (a countdown each)."""
    runtime = current_runtime()
    outcomes = deliver_many(runtime.hub, delivery_ids, runtime.connector, worker=runtime.identity.worker_id,
                            sender=runtime.sender)
    follow_ups: list[int] = []
    busy: list[tuple[int, float]] = []
    for delivery_id, outcome in zip(delivery_ids, outcomes, strict=True):
        metrics.record_delivery(outcome)
        if outcome.kind == "retry":
            runtime.publish_deliveries([delivery_id], countdown=outcome.countdown)
        elif outcome.kind == "busy":
            busy.append((delivery_id, outcome.countdown or 0.0))
        follow_ups.extend(outcome.follow_ups)
    if busy:  # tried again together, in one message: each message with a countdown costs the worker a reservation
        runtime.publish_deliveries([delivery_id for delivery_id, _ in busy], countdown=min(c for _, c in busy))
    runtime.publish_deliveries(follow_ups)


@celery_app.task(name=publisher.DELIVER, acks_late=True, reject_on_worker_lost=True)
def deliver(delivery_id: int) -> None:
    """One delivery: a message published before deliveries were batched."""
    deliver_batch([delivery_id])


@celery_app.task(name=publisher.SWEEP, acks_late=True)
def sweep() -> None:
    runtime = current_runtime()
    events, delivery_ids = sweep_once(runtime.hub)
    runtime.publish_events(events)
    runtime.publish_deliveries(delivery_ids)
    runtime.publish_alert_sends(due_sends(runtime.hub))


@celery_app.task(name=publisher.DWELL, acks_late=True)
def dwell() -> None:
    """Tickets past their state's dwell limit (beat): one alert per breach, one escalation; sent at once."""
    runtime = current_runtime()
    if raise_dwell_breaches(runtime.hub, runtime.hub.clock()):
        runtime.publish_alert_sends(due_sends(runtime.hub))


@celery_app.task(name=publisher.ALERT_SEND, acks_late=True, reject_on_worker_lost=True)
def alert_send(alert_id: int, channel: str) -> None:
    """One alert to one channel; a retry is scheduled by Celery (a countdown), never slept here."""
    runtime = current_runtime()
    outcome = send_one(runtime.hub, alert_id, channel, runtime.alert_client)
    if outcome.kind == "retry":
        runtime.publish_alert_sends([(alert_id, channel)], countdown=outcome.countdown)


@celery_app.task(name=publisher.POLL, acks_late=True)
def poll(system: str) -> None:
    """Read what changed in a system that sends no webhooks (beat runs this per system)."""
    runtime = current_runtime()
    poll_system(runtime.hub, system, runtime.connector(system), runtime.publish_events)  # type: ignore[arg-type]


@celery_app.task(name=publisher.RECONCILE, acks_late=True)
def reconcile() -> None:
    """The scheduled reconciliation (beat): full on [reconcile] full_on, incremental otherwise, its systems read
    and its tickets compared in parts spread over the workers."""
    runtime = current_runtime()
    try:
        run_id, systems = start_run(runtime.hub, ReconcileRequest(full=full_tonight(runtime.hub)))
    except RunInProgress as exc:
        log.warning("scheduled reconciliation skipped", reason=str(exc))
        return
    runtime.publish_reconcile_parts(run_id, publisher.RECONCILE_READ, systems)


@celery_app.task(name=publisher.RECONCILE_READ, acks_late=True, reject_on_worker_lost=True)
def reconcile_read(run_id: int, system: str) -> None:
    """Read one system into the run's snapshot; the last reader plans the comparison."""
    runtime = current_runtime()
    if read_part(runtime.hub, runtime.connector, run_id, system):
        parts = plan_compare(runtime.hub, run_id)
        if parts:
            runtime.publish_reconcile_parts(run_id, publisher.RECONCILE_COMPARE, parts)
        else:
            write_reports(finish_run(runtime.hub, run_id), report_dir(runtime.hub))


@celery_app.task(name=publisher.RECONCILE_COMPARE, acks_late=True, reject_on_worker_lost=True)
def reconcile_compare(run_id: int, part: str) -> None:
    """Compare one chunk of tickets and act on it (once, however often the message comes); the last one
    finishes the run and writes its reports."""
    runtime = current_runtime()
    deliveries, last = compare_part(runtime.hub, run_id, part)
    runtime.publish_deliveries(deliveries)
    if last:
        write_reports(finish_run(runtime.hub, run_id), report_dir(runtime.hub))
