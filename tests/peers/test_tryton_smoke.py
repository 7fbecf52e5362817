"""Smoke tests against a real Tryton 8.2: the harness works, and the facts the connector and its sandbox twin
rely on most still hold (see docs/peers/tryton.md)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from tests.peers.tryton import Tryton, TrytonError

pytestmark = [pytest.mark.peer, pytest.mark.integration]

HUB = "tickethub"


def _create(erp: Tryton, model: str, values: dict[str, Any], login: str = HUB) -> int:
    return int(erp.call(login, f"model.{model}.create", [[values], erp.context])[0])


def _read(erp: Tryton, model: str, record_id: int, fields: list[str], login: str = HUB) -> dict[str, Any]:
    rows: list[dict[str, Any]] = erp.call(login, f"model.{model}.read", [[record_id], fields, erp.context])
    return rows[0]


def _button(erp: Tryton, model: str, button: str, record_id: int, login: str = HUB) -> Any:
    """A workflow button: `model.<m>.<button>` with `[[ids], context]`. A UserWarning (e.g. "moves have no
    origin") is skipped once through res.user.warning.skip and the button pressed again, as the client does."""
    try:
        return erp.call(login, f"model.{model}.{button}", [[record_id], erp.context])
    except TrytonError as exc:
        if exc.type != "UserWarning" or not isinstance(exc.details, list):
            raise
        erp.call(login, "model.res.user.warning.skip", [exc.details[0], False, erp.context])
        return erp.call(login, f"model.{model}.{button}", [[record_id], erp.context])


def test_the_hub_user_logs_in_and_is_an_ordinary_user_of_the_company(tryton: Tryton) -> None:
    user_id, session = tryton.client.login(HUB)

    assert user_id == tryton.ids["user_tickethub"] and len(session) == 64
    prefs = tryton.call(HUB, "model.res.user.get_preferences", [True, {}])
    assert prefs["company"] == tryton.ids["company"] and prefs["administrator"] in (False, 0)
    with pytest.raises(TrytonError) as bad:
        tryton.client.login("admin", "not-the-password")  # not a login the tests use: failures slow it down
    assert bad.value.status == 401


def test_a_production_for_pump_100_runs_through_its_workflow(tryton: Tryton) -> None:
    """wait → assign_try (stock is there) → run → do; the done button is `do`, and pressing one that the state
    does not allow is a UserError "You can not call ..."."""
    ids = tryton.ids
    production = _create(tryton, "production", {
        "product": ids["pump"], "quantity": 1, "unit": ids["unit"], "reference": "SMOKE-PROD-1",
        "warehouse": ids["warehouse"], "location": ids["production_location"],
        "inputs": [["create", [{"product": ids["valve"], "quantity": 2, "unit": ids["unit"], "company": ids["company"],
                                "from_location": ids["storage_location"], "to_location": ids["production_location"]}]]],
        "outputs": [["create", [{"product": ids["pump"], "quantity": 1, "unit": ids["unit"], "company": ids["company"],
                                 "from_location": ids["production_location"], "to_location": ids["storage_location"],
                                 "unit_price": Decimal("70"), "currency": ids["currency"]}]]]})
    created = _read(tryton, "production", production, ["state", "product.code", "write_date", "create_uid"])
    assert created["state"] == "draft" and created["product."]["code"] == "PUMP-100"
    assert created["write_date"] is None and created["create_uid"] == ids["user_tickethub"]

    with pytest.raises(TrytonError) as refused:
        _button(tryton, "production", "run", production)
    assert refused.value.type == "UserError" and refused.value.message.startswith('You can not call "run"')

    states = []
    for button in ("wait", "assign_try", "run", "do"):
        _button(tryton, "production", button, production)
        states.append(_read(tryton, "production", production, ["state"])["state"])
    assert states == ["waiting", "assigned", "running", "done"]
    done = _read(tryton, "production", production, ["write_uid", "effective_date", "outputs.state"])
    assert done["write_uid"] == ids["user_tickethub"] and isinstance(done["effective_date"], dt.date)
    assert [m["state"] for m in done["outputs."]] == ["done"]


def test_assign_try_without_enough_stock_leaves_the_production_waiting_and_assign_force_assigns(
        tryton: Tryton) -> None:
    ids = tryton.ids
    production = _create(tryton, "production", {
        "product": ids["pump"], "quantity": 1, "unit": ids["unit"], "reference": "SMOKE-PROD-2",
        "inputs": [["create", [{"product": ids["valve"], "quantity": 10_000, "unit": ids["unit"],
                                "company": ids["company"], "from_location": ids["storage_location"],
                                "to_location": ids["production_location"]}]]]}, login="planner")
    _button(tryton, "production", "wait", production, login="planner")

    assert _button(tryton, "production", "assign_try", production, login="planner") is None
    assert _read(tryton, "production", production, ["state"])["state"] == "waiting"
    _button(tryton, "production", "assign_force", production, login="planner")
    assert _read(tryton, "production", production, ["state", "write_uid"]) == {
        "id": production, "state": "assigned", "write_uid": ids["user_planner"]}


def test_a_shipment_out_carries_the_carrier_and_a_reference_to_done(tryton: Tryton) -> None:
    """`carrier` on stock.shipment.out comes from stock_shipment_cost; `reference` is free text. The states run
    draft → waiting → assigned → picked → packed → shipped → done."""
    ids = tryton.ids
    shipment = _create(tryton, "stock.shipment.out", {
        "customer": ids["customer"], "delivery_address": ids["customer_address"], "warehouse": ids["warehouse"],
        "warehouse_output": ids["output_location"], "warehouse_storage": ids["storage_location"],
        "carrier": ids["carrier"], "reference": "WAYBILL-0001",
        "outgoing_moves": [["create", [{"product": ids["pump"], "quantity": 1, "unit": ids["unit"],
                                        "from_location": ids["output_location"],
                                        "to_location": ids["customer_location"], "unit_price": Decimal("120"),
                                        "currency": ids["currency"], "company": ids["company"]}]]]},
        login="warehouse")

    states = []
    for button in ("wait", "assign_try", "pick", "pack", "ship", "do"):
        _button(tryton, "stock.shipment.out", button, shipment, login="warehouse")
        states.append(_read(tryton, "stock.shipment.out", shipment, ["state"])["state"])
    assert states == ["waiting", "assigned", "picked", "packed", "shipped", "done"]
    done = _read(tryton, "stock.shipment.out", shipment, ["carrier.rec_name", "reference", "write_uid"])
    assert done["carrier."]["id"] == ids["carrier"] and done["reference"] == "WAYBILL-0001"
    assert done["write_uid"] == ids["user_warehouse"]


def test_a_sale_quote_with_one_line(tryton: Tryton) -> None:
    """party + invoice_address + shipment_address + one line (product, quantity, unit, unit_price) quotes
    (without either address `quote` is a UserError); total_amount reads back as a Decimal."""
    ids = tryton.ids
    sale = _create(tryton, "sale.sale", {
        "party": ids["customer"], "invoice_address": ids["customer_address"],
        "shipment_address": ids["customer_address"], "invoice_method": "manual",
        "reference": "TICKET-42", "description": "Replacement pump", "comment": "Ticket 42 via tickethub",
        "lines": [["create", [{"product": ids["pump"], "quantity": 2, "unit": ids["unit"],
                               "unit_price": Decimal("120.00")}]]]})

    _button(tryton, "sale.sale", "quote", sale)

    quoted = _read(tryton, "sale.sale", sale, ["state", "number", "total_amount", "reference", "party.rec_name"])
    assert quoted["state"] == "quotation" and quoted["number"]
    assert quoted["total_amount"] == Decimal("240.00") and quoted["reference"] == "TICKET-42"
    assert quoted["party."]["rec_name"] == "Acme Pumps Ltd"


def test_search_read_by_write_date_or_create_date_ordered_by_write_date_and_id(tryton: Tryton) -> None:
    """A production never written has a null write_date (a party has not: its create writes the code); on
    SQLite nulls sort FIRST with ASC (PostgreSQL: last), so a poller orders explicitly — or polls
    last_modified_at (= coalesce(write_date, create_date), searchable and sortable)."""
    since = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=5)  # naive UTC, as Tryton stores
    ids = tryton.ids
    edited = _create(tryton, "production", {"product": ids["pump"], "quantity": 1, "unit": ids["unit"]})
    tryton.call(HUB, "model.production.write", [[edited], {"reference": "SMOKE-EDITED"}, tryton.context])
    untouched = _create(tryton, "production", {"product": ids["pump"], "quantity": 1, "unit": ids["unit"]})
    domain = [["OR", ["write_date", ">=", since], ["create_date", ">=", since]],
              ["id", "in", [edited, untouched]]]

    rows = tryton.call(HUB, "model.production.search_read",
                       [domain, 0, None, [["write_date", "ASC"], ["id", "ASC"]],
                        ["write_date", "create_date", "last_modified_at", "write_uid"], tryton.context])

    assert [r["id"] for r in rows] == [untouched, edited]
    assert rows[0]["write_date"] is None and rows[0]["last_modified_at"] == rows[0]["create_date"]
    assert isinstance(rows[1]["write_date"], dt.datetime) and rows[1]["write_date"] >= since
    assert rows[1]["write_uid"] == ids["user_tickethub"]
    newest_first = tryton.call(HUB, "model.production.search", [
        [["last_modified_at", ">=", since], ["id", "in", [edited, untouched]]], 0, None,
        [["last_modified_at", "DESC"], ["id", "DESC"]], tryton.context])
    assert newest_first == [untouched, edited]


def test_a_write_with_a_stale_timestamp_raises_concurrency_exception(tryton: Tryton) -> None:
    ids = tryton.ids
    production = _create(tryton, "production", {"product": ids["pump"], "quantity": 1, "unit": ids["unit"]})
    seen = _read(tryton, "production", production, ["_timestamp"])["_timestamp"]
    tryton.call("planner", "model.production.write", [[production], {"reference": "planner was here"},
                                                      tryton.context])

    context = {**tryton.context, "_timestamp": {f"production,{production}": seen}}
    with pytest.raises(TrytonError) as stale:
        tryton.call(HUB, "model.production.write", [[production], {"reference": "hub overwrites"}, context])

    assert (stale.value.status, stale.value.error) == (200, ["ConcurrencyException",
                                                               "Records were modified in the meanwhile"])
    assert _read(tryton, "production", production, ["reference"])["reference"] == "planner was here"
