"""The BottleCRM sandbox twin answers, records and signs as docs/peers/bottlecrm.md says the real one does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from connectors.bottlecrm.signing import verify_bottlecrm
from connectors.bottlecrm.twin import BottleCRMTwin, TwinClock, TwinError
from connectors.bottlecrm.twin.webhooks import BACKOFF, GONE_REASON
from hub.core.signing import SignatureError
from tests.e2e.harness import wait_until
from tests.serving import served

pytestmark = pytest.mark.unit

AGENT, OTHER = "agent@example.com", "lead@example.com"
HOOK = "http://hub.test/webhooks/crm"
TICKET_EVENTS = ["ticket.created", "ticket.updated"]
ALL_EVENTS = [*TICKET_EVENTS, "contact.created", "contact.updated"]
START = datetime(2026, 11, 23, 18, 49, 27, 763807, tzinfo=UTC)


class Receiver:
    """The hub's end of the webhooks: records each request and answers from a script, then 200."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.script: list[int | Exception] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.script.pop(0) if self.script else 200
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer)

    def bodies(self, event: str | None = None) -> list[dict]:
        return [json.loads(r.content) for r in self.requests if event in (None, r.headers["X-BottleCRM-Event"])]


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def twin(receiver: Receiver) -> Iterator[BottleCRMTwin]:
    with httpx.Client(transport=httpx.MockTransport(receiver)) as client:
        yield BottleCRMTwin(client, clock=TwinClock(START))


@pytest.fixture
def pat(twin: BottleCRMTwin) -> str:
    return twin.add_user(AGENT)


@pytest.fixture
def crm(twin: BottleCRMTwin, pat: str) -> Iterator[httpx.Client]:
    with twin.http_client(pat) as client:
        yield client


def new_case(crm: httpx.Client, name: str = "Printer jams", **fields: object) -> str:
    answer = crm.post("/api/cases/", json={"name": name, "status": "New", "priority": "High", **fields})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


# ---- auth -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("authorization", [None, "Bearer bcrm_pat_not-a-token", "Token whatever"])
def test_a_missing_or_wrong_credential_is_403_organization_context_never_401(twin: BottleCRMTwin,
                                                                             authorization: str | None) -> None:
    """Every record endpoint answers 403 with BottleCRM's org-context message when the token is missing or bad."""
    headers = {"Authorization": authorization} if authorization else {}
    with twin.http_client() as anonymous:
        for method, path in [("GET", "/api/cases/"), ("POST", "/api/cases/"), ("POST", "/api/contacts/")]:
            answer = anonymous.request(method, path, headers=headers, json={})
            assert answer.status_code == 403
            assert answer.json() == {"detail": "Organization context is required. Please login again."}


# ---- cases ----------------------------------------------------------------------------------------

def test_creating_a_case_answers_200_with_its_id_and_cases_obj(crm: httpx.Client, twin: BottleCRMTwin) -> None:
    """POST /api/cases/ answers 200 `{error: false, message, id, cases_obj}`, created_by naming the token's user."""
    answer = crm.post("/api/cases/", json={"name": "Printer jams", "status": "New", "priority": "High",
                                           "case_type": "Incident", "description": "Paper jam on tray 2"})

    assert answer.status_code == 200
    body = answer.json()
    assert (body["error"], body["message"]) == (False, "Case Created Successfully")
    case = body["cases_obj"]
    assert case["id"] == body["id"] and "updated_at" not in case
    assert (case["name"], case["status"], case["priority"], case["case_type"], case["description"]) == (
        "Printer jams", "New", "High", "Incident", "Paper jam on tray 2")
    assert case["created_by"] == {"id": twin.users[AGENT].user_id, "email": AGENT, "name": "agent",
                                  "profile_pic": None}
    assert case["created_at"].endswith("Z") and case["closed_on"] is None and case["contacts"] == []


def test_a_case_needs_name_status_and_priority(crm: httpx.Client) -> None:
    """An empty body is a 400 naming exactly the three required fields."""
    answer = crm.post("/api/cases/", json={})

    assert answer.status_code == 400
    assert answer.json() == {"error": True, "errors": {"name": ["This field is required."],
                                                       "status": ["This field is required."],
                                                       "priority": ["This field is required."]}}


def test_bad_case_values_are_refused_with_drf_messages(crm: httpx.Client) -> None:
    """An unknown status, a name over 64 characters and a blank priority are each named in one 400."""
    answer = crm.post("/api/cases/", json={"name": "x" * 65, "status": "Open", "priority": ""})

    assert answer.status_code == 400
    assert answer.json()["errors"] == {"name": ["Ensure this field has no more than 64 characters."],
                                       "status": ['"Open" is not a valid choice.'],
                                       "priority": ['"" is not a valid choice.']}


def test_a_case_name_must_be_unique_ignoring_case(crm: httpx.Client) -> None:
    """A second case named like an existing one, in any letter case, is refused on create and on rename."""
    first = new_case(crm, "Printer jams")
    second = new_case(crm, "Laptop flicker")

    created = crm.post("/api/cases/", json={"name": "PRINTER JAMS", "status": "New", "priority": "Low"})
    renamed = crm.patch(f"/api/cases/{second}/", json={"name": "printer jams"})
    kept = crm.patch(f"/api/cases/{first}/", json={"name": "Printer Jams"})

    for refused in (created, renamed):
        assert refused.status_code == 400
        assert refused.json()["errors"] == {"name": ["Case already exists with this name"]}
    assert kept.status_code == 200


def test_duplicate_status_is_refused_because_only_a_merge_sets_it(crm: httpx.Client) -> None:
    """Status Duplicate is a valid choice but refused by a create or a PATCH with the merge-only message."""
    case_id = new_case(crm)
    for answer in (crm.patch(f"/api/cases/{case_id}/", json={"status": "Duplicate"}),
                   crm.post("/api/cases/", json={"name": "Another", "status": "Duplicate", "priority": "Low"})):
        assert answer.status_code == 400
        assert answer.json() == {"error": True, "errors": {
            "status": ["A ticket becomes Duplicate only by merging it into another ticket."]}}


def test_reading_a_case_shows_no_updated_at_and_its_contacts_by_name_and_email(crm: httpx.Client) -> None:
    """GET /api/cases/<id>/ answers cases_obj without updated_at, contacts as {id, names, email}, activities."""
    contact_id = crm.post("/api/contacts/", json={"first_name": "Ada", "last_name": "Lovelace",
                                                  "email": "ada@example.com", "phone": "+44 20 7946 0000"}).json()["id"]
    case_id = new_case(crm, contacts=[contact_id])

    body = crm.get(f"/api/cases/{case_id}/").json()

    assert "updated_at" not in body["cases_obj"]
    link = {"id": contact_id, "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}
    assert body["contacts"] == [link] and body["cases_obj"]["contacts"] == [link]
    assert body["comments"] == [] and [a["action"] for a in body["activities"]] == ["CREATE"]


def test_an_unknown_case_is_404_no_such_case_and_a_malformed_id_is_djangos_html_404(crm: httpx.Client) -> None:
    """A well-formed unknown id answers JSON `No such case.`; an id that is not a UUID never reaches the API."""
    unknown = crm.get("/api/cases/7d778664-da33-4d0d-9821-87acbe966bf6/")
    malformed = crm.patch("/api/cases/not-a-uuid/", json={"status": "New"})

    assert (unknown.status_code, unknown.json()) == (404, {"detail": "No such case."})
    assert malformed.status_code == 404 and malformed.headers["content-type"].startswith("text/html")


def test_patch_is_partial_and_ignores_account(crm: httpx.Client, twin: BottleCRMTwin) -> None:
    """PATCH changes only the fields it sends and answers `Case Updated Successfully`; account stays as created."""
    account = twin.add_account("Acme")
    case_id = new_case(crm, account=account, description="Tray 2")

    answer = crm.patch(f"/api/cases/{case_id}/", json={"status": "Assigned", "account": twin.add_account("Other")})

    assert (answer.status_code, answer.json()) == (200, {"error": False, "message": "Case Updated Successfully"})
    case = crm.get(f"/api/cases/{case_id}/").json()["cases_obj"]
    assert (case["status"], case["priority"], case["description"]) == ("Assigned", "High", "Tray 2")
    assert case["account"] == {"id": account, "name": "Acme"}


def test_patching_contacts_replaces_them_and_leaving_them_out_keeps_them(crm: httpx.Client) -> None:
    """`contacts` present replaces the linked contacts (`[]` clears them); absent leaves them as they were."""
    ada, bob = (crm.post("/api/contacts/", json={"first_name": n, "last_name": "X"}).json()["id"]
                for n in ("Ada", "Bob"))
    case_id = new_case(crm, contacts=[ada])

    def linked() -> list[str]:
        return [c["id"] for c in crm.get(f"/api/cases/{case_id}/").json()["contacts"]]
    crm.patch(f"/api/cases/{case_id}/", json={"status": "Pending"})
    assert linked() == [ada]
    crm.patch(f"/api/cases/{case_id}/", json={"contacts": [bob]})
    assert linked() == [bob]
    crm.patch(f"/api/cases/{case_id}/", json={"contacts": []})
    assert linked() == []


def test_a_malformed_contacts_list_is_a_bare_400_outside_the_error_envelope(crm: httpx.Client) -> None:
    """An id list BottleCRM cannot parse is refused by its view helper, so the body has no `error` key."""
    answer = crm.post("/api/cases/", json={"name": "A", "status": "New", "priority": "Low", "contacts": ["nope"]})

    assert (answer.status_code, answer.json()) == (400, {"contacts": ["'nope' is not a valid id."]})


def test_closing_dates_the_case_and_reopening_clears_the_date(crm: httpx.Client, twin: BottleCRMTwin) -> None:
    """A close sets closed_on to the twin's today; moving back to an open status clears closed_on again."""
    case_id = new_case(crm)

    crm.patch(f"/api/cases/{case_id}/", json={"status": "Closed"})
    assert crm.get(f"/api/cases/{case_id}/").json()["cases_obj"]["closed_on"] == START.date().isoformat()
    crm.patch(f"/api/cases/{case_id}/", json={"status": "New"})
    assert crm.get(f"/api/cases/{case_id}/").json()["cases_obj"]["closed_on"] is None


def test_the_list_is_newest_first_ten_by_default_with_no_maximum(crm: httpx.Client, twin: BottleCRMTwin) -> None:
    """GET /api/cases/ pages by limit/offset (default 10, no cap), newest first, and counts every match."""
    ids = []
    for n in range(12):
        ids.append(new_case(crm, f"Case {n}"))
        twin.advance(1)

    first = crm.get("/api/cases/").json()
    rest = crm.get("/api/cases/?limit=10&offset=10").json()
    everything = crm.get("/api/cases/?limit=1000&slim=true").json()

    assert first["cases_count"] == 12 and [c["id"] for c in first["cases"]] == ids[::-1][:10]
    assert [c["id"] for c in rest["cases"]] == ids[::-1][10:]
    assert len(everything["cases"]) == 12 and "accounts_list" not in everything
    assert crm.get("/api/cases/?limit=nonsense").json()["cases"] == first["cases"]


def test_the_list_filters_by_repeated_status_and_an_unknown_status_is_empty(crm: httpx.Client) -> None:
    """`status` may repeat (New or Pending); a value BottleCRM does not know filters everything out, no 400."""
    new_case(crm, "One")
    pending = new_case(crm, "Two", status="Pending")
    closed = new_case(crm, "Three")
    crm.patch(f"/api/cases/{closed}/", json={"status": "Closed"})

    both = crm.get("/api/cases/", params=[("status", "New"), ("status", "Pending")]).json()
    only_pending = crm.get("/api/cases/?status=Pending").json()
    nonsense = crm.get("/api/cases/?status=Nonsense")

    assert both["cases_count"] == 2 and only_pending["cases"][0]["id"] == pending
    assert (nonsense.status_code, nonsense.json()["cases_count"]) == (200, 0)


def test_the_list_answer_offset_is_not_the_next_offset(crm: httpx.Client) -> None:
    """Like the real one, `offset` in the answer counts ids >= the page's last id (None when that is all rows)."""
    for n in range(6):
        new_case(crm, f"Case {n}")
    answer = crm.get("/api/cases/?limit=2").json()
    ids = sorted(c["id"] for c in crm.get("/api/cases/?limit=100").json()["cases"])
    expected = sum(i >= answer["cases"][-1]["id"] for i in ids)

    assert answer["offset"] == (None if expected == 6 else expected)


# ---- activities -----------------------------------------------------------------------------------

def test_activities_name_the_author_and_the_before_and_after(twin: BottleCRMTwin, crm: httpx.Client) -> None:
    """A PATCH by another user writes STATUS_CHANGED and an UPDATE diff under that user's e-mail, newest first."""
    case_id = new_case(crm, description="Paper jam on tray 2")
    with twin.http_client(twin.add_user(OTHER)) as lead:
        lead.patch(f"/api/cases/{case_id}/", json={"status": "Assigned", "description": "Tray 2 roller worn"})

    feed = crm.get(f"/api/cases/{case_id}/activities/").json()

    assert feed["count"] == 3
    update, status, create = feed["activities"]
    assert [update["action"], status["action"], create["action"]] == ["UPDATE", "STATUS_CHANGED", "CREATE"]
    assert status["metadata"] == {"before": "New", "after": "Assigned"}
    assert update["metadata"] == {"changes": {"description": {"before": "Paper jam on tray 2",
                                                              "after": "Tray 2 roller worn"}}}
    assert {a["user"]["user_details"]["email"] for a in (update, status)} == {OTHER}
    assert status["user"]["id"] == twin.users[OTHER].profile_id
    assert create["user"]["user_details"]["email"] == AGENT
    assert (status["entity_type"], status["entity_id"]) == ("Case", case_id)
    assert update["created_at"] > status["created_at"] > create["created_at"]


def test_a_priority_change_records_priority_changed_and_the_new_sla_hours(crm: httpx.Client) -> None:
    """Raising priority writes PRIORITY_CHANGED and an UPDATE with the re-derived SLA targets."""
    case_id = new_case(crm, priority="Normal")
    crm.patch(f"/api/cases/{case_id}/", json={"priority": "Urgent"})

    update, priority, _ = crm.get(f"/api/cases/{case_id}/activities/").json()["activities"]

    assert priority["metadata"] == {"before": "Normal", "after": "Urgent"}
    assert update["metadata"]["changes"] == {"sla_first_response_hours": {"before": 8, "after": 1},
                                             "sla_resolution_hours": {"before": 48, "after": 4}}


def test_a_no_op_patch_fires_ticket_updated_but_records_no_activity(twin: BottleCRMTwin, crm: httpx.Client,
                                                                    receiver: Receiver) -> None:
    """Re-sending the values a case already has is still a save: a webhook with a newer updated_at, no row."""
    twin.register_webhook(HOOK, TICKET_EVENTS)
    case_id = new_case(crm)
    twin.advance(5)

    crm.patch(f"/api/cases/{case_id}/", json={"status": "New", "priority": "High"})

    created, updated = receiver.bodies()
    assert (created["event"], updated["event"]) == ("ticket.created", "ticket.updated")
    assert updated["data"]["updated_at"] > created["data"]["updated_at"]
    assert [a.action for a in twin.activities(case_id)] == ["CREATE"]


# ---- contacts -------------------------------------------------------------------------------------

def test_a_contact_is_created_read_with_updated_at_and_its_cases_and_patched(crm: httpx.Client) -> None:
    """POST /api/contacts/ answers its id; GET shows contact_obj with updated_at and the contact's cases."""
    created = crm.post("/api/contacts/", json={"first_name": "Ada", "last_name": "Lovelace", "city": "London",
                                               "phone": "+44 20 7946 0000", "country": "GB"})
    assert created.status_code == 200
    contact_id = created.json()["id"]
    assert created.json() == {"error": False, "message": "Contact created Successfuly", "id": contact_id}
    case_id = new_case(crm, contacts=[contact_id])

    patched = crm.patch(f"/api/contacts/{contact_id}/", json={"phone": "+44 20 7946 0001"})
    body = crm.get(f"/api/contacts/{contact_id}/").json()

    assert patched.json() == {"error": False, "message": "Contact Updated Successfully"}
    assert body["contact_obj"]["phone"] == "+44 20 7946 0001" and body["contact_obj"]["updated_at"].endswith("Z")
    assert body["address_obj"]["city"] == "London"
    assert [(c["id"], c["status"]) for c in body["cases"]] == [(case_id, "New")]


def test_an_unknown_contact_is_404_with_djangos_lookup_text(crm: httpx.Client) -> None:
    """Contacts are looked up with get_object_or_404, so their 404 text differs from a case's."""
    answer = crm.get("/api/contacts/7d778664-da33-4d0d-9821-87acbe966bf6/")

    assert (answer.status_code, answer.json()) == (404, {"detail": "No Contact matches the given query."})


def test_contact_fields_are_checked_like_the_real_serializer(crm: httpx.Client) -> None:
    """Names are required, a phone must be 7-25 digits and separators, a country one of its codes."""
    answer = crm.post("/api/contacts/", json={"phone": "call me", "country": "XX"})

    assert answer.status_code == 400
    assert answer.json()["errors"] == {
        "first_name": ["This field is required."], "last_name": ["This field is required."],
        "phone": ["Enter a valid phone number (7-25 characters, digits and separators only)"],
        "country": ['"XX" is not a valid choice.']}


def test_a_contact_change_fires_contact_updated_without_address_fields(twin: BottleCRMTwin, crm: httpx.Client,
                                                                       receiver: Receiver) -> None:
    """A phone change is a contact.updated event (not a ticket one) whose data has no address."""
    twin.register_webhook(HOOK, ALL_EVENTS)
    contact_id = crm.post("/api/contacts/", json={"first_name": "Ada", "last_name": "L", "city": "London"}).json()["id"]
    crm.patch(f"/api/contacts/{contact_id}/", json={"phone": "+44 20 7946 0000"})

    created, updated = receiver.bodies()

    assert (created["event"], updated["event"]) == ("contact.created", "contact.updated")
    assert set(updated["data"]) == {"id", "first_name", "last_name", "email", "phone", "organization", "title",
                                    "account_id", "assigned_to", "created_at", "updated_at"}
    assert updated["data"]["phone"] == "+44 20 7946 0000"


# ---- webhooks: shape and signature ----------------------------------------------------------------

def test_a_delivery_is_signed_so_verify_bottlecrm_accepts_it(twin: BottleCRMTwin, crm: httpx.Client,
                                                             receiver: Receiver) -> None:
    """Headers, compact body and signature match the real delivery; verify_bottlecrm returns the delivery id."""
    secret = twin.register_webhook(HOOK, TICKET_EVENTS)
    case_id = new_case(crm, case_type="Incident")

    (request,) = receiver.requests
    headers, raw = request.headers, request.content

    assert secret.startswith("whsec_") and len(secret) == len("whsec_") + 43
    assert verify_bottlecrm([secret], headers, raw, twin.clock.timestamp()) == headers["X-BottleCRM-Delivery"]
    with pytest.raises(SignatureError):
        verify_bottlecrm(["whsec_not-the-secret"], headers, raw, twin.clock.timestamp())
    assert (headers["Content-Type"], headers["User-Agent"], headers["X-BottleCRM-Event"]) == (
        "application/json", "BottleCRM-Webhooks", "ticket.created")
    body = json.loads(raw)
    assert raw == json.dumps(body, separators=(",", ":")).encode()
    assert set(body) == {"id", "event", "created_at", "org_id", "data"} and body["org_id"] == twin.org_id
    assert body["id"] != headers["X-BottleCRM-Delivery"] and body["created_at"].endswith("+00:00")
    assert list(body["data"]) == ["id", "name", "status", "priority", "case_type", "account_id", "closed_on",
                                  "assigned_to", "created_at", "updated_at"]
    assert body["data"]["id"] == case_id and body["data"]["case_type"] == "Incident"
    assert len(body["data"]["updated_at"]) == len("2026-11-23T18:49:27.879Z")


def test_non_ascii_is_escaped_in_the_delivery_body(twin: BottleCRMTwin, crm: httpx.Client,
                                                   receiver: Receiver) -> None:
    """The body is ASCII JSON (`Caf\\u00e9`), as upstream's json.dumps writes it."""
    twin.register_webhook(HOOK, TICKET_EVENTS)
    new_case(crm, "Café machine")

    assert b'"Caf\\u00e9 machine"' in receiver.requests[0].content


def test_a_create_fires_ticket_created_only_and_inline_before_the_answer(twin: BottleCRMTwin, crm: httpx.Client,
                                                                        receiver: Receiver) -> None:
    """One create is one ticket.created (never also ticket.updated), sent before POST returns."""
    twin.register_webhook(HOOK, TICKET_EVENTS)
    new_case(crm, contacts=[])

    assert [r.headers["X-BottleCRM-Event"] for r in receiver.requests] == ["ticket.created"]


def test_queued_delivery_waits_for_send_pending_webhooks(receiver: Receiver) -> None:
    """With deliver="queued" a write only queues its webhook; send_pending_webhooks makes the first attempt."""
    with httpx.Client(transport=httpx.MockTransport(receiver)) as client:
        twin = BottleCRMTwin(client, deliver="queued", clock=TwinClock(START))
        twin.register_webhook(HOOK, TICKET_EVENTS)
        twin.add_user(AGENT)
        case_id = twin.create_case(AGENT, name="A", status="New", priority="Low")
        assert receiver.requests == []

        assert twin.send_pending_webhooks() == 1
        assert receiver.bodies()[0]["data"]["id"] == case_id and twin.send_pending_webhooks() == 0


# ---- webhooks: retries ----------------------------------------------------------------------------

def test_a_failing_receiver_is_retried_on_the_documented_schedule(twin: BottleCRMTwin, crm: httpx.Client,
                                                                 receiver: Receiver) -> None:
    """A 500 is retried 1 min, 5 min, 30 min, 2 h and 6 h later, same body and X-BottleCRM-Delivery, new `t`."""
    secret = twin.register_webhook(HOOK, ["ticket.created"])
    receiver.script = [500] * 6
    new_case(crm)

    for wait in BACKOFF:
        twin.advance(wait.total_seconds() - 1)
        assert twin.retry_due_webhooks() == 0
        twin.advance(1)
        assert twin.retry_due_webhooks() == 1
    last = receiver.requests[-1]
    assert verify_bottlecrm([secret], last.headers, last.content, twin.clock.timestamp())
    twin.advance(timedelta(days=1).total_seconds())
    assert twin.retry_due_webhooks() == 0

    first, *retries = receiver.requests
    assert len(retries) == 5
    for retry in retries:
        assert retry.content == first.content
        assert retry.headers["X-BottleCRM-Delivery"] == first.headers["X-BottleCRM-Delivery"]
    stamps = [r.headers["X-BottleCRM-Signature"].split(",")[0] for r in receiver.requests]
    assert len(set(stamps)) == 6
    (delivery,) = twin.webhooks.deliveries.values()
    assert (delivery.status, delivery.attempts, delivery.error) == ("failed", 6, "The endpoint answered HTTP 500.")


def test_a_retry_that_succeeds_settles_the_delivery(twin: BottleCRMTwin, crm: httpx.Client,
                                                   receiver: Receiver) -> None:
    """A 503 then a 200 a minute later leaves the delivery succeeded after two attempts."""
    twin.register_webhook(HOOK, ["ticket.created"])
    receiver.script = [503]
    new_case(crm)
    twin.advance(60)

    assert twin.retry_due_webhooks() == 1
    (delivery,) = twin.webhooks.deliveries.values()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("succeeded", 2, 200)
    assert [a.status_code for a in twin.webhook_log] == [503, 200]


@pytest.mark.parametrize(("failure", "error"), [
    (httpx.ConnectError("refused"), "Could not connect to the endpoint."),
    (httpx.ReadTimeout("slow"), "Timed out after 10 seconds."),
])
def test_a_refused_or_timed_out_delivery_is_retried(twin: BottleCRMTwin, crm: httpx.Client, receiver: Receiver,
                                                    failure: Exception, error: str) -> None:
    """No answer at all (refused, or over the 10 s timeout) is logged with upstream's sentence and retried."""
    twin.register_webhook(HOOK, ["ticket.created"])
    receiver.script = [failure]
    new_case(crm)

    assert (twin.webhook_log[0].status_code, twin.webhook_log[0].error) == (None, error)
    twin.advance(60)
    assert twin.retry_due_webhooks() == 1 and twin.webhook_log[1].status_code == 200


def test_a_410_fails_the_delivery_and_turns_the_endpoint_off(twin: BottleCRMTwin, crm: httpx.Client,
                                                             receiver: Receiver) -> None:
    """410 Gone is not retried; the endpoint is disabled with upstream's reason and gets no further events."""
    twin.register_webhook(HOOK, TICKET_EVENTS)
    receiver.script = [410]
    case_id = new_case(crm)

    crm.patch(f"/api/cases/{case_id}/", json={"status": "Pending"})
    twin.advance(timedelta(days=1).total_seconds())
    twin.retry_due_webhooks()

    assert len(receiver.requests) == 1
    (endpoint,) = twin.webhooks.endpoints.values()
    assert (endpoint.is_active, endpoint.disabled_reason) == (False, GONE_REASON)
    twin.set_webhook_active(HOOK)
    crm.patch(f"/api/cases/{case_id}/", json={"status": "Assigned"})
    assert len(receiver.requests) == 2


# ---- control: behind the hub's back, failures on demand -------------------------------------------

def test_an_edit_behind_the_hubs_back_changes_state_and_activities_but_sends_nothing(
        twin: BottleCRMTwin, crm: httpx.Client, receiver: Receiver) -> None:
    """edit_case(notify=False) records the author's STATUS_CHANGED and the new status, with no webhook."""
    twin.register_webhook(HOOK, TICKET_EVENTS)
    case_id = new_case(crm)
    twin.add_user(OTHER)

    twin.edit_case(case_id, OTHER, notify=False, status="Pending")

    assert len(receiver.requests) == 1  # the create only
    assert twin.cases[case_id].status == "Pending"
    newest = crm.get(f"/api/cases/{case_id}/activities/").json()["activities"][0]
    assert (newest["action"], newest["user"]["user_details"]["email"]) == ("STATUS_CHANGED", OTHER)


def test_an_edit_with_notify_fires_ticket_updated(twin: BottleCRMTwin, crm: httpx.Client,
                                                  receiver: Receiver) -> None:
    """edit_case with notify (the default) sends ticket.updated like an API PATCH."""
    twin.register_webhook(HOOK, TICKET_EVENTS)
    case_id = new_case(crm)

    twin.edit_case(case_id, AGENT, priority="Urgent")

    assert receiver.bodies("ticket.updated")[0]["data"]["priority"] == "Urgent"


def test_an_edit_the_api_would_refuse_raises_twin_error(twin: BottleCRMTwin, crm: httpx.Client) -> None:
    """A control edit goes through the same checks and raises TwinError with the 400 the API would give."""
    case_id = new_case(crm)

    with pytest.raises(TwinError) as refused:
        twin.edit_case(case_id, AGENT, status="Open")

    assert refused.value.status == 400 and refused.value.body["errors"] == {"status": ['"Open" is not a valid choice.']}
    assert twin.cases[case_id].status == "New"


def test_fail_next_answers_500_for_n_calls_then_recovers(twin: BottleCRMTwin, crm: httpx.Client) -> None:
    """fail_next(2) makes the next two calls 500 (Django's page) and the third works; the failures wrote nothing."""
    twin.fail_next(2)

    first = crm.post("/api/cases/", json={"name": "A", "status": "New", "priority": "Low"})
    second = crm.get("/api/cases/")
    third = crm.get("/api/cases/")

    assert (first.status_code, second.status_code, third.status_code) == (500, 500, 200)
    assert "Server Error (500)" in first.text and third.json()["cases_count"] == 0


def test_fail_next_answers_429_with_retry_after_only_where_asked(twin: BottleCRMTwin, crm: httpx.Client) -> None:
    """A 429 fault limited to PATCH under /api/cases/ carries Retry-After and DRF's throttle text."""
    case_id = new_case(crm)
    twin.fail_next(1, status=429, retry_after=30, method="PATCH", path_prefix="/api/cases/")

    assert crm.get(f"/api/cases/{case_id}/").status_code == 200
    throttled = crm.patch(f"/api/cases/{case_id}/", json={"status": "Pending"})
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "30")
    assert throttled.json() == {"detail": "Request was throttled. Expected available in 30 seconds."}
    assert crm.patch(f"/api/cases/{case_id}/", json={"status": "Pending"}).status_code == 200


def test_a_delayed_call_times_a_client_out_and_the_write_still_happens(twin: BottleCRMTwin, pat: str) -> None:
    """fail_next(status=None, delay_seconds) over real HTTP: the client times out, the case is created anyway."""
    with served(twin.app) as base_url, httpx.Client(base_url=base_url, timeout=0.3,
                                                 headers={"Authorization": f"Bearer {pat}"}) as client:
        twin.fail_next(1, status=None, delay_seconds=1.0, method="POST")
        with pytest.raises(httpx.ReadTimeout):
            client.post("/api/cases/", json={"name": "Slow", "status": "New", "priority": "Low"})
        wait_until(lambda: bool(twin.cases), 5, 0.02, "the write to land")

    assert [c.name for c in twin.cases.values()] == ["Slow"]


# ---- webhook management over HTTP -----------------------------------------------------------------

def test_webhook_management_refuses_a_pat_and_takes_a_session(twin: BottleCRMTwin, crm: httpx.Client) -> None:
    """POST /api/webhooks/ with a PAT is 403; with a session it is 201 with the secret, events in catalogue order."""
    refused = crm.post("/api/webhooks/", json={"url": HOOK, "events": TICKET_EVENTS})
    with twin.http_client(twin.session_token(AGENT)) as admin:
        created = admin.post("/api/webhooks/", json={"url": HOOK, "events": ["ticket.updated", "ticket.created"],
                                                     "description": "tickethub"})
        unknown = admin.post("/api/webhooks/", json={"url": HOOK, "events": ["ticket.bogus"]})
        listed = admin.get("/api/webhooks/").json()

    assert refused.status_code == 403 and refused.json()["detail"].startswith("API tokens and organization API keys")
    assert created.status_code == 201
    body = created.json()
    assert body["events"] == ["ticket.created", "ticket.updated"] and body["secret"].startswith("whsec_")
    assert body["secret_hint"] == "whsec_..." + body["secret"][-4:] and body["is_active"] is True
    assert (unknown.status_code, unknown.json()) == (400, {"events": ["Unknown event: ticket.bogus."]})
    assert [e["id"] for e in listed["endpoints"]] == [body["id"]] and "secret" not in listed["endpoints"][0]


def test_unemulated_endpoints_answer_501_not_a_guess(crm: httpx.Client) -> None:
    """A path or method the twin does not emulate says so (501) instead of inventing an answer."""
    case_id = new_case(crm)

    assert crm.delete(f"/api/cases/{case_id}/").status_code == 501
    assert crm.get("/api/activities/?entity_type=Case").status_code == 501
