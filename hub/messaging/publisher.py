"""Publishing task messages to the broker, by task name, many at a time.

Celery's own `apply_async` (routing, signals, argument repr, the retry wrapper around each write) cost
more than the broker write itself, and an event publishes five deliveries; so messages are published here
on one producer, many per connection. Each message is built by Celery itself (`app.amqp.as_task_v2`, the
protocol-2 builder `send_task` uses), so a Celery upgrade that changes the wire format changes it here
too; tests/unit/test_publisher.py checks a message against one `send_task` publishes. A write that fails
hands what is left to `send_task`, which reconnects and retries as configured. Tasks are named, not
imported: the tasks module (an entrypoint) sits above everything that publishes.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from celery import Celery

log = structlog.get_logger("tickethub.publisher")

PROCESS_EVENTS = "tickethub.process_events"
DELIVER = "tickethub.deliver"  # one delivery (still consumed: messages queued before batches existed)
DELIVER_BATCH = "tickethub.deliver_batch"  # several deliveries, sent together from the worker's event loop
SWEEP = "tickethub.sweep"
POLL = "tickethub.poll"
RECONCILE = "tickethub.reconcile"
RECONCILE_READ = "tickethub.reconcile_read"
RECONCILE_COMPARE = "tickethub.reconcile_compare"
DWELL = "tickethub.dwell"
ALERT_SEND = "tickethub.alert_send"


def publish(app: Celery, task_name: str, arguments: list[tuple[object, ...]], countdown: float | None = None) -> None:
    """Publish one message of `task_name` per argument tuple, on the queue its route names."""
    if not arguments:
        return
    queue = app.amqp.router.route({}, task_name, arguments[0], {})["queue"]
    eta = (datetime.now(UTC) + timedelta(seconds=countdown)).isoformat() if countdown else None
    with app.producer_or_acquire() as producer:
        for done, args in enumerate(arguments):
            message = task_message(app, task_name, args, eta)
            try:
                producer.publish(message.body, headers=message.headers, **message.properties, exchange="",
                                 routing_key=queue.name, declare=[queue] if done == 0 else [], retry=False,
                                 delivery_mode=2, serializer="json")
            except Exception:  # noqa: BLE001 (the connection broke: let Celery reconnect and retry)
                log.warning("publishing directly failed; handing the rest to Celery", task=task_name,
                            left=len(arguments) - done, exc_info=True)
                for rest in arguments[done:]:
                    app.send_task(task_name, rest, countdown=countdown)
                return


def task_message(app: Celery, name: str, args: tuple[object, ...], eta: str | None) -> Any:
    """A Celery protocol-2 task message (headers, properties, body) for `name` with positional `args`, built by
    Celery's own builder, as `send_task` would (the argument repr given, so that none is computed twice)."""
    task_id = str(uuid.uuid4())
    return app.amqp.as_task_v2(task_id, name, args=list(args), kwargs={}, eta=eta, argsrepr=repr(args)[:1024],
                               kwargsrepr="{}", origin=_origin(), ignore_result=None)


_ORIGIN: tuple[int, str] | None = None


def _origin() -> str:
    """`gen<pid>@<host>`, as Celery names a publisher; worked out again in a forked child."""
    global _ORIGIN
    if _ORIGIN is None or _ORIGIN[0] != os.getpid():
        _ORIGIN = (os.getpid(), f"gen{os.getpid()}@{socket.gethostname()}")
    return _ORIGIN[1]
