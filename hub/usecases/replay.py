"""Use case: replay a dead-lettered delivery (its fields that are still current go out again)."""

from __future__ import annotations

import structlog

from hub.usecases.context import Hub

log = structlog.get_logger("tickethub.replay")


def replay_delivery(hub: Hub, delivery_id: int) -> list[int]:
    """Replay one dead letter: its still-current fields go back to the outbox and a delivery is scheduled.
    Returns the new delivery IDs to publish; LookupError if it is not dead-lettered."""
    with hub.store.unit_of_work() as uow:
        created, skipped = uow.deliveries.replay(delivery_id, hub.clock())
        uow.commit()
    if skipped:
        log.info("replay skipped superseded fields", delivery_id=delivery_id, fields=skipped)
    return created
