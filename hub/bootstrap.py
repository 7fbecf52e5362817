"""The one composition root: configuration in, a wired hub out.

`bootstrap(settings)` loads and checks the mappings and opens (not migrates) the database;
`start_runtime(hub)` adds what a serving process needs: the webhook secrets and credentials (read once
from the environment), a connector per system with its own HTTP pool, and the Celery app pointed at the
broker. Entrypoints (HTTP, CLI, Celery tasks) call these; nothing below imports this module.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from sqlalchemy import Engine

from hub.config import Settings, load_settings
from hub.core.ports import Connector
from hub.mapping_files import load_mappings
from hub.messaging import publisher
from hub.messaging.celery_app import celery_app, configure_celery
from hub.outbound import AsyncSender
from hub.plugins import build_connector, connector_schemas, load_credentials, load_webhook_secrets
from hub.store.engine import make_engine
from hub.store.unit_of_work import Store
from hub.usecases.context import Hub, utc_now
from hub.usecases.deliver import max_in_flight
from hub.usecases.liveness import WorkerIdentity, this_process
from hub.workflow_files import load_workflow

__all__ = ["Hub", "Runtime", "bootstrap", "current_runtime", "start_runtime", "utc_now", "webhook_secrets"]

# events per task message: on PostgreSQL one transaction's worth (process.SET_MAX); draining a backlog of 8,000 new
# tickets, one events worker did 2,419-2,561 events/s with 32 (64: 2,332-2,393) and 1,969-2,175 with 20, the
# message's fixed cost (Celery, a transaction's round trips, publishing its deliveries) spread over more events
EVENT_BATCH = 32
DELIVERY_BATCH = 32  # deliveries per task message: the fan-out of a message's events travels (and is sent) together
READ_CONNECTIONS = 4  # per system, beside one for each write it may have in flight


def bootstrap(settings: Settings, *, engine: Engine | None = None,
              clock: Callable[[], datetime] = utc_now) -> Hub:
    """Load and check the mappings, and open (not migrate) the database."""
    mapping_set = load_mappings(settings.hub.mappings_dir, settings.mapping_names(), connector_schemas(settings))
    path = settings.workflow_path()
    workflow = None if path is None else load_workflow(path, list(settings.systems), settings.hub.clock_skew_seconds)
    return Hub(settings, mapping_set, Store(engine or make_engine(
        settings.hub.database_url, pool_size=settings.hub.database_pool_size,
        max_overflow=settings.hub.database_max_overflow)), clock, workflow=workflow)


def webhook_secrets(hub: Hub, environ: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    return load_webhook_secrets(hub.settings, os.environ if environ is None else environ)


@dataclass
class Runtime:
    """Per process: the hub, the webhook secrets, the connectors and their HTTP clients, and publishing."""

    hub: Hub
    secrets: Mapping[str, Sequence[str]]
    credentials: Mapping[str, str] = field(default_factory=dict)
    _connectors: dict[str, Connector] = field(default_factory=dict)
    _clients: dict[str, httpx.Client] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    identity: WorkerIdentity = field(default_factory=this_process)  # written on the deliveries it claims
    _sender: AsyncSender | None = None

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
            if self._sender is not None:
                self._sender.close()

    def publish_events(self, event_ids: Iterable[str]) -> None:
        """In messages of up to EVENT_BATCH events: the broker's cost is per message, and a burst still
        spreads over the worker's threads."""
        ids = list(event_ids)
        publisher.publish(celery_app, publisher.PROCESS_EVENTS,
                          [(ids[i:i + EVENT_BATCH],) for i in range(0, len(ids), EVENT_BATCH)])

    def publish_reconcile_parts(self, run_id: int, task_name: str, parts: Iterable[str]) -> None:
        """A reconciliation run's parts (`publisher.RECONCILE_READ` systems, `RECONCILE_COMPARE` chunks)."""
        publisher.publish(celery_app, task_name, [(run_id, part) for part in parts])

    def publish_alert_sends(self, sends: Iterable[tuple[int, str]], countdown: float | None = None) -> None:
        publisher.publish(celery_app, publisher.ALERT_SEND, [(alert_id, channel) for alert_id, channel in sends],
                          countdown)

    @property
    def alert_client(self) -> httpx.Client:
        """One HTTP pool for every alert channel (robots answer fast; a slow one times out)."""
        with self._lock:
            if "(alerts)" not in self._clients:
                self._clients["(alerts)"] = httpx.Client(timeout=self.hub.settings.alerts.timeout_seconds)
            return self._clients["(alerts)"]

    def publish_deliveries(self, delivery_ids: Iterable[int], countdown: float | None = None) -> None:
        """In messages of up to DELIVERY_BATCH deliveries: a task claims, sends and records them together."""
        ids = list(delivery_ids)
        publisher.publish(celery_app, publisher.DELIVER_BATCH,
                          [(ids[i:i + DELIVERY_BATCH],) for i in range(0, len(ids), DELIVERY_BATCH)], countdown)

    @property
    def sender(self) -> AsyncSender:
        """The process's event loop for HTTP writes (started on first use)."""
        with self._lock:
            if self._sender is None:
                self._sender = AsyncSender(self.hub.settings.delivery.timeout_seconds)
            return self._sender


_current: Runtime | None = None
_current_lock = threading.Lock()


def start_runtime(hub: Hub) -> Runtime:
    global _current
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
