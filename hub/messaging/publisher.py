"""Publishing task messages to the broker, by task name, many at a time.

Celery's own `apply_async` (routing, signals, argument repr, the retry wrapper around each write) cost
more than the broker write itself, and an event publishes five deliveries; so the message is built here,
as Celery's protocol 2 in JSON would be. A write that fails hands what is left to `send_task`, which
reconnects and retries as configured. Tasks are named, not imported: the tasks module (an entrypoint)
sits above everything that publishes.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from celery import Celery

log = structlog.get_logger("tickethub.publisher")

PROCESS_EVENTS = "tickethub.process_events"
DELIVER = "tickethub.deliver"
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
            body, options = _task_message(task_name, args, eta)
            try:
                producer.publish(body, **options, exchange="", routing_key=queue.name,
                                 declare=[queue] if done == 0 else [], retry=False, delivery_mode=2,
                                 content_type="application/json", content_encoding="utf-8")
            except Exception:  # noqa: BLE001 (the connection broke: let Celery reconnect and retry)
                log.warning("publishing directly failed; handing the rest to Celery", task=task_name,
                            left=len(arguments) - done, exc_info=True)
                for rest in arguments[done:]:
                    app.send_task(task_name, rest, countdown=countdown)
                return


def _task_message(name: str, args: tuple[object, ...], eta: str | None) -> tuple[str, dict[str, Any]]:
    """(body, publish options) of a Celery protocol-2 task message with positional `args`."""
    task_id = str(uuid.uuid4())
    body = json.dumps([list(args), {}, _NO_CANVAS], separators=(",", ":"))
    headers: dict[str, Any] = {"lang": "py", "task": name, "id": task_id, "shadow": None, "eta": eta, "expires": None,
               "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": task_id,
               "parent_id": None, "argsrepr": repr(args)[:1024], "kwargsrepr": "{}", "origin": _origin(),
               "ignore_result": True, "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {}}
    return body, {"headers": headers, "correlation_id": task_id, "reply_to": ""}


_NO_CANVAS = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
_ORIGIN: tuple[int, str] | None = None


def _origin() -> str:
    """`gen<pid>@<host>`, as Celery names a publisher; worked out again in a forked child."""
    global _ORIGIN
    if _ORIGIN is None or _ORIGIN[0] != os.getpid():
        _ORIGIN = (os.getpid(), f"gen{os.getpid()}@{socket.gethostname()}")
    return _ORIGIN[1]
