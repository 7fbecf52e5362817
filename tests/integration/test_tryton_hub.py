"""ERP, MES and WMS on Tryton through the hub, with the sandbox twin as Tryton, on SQLite and PostgreSQL:
what the hub creates there, what polling brings back, what it refuses, and what it never does twice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from hub.store.polls import PollRepository
from hub.store.tables import inbox_events
from tests.tryton_world import TrytonWorld


@pytest.fixture
def world(engine: Engine, tmp_path: Path) -> Iterator[TrytonWorld]:
    made = TrytonWorld.build(engine, tmp_path)
    yield made
    made.close()


HUB_WRITES = {"customer.name", "fault.description", "product.model"}  # what the hub writes into Tryton


def _sent(world: TrytonWorld, field: str) -> list[object]:
    """The values of one CRM field the hub has written to the CRM, in order."""
    return [w.fields[field] for w in world.crm.writes if field in w.fields]


def _events(world: TrytonWorld, system: str) -> int:
    with world.hub.store.unit_of_work() as uow:
        return int(uow.conn.execute(select(func.count()).select_from(inbox_events)
                                    .where(inbox_events.c.system == system)).scalar_one())


def test_a_crm_ticket_becomes_a_sale_for_the_customer_and_a_production_order_for_the_product(
        world: TrytonWorld) -> None:
    _, ticket_id = world.open_ticket("Ada Lovelace")

    sale = world.twin.record("sale.sale", world.local_id(ticket_id, "erp"))
    assert sale["reference"] == ticket_id and sale["description"] == "Pump leaks"
    assert world.twin.record("party.party", sale["party"])["name"] == "Ada Lovelace"
    production = world.twin.record("production", world.local_id(ticket_id, "mes"))
    assert production["reference"] == ticket_id and production["state"] == "draft"


def test_progress_run_in_the_mes_reaches_the_crm_and_the_hubs_own_orders_are_echoes(world: TrytonWorld) -> None:
    _, ticket_id = world.open_ticket("Ada Lovelace")
    world.settle()  # the hub's own sale and order come back by polling: what it wrote there is an echo
    history = world.history(ticket_id)
    assert {h.outcome for h in history if h.system in ("erp", "mes") and h.field in HUB_WRITES} == {"echo"}
    assert not [w for w in world.crm.writes if set(w.fields) & {"contact.name", "case.product", "case.description"}]
    # ... while the values Tryton gave the new records itself (progress 0, amount 0) are the ERP's and MES's
    assert _sent(world, "case.repair_progress") == [0] and _sent(world, "case.amount") == ["0"]
    order = world.local_id(ticket_id, "mes")
    for button in ("wait", "assign_try", "run"):
        world.twin.button("production", order, button, "planner")

    world.settle()

    assert world.ticket(ticket_id).fields["production.progress"].value == 60
    assert world.ticket(ticket_id).fields["production.progress"].provenance.author == "planner"
    assert _sent(world, "case.repair_progress") == [0, 60]


def test_an_order_put_back_to_draft_is_a_progress_conflict_not_a_step_back(world: TrytonWorld) -> None:
    _, ticket_id = world.open_ticket("Ada Lovelace")
    order = world.local_id(ticket_id, "mes")
    world.twin.button("production", order, "wait", "planner")
    world.settle()
    world.twin.button("production", order, "draft", "planner")

    world.settle()

    assert world.ticket(ticket_id).fields["production.progress"].value == 10
    [conflict] = [h for h in world.history(ticket_id) if h.outcome == "conflict"]
    assert conflict.system == "mes" and conflict.author == "planner" and "only grows" in conflict.reason
    assert _sent(world, "case.repair_progress") == [10]  # the draft order was never polled before `wait`


def test_a_change_committed_late_with_an_older_write_date_is_not_skipped(world: TrytonWorld) -> None:
    """Tryton stamps a write with its transaction's start: one that commits after a poll can carry a
    write_date older than the watermark. The overlap window reads it anyway."""
    _, first = world.open_ticket("Ada Lovelace")
    _, second = world.open_ticket("Grace Hopper")
    world.settle()
    started = world.twin.clock.now()
    with world.twin.transaction("accounting") as late:  # starts now, commits after the next poll
        late.edit("sale.sale", world.local_id(second, "erp"), total_amount=Decimal("80.00"))
        world.twin.advance(2)
        world.twin.edit("sale.sale", world.local_id(first, "erp"), "accounting", total_amount=Decimal("50.00"))
        world.poll("erp")
    with world.hub.store.unit_of_work() as uow:
        watermark = PollRepository(uow.conn).watermark("erp")
    assert watermark is not None and watermark > started.replace(tzinfo=watermark.tzinfo)

    world.settle()

    assert world.ticket(first).fields["billing.amount"].value == "50"
    assert world.ticket(second).fields["billing.amount"].value == "80"


def test_polling_again_stores_no_record_version_twice(world: TrytonWorld) -> None:
    """The overlap re-reads the newest records each poll; the inbox keeps each version once, and the window
    moves on with the watermark."""
    _, first = world.open_ticket("Ada Lovelace")
    world.twin.edit("sale.sale", world.local_id(first, "erp"), "accounting", total_amount=Decimal("120.00"))
    assert world.poll("erp").accepted >= 1
    again = world.poll("erp")
    assert again.seen >= 1 and again.accepted == 0
    events = _events(world, "erp")

    world.twin.advance(60)  # much later than the overlap window: another sale changes
    _, second = world.open_ticket("Grace Hopper")
    world.poll("erp")
    latest = world.poll("erp")

    assert latest.accepted == 0 and latest.seen == 1  # only the second sale is inside the window now
    assert _events(world, "erp") == events + 1


def test_two_changes_within_one_poll_window_yield_the_latest(world: TrytonWorld) -> None:
    _, ticket_id = world.open_ticket("Ada Lovelace")
    world.settle()
    sale = world.local_id(ticket_id, "erp")
    world.twin.edit("sale.sale", sale, "accounting", total_amount=Decimal("120.00"))
    world.twin.advance(0.5)
    world.twin.edit("sale.sale", sale, "accounting", total_amount=Decimal("150.00"))

    world.settle()

    assert world.ticket(ticket_id).fields["billing.amount"].value == "150"
    assert _sent(world, "case.amount") == ["0", "150"]  # Tryton's new sale, then the final total only


def test_a_concurrent_edit_in_tryton_makes_the_hubs_write_wait_and_retry_never_overwrite(
        world: TrytonWorld) -> None:
    case, ticket_id = world.open_ticket("Ada Lovelace")
    world.settle()
    world.twin.fail_next(1, error=("ConcurrencyException", "Records were modified in the meanwhile"),
                         method="model.sale.sale.write")
    world.crm_change(case, 5, case={"description": "Pump leaks at the seal"})

    assert world.deliver_all() == ["retry"]
    with world.hub.store.unit_of_work() as uow:
        [delivery] = uow.deliveries.find(system="erp", limit=1)
        attempts = uow.deliveries.attempts(delivery["id"])
    assert attempts[-1]["status_code"] == 409 and "ConcurrencyException" in attempts[-1]["error"]
    world.hub.clock = lambda: delivery["next_attempt_at"] + timedelta(seconds=1)  # the retry falls due
    with world.hub.store.unit_of_work() as uow:
        due = [d["id"] for d in uow.deliveries.find(system="erp", limit=5) if d["state"] == "retry_wait"]
    from hub.usecases.deliver import deliver_once

    assert [deliver_once(world.hub, d, world.connector_for).kind for d in due] == ["delivered"]
    assert world.twin.record("sale.sale", world.local_id(ticket_id, "erp"))["description"] == "Pump leaks at the seal"


def test_a_waybill_set_on_the_shipment_of_the_sale_reaches_the_crm(world: TrytonWorld) -> None:
    """Confirming the sale makes Tryton create its shipment; the warehouse's carrier and waybill come back
    by polling, the shipment linked to the ticket through its sale's reference."""
    _, ticket_id = world.open_ticket("Ada Lovelace")
    world.settle()
    sale = world.local_id(ticket_id, "erp")
    [pump] = [p["id"] for p in world.twin.records("product.product")]
    [unit] = [u["id"] for u in world.twin.records("product.uom")]
    world.twin.edit("sale.sale", sale, "accounting", invoice_method="manual", lines=[["create", [{
        "type": "line", "product": pump, "quantity": 1.0, "unit": unit, "unit_price": Decimal("120.00")}]]])
    for button in ("quote", "confirm"):
        world.twin.button("sale.sale", sale, button, "accounting")
    [shipment] = [s["id"] for s in world.twin.records("stock.shipment.out")]
    carrier_party = world.twin.create("party.party", "admin", name="DHL")
    carrier = world.twin.create("carrier", "admin", party=carrier_party, carrier_product=pump)
    world.twin.edit("stock.shipment.out", shipment, "warehouse-lead", carrier=carrier, reference="JD0146000062")

    world.settle()

    fields = world.ticket(ticket_id).fields
    assert fields["shipment.waybill"].value == "JD0146000062"
    assert fields["shipment.carrier"].value.startswith("DHL")
    assert fields["parts.reserved"].value is True and fields["billing.amount"].value == "120"
    sent = {name: value for w in world.crm.writes for name, value in w.fields.items()}
    assert sent["case.waybill"] == "JD0146000062" and sent["case.carrier"].startswith("DHL")


def test_tryton_down_fails_the_poll_visibly_and_the_next_poll_loses_nothing(world: TrytonWorld) -> None:
    """A poll that cannot read Tryton keeps its watermark and says why on GET /polls; the next reads it all."""
    from fastapi.testclient import TestClient

    from hub.http.app import create_app

    _, ticket_id = world.open_ticket("Ada Lovelace")
    world.settle()
    world.twin.edit("sale.sale", world.local_id(ticket_id, "erp"), "accounting", total_amount=Decimal("99.00"))
    world.twin.fail_next(1, status=503, method="model.sale.sale.search_read")

    failed = world.poll("erp")
    api = TestClient(create_app(world.hub, "token"))
    [erp] = [p for p in api.get("/polls", headers={"Authorization": "Bearer token"}).json()["polls"]
             if p["system"] == "erp"]
    assert failed.error and "503" in failed.error and erp["last_error"] == failed.error and erp["failed_at"]
    assert failed.watermark == failed.since + timedelta(seconds=5)  # unchanged: the last complete poll's

    world.settle()
    assert world.ticket(ticket_id).fields["billing.amount"].value == "99"
    [erp] = [p for p in api.get("/polls", headers={"Authorization": "Bearer token"}).json()["polls"]
             if p["system"] == "erp"]
    assert erp["last_error"] is None and erp["watermark"] and erp["interval_seconds"] == 30
