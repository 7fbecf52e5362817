"""The pipeline end to end: signed webhooks in, processes running, writes out to subscribed systems."""

from __future__ import annotations

import time

import pytest

from hub.core.signing import verify_standard
from tests.e2e.harness import OUT_SECRET, HubProcesses, crm_case, wait_until

pytestmark = pytest.mark.e2e

BACKENDS = ["embedded", pytest.param("pg-rabbitmq", marks=pytest.mark.integration),
            pytest.param("pg-redis", marks=pytest.mark.integration)]


def _delivered(hub: HubProcesses, system: str) -> list[dict]:
    return [d for d in hub.deliveries(system=system) if d["state"] == "delivered"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_crm_change_reaches_exactly_the_subscribed_systems(hub_factory, receivers, backend: str) -> None:
    """A phone change in the CRM is written to the ERP and WMS in their own field names, and nowhere else."""
    hub: HubProcesses = hub_factory(backend)
    hub.start()
    answer = hub.send("evt-1", crm_case("CASE-1", 0, contact={"name": "Ada", "phone": "+44 20 7946 0000"}))
    assert answer.status_code == 202 and answer.json() == {"event_id": "crm:evt-1", "duplicate": False}

    wait_until(lambda: receivers["erp"].bodies() and receivers["wms"].bodies(), what="erp and wms writes")
    erp, wms = receivers["erp"].bodies()[0], receivers["wms"].bodies()[0]
    assert erp["fields"] == {"party.name": "Ada", "party.phone": "+44 20 7946 0000"}
    assert wms["fields"] == {"shipment.recipient": "Ada", "shipment.recipient_phone": "+44 20 7946 0000"}
    assert erp["ticket_id"] == wms["ticket_id"]
    first = receivers["erp"].received[0]
    assert verify_standard([OUT_SECRET], first.headers, first.raw, time.time()) == first.headers["webhook-id"]

    wait_until(lambda: _delivered(hub, "erp") and _delivered(hub, "wms"), what="deliveries marked delivered")
    # the receivers answered with their own record IDs: the hub linked them to the ticket
    linked = hub.get("/tickets", system="erp", local_id="ERP-1")
    assert linked.status_code == 200 and linked.json()["ticket_id"] == erp["ticket_id"]
    assert receivers["mes"].bodies() == [] and receivers["courier"].bodies() == []


def test_a_receiver_failing_three_times_gets_the_write_on_the_fourth_attempt(hub_factory, receivers) -> None:
    """500, 500, 500, then 200: delivered once, with four attempts on record."""
    hub: HubProcesses = hub_factory()
    receivers["erp"].script = [(500, 0.0)] * 3
    hub.start()
    hub.send("evt-1", crm_case("CASE-1", 0, contact={"phone": "+44 1111 1111"}))
    delivered = wait_until(lambda: _delivered(hub, "erp"), what="erp delivered after retries")
    detail = hub.get(f"/deliveries/{delivered[0]['id']}").json()
    assert [a["outcome"] for a in detail["attempt_log"]] == ["retry", "retry", "retry", "delivered"]
    assert [a["status_code"] for a in detail["attempt_log"]] == [500, 500, 500, 200]
    bodies = receivers["erp"].bodies()
    assert len(bodies) == 4 and all(b == bodies[0] for b in bodies)  # the same content every time


def test_a_rejected_write_is_dead_lettered_at_once_and_replays_after_the_fix(hub_factory, receivers) -> None:
    """A 400 goes to the dead letters without retrying; once the system is fixed, replay delivers it."""
    hub: HubProcesses = hub_factory()
    receivers["erp"].script = [(400, 0.0)]
    hub.start()
    hub.send("evt-1", crm_case("CASE-1", 0, contact={"phone": "+44 2222 2222"}))
    dead = wait_until(lambda: hub.deliveries(state="dead"), what="a dead letter")
    assert dead[0]["system"] == "erp" and dead[0]["attempts"] == 1 and dead[0]["last_status"] == 400
    listed = hub.run_cli("dlq", "list", "--json")
    assert listed.returncode == 0 and f'"id": {dead[0]["id"]}' in listed.stdout

    replay = hub.post(f"/deliveries/{dead[0]['id']}/replay")
    assert replay.status_code == 202
    wait_until(lambda: _delivered(hub, "erp"), what="the replayed delivery")
    assert receivers["erp"].bodies()[-1]["fields"] == {"party.phone": "+44 2222 2222"}
    assert hub.post(f"/deliveries/{dead[0]['id']}/replay").status_code == 409  # replayed already


def test_a_thousand_duplicate_webhooks_are_applied_once(hub_factory, receivers) -> None:
    """The same webhook delivered 1,000 times is accepted once, applied once and written once."""
    hub: HubProcesses = hub_factory()
    hub.start()
    payload = crm_case("CASE-1", 0, contact={"phone": "+44 3333 3333"})
    answers = [hub.send("same-id", payload) for _ in range(1000)]
    assert {a.status_code for a in answers} == {202}
    assert sum(1 for a in answers if a.json()["duplicate"] is False) == 1
    wait_until(lambda: _delivered(hub, "erp") and _delivered(hub, "wms"), what="deliveries")
    ticket_id = receivers["erp"].bodies()[0]["ticket_id"]
    history = hub.get(f"/tickets/{ticket_id}/history").json()["entries"]
    assert [(e["field"], e["outcome"]) for e in history] == [("customer.phone", "applied")]
    assert len(receivers["erp"].bodies()) == 1 and len(receivers["wms"].bodies()) == 1
