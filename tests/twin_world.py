"""A hub over generic sandbox twins, driven in-process as its workers would drive it: the CRM's notices
accepted and processed, then every due delivery written to the twins. What the reconciliation and the console
tests build their worlds on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from connectors.generic.twin import GenericTwin
from hub.core.ports import Connector
from hub.usecases.context import Hub
from hub.usecases.deliver import deliver_once
from hub.usecases.ingest import accept_event
from hub.usecases.process import process_event
from tests.conftest import Clock


@dataclass
class TwinWorld:
    hub: Hub
    clock: Clock
    twins: dict[str, GenericTwin]
    connector_for: Callable[[str], Connector]
    tickets: dict[str, str] = field(default_factory=dict)  # crm local id -> ticket

    def crm_change(self, local_id: str) -> None:
        """The CRM's notice for its record reaches the hub and is processed."""
        self.clock.now += timedelta(seconds=1)
        record = self.twins["crm"].records[local_id]
        event_id, _ = accept_event(self.hub, "crm", f"{local_id}@{record.modified_at.isoformat()}",
                                   self.twins["crm"].notice(local_id))
        processed = process_event(self.hub, event_id)
        assert processed.state == "processed", processed
        self.tickets[local_id] = processed.ticket_id or ""

    def deliver_all(self) -> None:
        """Run every due delivery, as the deliveries worker would, until none is left."""
        for _ in range(10):
            with self.hub.store.unit_of_work() as uow:
                due = [r["id"] for r in uow.deliveries.find("pending", None, None, 1000)]
            if not due:
                return
            for delivery_id in due:
                deliver_once(self.hub, delivery_id, self.connector_for)
