"""ERP, MES and WMS on a real Tryton 8.2 through the hub as deployed (`tickethub api`, `worker`, `beat`
polling Tryton every POLL seconds), with the CRM and the courier as local receivers: a CRM ticket becomes a
sale and a production order in Tryton; progress and a waybill set in Tryton reach the CRM; two changes in
one poll window yield the latest; the hub's own writes into Tryton do not echo."""

from __future__ import annotations

import json
import random
import string
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import SECRET, HubProcesses, Receiver, wait_until
from tests.peers.tryton import Tryton

pytestmark = [pytest.mark.peer, pytest.mark.e2e]
POLL = 2.0  # seconds between polls of each Tryton system
SLACK = 8.0  # processing and delivery after a poll has seen a change (a liveness bound, not a target)


class TrytonHub(HubProcesses):
    """The hub's processes with erp/mes/wms on Tryton; crm and courier are receivers."""

    tryton: Tryton
    business_code: str  # one per test: the Tryton server outlives each test's hub and its ticket IDs

    def write_config(self, **delivery: float) -> None:
        lines = ["[hub]", f'database_url = "{self.database_url}"', f'data_dir = "{self.workdir / "var"}"',
                 f'queue_prefix = "{self.queue_prefix}"', f'business_code = "{self.business_code}"', "",
                 "[delivery]", "backoff_base_seconds = 0.3",
                 "backoff_cap_seconds = 2.0", "sweep_interval_seconds = 1.0", "redispatch_after_seconds = 5.0",
                 "", "[systems.crm]", "origin = true", f'base_url = "{self.receivers["crm"].url}"',
                 'webhook_secrets_env = "E2E_CRM_SECRETS"',
                 "", "[systems.courier]", f'base_url = "{self.receivers["courier"].url}"',
                 'webhook_secrets_env = "E2E_OUT_SECRET"']
        for system, model in (("erp", "sale.sale"), ("mes", "production"), ("wms", "stock.shipment.out")):
            lines += ["", f"[systems.{system}]", 'type = "tryton"', f'base_url = "{self.tryton.url}"',
                      f'database = "{self.tryton.database}"', f'model = "{model}"', f'mapping = "tryton_{system}"',
                      'hub_author = "tickethub"', 'credentials_env = "E2E_TRYTON_PASSWORD"',
                      f"poll_interval_seconds = {POLL}", "poll_overlap_seconds = 5"]
        self.config.write_text("\n".join(lines) + "\n")

    def env(self) -> dict[str, str]:
        return {**super().env(), "E2E_CRM_SECRETS": SECRET, "E2E_TRYTON_PASSWORD": self.tryton.users["tickethub"]}

    def ticket(self, ticket_id: str) -> dict[str, Any]:
        shown = self.run_cli("ticket", "show", ticket_id, "--history", "--json")
        assert shown.returncode == 0, shown.stderr
        return dict(json.loads(shown.stdout))


@pytest.fixture
def live(tryton: Tryton, tmp_path: Path) -> Iterator[TrytonHub]:
    receivers = {name: Receiver(name).start() for name in ("crm", "courier")}
    hub = TrytonHub(tmp_path, f"sqlite:///{tmp_path / 'hub.db'}", None, receivers)
    hub.tryton = tryton
    hub.business_code = "".join(random.choice(string.ascii_uppercase) for _ in range(5))
    hub.write_config()
    migrated = hub.run_cli("db", "upgrade")
    assert migrated.returncode == 0, migrated.stderr
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()
        for receiver in receivers.values():
            receiver.stop()
        print(hub.logs())


def _open_ticket(live: TrytonHub, customer: str) -> str:
    """A case opened in the CRM; the global ID the hub gives it once both Tryton records exist."""
    case = f"case-{uuid.uuid4().hex[:8]}"
    answer = live.send(f"msg-{case}", {"local_id": case, "modified_at": "2026-11-30T09:00:00Z",
                                       "author": "agent@example.com", "fields": {
                                           "contact": {"name": customer}, "case": {
                                               "product": "PUMP-100", "description": "Pump leaks",
                                               "status": "New"}}})
    assert answer.status_code == 202, answer.text

    def both_created() -> str | None:
        for delivery in live.deliveries(state="delivered"):
            if delivery["system"] == "mes":
                ticket_id = delivery["ticket_id"]
                if any(d["system"] == "erp" and d["ticket_id"] == ticket_id
                       for d in live.deliveries(state="delivered")):
                    return str(ticket_id)
        return None

    return str(wait_until(both_created, 60, 0.3, "the sale and the production order to be created in Tryton"))


def _one(live: TrytonHub, model: str, ticket_id: str, fields: list[str]) -> dict[str, Any]:
    rows = live.tryton.call("planner", f"model.{model}.search_read",
                            [[["reference", "=", ticket_id]], 0, None, None, ["id", *fields], {}])
    assert len(rows) == 1, rows
    return dict(rows[0])


def _add_line(live: TrytonHub, sale_id: int, product: str, quantity: float, price: str, **sale: Any) -> None:
    """A planner adds a line of a bootstrap product to the sale (and sets `sale`'s other fields)."""
    line = {"type": "line", "product": live.tryton.ids[product], "quantity": quantity,
            "unit": live.tryton.ids["unit"], "unit_price": {"__class__": "Decimal", "decimal": price}}
    live.tryton.call("planner", "model.sale.sale.write", [[sale_id], {**sale, "lines": [["create", [line]]]}, {}])


def _crm_values(live: TrytonHub, field: str) -> list[Any]:
    return [body["fields"][field] for body in live.receivers["crm"].bodies() if field in body.get("fields", {})]


def test_a_crm_ticket_becomes_a_sale_for_the_customer_and_a_production_order_for_the_product(
        live: TrytonHub) -> None:
    customer = f"Ada {uuid.uuid4().hex[:6]}"
    ticket_id = _open_ticket(live, customer)

    sale = _one(live, "sale.sale", ticket_id, ["party.name", "description", "state"])
    assert sale["party."]["name"] == customer and sale["description"] == "Pump leaks" and sale["state"] == "draft"
    production = _one(live, "production", ticket_id, ["product.code", "state"])
    assert production["product."]["code"] == "PUMP-100" and production["state"] == "draft"


def test_progress_changed_in_tryton_reaches_the_crm_within_two_poll_intervals(live: TrytonHub) -> None:
    ticket_id = _open_ticket(live, "Grace Hopper")
    production = _one(live, "production", ticket_id, [])
    for button in ("wait", "assign_try", "run"):  # one planner, within one poll window: only `running` counts
        live.tryton.call("planner", f"model.production.{button}", [[production["id"]], {}])

    wait_until(lambda: 60 in _crm_values(live, "case.repair_progress"), 2 * POLL + SLACK, 0.2,
               "progress 60 (running) to reach the CRM")
    assert _crm_values(live, "case.repair_progress")[-1] == 60
    assert live.ticket(ticket_id)["fields"]["production.progress"]["value"] == 60


def test_two_changes_within_one_poll_window_yield_the_latest(live: TrytonHub) -> None:
    ticket_id = _open_ticket(live, "Alan Turing")
    sale = _one(live, "sale.sale", ticket_id, [])
    _add_line(live, sale["id"], "pump", 1.0, "120.00", invoice_method="manual")
    _add_line(live, sale["id"], "valve", 2.0, "15.00")

    wait_until(lambda: "150" in _crm_values(live, "case.amount"), 2 * POLL + SLACK, 0.2,
               "the billed amount 150 to reach the CRM")
    assert "120" not in _crm_values(live, "case.amount")  # the first total never went out on its own
    assert _crm_values(live, "case.amount")[-1] == "150"
    assert live.ticket(ticket_id)["fields"]["billing.amount"]["value"] == "150"


def test_a_waybill_set_on_the_shipment_in_tryton_reaches_the_crm(live: TrytonHub) -> None:
    ticket_id = _open_ticket(live, "Barbara Liskov")
    sale = _one(live, "sale.sale", ticket_id, [])
    _add_line(live, sale["id"], "pump", 1.0, "120.00", invoice_method="manual")
    for button in ("quote", "confirm"):
        live.tryton.call("planner", f"model.sale.sale.{button}", [[sale["id"]], {}])
    [shipment_id] = live.tryton.call("planner", "model.sale.sale.read", [[sale["id"]], ["shipments"], {}])[0][
        "shipments"]
    live.tryton.call("warehouse", "model.stock.shipment.out.write", [[shipment_id], {
        "carrier": live.tryton.ids["carrier"], "reference": "JD014600006281230"}, {}])

    wait_until(lambda: "JD014600006281230" in _crm_values(live, "case.waybill"), 2 * POLL + SLACK, 0.2,
               "the waybill to reach the CRM")
    assert _crm_values(live, "case.carrier")[-1]
    ticket = live.ticket(ticket_id)["fields"]
    assert ticket["shipment.waybill"]["value"] == "JD014600006281230"
    assert ticket["parts.reserved"]["value"] is True  # the confirmed sale reserves the parts


def test_the_hubs_writes_into_tryton_do_not_echo(live: TrytonHub) -> None:
    """The sale and the order the hub created come back by polling with the hub as author: what it wrote
    there is recorded as its echo and nothing of it goes back to the CRM."""
    ticket_id = _open_ticket(live, "Edsger Dijkstra")
    wait_until(lambda: _echoes(live, ticket_id) >= 2, 3 * POLL + SLACK, 0.3,
               "the polls to read the hub's own sale and production order back")

    history = live.ticket(ticket_id)["history"]
    written = [h for h in history if h["system"] in ("erp", "mes") and h["field"] in HUB_WRITES]
    assert written and all(h["outcome"] == "echo" for h in written), written
    for field in ("contact.name", "case.product", "case.description"):
        assert _crm_values(live, field) == []


HUB_WRITES = {"customer.name", "fault.description", "product.model"}  # what the hub writes into Tryton


def _echoes(live: TrytonHub, ticket_id: str) -> int:
    history = live.ticket(ticket_id)["history"]
    return len({h["system"] for h in history if h["system"] in ("erp", "mes") and h["outcome"] == "echo"})
