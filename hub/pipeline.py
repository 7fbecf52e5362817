"""Moving work from the database to the broker: the relay (new events, at once, in batches) and the
sweeper (anything whose message was lost: a broker restart, a killed worker, a failed publish)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import structlog
from sqlalchemy import update

from hub.bootstrap import Hub
from hub.store.tables import inbox_events

log = structlog.get_logger("tickethub.pipeline")


def sweep_once(hub: Hub) -> tuple[list[str], list[int]]:
    now = hub.clock()
    stale = now - timedelta(seconds=hub.settings.delivery.redispatch_after_seconds)
    with hub.store.unit_of_work() as uow:
        events = uow.deliveries.take_undispatched_events(now, 1000, stale_before=stale)
        delivery_ids = uow.deliveries.overdue(now, stale)
        for ticket_id in uow.deliveries.unscheduled_tickets():
            delivery_ids.extend(uow.deliveries.schedule(ticket_id, now))
        uow.commit()
    if events or delivery_ids:
        log.info("sweep re-dispatched work", events=len(events), deliveries=len(delivery_ids))
    return events, delivery_ids


class Relay(threading.Thread):
    """Publishes newly accepted events in batches; woken at once by intake, and on a timer anyway."""

    def __init__(self, hub: Hub, publish: Callable[[list[str]], None], interval: float, batch: int = 500):
        super().__init__(name="tickethub-relay", daemon=True)
        self.hub, self.publish, self.interval, self.batch = hub, publish, interval, batch
        self.wake = threading.Event()
        self.stopped = threading.Event()

    def notify(self, _event_id: str | None = None) -> None:
        self.wake.set()

    def stop(self) -> None:
        self.stopped.set()
        self.wake.set()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.wake.wait(self.interval)
            self.wake.clear()
            try:
                while self.relay_once() == self.batch:
                    pass
            except Exception:  # keep relaying; the sweeper covers whatever this round missed
                log.exception("relay round failed")

    def relay_once(self) -> int:
        with self.hub.store.unit_of_work() as uow:
            ids = uow.deliveries.take_undispatched_events(self.hub.clock(), self.batch)
            uow.commit()
        if not ids:
            return 0
        try:
            self.publish(ids)
        except Exception:
            with self.hub.store.unit_of_work() as uow:  # not published after all: leave them for the next round
                uow.conn.execute(update(inbox_events).where(inbox_events.c.event_id.in_(ids)).values(dispatched_at=None))
                uow.commit()
            raise
        return len(ids)
