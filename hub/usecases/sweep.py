"""Use case: the sweeper. Finds work whose message was lost (a broker restart, a killed worker, a failed
publish) and returns it to be published again: events still unprocessed after `redispatch_after_seconds`,
deliveries overdue or whose lease ran out, and tickets with writes waiting but no delivery scheduled."""

from __future__ import annotations

from datetime import timedelta

import structlog

from hub.usecases.context import Hub

log = structlog.get_logger("tickethub.sweep")


def sweep_once(hub: Hub) -> tuple[list[str], list[int]]:
    now = hub.clock()
    stale = now - timedelta(seconds=hub.settings.delivery.redispatch_after_seconds)
    with hub.store.unit_of_work() as uow:
        events = uow.deliveries.take_undispatched_events(now, 1000, stale_before=stale)
        dead_before = now - timedelta(seconds=hub.settings.delivery.worker_dead_after_seconds)
        delivery_ids = uow.deliveries.reclaim(now, dead_before)  # their workers died: taken back now
        delivery_ids += [i for i in uow.deliveries.overdue(now, stale) if i not in delivery_ids]
        for ticket_id in uow.deliveries.unscheduled_tickets():
            delivery_ids.extend(uow.deliveries.schedule(ticket_id, now))
        uow.commit()
    if events or delivery_ids:
        log.info("sweep re-dispatched work", events=len(events), deliveries=len(delivery_ids))
    return events, delivery_ids
