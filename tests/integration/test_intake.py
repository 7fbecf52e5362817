"""The signed webhook intake over HTTP: 202 only once stored, duplicates, and every refusal in its order."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from connectors.bottlecrm.signing import sign_bottlecrm
from hub.bootstrap import Hub
from hub.config import Settings, SystemSettings
from hub.core.errors import ConfigError
from hub.core.signing import sign_standard
from hub.http.app import create_app
from hub.http.webhooks import MAX_BODY_BYTES, WebhookIntake
from hub.plugins import load_webhook_secrets

TOKEN = "test-token-not-a-secret"
SECRET = "whsec_c2VjcmV0LWtleS1mb3ItaW50YWtlLXRlc3RzLTMyYg=="
OLD_SECRET = "an-old-plain-secret"
PAYLOAD = {"local_id": "CASE-1001", "modified_at": "2026-02-13T09:00:00Z", "author": "agent@example.com",
           "fields": {"contact": {"name": "Ada Lovelace"}, "case": {"status": "New"}}}


def encode(payload: Any) -> bytes:
    return json.dumps(payload).encode()


class Sender:
    """Signs and posts webhooks the way a system would, at the hub's (test) clock."""

    def __init__(self, client: TestClient, hub: Hub):
        self.client, self.hub = client, hub

    def now(self) -> int:
        return int(self.hub.clock().timestamp())

    def post(self, body: bytes | None = None, *, system: str = "crm", msg_id: str = "msg_1",
             secret: str = SECRET, timestamp: int | None = None, content_type: str | None = "application/json",
             headers: dict[str, str] | None = None) -> Any:
        body = encode(PAYLOAD) if body is None else body
        stamp = self.now() if timestamp is None else timestamp
        sent = {"webhook-id": msg_id, "webhook-timestamp": str(stamp),
                "webhook-signature": sign_standard(secret, msg_id, stamp, body)}
        if content_type is not None:
            sent["content-type"] = content_type
        return self.client.post(f"/webhooks/{system}", content=body, headers={**sent, **(headers or {})})


@pytest.fixture
def client(hub: Hub) -> Iterator[TestClient]:
    with TestClient(create_app(hub, TOKEN, {"crm": [SECRET, OLD_SECRET], "erp": [SECRET]})) as test_client:
        yield test_client


@pytest.fixture
def sender(client: TestClient, hub: Hub) -> Sender:
    return Sender(client, hub)


def inbox_count(hub: Hub) -> int:
    with hub.store.unit_of_work() as uow:
        return uow.inbox.count()


def test_signed_webhook_is_stored_then_answered_202(sender: Sender, hub: Hub) -> None:
    """A correctly signed webhook answers 202 with its event id, and the event is already in the inbox."""
    response = sender.post(msg_id="msg_abc")
    assert response.status_code == 202
    assert response.json() == {"event_id": "crm:msg_abc", "duplicate": False}
    with hub.store.unit_of_work() as uow:
        event = uow.inbox.get("crm:msg_abc")
    assert event is not None
    assert (event["system"], event["external_id"], event["state"]) == ("crm", "msg_abc", "received")
    assert event["payload"] == PAYLOAD and event["received_at"] == hub.clock()


def test_webhooks_need_no_bearer_token(sender: Sender) -> None:
    """The signature is the authentication: no Authorization header is needed, and a wrong one is ignored."""
    assert sender.post(msg_id="a").status_code == 202
    assert sender.post(msg_id="b", headers={"Authorization": "Bearer wrong"}).status_code == 202


def test_old_and_new_secret_both_accepted_during_rotation(sender: Sender) -> None:
    """While a secret is rotated, webhooks signed with either active secret are accepted."""
    assert sender.post(msg_id="new", secret=SECRET).status_code == 202
    assert sender.post(msg_id="old", secret=OLD_SECRET).status_code == 202


def test_repeated_webhook_id_is_a_duplicate_and_changes_nothing(sender: Sender, hub: Hub) -> None:
    """The same webhook-id again answers 202 duplicate:true and leaves the stored event as it was."""
    assert sender.post(msg_id="msg_1").json() == {"event_id": "crm:msg_1", "duplicate": False}
    with hub.store.unit_of_work() as uow:
        before = uow.inbox.get("crm:msg_1")
    changed = encode({**PAYLOAD, "author": "someone-else@example.com"})
    response = sender.post(changed, msg_id="msg_1")
    assert response.status_code == 202 and response.json() == {"event_id": "crm:msg_1", "duplicate": True}
    with hub.store.unit_of_work() as uow:
        assert uow.inbox.get("crm:msg_1") == before
    assert inbox_count(hub) == 1


def test_thousand_duplicate_deliveries_store_one_event(sender: Sender, hub: Hub) -> None:
    """1,000 deliveries of one signed webhook leave exactly one inbox row; all but the first are duplicates."""
    answers = [sender.post(msg_id="msg_storm").json() for _ in range(1000)]
    assert [a["duplicate"] for a in answers] == [False] + [True] * 999
    assert {a["event_id"] for a in answers} == {"crm:msg_storm"}
    assert inbox_count(hub) == 1


def test_forged_signature_is_401_and_nothing_is_stored(sender: Sender, hub: Hub) -> None:
    """A webhook signed with a secret the hub does not hold is refused and not stored."""
    response = sender.post(secret="whsec_Zm9yZ2VkLWtleQ==")
    assert response.status_code == 401
    assert "no v1 signature in webhook-signature matches" in response.json()["detail"]
    assert inbox_count(hub) == 0


def test_body_changed_after_signing_is_401(sender: Sender, client: TestClient, hub: Hub) -> None:
    """A signature over one body does not carry another body."""
    stamp = sender.now()
    headers = {"webhook-id": "m", "webhook-timestamp": str(stamp), "content-type": "application/json",
               "webhook-signature": sign_standard(SECRET, "m", stamp, encode(PAYLOAD))}
    tampered = encode({**PAYLOAD, "local_id": "CASE-9999"})
    assert client.post("/webhooks/crm", content=tampered, headers=headers).status_code == 401
    assert inbox_count(hub) == 0


@pytest.mark.parametrize(("offset", "words"), [(-301, "too old"), (301, "too far in the future")])
def test_stale_or_future_timestamp_is_401(sender: Sender, hub: Hub, offset: int, words: str) -> None:
    """A correctly signed webhook outside the 5-minute tolerance is refused as a possible replay."""
    response = sender.post(timestamp=sender.now() + offset)
    assert response.status_code == 401 and words in response.json()["detail"]
    assert inbox_count(hub) == 0


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_signature_header_is_401_naming_it(client: TestClient, missing: str) -> None:
    """Each missing Standard Webhooks header is named in the 401."""
    headers = {"webhook-id": "m", "webhook-timestamp": "1770975000", "webhook-signature": "v1,AAAA",
               "content-type": "application/json"}
    del headers[missing]
    response = client.post("/webhooks/crm", content=b"{}", headers=headers)
    assert response.status_code == 401 and f"missing header {missing}" in response.json()["detail"]


def test_system_without_secret_is_401_naming_the_variable_to_set(sender: Sender) -> None:
    """A system with no configured secret accepts nothing, and the answer says which variable to set."""
    response = sender.post(system="mes")
    assert response.status_code == 401
    assert 'webhook_secrets_env = "TICKETHUB_MES_WEBHOOK_SECRETS"' in response.json()["detail"]


def test_unknown_system_is_404(sender: Sender) -> None:
    """A system name the configuration does not know answers 404 before anything else is looked at."""
    response = sender.post(system="nosuch", content_type="text/plain", body=b"x" * (MAX_BODY_BYTES + 1))
    assert response.status_code == 404 and "no system `nosuch`" in response.json()["detail"]


def test_body_over_the_limit_is_413_before_the_signature(sender: Sender, hub: Hub) -> None:
    """A body one byte over 1 MiB answers 413 even when correctly signed, and is not stored."""
    body = b'{"pad": "' + b"x" * (MAX_BODY_BYTES - 10) + b'"}'
    assert len(body) == MAX_BODY_BYTES + 1
    response = sender.post(body)
    assert response.status_code == 413 and "1048576-byte limit" in response.json()["detail"]
    assert inbox_count(hub) == 0


def test_size_limit_counts_the_bytes_read_not_only_content_length(hub: Hub) -> None:
    """A chunked body with no Content-Length is cut off at the limit; one under it passes the size check."""
    app = FastAPI()
    app.include_router(WebhookIntake(hub, {"crm": [SECRET]}, max_body_bytes=100).router())
    client = TestClient(app)

    def chunks(total: int) -> Iterator[bytes]:
        for _ in range(total // 10):
            yield b"x" * 10

    over = client.post("/webhooks/crm", content=chunks(110), headers={"content-type": "application/json"})
    assert over.status_code == 413 and "100-byte limit" in over.json()["detail"]
    declared = client.post("/webhooks/crm", content=b"x" * 10, headers={"content-length": "101"})
    assert declared.status_code == 413
    under = client.post("/webhooks/crm", content=chunks(100), headers={"content-type": "application/json"})
    assert under.status_code == 401  # past the size check, stopped at the (absent) signature


@pytest.mark.parametrize(("content_type", "status"), [
    ("application/json", 202), ("application/json; charset=utf-8", 202), ("Application/JSON; charset=UTF-8", 202),
    ("application/vnd.crm.event+json", 202), ("text/plain", 415), ("application/x-www-form-urlencoded", 415),
    ("application/json; charset=latin-1", 415), (None, 415),
])
def test_only_json_content_types_are_accepted(sender: Sender, hub: Hub, content_type: str | None,
                                              status: int) -> None:
    """application/json (utf-8) and +json types are accepted; anything else, or none, is 415."""
    response = sender.post(content_type=content_type)
    assert response.status_code == status
    if status == 415:
        assert "application/json" in response.json()["detail"] or "utf-8" in response.json()["detail"]
        assert inbox_count(hub) == 0


def test_signature_is_checked_before_content_type(sender: Sender) -> None:
    """An unsigned caller learns nothing about the payload rules: a forged non-JSON post is 401, not 415."""
    assert sender.post(b"hello", secret="forged", content_type="text/plain").status_code == 401


@pytest.mark.parametrize(("body", "words"), [
    (b'{"local_id": ', "body is not valid JSON: Expecting value (line 1, column 14)"),
    (b"\xff\xfe{}", "body is not UTF-8"),
    (b'{"a": NaN}', "NaN is not a JSON number"),
    (b'{"a": 1e999}', "out of range"),
    (b'{"a": ' + b"9" * 5000 + b"}", "body is not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nests deeper than 64 levels"),
    (b"[" * 70 + b"]" * 70, "nests deeper than 64 levels"),
    (b'{"a": "nul \\u0000 here"}', "a: text contains a NUL character"),
    (b'{"a\\u0000": 1}', "a key in (body): text contains a NUL character"),
    (b'{"a": ["\\ud800"]}', "a[0]: text contains an unpaired UTF-16 surrogate"),
])
def test_malformed_json_is_422_saying_what_is_wrong(sender: Sender, hub: Hub, body: bytes, words: str) -> None:
    """Bodies that are not JSON the store can keep answer 422 with the reason, and nothing is stored."""
    response = sender.post(body)
    assert response.status_code == 422
    assert words in response.json()["detail"]
    assert inbox_count(hub) == 0


@pytest.mark.parametrize(("payload", "words"), [
    ({k: v for k, v in PAYLOAD.items() if k != "modified_at"}, "modified_at: Field required"),
    ({**PAYLOAD, "modified_at": "2026-02-13T09:00:00"}, "modified_at: Input should have timezone info"),
    ({**PAYLOAD, "colour": "red"}, "colour: Extra inputs are not permitted"),
    ([PAYLOAD], "(body): Input should be a valid dictionary"),
])
def test_generic_payload_the_connector_cannot_parse_is_422(sender: Sender, hub: Hub, payload: Any,
                                                           words: str) -> None:
    """A generic system's notice missing modified_at (or otherwise malformed) is 422 naming the field."""
    response = sender.post(encode(payload))
    assert response.status_code == 422
    assert "payload for crm is not a change notice" in response.json()["detail"]
    assert words in response.json()["detail"]
    assert inbox_count(hub) == 0


@pytest.mark.parametrize("msg_id", ["x" * 191, "id with spaces"])
def test_event_id_the_inbox_cannot_key_is_422(sender: Sender, hub: Hub, msg_id: str) -> None:
    """A signed webhook whose id is too long or not printable ASCII is refused, not stored half-way."""
    response = sender.post(msg_id=msg_id)
    assert response.status_code == 422
    assert "1 to 190 printable ASCII characters" in response.json()["detail"]
    assert inbox_count(hub) == 0
    assert sender.post(msg_id="x" * 190).status_code == 202


def test_bottlecrm_scheme_is_used_for_a_bottlecrm_system(hub: Hub) -> None:
    """A system of type bottlecrm is verified by X-BottleCRM-Signature and deduped on X-BottleCRM-Delivery."""
    systems = {**hub.settings.systems, "crm": SystemSettings(type="bottlecrm", origin=True)}
    crm_hub = dataclasses.replace(hub, settings=Settings(hub=hub.settings.hub, systems=systems))
    client = TestClient(create_app(crm_hub, TOKEN, {"crm": ["bottle-secret"]}))
    body = (b'{"id":"evt-77","event":"ticket.updated","org_id":"o1","data":{"id":"case-77","name":"Ada",'
            b'"status":"New","updated_at":"2026-11-23T18:49:27.879Z"}}')
    stamp = int(hub.clock().timestamp())
    headers = {"X-BottleCRM-Signature": sign_bottlecrm("bottle-secret", stamp, body),
               "X-BottleCRM-Delivery": "dlv-77", "content-type": "application/json"}
    first = client.post("/webhooks/crm", content=body, headers=headers)
    again = client.post("/webhooks/crm", content=body, headers=headers)
    assert first.status_code == 202 and first.json() == {"event_id": "crm:dlv-77", "duplicate": False}
    assert again.json() == {"event_id": "crm:dlv-77", "duplicate": True}
    with hub.store.unit_of_work() as uow:
        assert uow.inbox.get("crm:dlv-77")["payload"]["data"]["id"] == "case-77"  # type: ignore[index]
    standard = Sender(client, crm_hub).post(msg_id="msg_std", secret="bottle-secret")
    assert standard.status_code == 401 and "missing header X-BottleCRM-Delivery" in standard.json()["detail"]


def test_create_app_reads_each_systems_secrets_from_its_variable(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without explicit secrets the app reads each system's webhook_secrets_env once, at start."""
    systems = {**hub.settings.systems,
               "crm": SystemSettings(origin=True, webhook_secrets_env="TEST_CRM_WEBHOOK_SECRETS")}
    crm_hub = dataclasses.replace(hub, settings=Settings(hub=hub.settings.hub, systems=systems))
    monkeypatch.setenv("TEST_CRM_WEBHOOK_SECRETS", f"{OLD_SECRET}, {SECRET}")
    client = TestClient(create_app(crm_hub, TOKEN))
    monkeypatch.delenv("TEST_CRM_WEBHOOK_SECRETS")  # read once: later changes do not matter
    assert Sender(client, crm_hub).post(msg_id="via-env").status_code == 202
    unset = Sender(client, crm_hub).post(msg_id="no", system="erp")
    assert unset.status_code == 401 and "TICKETHUB_ERP_WEBHOOK_SECRETS" in unset.json()["detail"]


def test_load_webhook_secrets_splits_on_whitespace_and_commas() -> None:
    """Several secrets in one variable, separated by spaces, newlines or commas, are all active."""
    settings = Settings(systems={
        "crm": SystemSettings(origin=True, webhook_secrets_env="CRM_SECRETS"),
        "erp": SystemSettings(webhook_secrets_env="ERP_SECRETS"), "mes": SystemSettings()})
    found = load_webhook_secrets(settings, {"CRM_SECRETS": f" {SECRET},{OLD_SECRET}\n third ", "ERP_SECRETS": ""})
    assert found == {"crm": [SECRET, OLD_SECRET, "third"], "erp": [], "mes": []}


def test_malformed_whsec_secret_stops_the_start_without_showing_it() -> None:
    """A whsec_ secret that is not base64 is a configuration error naming the variable, not the secret."""
    settings = Settings(systems={"crm": SystemSettings(origin=True, webhook_secrets_env="CRM_SECRETS")})
    with pytest.raises(ConfigError) as caught:
        load_webhook_secrets(settings, {"CRM_SECRETS": f"{SECRET} whsec_%%private%%"})
    message = str(caught.value)
    assert "secret 2 in $CRM_SECRETS" in message and "systems.crm.webhook_secrets_env" in message
    assert "private" not in message and SECRET not in message


@pytest.fixture
def every_level_logged() -> Iterator[None]:
    """Let info lines through even if an earlier test configured a higher level (the CLI defaults to WARNING)."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    yield
    structlog.configure(**saved)


@pytest.mark.usefixtures("every_level_logged")
def test_logs_never_contain_a_secret_or_a_signature(sender: Sender, hub: Hub) -> None:
    """Accepted, duplicate, forged, stale and unconfigured webhooks log system and event id, never a secret
    or a signature value."""
    stamp = sender.now()
    signatures = [sign_standard(s, "msg_log", stamp, encode(PAYLOAD)) for s in (SECRET, OLD_SECRET, "whsec_Zm9yZ2Vk")]
    with capture_logs() as logs:
        sender.post(msg_id="msg_log")
        sender.post(msg_id="msg_log", secret=OLD_SECRET)
        sender.post(msg_id="msg_log", secret="whsec_Zm9yZ2Vk")
        sender.post(msg_id="msg_stale", timestamp=stamp - 3600)
        sender.post(msg_id="msg_unset", system="mes")
        sender.post(encode({"local_id": 1}), msg_id="msg_bad")
    text = repr(logs)
    for value in [SECRET, SECRET.removeprefix("whsec_"), OLD_SECRET, "Zm9yZ2Vk", *signatures,
                  *(s.removeprefix("v1,") for s in signatures)]:
        assert value not in text
    assert {"event accepted", "webhook rejected"} <= {entry["event"] for entry in logs}
    accepted = [e for e in logs if e["event"] == "event accepted"]
    assert accepted and all(e["system"] == "crm" and e["event_id"] == "crm:msg_log" for e in accepted)
    rejected = [e for e in logs if e["event"] == "webhook rejected"]
    assert {e["status"] for e in rejected} == {401, 422} and all(e["system"] for e in rejected)
    assert any(e["event_id"] == "msg_bad" for e in rejected)


def test_plain_asgi_path_and_documented_route_answer_alike(hub: Hub) -> None:
    """The hub's app answers webhooks ahead of FastAPI's routing; the FastAPI route (what the OpenAPI
    document describes) gives the same status and body for every kind of request."""
    fast = TestClient(create_app(hub, TOKEN, {"crm": [SECRET], "erp": [SECRET]}))
    plain = FastAPI()
    plain.include_router(WebhookIntake(hub, {"crm": [SECRET], "erp": [SECRET]}).router())
    documented = TestClient(plain)
    assert "/webhooks/{system}" in fast.get("/openapi.json").json()["paths"]
    cases: list[dict[str, Any]] = [
        {"msg_id": "same_1"}, {"msg_id": "same_1"}, {"msg_id": "same_2", "secret": "whsec_Zm9yZ2Vk"},
        {"msg_id": "same_3", "system": "nowhere"}, {"msg_id": "same_4", "system": "mes"},
        {"msg_id": "same_5", "content_type": "text/plain"}, {"msg_id": "same_6", "body": b"{"},
        {"msg_id": "same_7", "body": encode({"local_id": 1})},
        {"msg_id": "same_8", "body": b"x" * (MAX_BODY_BYTES + 1)},
    ]
    answers = []
    for client in (fast, documented):
        with hub.store.unit_of_work() as uow:  # each client starts from an empty inbox
            uow.conn.exec_driver_sql("DELETE FROM inbox_events")
            uow.commit()
        sender = Sender(client, hub)
        answers.append([(r.status_code, r.json()) for r in (sender.post(c.pop("body", None), **c)
                                                            for c in [dict(c) for c in cases])])
    assert answers[0] == answers[1]
    assert [status for status, _ in answers[0]] == [202, 202, 401, 404, 401, 415, 422, 422, 413]
