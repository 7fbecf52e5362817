"""The one Celery app. `configure_celery(settings)` points it at the broker; nothing happens at import.

Without `broker_url` the hub uses an embedded broker that needs no server: kombu's filesystem
transport, made safe for several processes (`hub.messaging.embedded_broker`), under `data_dir/broker`, polled every
10 ms when idle (at 50 ms the wait alone took a tenth of the 50 ms intake-to-dispatch budget on average,
all of it at the 99th percentile).
Teams set `TICKETHUB_BROKER_URL` to `amqp://…` or `redis://…`.
The database, not the broker, is the record of work: an event or delivery whose message a broker
loses is published again by the sweeper, so a broker restart loses nothing accepted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.schedules import crontab

from hub.config import Settings
from hub.messaging import embedded_broker

celery_app = Celery("tickethub", include=["hub.tasks"])

EMBEDDED_POLL_SECONDS = 0.01  # the embedded broker's queues are looked at this often when they were found empty
QUEUES = ("events", "deliveries")  # logical names; the broker's are prefixed with [hub] queue_prefix


def queue_name(settings: Settings, logical: str) -> str:
    return f"{settings.hub.queue_prefix}{logical}"


def broker_settings(settings: Settings) -> dict[str, Any]:
    url = settings.hub.broker_url
    if not url:
        folder = (settings.hub.data_dir / "broker").resolve()
        folder.mkdir(parents=True, exist_ok=True)
        return {"broker_url": f"{embedded_broker.ALIAS}://", "broker_transport_options": {
            "data_folder_in": str(folder), "data_folder_out": str(folder), "control_folder": str(folder / "control"),
            "polling_interval": EMBEDDED_POLL_SECONDS}}
    options: dict[str, Any] = {}
    if url.startswith(("redis://", "rediss://")):
        # a countdown (retry) longer than the visibility timeout would be delivered twice
        options["visibility_timeout"] = int(settings.delivery.backoff_cap_seconds * 2 + 600)
    return {"broker_url": url, "broker_transport_options": options}


def poll_schedule(settings: Settings) -> dict[str, Any]:
    """One beat entry per polled system; a poll not started within its interval is dropped (the next
    one reads the same changes)."""
    return {f"poll-{name}": {"task": "tickethub.poll", "schedule": system.poll_interval_seconds, "args": [name],
                             "options": {"expires": system.poll_interval_seconds}}
            for name, system in settings.systems.items() if system.polled}


def reconcile_schedule(settings: Settings) -> dict[str, Any]:
    """The nightly reconciliation's beat entry (none when [reconcile] enabled = false)."""
    if not settings.reconcile.enabled:
        return {}
    minute, hour, day_of_month, month, day_of_week = settings.reconcile.schedule.split()
    return {"reconcile": {"task": "tickethub.reconcile", "schedule": crontab(
        minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month, day_of_week=day_of_week)}}


def schedule_timezone(settings: Settings) -> str:
    """The zone the reconciliation's cron is read in: the configured one, else the machine's own."""
    if settings.reconcile.timezone:
        return settings.reconcile.timezone
    if os.environ.get("TZ"):
        return os.environ["TZ"].lstrip(":")
    local = Path("/etc/localtime")
    if local.is_symlink() and "zoneinfo/" in str(local.resolve()):
        return str(local.resolve()).split("zoneinfo/", 1)[1]
    return "UTC"


def configure_celery(settings: Settings) -> Celery:
    events, deliveries = (queue_name(settings, q) for q in QUEUES)
    celery_app.conf.update(
        **broker_settings(settings),
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=events,
        task_routes={
            "tickethub.process_events": {"queue": events},
            "tickethub.sweep": {"queue": events},
            "tickethub.poll": {"queue": events},
            "tickethub.deliver": {"queue": deliveries},
            "tickethub.deliver_batch": {"queue": deliveries},
            # a run takes minutes: on the deliveries workers' many threads, never holding up events
            "tickethub.reconcile": {"queue": deliveries},
            "tickethub.reconcile_read": {"queue": deliveries},
            "tickethub.reconcile_compare": {"queue": deliveries},
            # alerts go out over HTTP like deliveries, and never hold up an event
            "tickethub.dwell": {"queue": deliveries},
            "tickethub.alert_send": {"queue": deliveries},
        },
        timezone=schedule_timezone(settings),
        beat_schedule={
            "sweep": {"task": "tickethub.sweep", "schedule": settings.delivery.sweep_interval_seconds},
            **poll_schedule(settings),
            "dwell": {"task": "tickethub.dwell", "schedule": settings.workflow.dwell_check_seconds},
            **reconcile_schedule(settings),
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    return celery_app
