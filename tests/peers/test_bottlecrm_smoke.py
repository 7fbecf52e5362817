"""Smoke tests against a real BottleCRM (django-crm 1.35): the harness works, and the facts the connector
and its sandbox twin rely on most still hold (see docs/peers/bottlecrm.md)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from connectors.bottlecrm.signing import verify_bottlecrm
from hub.core.signing import SignatureError
from tests.e2e.harness import Received, Receiver, wait_until
from tests.peers.bottlecrm import BottleCRM

pytestmark = [pytest.mark.peer, pytest.mark.integration]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver("bottlecrm").start()
    yield started
    started.stop()


def _create_case(crm: BottleCRM, name: str, **fields: str) -> str:
    answer = crm.http.post("/api/cases/", json={"name": name, "status": "New", "priority": "Normal", **fields})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["error"] is False
    return str(body["id"])


def test_a_case_created_with_the_pat_reads_back_without_an_updated_at(bottlecrm: BottleCRM) -> None:
    """POST /api/cases/ with name, status and priority answers 200 with an id; GET returns the case."""
    case_id = _create_case(bottlecrm, "Smoke: printer jams", description="Tray 2 jams")

    answer = bottlecrm.http.get(f"/api/cases/{case_id}/")

    assert answer.status_code == 200
    case = answer.json()["cases_obj"]
    assert (case["id"], case["name"], case["status"], case["priority"], case["description"]) == (
        case_id, "Smoke: printer jams", "New", "Normal", "Tray 2 jams")
    assert "created_at" in case and "updated_at" not in case


def test_a_case_needs_name_status_and_priority(bottlecrm: BottleCRM) -> None:
    """An empty body is a 400 naming exactly the three required fields."""
    answer = bottlecrm.http.post("/api/cases/", json={})

    assert answer.status_code == 400
    assert answer.json()["error"] is True
    assert set(answer.json()["errors"]) == {"name", "status", "priority"}


def test_a_case_update_sends_a_signed_webhook_that_verify_bottlecrm_accepts(bottlecrm: BottleCRM,
                                                                             receiver: Receiver) -> None:
    """A PATCH made with the PAT fires ticket.updated, signed t=…,v1=<hex> over "<t>.<body>" with the secret."""
    secret = bottlecrm.register_webhook(receiver.url, ["ticket.created", "ticket.updated"])
    case_id = _create_case(bottlecrm, "Smoke: webhook on update")

    patched = bottlecrm.http.patch(f"/api/cases/{case_id}/", json={"status": "Assigned"})
    assert patched.status_code == 200, patched.text

    def delivered() -> list[Received]:
        with receiver.lock:
            return [r for r in receiver.received
                    if r.body["event"] == "ticket.updated" and r.body["data"]["id"] == case_id]
    delivery = wait_until(delivered, timeout=15, what="a ticket.updated delivery for the case")[0]
    headers, raw, body = delivery.headers, delivery.raw, json.loads(delivery.raw)
    assert verify_bottlecrm([secret], headers, raw, time.time()) == headers["X-BottleCRM-Delivery"]
    with pytest.raises(SignatureError):
        verify_bottlecrm(["whsec_not-the-secret"], headers, raw, time.time())
    assert headers["X-BottleCRM-Event"] == "ticket.updated"
    assert set(body) == {"id", "event", "created_at", "org_id", "data"}
    assert body["org_id"] == bottlecrm.org_id
    assert body["data"]["status"] == "Assigned" and "updated_at" in body["data"]
    assert "description" not in body["data"]
    bottlecrm.remove_webhook(receiver.url)


def test_a_failed_delivery_is_retried_with_the_same_delivery_id_and_a_fresh_signature(
        bottlecrm: BottleCRM, receiver: Receiver) -> None:
    """A 500 leaves the delivery pending; upstream's retry sweep resends the same body under the same
    X-BottleCRM-Delivery, signed again (the harness runs the sweep: the test server has no beat)."""
    secret = bottlecrm.register_webhook(receiver.url, ["ticket.created"])
    receiver.script.append((500, 0.0))
    _create_case(bottlecrm, "Smoke: retried delivery")
    wait_until(lambda: receiver.received, timeout=15, what="the first attempt")
    time.sleep(1.1)  # so the retry's t differs from the first attempt's

    assert bottlecrm.retry_due_webhooks(now=True) >= 1

    first, retry = wait_until(lambda: receiver.received[:2] if len(receiver.received) >= 2 else None,
                              timeout=15, what="the retry")
    assert retry.raw == first.raw
    assert retry.headers["X-BottleCRM-Delivery"] == first.headers["X-BottleCRM-Delivery"]
    assert retry.headers["X-BottleCRM-Signature"] != first.headers["X-BottleCRM-Signature"]
    assert verify_bottlecrm([secret], retry.headers, retry.raw, time.time())
    bottlecrm.remove_webhook(receiver.url)


def test_the_case_activity_feed_names_the_author_and_the_change(bottlecrm: BottleCRM) -> None:
    """GET /api/cases/<id>/activities/ records who changed the status, when, and from what to what."""
    case_id = _create_case(bottlecrm, "Smoke: activity feed")
    bottlecrm.http.patch(f"/api/cases/{case_id}/", json={"status": "Pending"}).raise_for_status()

    feed = bottlecrm.http.get(f"/api/cases/{case_id}/activities/").json()

    newest = feed["activities"][0]
    assert newest["action"] == "STATUS_CHANGED"
    assert newest["metadata"] == {"before": "New", "after": "Pending"}
    assert newest["user"]["user_details"]["email"] == bottlecrm.email
    assert newest["created_at"].endswith("Z")


def test_webhooks_cannot_be_managed_with_the_pat(bottlecrm: BottleCRM) -> None:
    """/api/webhooks/ refuses a personal access token with 403: registering needs a signed-in session."""
    answer = bottlecrm.http.get("/api/webhooks/")

    assert answer.status_code == 403
    assert "detail" in answer.json()
