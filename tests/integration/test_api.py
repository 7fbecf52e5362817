"""The read side over HTTP: golden record with provenance, history, lookup by local ID, auth, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from hub.bootstrap import Hub
from hub.http.app import create_app
from hub.usecases.ingest import accept_event
from hub.usecases.process import process_event

TOKEN = "test-token-not-a-secret"
T0 = datetime(2026, 2, 13, 9, 0, tzinfo=UTC)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(hub: Hub) -> TestClient:
    return TestClient(create_app(hub, TOKEN))


@pytest.fixture
def ticket_id(hub: Hub) -> str:
    def send(external_id: str, minutes: int, **fields: object) -> str | None:
        event_id, _ = accept_event(hub, "crm", external_id, {
            "local_id": "CASE-1001", "modified_at": (T0 + timedelta(minutes=minutes)).isoformat(),
            "author": "agent@example.com", "fields": fields})
        return process_event(hub, event_id).ticket_id

    created = send("e1", 0, contact={"name": "Ada Lovelace", "phone": "+44 20 7946 0000"}, case={"status": "New"})
    send("e2", 5, case={"status": "Assigned", "repair_progress": 90})
    assert created is not None
    return created


def test_ticket_shows_values_with_provenance_links_and_status(client: TestClient, ticket_id: str) -> None:
    """GET /tickets/{id} gives each field's value and where it came from, the links and the status."""
    body = client.get(f"/tickets/{ticket_id}", headers=AUTH).json()
    assert body["ticket_id"] == ticket_id and body["status"] == "assigned"
    assert body["xrefs"] == [{"system": "crm", "local_id": "CASE-1001"}]
    phone = body["fields"]["customer.phone"]
    assert phone["value"] == "+44 20 7946 0000"
    assert phone["provenance"] == {
        "system": "crm", "author": "agent@example.com", "author_rank": 50, "system_rank": 50,
        "modified_at": "2026-02-13T09:00:00Z", "received_at": "2026-02-13T09:30:00Z", "event_id": "crm:e1",
    }
    assert "production.progress" not in body["fields"]


def test_history_lists_changes_oldest_first_with_rejections(client: TestClient, ticket_id: str) -> None:
    """The history shows applied changes and the CRM's rejected progress edit with its author and reason."""
    entries = client.get(f"/tickets/{ticket_id}/history", headers=AUTH).json()["entries"]
    assert [e["id"] for e in entries] == sorted(e["id"] for e in entries)
    assert entries[0]["outcome"] == "applied"
    rejected = [e for e in entries if e["outcome"] == "not_owner"]
    assert len(rejected) == 1
    assert rejected[0]["field"] == "production.progress" and rejected[0]["author"] == "agent@example.com"
    assert "owned by mes" in rejected[0]["reason"]


def test_lookup_by_local_id_finds_the_ticket(client: TestClient, ticket_id: str) -> None:
    """GET /tickets?system=crm&local_id=... returns the same ticket as its global ID."""
    response = client.get("/tickets", params={"system": "crm", "local_id": "CASE-1001"}, headers=AUTH)
    assert response.status_code == 200 and response.json()["ticket_id"] == ticket_id


@pytest.mark.parametrize(("path", "status", "words"), [
    ("/tickets/20260213-SVC-99999", 404, "no ticket 20260213-SVC-99999"),
    ("/tickets/20260213-SVC-99999/history", 404, "no ticket"),
    ("/tickets/not-a-ticket", 422, "expected YYYYMMDD-BIZ-NNNNN"),
    ("/tickets/20261345-SVC-00001", 422, "not a calendar date"),
    ("/tickets/20260213-svc-00001/history", 422, "not a ticket ID"),
    ("/tickets?system=crm&local_id=NOPE", 404, "no ticket is linked to crm record NOPE"),
    ("/tickets?system=nosuch&local_id=1", 404, "no system `nosuch`"),
    ("/tickets?system=crm", 422, "local_id"),
])
def test_bad_requests_get_a_clear_error(client: TestClient, ticket_id: str, path: str, status: int,
                                        words: str) -> None:
    """Unknown and malformed IDs are told apart, with a message that says what is wrong."""
    response = client.get(path, headers=AUTH)
    assert response.status_code == status
    assert words in response.json()["detail"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}])
def test_reading_tickets_needs_the_bearer_token(client: TestClient, ticket_id: str, headers: dict[str, str]) -> None:
    """Without the configured bearer token the API answers 401 and shows nothing."""
    response = client.get(f"/tickets/{ticket_id}", headers=headers)
    assert response.status_code == 401 and "Ada" not in response.text


def test_health_needs_no_token_and_readiness_checks_the_database(client: TestClient) -> None:
    """Load balancers can probe /healthz and /readyz without credentials."""
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok", "database": "ok"}


def test_openapi_describes_the_read_side(client: TestClient) -> None:
    """The contract is published at /openapi.json."""
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/tickets/{ticket_id}", "/tickets/{ticket_id}/history", "/tickets", "/healthz"} <= set(paths)


def test_metrics_report_events_and_delivery_states(client: TestClient, ticket_id: str) -> None:
    """/metrics (with the token) shows accepted events and the pending deliveries read from the database."""
    assert client.get("/metrics").status_code == 401
    text = client.get("/metrics", headers=AUTH).text
    assert 'tickethub_events_total{outcome="accepted",system="crm"}' in text
    assert 'tickethub_deliveries{state="pending",system="erp"} 1.0' in text
    assert 'tickethub_dead_letters{system="erp"} 0.0' in text


def test_deliveries_are_listed_and_replay_refuses_a_live_delivery(client: TestClient, ticket_id: str) -> None:
    """GET /deliveries lists the ticket's pending writes; replaying one that is not dead answers 409."""
    listed = client.get("/deliveries", params={"state": "pending"}, headers=AUTH).json()["deliveries"]
    assert {d["system"] for d in listed} == {"erp", "wms"} and all(d["ticket_id"] == ticket_id for d in listed)
    assert client.post(f"/deliveries/{listed[0]['id']}/replay", headers=AUTH).status_code == 409
    assert client.post("/deliveries/999999/replay", headers=AUTH).status_code == 404
    assert client.get("/deliveries", params={"state": "nonsense"}, headers=AUTH).status_code == 422
    assert client.get("/deliveries", params={"system": "nosuch"}, headers=AUTH).status_code == 404
