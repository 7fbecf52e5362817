"""Per-process wiring for the API and workers: the hub, the webhook secrets, the connectors and their HTTP
clients, and publishing tasks in batches. Set once at process start by `start_runtime`."""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog

from connectors.registry import build_connector, load_credentials
from hub.bootstrap import Hub, bootstrap
from hub.config import load_settings
from hub.core.ports import Connector

log = structlog.get_logger("tickethub.runtime")
EVENT_BATCH = 20
READ_CONNECTIONS = 4  # per system, beside one for each write it may have in flight


def webhook_secrets(hub: Hub, environ: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    from hub.intake import load_webhook_secrets

    return load_webhook_secrets(hub.settings, os.environ if environ is None else environ)


@dataclass
class Runtime:
    hub: Hub
    secrets: Mapping[str, Sequence[str]]
    credentials: Mapping[str, str] = field(default_factory=dict)
    _connectors: dict[str, Connector] = field(default_factory=dict)
    _clients: dict[str, httpx.Client] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def connector(self, system: str) -> Connector:
        with self._lock:
            if system not in self._connectors:
                self._connectors[system] = build_connector(system, self.hub.settings, self.secrets,
                                                           self._client(system), self.credentials)
            return self._connectors[system]

    def _client(self, system: str) -> httpx.Client:
        """Each system its own connection pool, sized for the writes it may have in flight (plus a few for
        reads), keeping as many alive: a slow system cannot hold connections the others need, and under
        load connections are kept rather than closed and opened again (one shared pool of 200 kept 50 alive;
        the bench's receivers spent a third less CPU after this)."""
        from hub.delivery import max_in_flight

        if system not in self._clients:
            size = max_in_flight(self.hub, system) + READ_CONNECTIONS
            self._clients[system] = httpx.Client(timeout=self.hub.settings.delivery.timeout_seconds,
                                                 limits=httpx.Limits(max_connections=size,
                                                                     max_keepalive_connections=size))
        return self._clients[system]

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()

    def publish_events(self, event_ids: Iterable[str]) -> None:
        """In messages of up to EVENT_BATCH events: the broker's cost is per message, and a burst still
        spreads over the worker's threads."""
        from hub.tasks import process_events

        ids = list(event_ids)
        _publish(process_events, [(ids[i:i + EVENT_BATCH],) for i in range(0, len(ids), EVENT_BATCH)])

    def publish_deliveries(self, delivery_ids: Iterable[int], countdown: float | None = None) -> None:
        from hub.tasks import deliver

        _publish(deliver, [(delivery_id,) for delivery_id in delivery_ids], countdown)


def _publish(task, arguments: list[tuple[object, ...]], countdown: float | None = None) -> None:  # type: ignore[no-untyped-def]
    """Publish one message per argument tuple, as Celery's `apply_async` would (protocol 2, JSON), but with
    the message built here: Celery's own path (routing, signals, argument repr, the retry wrapper around
    each write) cost more than the write itself, and an event publishes five deliveries. A failed write
    falls back to `apply_async` for what is left, which reconnects and retries as configured."""
    if not arguments:
        return
    app = task.app
    queue = app.amqp.router.route({}, task.name, arguments[0], {})["queue"]
    eta = (datetime.now(UTC) + timedelta(seconds=countdown)).isoformat() if countdown else None
    with app.producer_or_acquire() as producer:
        for done, args in enumerate(arguments):
            body, options = _task_message(task.name, args, eta)
            try:
                producer.publish(body, **options, exchange="", routing_key=queue.name,
                                 declare=[queue] if done == 0 else [], retry=False, delivery_mode=2,
                                 content_type="application/json", content_encoding="utf-8")
            except Exception:  # noqa: BLE001 (the connection broke: let Celery reconnect and retry)
                log.warning("publishing directly failed; handing the rest to Celery", task=task.name,
                            left=len(arguments) - done, exc_info=True)
                for rest in arguments[done:]:
                    task.apply_async(rest, countdown=countdown)
                return


def _task_message(name: str, args: tuple[object, ...], eta: str | None) -> tuple[str, dict[str, Any]]:
    """(body, publish options) of a Celery protocol-2 task message with positional `args`."""
    task_id = str(uuid.uuid4())
    body = json.dumps([list(args), {}, _NO_CANVAS], separators=(",", ":"))
    headers: dict[str, Any] = {"lang": "py", "task": name, "id": task_id, "shadow": None, "eta": eta, "expires": None,
               "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": task_id,
               "parent_id": None, "argsrepr": repr(args)[:1024], "kwargsrepr": "{}", "origin": _ORIGIN,
               "ignore_result": True, "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {}}
    return body, {"headers": headers, "correlation_id": task_id, "reply_to": ""}


_NO_CANVAS = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
_ORIGIN = f"gen{os.getpid()}@{socket.gethostname()}"


_current: Runtime | None = None
_current_lock = threading.Lock()


def start_runtime(hub: Hub) -> Runtime:
    global _current
    from hub.celery_app import configure_celery

    configure_celery(hub.settings)
    with _current_lock:
        _current = Runtime(hub, webhook_secrets(hub), load_credentials(hub.settings))
    return _current


def current_runtime() -> Runtime:
    """The process's runtime; a worker started by plain `celery` (not `tickethub worker`) bootstraps here."""
    with _current_lock:
        runtime = _current
    if runtime is None:
        runtime = start_runtime(bootstrap(load_settings()))
    return runtime
