"""Kuaidi100's signed form pushes through the hub's intake (SQLite, no servers): a forged push is 401 and stores
nothing, a signed one is stored and answered with Kuaidi100's acknowledgement, an exact re-push is a duplicate
that is acknowledged again, and a journey pushed by the twin reaches the ticket."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from connectors.kuaidi100.connector import Kuaidi100Connector
from connectors.kuaidi100.twin import Kuaidi100Twin
from hub.bootstrap import Hub
from hub.config import SystemSettings
from hub.core.ports import WriteRequest
from hub.http.app import create_app
from hub.http.webhooks import MAX_BODY_BYTES, WebhookIntake
from hub.usecases.ingest import accept_event
from hub.usecases.process import process_event

TOKEN = "test-token-not-a-secret"
KEY, CUSTOMER = "k100-key-for-intake-tests", "K100CUSTOMERFORINTAKETESTS"
SALT, OLD_SALT = "salt-of-the-intake-tests-0001", "older-salt-still-active"
ACK = {"result": True, "returnCode": "200", "message": "成功"}
FORM = "application/x-www-form-urlencoded"
PARAM = json.dumps({"status": "polling", "billstatus": "got", "message": "", "lastResult": {
    "message": "ok", "state": "0", "status": "200", "condition": "F00", "ischeck": "0", "com": "shunfeng",
    "nu": "SF1234567890", "data": [{"time": "2026-02-13 18:05:00", "ftime": "2026-02-13 18:05:00",
                                    "context": "快件到达【深圳转运中心】", "status": "在途"}]}},
                   ensure_ascii=False, separators=(",", ":"))


def signed(param: str = PARAM, salt: str = SALT) -> bytes:
    """A push as Kuaidi100 sends it, signed here by the documented recipe."""
    sign = hashlib.md5((param + salt).encode("utf-8")).hexdigest().upper()
    return urlencode({"param": param, "sign": sign}).encode()


def courier_settings() -> SystemSettings:
    return SystemSettings(type="kuaidi100", base_url="http://kuaidi100.twin", credentials_env="K100_KEY",
                          webhook_secrets_env="K100_SALTS", customer_env="K100_CUSTOMER",
                          callback_url="http://testserver/webhooks/courier")


@pytest.fixture
def k100_hub(hub: Hub) -> Hub:
    """The default hub with its courier on Kuaidi100."""
    systems = {**hub.settings.systems, "courier": courier_settings()}
    return dataclasses.replace(hub, settings=hub.settings.model_copy(update={"systems": systems}))


@pytest.fixture
def client(k100_hub: Hub) -> Iterator[TestClient]:
    with TestClient(create_app(k100_hub, TOKEN, {"courier": [SALT, OLD_SALT], "crm": ["crm-secret"]})) as made:
        yield made


def push(client: TestClient, body: bytes, content_type: str | None = FORM, system: str = "courier") -> Any:
    headers = {"content-type": content_type} if content_type else {}
    return client.post(f"/webhooks/{system}", content=body, headers=headers)


def inbox(hub: Hub) -> list[dict[str, Any]]:
    with hub.store.unit_of_work() as uow:
        rows = uow.conn.exec_driver_sql("SELECT event_id FROM inbox_events").all()
        return [uow.inbox.get(row[0]) for row in rows]


def test_a_signed_push_is_stored_and_acknowledged_as_kuaidi100_expects(client: TestClient, k100_hub: Hub) -> None:
    answer = push(client, signed())
    assert answer.status_code == 200 and answer.json() == ACK
    [event] = inbox(k100_hub)
    assert event["event_id"] == "courier:k100-" + hashlib.md5(PARAM.encode()).hexdigest()
    assert event["payload"] == json.loads(PARAM) and event["state"] == "received"


def test_an_exact_re_push_is_a_duplicate_and_is_acknowledged_again(client: TestClient, k100_hub: Hub) -> None:
    """Kuaidi100 pushes again when it missed the acknowledgement: stored once, acknowledged every time."""
    assert [push(client, signed()).json() for _ in range(3)] == [ACK] * 3
    assert len(inbox(k100_hub)) == 1
    newer = PARAM.replace("18:05:00", "19:30:00")
    assert push(client, signed(newer)).json() == ACK
    assert len(inbox(k100_hub)) == 2


def test_a_push_signed_with_an_older_active_salt_is_accepted(client: TestClient, k100_hub: Hub) -> None:
    assert push(client, signed(salt=OLD_SALT)).json() == ACK


@pytest.mark.parametrize(("body", "words"), [
    (signed(salt="a-salt-the-hub-never-gave"), "signature check failed: form field sign matches none of the 2"),
    (urlencode({"param": PARAM}).encode(), "signature check failed: missing form field sign"),
    (signed(PARAM).replace(b"SF1234567890", b"SF0000000000"), "matches none"),  # param changed after signing
    (json.dumps({"param": PARAM}).encode(), "signature check failed: body is not a UTF-8 form"),
])
def test_a_forged_or_unsigned_push_is_401_and_stores_nothing(client: TestClient, k100_hub: Hub, body: bytes,
                                                             words: str) -> None:
    answer = push(client, body)
    assert answer.status_code == 401
    assert answer.json()["result"] is False and answer.json()["returnCode"] == "401"
    assert words in answer.json()["message"]
    assert SALT not in answer.text and OLD_SALT not in answer.text
    assert inbox(k100_hub) == []


@pytest.mark.parametrize(("body", "content_type", "status", "words"), [
    (signed(), "application/json", 415, "Content-Type is `application/json`; Kuaidi100 pushes"),
    (signed(), None, 415, "Content-Type is missing"),
    (signed("{not json"), FORM, 422, "form field param is not JSON"),
    (signed('{"lastResult": {"com": "shunfeng"}}'), FORM, 422, "`lastResult.nu` must be a non-empty string"),
    (signed('{"status": "polling"}'), FORM, 422, "is not a Kuaidi100 push"),
    (signed('{"a": "nul \\u0000 here"}'), FORM, 422, "text contains a NUL character"),
])
def test_a_signed_body_that_is_not_a_push_is_refused_in_kuaidi100s_shape(client: TestClient, k100_hub: Hub,
                                                                         body: bytes, content_type: str | None,
                                                                         status: int, words: str) -> None:
    answer = push(client, body, content_type)
    assert answer.status_code == status
    assert answer.json()["result"] is False and words in answer.json()["message"]
    assert inbox(k100_hub) == []


def test_other_refusals_take_kuaidi100s_shape_too(k100_hub: Hub) -> None:
    """Too large (413) and no salt configured (401, naming the variable) answer as Kuaidi100 expects; an
    unknown system has no type to answer for, so the hub answers it."""
    unconfigured = TestClient(create_app(k100_hub, TOKEN, {}))
    answer = push(unconfigured, signed())
    assert answer.status_code == 401 and "K100_SALTS" in answer.json()["message"]
    too_large = push(unconfigured, b"param=" + b"x" * MAX_BODY_BYTES)
    assert too_large.status_code == 413 and too_large.json()["returnCode"] == "413"
    assert push(unconfigured, signed(), system="nowhere").json() == {"detail": "no system `nowhere` is configured"}


def test_the_plain_asgi_path_and_the_documented_route_answer_alike(k100_hub: Hub) -> None:
    secrets = {"courier": [SALT]}
    fast = TestClient(create_app(k100_hub, TOKEN, secrets))
    plain = FastAPI()
    plain.include_router(WebhookIntake(k100_hub, secrets).router())
    documented = TestClient(plain)
    cases = [(signed(), FORM), (signed(), FORM), (signed(salt="forged"), FORM), (signed(), "text/plain"),
             (signed("[]"), FORM), (signed(PARAM.replace("0", "1")), FORM)]
    answers = []
    for client in (fast, documented):
        with k100_hub.store.unit_of_work() as uow:
            uow.conn.exec_driver_sql("DELETE FROM inbox_events")
            uow.commit()
        answers.append([(r.status_code, r.json()) for r in (push(client, b, t) for b, t in cases)])
    assert answers[0] == answers[1]
    assert [status for status, _ in answers[0]] == [200, 200, 401, 415, 422, 200]


def test_a_journey_pushed_by_the_twin_reaches_the_ticket(k100_hub: Hub, client: TestClient) -> None:
    """The hub subscribes the ticket's parcel; the twin pushes each step into the hub's app; processed, the
    pushes move the ticket's shipment status and, once signed for, set its delivery time. The `com` each push
    carries is the courier's code for the WMS's carrier name, which the hub wrote: agreement, never refused."""
    crm_case = {"local_id": "CASE-1", "modified_at": "2026-02-13T09:00:00Z", "author": "agent@example.com",
                "fields": {"contact": {"name": "Ada Lovelace"}, "case": {"status": "New"}}}
    ticket_id = process_event(k100_hub, accept_event(k100_hub, "crm", "case-1", crm_case)[0]).ticket_id
    assert ticket_id is not None
    with k100_hub.store.unit_of_work() as uow:
        uow.tickets.link(ticket_id, "wms", "WMS-1", k100_hub.clock())
        uow.commit()
    shipped = {"local_id": "WMS-1", "modified_at": "2026-02-13T10:00:00Z", "author": "warehouse-lead",
               "fields": {"shipment": {"carrier": "顺丰速运", "tracking_number": "SF1"}}}
    process_event(k100_hub, accept_event(k100_hub, "wms", "wms-1", shipped)[0])

    twin = Kuaidi100Twin(KEY, CUSTOMER, push_client=client)
    twin.script("shunfeng", "SF1", [("103", "顺丰速运 已收取快件"), ("1002", "快件到达【深圳转运中心】"),
                                    ("501", "快件已投递至丰巢柜"), ("304", "快件已从丰巢柜取出签收")])
    courier = Kuaidi100Connector("courier", twin.base_url, KEY, CUSTOMER, SALT, "http://testserver/webhooks/courier",
                                 httpx.Client(transport=twin.transport()))
    subscribed = courier.write(WriteRequest(1, ticket_id, "courier", None, {"num": "SF1", "com": "shunfeng"}, 1))
    assert subscribed.status_code == 200 and subscribed.local_id == "shunfeng:SF1"
    with k100_hub.store.unit_of_work() as uow:  # what delivery does with the local ID a create reports
        uow.tickets.link(ticket_id, "courier", subscribed.local_id, k100_hub.clock())
        uow.commit()

    statuses = []
    for _ in range(4):
        sent = twin.advance("shunfeng", "SF1")
        assert sent is not None and sent.acknowledged
        event_id = f"courier:k100-{hashlib.md5(sent.param.encode()).hexdigest()}"
        assert process_event(k100_hub, event_id).ticket_id == ticket_id
        with k100_hub.store.unit_of_work() as uow:
            fields = uow.tickets.load_state(ticket_id).fields
        statuses.append(fields["shipment.status"].value)
        assert ("shipment.delivered_at" in fields) == (len(statuses) == 4)
    assert statuses == ["collected", "in_transit", "delivering", "delivered"]
    with k100_hub.store.unit_of_work() as uow:
        history = uow.tickets.history(ticket_id)
    assert [e.field for e in history if e.system == "wms"] == ["shipment.carrier", "shipment.waybill"]
    assert [e.outcome for e in history if e.system == "courier" and e.field == "shipment.carrier"] == []
    assert fields["shipment.status"].provenance.author == "kuaidi100"
    delivered = twin.parcels[("shunfeng", "SF1")].checkpoints[-1].at
    assert fields["shipment.delivered_at"].value == delivered.strftime("%Y-%m-%dT%H:%M:%SZ")
