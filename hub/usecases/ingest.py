"""Use case: accept an inbound event into the inbox. Accepting only stores, so "accepted" means durably
stored; webhooks stored at the same moment share one transaction (`Store.together`). Processing is
`hub.usecases.process`."""

from __future__ import annotations

from typing import Any

import structlog

from hub import metrics
from hub.core.errors import UnknownSystem
from hub.usecases.context import Hub

log = structlog.get_logger("tickethub.ingest")


def accept_event(hub: Hub, system: str, external_id: str, payload: Any) -> tuple[str, bool]:
    """Store an inbound event durably; (event_id, duplicate)."""
    if system not in hub.settings.systems:
        raise UnknownSystem(f"no system `{system}` is configured")
    dispatched = bool(hub.on_accept)
    event_id, duplicate = hub.store.together(
        lambda uow: uow.inbox.accept(system, external_id, payload, hub.clock(), dispatched=dispatched),
        anywhere=True)
    metrics.EVENTS.labels(system, "duplicate" if duplicate else "accepted").inc()
    log.info("event accepted", system=system, event_id=event_id, duplicate=duplicate)
    if not duplicate:
        for listener in hub.on_accept:
            listener(event_id)
    return event_id, duplicate
