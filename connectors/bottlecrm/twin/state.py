"""The sandbox twin of BottleCRM (django-crm 1.35): one org in memory, served as an ASGI app.

It answers the subset of the REST API the hub uses with the real one's paths, payload shapes, status
codes, error bodies, webhook signing and retry schedule (docs/peers/bottlecrm.md; where the doc is
silent, django-crm's installed source was read and the file is named beside the rule). It has its own
users, clock and state, and does no I/O at import or construction.

    twin = BottleCRMState(httpx.Client(...), deliver="inline")     # the client its webhooks go out through
    pat = twin.add_user("agent@example.com")
    secret = twin.register_webhook("http://hub/webhooks/crm", ["ticket.created", "ticket.updated"])
    with twin.http_client(pat) as crm:                            # or serve `twin.app` with uvicorn
        case_id = crm.post("/api/cases/", json={"name": "Printer jams", "status": "New",
                                               "priority": "High"}).json()["id"]
    twin.edit_case(case_id, "agent@example.com", notify=False, status="Pending")   # behind the hub's back
    twin.fail_next(2, status=429, retry_after=30)
    twin.advance(60); twin.retry_due_webhooks()

Modules: this one holds the state and the write rules (what a save changes, which activity rows it
writes, which events it fires); `sandbox_fields` what a write may contain; `sandbox_http` the routes,
authentication, injected faults and answer shapes; `sandbox_webhooks` the signed deliveries and retries.

Left out (the HTTP layer answers 501, so nobody mistakes them for real behaviour): PUT and DELETE,
comments (`ticket.comment_added`), accounts (only `add_account` for links), teams, tags, merges, custom
fields, SLA deadlines, the dashboard feed `/api/activities/`, the contacts list, webhook
PATCH/test/rotate/redeliver and the delivery-log endpoints, form and multipart bodies. Every user is an
admin of the one org (the real one also has members who see less).
"""

from __future__ import annotations

import json
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal

import httpx

from connectors.bottlecrm.twin.fields import (
    CASE_FIELDS,
    CONTACT_FIELDS,
    OPEN_STATUSES,
    Refusal,
    canonical_id,
    clean,
    id_list,
)
from connectors.bottlecrm.twin.webhooks import WebhookAttempt, Webhooks
from hub.core.errors import TickethubError

SLA_HOURS = {"Low": (24, 72), "Normal": (8, 48), "High": (4, 24), "Urgent": (1, 4)}  # cases/workflow.py defaults
NO_ORG = "Organization context is required. Please login again."
NOT_FOR_TOKENS = ("API tokens and organization API keys cannot read or manage other credentials. "
                  "Sign in to manage them.")
NO_SUCH_CASE = "No such case."
NO_SUCH_CONTACT = "No Contact matches the given query."  # Django's get_object_or_404 text (contacts/views.py)
DUPLICATE_BY_MERGE_ONLY = "A ticket becomes Duplicate only by merging it into another ticket."
# cases/signals.py _TRACKED_SCALAR_FIELDS, the fields one UPDATE row diffs (less stage_id: no stages here)
TRACKED = ("name", "case_type", "description", "closed_on", "account_id", "sla_first_response_hours",
           "sla_resolution_hours", "first_response_at", "resolved_at")
METADATA_BYTE_CAP = 4096


class TwinError(TickethubError):
    """A control call (`edit_case`, `create_contact`, ...) the real API would refuse; `status` and `body`
    are the answer it would give."""

    def __init__(self, status: int, body: Any):
        super().__init__(f"BottleCRM sandbox twin refused the change: HTTP {status} {json.dumps(body)}")
        self.status, self.body = status, body


# ---- state ----------------------------------------------------------------------------------------

@dataclass
class TwinUser:
    user_id: str  # `created_by.id` on a case
    profile_id: str  # `user.id` on an activity row, and what `assigned_to` holds
    email: str
    name: str
    created_at: datetime


@dataclass
class TwinCase:
    id: str
    name: str
    status: str
    priority: str
    created_by: str  # user id
    created_at: datetime
    updated_at: datetime  # kept, as upstream keeps it, but REST never shows it (webhook payloads do)
    updated_by: str
    sla_first_response_hours: int
    sla_resolution_hours: int
    case_type: str | None = None
    description: str | None = None
    account_id: str | None = None
    closed_on: date | None = None
    is_active: bool = True
    contacts: list[str] = field(default_factory=list)
    assigned_to: list[str] = field(default_factory=list)  # profile ids
    first_response_at: datetime | None = None  # stamped by a first public reply; the twin has no comments
    resolved_at: datetime | None = None
    sla_paused_at: datetime | None = None


@dataclass
class TwinContact:
    id: str
    first_name: str
    last_name: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    email: str | None = None
    phone: str | None = None
    organization: str | None = None
    title: str | None = None
    address_line: str | None = None
    city: str | None = None
    state: str | None = None
    postcode: str | None = None
    country: str | None = None
    description: str | None = None
    account_id: str | None = None
    is_active: bool = True


@dataclass(frozen=True)
class TwinActivity:
    id: str
    action: str
    profile_id: str | None
    entity_id: str
    entity_name: str
    metadata: dict[str, Any]
    created_at: datetime
    entity_type: str = "Case"


@dataclass
class Fault:
    """What `fail_next` asked for: the next `remaining` matching calls wait, then answer `status`."""

    remaining: int
    status: int | None
    retry_after: float | None
    delay_seconds: float | None
    method: str | None
    path_prefix: str | None


class TwinClock:
    """The twin's time: starts at `start` (default: the wall clock at construction) and moves only when
    told to, except that each record stamp moves it on by `tick`, so stamps are distinct and ordered the way
    the real one's are, a few ms apart (a case's `updated_at` < its activity rows < the webhook envelope)."""

    def __init__(self, start: datetime | None = None, tick: timedelta = timedelta(milliseconds=1)):
        self._now = (start or datetime.now(UTC)).astimezone(UTC)
        self._tick = tick
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def timestamp(self) -> float:
        return self.now().timestamp()

    def stamp(self) -> datetime:
        with self._lock:
            self._now += self._tick
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when.astimezone(UTC)


# ---- the twin -------------------------------------------------------------------------------------

class BottleCRMState:
    app: Any  # the HTTP face, set by `connectors.bottlecrm.twin.BottleCRMTwin`

    """One BottleCRM org: `app` serves it over HTTP; the methods below are the tests' control panel."""

    def __init__(self, webhook_client: httpx.Client | None = None, *,
                 deliver: Literal["inline", "queued"] = "inline", org_name: str = "Tickethub Sandbox",
                 clock: TwinClock | None = None):

        self.clock = clock or TwinClock()
        self.deliver = deliver
        self.org_id, self.org_name = str(uuid.uuid4()), org_name
        self.lock = threading.RLock()  # held for every read and write of the state below
        self._owns_client = webhook_client is None
        self.webhooks = Webhooks(webhook_client or httpx.Client(), self.clock.now, self.org_id, self.lock,
                                 self.clock.stamp)
        self._users: dict[str, TwinUser] = {}  # by email
        self._tokens: dict[str, tuple[str, bool]] = {}  # token -> (email, is a signed-in session)
        self._cases: dict[str, TwinCase] = {}
        self._contacts: dict[str, TwinContact] = {}
        self._accounts: dict[str, str] = {}  # id -> name
        self._activities: list[TwinActivity] = []
        self._faults: list[Fault] = []
        self._events: dict[tuple[str, str], set[str]] = {}  # (kind, id) -> actions, during one write

    # -- users, accounts and read access -----------------------------------------------------------

    def add_user(self, email: str, name: str | None = None) -> str:
        """A new personal access token (`bcrm_pat_…`) for `email`, adding the user (an org admin) the first
        time; `name` defaults to the e-mail's local part, as the real `devlogin` made it."""
        with self.lock:
            if email not in self._users:
                self._users[email] = TwinUser(str(uuid.uuid4()), str(uuid.uuid4()), email,
                                              name or email.split("@")[0], self.clock.now())
            token = "bcrm_pat_" + secrets.token_urlsafe(32)
            self._tokens[token] = (email, False)
            return token

    def session_token(self, email: str) -> str:
        """A signed-in session credential for an existing user: it stands in for the real one's JWT, the only
        credential that may manage webhooks (an opaque string here, not a JWT)."""
        with self.lock:
            self._user(email)
            token = "bcrm_twin_session_" + secrets.token_urlsafe(32)
            self._tokens[token] = (email, True)
            return token

    def add_account(self, name: str) -> str:
        """An account id a case (at creation) or a contact may link to; the twin has no accounts API."""
        with self.lock:
            account_id = str(uuid.uuid4())
            self._accounts[account_id] = name
            return account_id

    @property
    def cases(self) -> Mapping[str, TwinCase]:
        """Every case by id, live: read them, change them only through the API or `edit_case`."""
        return MappingProxyType(self._cases)

    @property
    def contacts(self) -> Mapping[str, TwinContact]:
        return MappingProxyType(self._contacts)

    @property
    def users(self) -> Mapping[str, TwinUser]:
        return MappingProxyType(self._users)

    @property
    def accounts(self) -> Mapping[str, str]:
        return MappingProxyType(self._accounts)

    def activities(self, case_id: str) -> list[TwinActivity]:
        """A case's activity rows, newest first (the order of the real feed)."""
        with self.lock:
            rows = [a for a in self._activities if a.entity_id == case_id]
            return sorted(reversed(rows), key=lambda a: a.created_at, reverse=True)

    def profile(self, profile_id: str | None) -> TwinUser | None:
        return next((u for u in self._users.values() if u.profile_id == profile_id), None)

    # -- writes behind the hub's back --------------------------------------------------------------

    def create_case(self, author_email: str, notify: bool = True, **fields: Any) -> str:
        """Create a case as `author_email` would through the API; its id. notify=False: no webhook."""
        return str(self._control(lambda user: self.write_case(user, None, fields), author_email, notify)["id"])

    def edit_case(self, case_id: str, author_email: str, notify: bool = True, **fields: Any) -> None:
        """PATCH a case as `author_email`: the same checks, state and activity rows; notify=False: no webhook."""
        self._control(lambda user: self.write_case(user, self.find_case(case_id), fields), author_email, notify)

    def create_contact(self, author_email: str, notify: bool = True, **fields: Any) -> str:
        return str(self._control(lambda user: self.write_contact(user, None, fields), author_email, notify)["id"])

    def edit_contact(self, contact_id: str, author_email: str, notify: bool = True, **fields: Any) -> None:
        self._control(lambda user: self.write_contact(user, self.find_contact(contact_id), fields),
                      author_email, notify)

    # -- faults and time ---------------------------------------------------------------------------

    def fail_next(self, n: int, status: int | None = 500, retry_after: float | None = None,
                  delay_seconds: float | None = None, method: str | None = None,
                  path_prefix: str | None = None) -> None:
        """Make the next `n` HTTP calls (of `method`, under `path_prefix`) wait `delay_seconds`, then answer
        `status` (with `Retry-After` when given); with status=None they are handled normally after the delay,
        so a client that timed out leaves behind a write it never saw confirmed. The real BottleCRM has no rate
        limits and was never seen to answer 5xx: these are the faults of a proxy or an overloaded host."""
        with self.lock:
            self._faults.append(Fault(n, status, retry_after, delay_seconds, method.upper() if method else None,
                                      path_prefix))

    def advance(self, seconds: float) -> datetime:
        """Move the twin's clock on: the retry schedule, `t` in signatures and every stamp follow it."""
        return self.clock.advance(seconds)

    # -- webhooks ----------------------------------------------------------------------------------

    def register_webhook(self, url: str, events: list[str], description: str = "tickethub tests") -> str:
        """Subscribe `url` to `events`; the signing secret (`whsec_` + token_urlsafe(32), its UTF-8 bytes the
        HMAC key). Same signature as the real server's test harness, `tests.peers.bottlecrm.BottleCRM`."""
        return self.webhooks.register(url, events, description, None).secret

    def remove_webhook(self, url: str) -> None:
        with self.lock:
            for endpoint in [e for e in self.webhooks.endpoints.values() if e.url == url]:
                self.webhooks.remove(endpoint.id)

    def set_webhook_active(self, url: str, active: bool = True) -> None:
        """Turn an endpoint on or off (the real `PATCH /api/webhooks/<id>/ {"is_active"}`; on clears the reason)."""
        with self.lock:
            for endpoint in self.webhooks.endpoints.values():
                if endpoint.url == url:
                    endpoint.is_active = active
                    endpoint.disabled_reason = "" if active else endpoint.disabled_reason

    def send_pending_webhooks(self) -> int:
        """Under deliver="queued": the first attempt of every delivery not tried yet (what a production worker
        does after the commit), oldest first; how many."""
        return self.webhooks.send_first_attempts()

    def retry_due_webhooks(self, *, now: bool = False) -> int:
        """One run of upstream's every-minute `dispatch_due_deliveries` by the twin's clock; with `now`, first
        make every pending delivery due (as `tests.peers.bottlecrm.BottleCRM.retry_due_webhooks` does)."""
        return self.webhooks.sweep_due(make_all_due=now)

    @property
    def webhook_log(self) -> list[WebhookAttempt]:
        """Every attempt, oldest first: URL, headers, body, answer status (None: no answer) and error."""
        with self.lock:
            return list(self.webhooks.log)

    def http_client(self, token: str | None = None) -> httpx.Client:
        """An httpx.Client calling `app` in process (Starlette's TestClient), authorised with `token`."""
        from starlette.testclient import TestClient

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return TestClient(self.app, base_url="http://bottlecrm.sandbox", headers=headers)

    def close(self) -> None:
        """Close the webhook client if the twin made it (one passed in stays its owner's)."""
        if self._owns_client:
            self.webhooks.client.close()

    # -- used by sandbox_http ------------------------------------------------------------------------

    def authenticate(self, header: str, *, signed_in: bool) -> tuple[TwinUser | None, str]:
        """The user an `Authorization` header names, or None and the 403 text (the real one never says 401)."""
        scheme, _, token = header.partition(" ")
        with self.lock:
            found = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
            if found is None:
                return None, NO_ORG
            if signed_in and not found[1]:
                return None, NOT_FOR_TOKENS
            return self._users[found[0]], ""

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The `fail_next` order this call falls under, if any (one call used up)."""
        with self.lock:
            self._faults = [f for f in self._faults if f.remaining > 0]
            for fault in self._faults:
                if fault.method in (None, method) and (fault.path_prefix is None
                                                       or path.startswith(fault.path_prefix)):
                    fault.remaining -= 1
                    return fault
            return None

    def find_case(self, case_id: str) -> TwinCase:
        key = canonical_id(case_id)
        if key is None or key not in self._cases:
            raise Refusal(404, {"detail": NO_SUCH_CASE})
        return self._cases[key]

    def find_contact(self, contact_id: str) -> TwinContact:
        key = canonical_id(contact_id)
        if key is None or key not in self._contacts:
            raise Refusal(404, {"detail": NO_SUCH_CONTACT})
        return self._contacts[key]

    def run_write(self, write: Callable[[], tuple[int, Any]], notify: bool = True) -> tuple[int, Any]:
        """Do one write under the lock and queue its events (upstream flushes them once, at the end of the
        request, one per record); inline, send them before answering, as the real one does under eager Celery.
        Every refusal is raised before the first change, so a refused write leaves nothing behind."""
        with self.lock:
            self._events = {}
            try:
                result = write()
                queued = self._publish() if notify else []
            finally:
                self._events = {}
        if self.deliver == "inline":
            for delivery_id in queued:
                self.webhooks.attempt(delivery_id)
        return result

    def write_case(self, user: TwinUser, case: TwinCase | None, data: Any) -> tuple[int, dict[str, Any]]:
        """POST (case None) or PATCH, inside `run_write`: CaseCreateSerializer's checks, then the view's
        contacts and assignees, then the signals' activity rows (cases/views.py, updates.py, signals.py)."""
        def clash(name: str) -> str | None:
            taken = any(c.name.lower() == name.lower() and c is not case for c in self._cases.values())
            return "Case already exists with this name" if taken else None

        def account(value: Any) -> str | None:  # create only: on PATCH `account` is read-only, so ignored
            known = value in (None, "") or canonical_id(value) in self._accounts  # DRF: "" is None for a relation
            return None if known else "No such account."
        checks: dict[str, Callable[[Any], str | None]] = {"name": clash}
        if case is None:
            checks["account"] = account
        values = clean(CASE_FIELDS, data, partial=case is not None, checks=checks)
        old_status = case.status if case else None
        if values.get("status", old_status) == "Duplicate" and old_status != "Duplicate":
            raise Refusal(400, {"error": True, "errors": {"status": [DUPLICATE_BY_MERGE_ONLY]}})
        contact_ids = id_list(data.get("contacts"), "contacts")  # parsed before the first write, as upstream
        assigned_ids = id_list(data.get("assigned_to"), "assigned_to")
        created = case is None
        if case is None:
            stamp = self.clock.stamp()
            case = TwinCase(str(uuid.uuid4()), values["name"], values["status"], values["priority"], user.user_id,
                            stamp, stamp, user.user_id, *SLA_HOURS[values["priority"]],
                            account_id=canonical_id(data["account"]) if data.get("account") else None)
            self._apply_case_values(case, None, values)
            self._cases[case.id] = case
            self._activity(case, "CREATE", user)
        else:
            old = replace(case)
            self._apply_case_values(case, old, values)
            case.updated_at, case.updated_by = self.clock.stamp(), user.user_id
            self._case_activities(old, case, user)
        if created or "contacts" in data:  # present = replace; unknown ids are dropped (contacts/access.py)
            case.contacts = [c for c in dict.fromkeys(contact_ids) if c in self._contacts]
        if created or "assigned_to" in data:
            profiles = {u.profile_id for u in self._users.values()}
            case.assigned_to = [p for p in dict.fromkeys(assigned_ids) if p in profiles]
            if case.assigned_to:  # clear() writes no row, add() writes ASSIGN (cases/signals.py m2m receiver)
                self._activity(case, "ASSIGN", user, {"added": sorted(case.assigned_to)})
        self._saved("ticket", case.id, "created" if created else "updated")
        if created:
            return 200, {"error": False, "message": "Case Created Successfully", "id": case.id}
        return 200, {"error": False, "message": "Case Updated Successfully"}

    def write_contact(self, user: TwinUser, contact: TwinContact | None, data: Any) -> tuple[int, dict[str, Any]]:
        """POST (contact None) or PATCH, inside `run_write` (contacts/views.py, serializer.py). The real one also
        writes a Contact UPDATE activity row without a diff; the twin keeps none (no endpoint shows it per
        contact)."""
        def clash(email: str | None) -> str | None:
            taken = email and any((c.email or "").lower() == email.lower() and c is not contact
                                  for c in self._contacts.values())
            return "Contact already exists with this email" if taken else None

        def account(value: Any) -> str | None:  # the account already linked is kept whoever sends it
            known = value in (None, "") or canonical_id(value) in self._accounts
            return None if known or (contact and canonical_id(value) == contact.account_id) else "No such account."
        values = clean(CONTACT_FIELDS, data, partial=contact is not None, checks={"email": clash, "account": account})
        if "account" in data:
            values["account_id"] = canonical_id(data["account"]) if data["account"] else None
        created = contact is None
        if contact is None:
            stamp = self.clock.stamp()
            contact = TwinContact(str(uuid.uuid4()), values.pop("first_name"), values.pop("last_name"),
                                  user.user_id, stamp, stamp)
            self._contacts[contact.id] = contact
        else:
            contact.updated_at = self.clock.stamp()
        for name, value in values.items():
            setattr(contact, name, value)
        self._saved("contact", contact.id, "created" if created else "updated")
        if created:
            return 200, {"error": False, "message": "Contact created Successfuly", "id": contact.id}
        return 200, {"error": False, "message": "Contact Updated Successfully"}

    # -- internals -----------------------------------------------------------------------------------

    def _user(self, email: str) -> TwinUser:
        if email not in self._users:
            raise KeyError(f"BottleCRM sandbox twin: no user {email!r}; add_user() it first")
        return self._users[email]

    def _control(self, write: Callable[[TwinUser], tuple[int, dict[str, Any]]], author_email: str,
                 notify: bool) -> dict[str, Any]:
        try:
            _, body = self.run_write(lambda: write(self._user(author_email)), notify)
        except Refusal as refusal:
            raise TwinError(refusal.status, refusal.body) from None
        return dict(body)

    def _saved(self, kind: str, record_id: str, action: str) -> None:
        self._events.setdefault((kind, record_id), set()).add(action)

    def _publish(self) -> list[str]:
        """webhooks/emit.py: each record saved in this write is read back once; a create is never also an
        update; every save counts, even one that changed nothing."""
        queued = []
        for (kind, record_id), actions in self._events.items():
            action = "created" if "created" in actions else "updated"
            if kind == "ticket":
                queued += self.webhooks.fan_out(f"ticket.{action}", ticket_data(self._cases[record_id]))
            else:
                queued += self.webhooks.fan_out(f"contact.{action}", contact_data(self._contacts[record_id]))
        return queued

    def _activity(self, case: TwinCase, action: str, user: TwinUser, metadata: dict[str, Any] | None = None) -> None:
        self._activities.append(TwinActivity(str(uuid.uuid4()), action, user.profile_id, case.id, case.name[:255],
                                             _metadata(metadata or {}), self.clock.stamp()))

    def _apply_case_values(self, case: TwinCase, old: TwinCase | None, values: Mapping[str, Any]) -> None:
        """The cleaned fields, then the pre-save signals: SLA targets, the Pending pause, dating a close."""
        for name, value in values.items():
            setattr(case, name, value)
        if old is not None and old.priority != case.priority:
            case.sla_first_response_hours, case.sla_resolution_hours = SLA_HOURS[case.priority]
        if case.status == "Pending" and (old is None or old.status != "Pending"):
            case.sla_paused_at = case.sla_paused_at or self.clock.now()
        elif old is not None and old.status == "Pending" and case.status != "Pending":
            case.sla_paused_at = None
        was_closed, is_closed = old is not None and old.status == "Closed", case.status == "Closed"
        if is_closed and not case.closed_on:  # a date sent wins, else the stored one, else today (org zone: UTC)
            case.closed_on = old.closed_on if old is not None and was_closed and old.closed_on else \
                self.clock.now().date()
        if is_closed and not was_closed and case.resolved_at is None:
            case.resolved_at = self.clock.stamp()
        elif was_closed and not is_closed:
            case.resolved_at, case.closed_on = None, None
        if case.status in OPEN_STATUSES:
            case.closed_on = None

    def _case_activities(self, old: TwinCase, new: TwinCase, user: TwinUser) -> None:
        """cases/signals.py post_save: DELETE alone when deactivated; else status, priority, one UPDATE diff.
        A save that changes none of these writes no row (it still fires ticket.updated)."""
        if old.is_active and not new.is_active:
            self._activity(new, "DELETE", user)
            return
        if old.status != new.status:
            self._activity(new, "STATUS_CHANGED", user, {"before": old.status, "after": new.status})
        if old.priority != new.priority:
            self._activity(new, "PRIORITY_CHANGED", user, {"before": old.priority, "after": new.priority})
        changes = {f: {"before": getattr(old, f), "after": getattr(new, f)} for f in TRACKED
                   if getattr(old, f) != getattr(new, f)}
        if changes:
            self._activity(new, "UPDATE", user, {"changes": changes})


def ticket_data(case: TwinCase) -> dict[str, Any]:
    """`data` of ticket.* events (webhooks/events.py ticket_data): no description, contacts or author."""
    return {"id": case.id, "name": case.name, "status": case.status, "priority": case.priority,
            "case_type": case.case_type, "account_id": case.account_id, "closed_on": case.closed_on,
            "assigned_to": list(case.assigned_to), "created_at": case.created_at, "updated_at": case.updated_at}


def contact_data(contact: TwinContact) -> dict[str, Any]:
    """`data` of contact.* events (webhooks/events.py contact_data): no address fields."""
    return {"id": contact.id, "first_name": contact.first_name, "last_name": contact.last_name,
            "email": contact.email, "phone": contact.phone, "organization": contact.organization,
            "title": contact.title, "account_id": contact.account_id, "assigned_to": [],
            "created_at": contact.created_at, "updated_at": contact.updated_at}


def _metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """cases/signals.py `_truncate_metadata`: dates and datetimes as `str()`, at most 4 KB, else a marker."""
    def safe(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: safe(v) for k, v in value.items()}
        return str(value) if isinstance(value, (date, datetime)) else value
    cleaned = safe(metadata)
    return cleaned if len(json.dumps(cleaned).encode()) <= METADATA_BYTE_CAP else {"_truncated": True}
