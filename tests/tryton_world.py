"""A hub wired to the Tryton sandbox twin as ERP (sale.sale), MES (production) and WMS (stock.shipment.out),
with a generic CRM and courier that record what the hub writes to them. The test drives every step
(accept, poll, process, deliver), as the workers and beat would."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from connectors.tryton.connector import TrytonConnector
from connectors.tryton.twin import TrytonTwin
from hub.bootstrap import Hub, bootstrap
from hub.config import load_settings
from hub.usecases.deliver import deliver_once
from hub.usecases.ingest import accept_event
from hub.usecases.poll import PollResult, poll_system
from hub.usecases.process import process_event
from tests.fakes import RecordingWriter

URL = "http://tryton.sandbox"
HUB_USER, HUB_PASSWORD = "tickethub", "hub-password-1"
STAFF = ("planner", "accounting", "warehouse-lead")
MODELS = {"erp": "sale.sale", "mes": "production", "wms": "stock.shipment.out"}


def write_config(folder: Path, overlap: float = 5.0) -> Path:
    lines = ["[systems.crm]", "origin = true", 'base_url = "http://crm.test/"', 'webhook_secrets_env = "HOOK"',
             "", "[systems.courier]", 'base_url = "http://courier.test/"', 'webhook_secrets_env = "HOOK"']
    for system, model in MODELS.items():
        lines += ["", f"[systems.{system}]", 'type = "tryton"', f'base_url = "{URL}"', 'database = "tickethub"',
                  f'model = "{model}"', f'mapping = "tryton_{system}"', f'hub_author = "{HUB_USER}"',
                  'credentials_env = "TRYTON_PASSWORD"', f"poll_overlap_seconds = {overlap}"]
    path = folder / "tickethub.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class TrytonWorld:
    hub: Hub
    twin: TrytonTwin
    connectors: dict[str, TrytonConnector]
    crm: RecordingWriter = field(default_factory=lambda: RecordingWriter("crm", local_id="case-1"))
    courier: RecordingWriter = field(default_factory=lambda: RecordingWriter("courier"))
    cases: itertools.count = field(default_factory=lambda: itertools.count(1))  # type: ignore[type-arg]

    @classmethod
    def build(cls, engine: Engine, folder: Path, overlap: float = 5.0) -> TrytonWorld:
        hub = bootstrap(load_settings(write_config(folder, overlap), environ={}), engine=engine)
        twin = TrytonTwin()
        twin.add_user(HUB_USER, HUB_PASSWORD)
        for login in STAFF:
            twin.add_user(login, f"{login}-password-1")
        twin.create("product.product", "admin", code="PUMP-100", name="Pump 100")
        client = twin.http_client()
        connectors = {system: TrytonConnector(system, URL, twin.database, HUB_USER, HUB_PASSWORD, model, client)
                      for system, model in MODELS.items()}
        return cls(hub, twin, connectors)

    def close(self) -> None:
        self.connectors["erp"].session.client.close()

    def connector_for(self, system: str) -> Any:
        if system in self.connectors:
            return self.connectors[system]
        return {"crm": self.crm, "courier": self.courier}[system]

    # ---- the hub's steps ------------------------------------------------------------------------------

    def crm_change(self, local_id: str, minute: int, **fields: Any) -> str:
        """A change webhook from the CRM, accepted and processed; the ticket it touched."""
        payload = {"local_id": local_id, "modified_at": f"2026-11-30T09:{minute // 60:02d}:{minute % 60:02d}Z",
                   "author": "agent@example.com", "fields": fields}
        event_id, _ = accept_event(self.hub, "crm", f"msg-{next(self.cases)}", payload)
        processed = process_event(self.hub, event_id, self.connector_for)
        assert processed.ticket_id, processed
        return processed.ticket_id

    def open_ticket(self, customer: str, minute: int = 0) -> tuple[str, str]:
        """A CRM case for a pump repair: (case id, ticket id); the hub creates the sale and the order."""
        case = f"case-{next(self.cases)}"
        ticket_id = self.crm_change(case, minute, contact={"name": customer},
                                    case={"product": "PUMP-100", "description": "Pump leaks", "status": "New"})
        self.deliver_all()
        return case, ticket_id

    def poll(self, system: str) -> PollResult:
        return poll_system(self.hub, system, self.connectors[system])

    def process_all(self) -> int:
        with self.hub.store.unit_of_work() as uow:
            pending = uow.deliveries.take_undispatched_events(self.hub.clock(), 10_000)
            uow.commit()
        for event_id in pending:
            process_event(self.hub, event_id, self.connector_for)
        return len(pending)

    def deliver_all(self) -> list[str]:
        """Attempt every pending delivery once; the outcome kinds."""
        with self.hub.store.unit_of_work() as uow:
            ids = [d["id"] for d in uow.deliveries.find("pending", limit=10_000)]
        return [deliver_once(self.hub, delivery_id, self.connector_for).kind for delivery_id in sorted(ids)]

    def settle(self) -> None:
        """Poll every Tryton system, process and deliver until nothing moves."""
        for _ in range(10):
            moved = sum(self.poll(system).accepted for system in MODELS) + self.process_all()
            moved += len(self.deliver_all())
            if not moved:
                return
        raise AssertionError("the hub did not settle in 10 rounds")

    # ---- reading ------------------------------------------------------------------------------------

    def ticket(self, ticket_id: str) -> Any:
        with self.hub.store.unit_of_work() as uow:
            return uow.tickets.get(ticket_id)

    def history(self, ticket_id: str) -> list[Any]:
        with self.hub.store.unit_of_work() as uow:
            return uow.tickets.history(ticket_id)

    def local_id(self, ticket_id: str, system: str) -> int:
        [found] = [int(x.local_id) for x in self.ticket(ticket_id).xrefs if x.system == system]
        return found
