"""The CRM connector for BottleCRM (PyPI django-crm 1.35): cases are tickets, the case's first contact
is the customer. How the real API behaves is written down in docs/peers/bottlecrm.md.

The record the mapping sees:

    {"case":    {"name", "status", "priority", "case_type", "description"},
     "contact": {"name", "first_name", "last_name", "email", "phone", "address"}}

Provenance: BottleCRM's case answers carry no modified-at and its webhooks no author. The hub takes
the modified-at from the webhook (`data.updated_at`) or, when reading without one, from the newest
entry of the case's activity feed; the author from that feed's newest entry when it was written at
the time of the change. A save that changed nothing, a contact edit, or a link change leaves no
activity with a diff: the author is then `unknown`.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import httpx

from hub.core.canonical import parse_datetime
from hub.core.errors import InvalidValue
from hub.core.ports import (
    UNKNOWN_AUTHOR,
    ConnectorError,
    FieldSchema,
    Notice,
    RecordNotFound,
    SourceRecord,
    TransientReadError,
    WriteRequest,
    WriteResult,
    parse_retry_after,
)
from hub.core.retry import read_page

STATUSES = ("New", "Assigned", "Pending", "Closed", "Rejected", "Duplicate")
CASE_FIELDS = ("name", "status", "priority", "case_type", "description")
ADDRESS_PARTS = ("address_line", "city", "state", "postcode", "country")
ACTIVITY_WINDOW = timedelta(seconds=2)  # an activity this close after the change is the change's


class BottleCRMAuth(httpx.Auth):
    """Personal access token as a bearer token."""

    def __init__(self, token: str):
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


class BottleCRMConnector:
    SCHEMA: Mapping[str, FieldSchema] = {
        "case.name": FieldSchema("string", max_length=64),
        # Duplicate is readable but can only be set by a merge: writing it is refused
        "case.status": FieldSchema("enum", choices=STATUSES[:-1]),
        "case.priority": FieldSchema("enum", choices=("Low", "Normal", "High", "Urgent")),
        "case.case_type": FieldSchema("enum", choices=("Question", "Incident", "Problem")),
        "case.description": FieldSchema("text"),
        "contact.name": FieldSchema("string", max_length=511),
        "contact.email": FieldSchema("string", max_length=254),
        "contact.phone": FieldSchema("string", max_length=25),
        "contact.address": FieldSchema("text"),
    }

    def __init__(self, system: str, base_url: str, token: str, client: httpx.Client, page_size: int = 100):
        self.system = system
        self.base_url = base_url.rstrip("/")
        self.auth = BottleCRMAuth(token)
        self.client = client
        self.page_size = page_size

    # ---- webhooks ---------------------------------------------------------------------------------

    @staticmethod
    def parse_notice(headers: Mapping[str, str], payload: Any) -> list[Notice]:
        """What a BottleCRM delivery says changed. Pure; InvalidValue names what is wrong."""
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
            raise InvalidValue("a BottleCRM delivery is an object with `event` and `data`")
        event, data = payload.get("event"), payload["data"]
        if event not in ("ticket.created", "ticket.updated", "ticket.comment_added",
                         "contact.created", "contact.updated"):
            raise InvalidValue(f"BottleCRM event `{event}` is not one the hub subscribes to")
        if event == "ticket.comment_added":
            local_id, when = data.get("ticket_id"), data.get("created_at")
        else:
            local_id, when = data.get("id"), data.get("updated_at") or data.get("created_at")
        if not isinstance(local_id, str) or not local_id:
            raise InvalidValue(f"BottleCRM `{event}` has no record id in `data`")
        try:
            modified = parse_datetime(when) if isinstance(when, str) else None
        except InvalidValue as exc:
            raise InvalidValue(f"BottleCRM `{event}`: `updated_at` {exc}") from exc
        if event.startswith("contact."):  # the contact's time is not its cases': reading them finds theirs
            return [Notice(local_id, None, kind="contact")]
        return [Notice(local_id, modified, kind="case")]

    # ---- reads ------------------------------------------------------------------------------------

    def read(self, local_id: str, kind: str = "case") -> list[SourceRecord]:
        """The ticket record(s) a notice is about: one case, or every case of a changed contact."""
        if kind == "contact":
            contact = self._get(f"/api/contacts/{local_id}/", "contact")
            updated = contact["contact_obj"].get("updated_at")
            return [self._case_record(c["id"], parse_datetime(updated) if updated else None)
                    for c in contact.get("cases", [])]
        return [self._case_record(local_id)]

    def read_all(self, since: datetime | None = None) -> Iterator[SourceRecord]:
        """Every case, a page at a time. Cases have no changed-since filter: with `since`, every case is
        read and those last changed before it are left out."""
        offset = 0
        while True:
            page = read_page(partial(self._get, "/api/cases/", "case list",
                                     params={"limit": self.page_size, "offset": offset, "slim": "true"}))
            for case in page.get("cases", []):
                record = read_page(partial(self._case_record, case["id"]))
                if since is None or record.modified_at >= since:
                    yield record
            offset += self.page_size
            if offset >= int(page.get("cases_count", 0)):  # the answer's own `offset` is unreliable
                return

    def _case_record(self, case_id: str, changed_at: datetime | None = None) -> SourceRecord:
        detail = self._get(f"/api/cases/{case_id}/", "case")
        case = detail["cases_obj"]
        contacts = detail.get("contacts") or case.get("contacts") or []
        contact = self._contact(contacts[0]["id"]) if contacts else {}
        activities = self._get(f"/api/cases/{case_id}/activities/", "case activity",
                               params={"limit": 1}).get("activities", [])
        newest = activities[0] if activities else None
        newest_at = parse_datetime(newest["created_at"]) if newest else parse_datetime(case["created_at"])
        modified = changed_at or newest_at
        author = UNKNOWN_AUTHOR
        if newest and modified - timedelta(milliseconds=5) <= newest_at <= modified + ACTIVITY_WINDOW:
            author = ((newest.get("user") or {}).get("user_details") or {}).get("email") or UNKNOWN_AUTHOR
        elif not activities:
            author = (case.get("created_by") or {}).get("email") or UNKNOWN_AUTHOR
        fields = {"case": {k: case.get(k) for k in CASE_FIELDS}, "contact": contact}
        return SourceRecord(self.system, case_id, modified, author, fields, version=newest["id"] if newest else None)

    def _contact(self, contact_id: str) -> dict[str, Any]:
        obj = self._get(f"/api/contacts/{contact_id}/", "contact")["contact_obj"]
        name = " ".join(p for p in (obj.get("first_name"), obj.get("last_name")) if p)
        address = ", ".join(str(obj[p]) for p in ADDRESS_PARTS if obj.get(p))
        return {"id": obj["id"], "name": name, "first_name": obj.get("first_name"), "last_name": obj.get("last_name"),
                "email": obj.get("email"), "phone": obj.get("phone"), "address": address or None}

    def _get(self, path: str, what: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self.client.get(self.base_url + path, params=params, auth=self.auth)
        except httpx.HTTPError as exc:
            raise TransientReadError(
                f"{self.system}: BottleCRM did not answer for the {what}: {type(exc).__name__}") from exc
        if response.status_code == 404:
            raise RecordNotFound(f"{self.system}: BottleCRM has no {what} at {path}")
        if response.status_code == 403:
            raise ConnectorError(f"{self.system}: BottleCRM refused the token (403); check the PAT and its org")
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientReadError(f"{self.system}: BottleCRM answered {response.status_code} for the {what}",
                                     parse_retry_after(response.headers.get("retry-after"), time.time()))
        if not response.is_success:
            raise ConnectorError(f"{self.system}: BottleCRM answered {response.status_code} for the {what}")
        try:
            data = response.json()
        except ValueError as exc:
            raise ConnectorError(f"{self.system}: BottleCRM answered the {what} with something not JSON") from exc
        if not isinstance(data, dict):
            raise ConnectorError(f"{self.system}: BottleCRM answered the {what} with a {type(data).__name__}")
        return data

    # ---- writes -----------------------------------------------------------------------------------

    def write(self, request: WriteRequest) -> WriteResult:
        if request.local_id is None:
            return self.create(request)
        case_values, contact_values = _split(request.fields)
        if contact_values:
            detail = self._send("GET", f"/api/cases/{request.local_id}/")
            if isinstance(detail, WriteResult):
                return detail
            contacts = detail.json().get("contacts") or []
            if contacts:
                answer = self._send("PATCH", f"/api/contacts/{contacts[0]['id']}/", contact_values)
            else:
                answer = self._create_contact(contact_values, request.local_id)
            if isinstance(answer, WriteResult):
                return answer
        if case_values or not contact_values:
            answer = self._send("PATCH", f"/api/cases/{request.local_id}/", case_values)
            if isinstance(answer, WriteResult):
                return answer
        return WriteResult(200, local_id=request.local_id)

    def create(self, request: WriteRequest) -> WriteResult:
        case_values, contact_values = _split(request.fields)
        body = {"name": request.ticket_id, "status": "New", "priority": "Normal", **case_values}
        answer = self._send("POST", "/api/cases/", body)
        if isinstance(answer, WriteResult):
            return answer
        case_id = str(answer.json().get("id") or "")
        if not case_id:
            return WriteResult(answer.status_code, error="BottleCRM created a case but named no id", permanent=True)
        if contact_values:
            linked = self._create_contact(contact_values, case_id)
            if isinstance(linked, WriteResult) and linked.status_code not in (200, 201):
                return WriteResult(linked.status_code, linked.retry_after, linked.error, local_id=case_id)
        return WriteResult(200, local_id=case_id)

    def _create_contact(self, values: dict[str, Any], case_id: str) -> httpx.Response | WriteResult:
        body = {"first_name": values.pop("first_name", None) or "-", "last_name": values.pop("last_name", None) or "-",
                **values}
        answer = self._send("POST", "/api/contacts/", body)
        if isinstance(answer, WriteResult):
            return answer
        return self._send("PATCH", f"/api/cases/{case_id}/", {"contacts": [answer.json()["id"]]})

    def _send(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> httpx.Response | WriteResult:
        """The answer when it is a success; otherwise the WriteResult that says why not."""
        try:
            response = self.client.request(method, self.base_url + path, json=body, auth=self.auth)
        except httpx.TimeoutException as exc:
            return WriteResult(None, error=f"timed out: {type(exc).__name__}")
        except httpx.HTTPError as exc:
            return WriteResult(None, error=f"no answer: {type(exc).__name__}")
        if response.is_success:
            try:
                data = response.json()
            except ValueError:
                data = None
            if isinstance(data, dict) and data.get("error") is True:  # BottleCRM's errors can come as 200
                return WriteResult(400, error=f"{method} {path}: {response.text[:300]}")
            return response
        return WriteResult(response.status_code, parse_retry_after(response.headers.get("retry-after"), time.time()),
                           f"{method} {path}: HTTP {response.status_code}: {response.text[:300]}")


def _split(fields: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    case_values: dict[str, Any] = {}
    contact_values: dict[str, Any] = {}
    for name, value in fields.items():
        kind, _, key = name.partition(".")
        if kind == "case":
            case_values[key] = value
        elif key == "name":
            first, _, last = str(value or "").strip().partition(" ")
            contact_values.update(first_name=first or "-", last_name=last or "-")
        elif key == "address":
            contact_values["address_line"] = value
        else:
            contact_values[key] = value
    return case_values, contact_values
