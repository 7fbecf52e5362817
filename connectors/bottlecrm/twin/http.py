"""The sandbox twin's HTTP face: routes, authentication, injected faults, paging and the answers' shapes.

Each path handles a request in the real one's order: an injected fault (`fail_next`) first, then
Django's URL match (an id that is not a UUID gets Django's HTML 404), then DRF's authentication (403,
never 401), then the method (501 where the twin does not emulate it), then the view, in a worker
thread because it may send webhooks inline. Answer shapes follow django-crm's serializers; where a
field is left out, the function that builds the answer says which.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from connectors.bottlecrm.twin.fields import CASE_TYPES, OPEN_STATUSES, PRIORITIES, STATUSES, Refusal, canonical_id
from connectors.bottlecrm.twin.webhooks import EVENT_NAMES, MAX_ENDPOINTS, WebhookRefused, api_time

if TYPE_CHECKING:
    from connectors.bottlecrm.twin.state import BottleCRMState, Fault, TwinActivity, TwinCase, TwinContact, TwinUser

Answer = tuple[int, Any]  # status and JSON body (None: no body)
Loader = Callable[[], Any]  # reads the request body as DRF would, when the view first needs it
Handler = Callable[["TwinUser", "str | None", QueryParams, Loader], Answer]

DEFAULT_LIMIT = 10  # DRF's PAGE_SIZE in django-crm's settings; there is no maximum
ORDERINGS = ("created_at", "priority", "id", "name")  # cases/views.py _ALLOWED_CASE_ORDERINGS, each also "-"
ACTION_DISPLAY = {"CREATE": "Created", "UPDATE": "Updated", "DELETE": "Deleted", "ASSIGN": "Assigned",
                  "STATUS_CHANGED": "Status Changed", "PRIORITY_CHANGED": "Priority Changed"}
CHOICES = {"status": [[s, s] for s in STATUSES], "priority": [[p, p] for p in PRIORITIES],
           "type_of_case": [[t, t] for t in CASE_TYPES]}
# Django's production 404 page; under the peer's DEBUG settings the real one sends its longer debug page
DJANGO_404 = "<h1>Not Found</h1><p>The requested resource was not found on this server.</p>"


def build_app(twin: BottleCRMState) -> Starlette:
    """The ASGI app serving `twin`."""
    api = _Api(twin)
    return Starlette(routes=[
        _route("/api/cases/", api.endpoint({"GET": api.list_cases, "POST": api.create_case})),
        _route("/api/cases/{pk}/", api.endpoint({"GET": api.get_case, "PATCH": api.patch_case}, by_id=True)),
        _route("/api/cases/{pk}/activities/", api.endpoint({"GET": api.case_activities}, by_id=True)),
        _route("/api/contacts/", api.endpoint({"POST": api.create_contact})),
        _route("/api/contacts/{pk}/", api.endpoint({"GET": api.get_contact, "PATCH": api.patch_contact},
                                                  by_id=True)),
        _route("/api/webhooks/", api.endpoint({"GET": api.list_webhooks, "POST": api.create_webhook},
                                             signed_in=True)),
        _route("/api/webhooks/{pk}/", api.endpoint({"DELETE": api.delete_webhook}, by_id=True, signed_in=True)),
        # the real /healthz/ is a longer HTML page headed "healthz"; only its status is copied here
        Route("/healthz/", _healthz),
        _route("/{rest:path}", _not_emulated),
    ])


def _route(path: str, endpoint: Callable[[Request], Awaitable[Response]]) -> Route:
    # every method reaches the endpoint, which answers 501 for one the twin does not emulate (Starlette
    # would answer 405 itself, which the real one gives for none of these paths)
    return Route(path, endpoint, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])


class _Api:
    def __init__(self, twin: BottleCRMState):
        self.twin = twin

    def endpoint(self, handlers: Mapping[str, Handler], *, by_id: bool = False,
                 signed_in: bool = False) -> Callable[[Request], Awaitable[Response]]:
        twin = self.twin

        async def endpoint(request: Request) -> Response:
            raw = await request.body()  # before any delay: the bytes have arrived even if the client then leaves
            fault = twin.take_fault(request.method, request.url.path)
            if fault is not None:
                if fault.delay_seconds:
                    await anyio.sleep(fault.delay_seconds)
                if fault.status is not None:
                    return _fault_response(fault)
            pk = canonical_id(request.path_params["pk"]) if by_id else None
            if by_id and pk is None:
                return HTMLResponse(DJANGO_404, 404)
            user, denial = twin.authenticate(request.headers.get("authorization", ""), signed_in=signed_in)
            if user is None:
                return JSONResponse({"detail": denial}, 403)
            handler = handlers.get(request.method)
            if handler is None:
                return await _not_emulated(request)

            def call() -> Answer:
                try:
                    return handler(user, pk, request.query_params, lambda: _parse_json(raw))
                except Refusal as refusal:
                    return refusal.status, refusal.body
            status, body = await anyio.to_thread.run_sync(call)
            return Response(status_code=status) if body is None else JSONResponse(body, status)
        return endpoint

    # -- cases ---------------------------------------------------------------------------------------

    def create_case(self, user: TwinUser, pk: str | None, query: QueryParams, load: Loader) -> Answer:
        def write() -> Answer:
            status, answer = self.twin.write_case(user, None, load())
            return status, {**answer, "cases_obj": self.case_json(self.twin.cases[answer["id"]])}
        return self.twin.run_write(write)

    def patch_case(self, user: TwinUser, pk: str | None, query: QueryParams, load: Loader) -> Answer:
        return self.twin.run_write(lambda: self.twin.write_case(user, self.twin.find_case(str(pk)), load()))

    def get_case(self, user: TwinUser, pk: str | None, query: QueryParams, load: Loader) -> Answer:
        """cases/views.py CaseDetailView.get; the lists the twin has nothing for (comments, attachments, ...)
        are empty."""
        twin = self.twin
        with twin.lock:
            case = twin.find_case(str(pk))
            return 200, {
                "cases_obj": self.case_json(case), "attachments": [], "comments": [], "internal_notes": [],
                "contacts": [_contact_link(twin.contacts[c]) for c in case.contacts], "solutions": [],
                "activities": [self.activity_json(a) for a in twin.activities(case.id)[:20]],
                "email_messages": [], "merged_from_cases": [], "custom_field_definitions": [], **CHOICES,
                "comment_permission": True, "can_merge": True, "approval_rule": None,
                "users_mention": [{"user__email": u.email} for u in twin.users.values()]}

    def list_cases(self, user: TwinUser, pk: str | None, query: QueryParams, load: Loader) -> Answer:
        twin = self.twin
        with twin.lock:
            rows = self.filtered_cases(query)
            page = _page(rows, query)
            open_rows = [c for c in rows if c.status in OPEN_STATUSES]
            answer = {"open_count": len(open_rows), "urgent_count": sum(c.priority == "Urgent" for c in open_rows),
                      "awaiting_first_reply": sum(c.first_response_at is None for c in open_rows),
                      "cases_count": len(rows), "offset": _answer_offset(rows, page),
                      "cases": [self.case_json(c) for c in page], **CHOICES}
            if query.get("slim") != "true":
                answer["accounts_list"] = [{"id": k, "name": v} for k, v in sorted(
                    twin.accounts.items(), key=lambda kv: uuid.UUID(kv[0]).int, reverse=True)]
                answer["contacts_list"] = [{"id": c.id, "first_name": c.first_name, "last_name": c.last_name}
                                           for c in sorted(twin.contacts.values(), key=_id_order, reverse=True)]
            answer["users"] = [{"id": u.profile_id, "user__email": u.email} for u in twin.users.values()]
            return 200, answer

    def filtered_cases(self, query: QueryParams) -> list[TwinCase]:
        """cases/views.py case_list_queryset: soft-deleted and Duplicate cases left out unless asked for;
        filters status (repeatable), priority, case_type, account, name, search, created_at__gte/__lte (whole
        days, UTC here) and ordering. Not emulated: assigned_to, tags, sla_breached and cf_* filters."""
        rows = [c for c in self.twin.cases.values() if c.is_active or query.get("include_deleted") == "true"]
        if query.get("show_merged") != "true":
            rows = [c for c in rows if c.status != "Duplicate"]
        statuses = [s for s in query.getlist("status") if s]
        name, search = (query.get("name") or "").lower(), (query.get("search") or "").lower()
        account = query.get("account")
        if account and canonical_id(account) is None:
            raise Refusal(400, {"account": [f"'{account}' is not a valid id."]})
        since, until = _query_date(query, "created_at__gte"), _query_date(query, "created_at__lte")
        rows = [c for c in rows if (not statuses or c.status in statuses)
                and all(not query.get(k) or getattr(c, k) == query.get(k) for k in ("priority", "case_type"))
                and (not account or c.account_id == canonical_id(account)) and name in c.name.lower()
                and (search in c.name.lower() or search in (c.description or "").lower())
                and (since is None or c.created_at.date() >= since) and (until is None or c.created_at.date() <= until)]
        rows.sort(key=_id_order, reverse=True)  # the tiebreak, -id; the sorts below are stable
        ordering = query.get("ordering") or ""
        key = ordering.lstrip("-") if ordering.lstrip("-") in ORDERINGS and ordering.count("-") <= 1 else ""
        if key == "id":
            rows.sort(key=_id_order, reverse=ordering.startswith("-"))
        elif key:
            rows.sort(key=lambda c: getattr(c, key), reverse=ordering.startswith("-"))
        else:
            rows.sort(key=lambda c: c.created_at, reverse=True)
        return rows

    def case_activities(self, user: TwinUser, pk: str | None, query: QueryParams, load: Loader) -> Answer:
        with self.twin.lock:
            rows = self.twin.activities(self.twin.find_case(str(pk)).id)
            page = _page(rows, query)
            return 200, {"activities": [self.activity_json(a) for a in page], "count": len(rows),
                         "offset": _answer_offset(rows, page)}

    # -- contacts ------------------------------------------------------------------------------------

    def create_contact(self, user: TwinUser, pk: str | None, query: QueryParams, load: Loader) -> Answer:
        return self.twin.run_write(lambda: self.twin.write_contact(user, None, load()))

    def patch_contact(self, user: TwinUser, pk: str | None, query: QueryParams, load: Loader) -> Answer:
        return self.twin.run_write(lambda: self.twin.write_contact(user, self.twin.find_contact(str(pk)), load()))

    def get_contact(self, user: TwinUser, pk: str | None, query: QueryParams, load: Loader) -> Answer:
        """contacts/views.py ContactDetailView.get, less `countries` and `open_deals`."""
        twin = self.twin
        with twin.lock:
            contact = twin.find_contact(str(pk))
            linked = sorted((c for c in twin.cases.values() if contact.id in c.contacts),
                            key=lambda c: c.created_at, reverse=True)[:10]
            address = ("address_line", "city", "state", "postcode", "country")
            return 200, {
                "contact_obj": self.contact_json(contact),
                "address_obj": {name: getattr(contact, name) for name in address},
                "comments": [], "attachments": [], "assigned_data": [], "tasks": [],
                "users_mention": [{"user__email": u.email} for u in twin.users.values()],
                "opportunities": [], "opportunity_count": 0, "colleagues": [], "custom_field_definitions": [],
                "can_delete": True,  # every twin user is an org admin
                "cases": [{"id": c.id, "name": c.name, "status": c.status, "priority": c.priority,
                           "created_at": api_time(c.created_at)} for c in linked]}

    # -- webhooks ------------------------------------------------------------------------------------

    def list_webhooks(self, user: TwinUser, pk: str | None, query: QueryParams, load: Loader) -> Answer:
        with self.twin.lock:
            endpoints = sorted(self.twin.webhooks.endpoints.values(), key=lambda e: e.created_at, reverse=True)
            return 200, {"endpoints": [e.as_json() for e in endpoints], "event_catalogue": _catalogue(),
                         "limit": MAX_ENDPOINTS}

    def create_webhook(self, user: TwinUser, pk: str | None, query: QueryParams, load: Loader) -> Answer:
        data = load()
        if not isinstance(data, dict):  # raise_exception=True: DRF's bare body, no `error` key
            raise Refusal(400, {"non_field_errors": [
                f"Invalid data. Expected a dictionary, but got {type(data).__name__}."]})
        try:
            endpoint = self.twin.webhooks.register(
                data.get("url"), data.get("events"), data.get("description", ""),
                {"id": user.user_id, "name": user.name, "email": user.email}, secret_sent="secret" in data)
        except WebhookRefused as refused:
            raise Refusal(400, refused.body) from None
        return 201, {**endpoint.as_json(), "secret": endpoint.secret}

    def delete_webhook(self, user: TwinUser, pk: str | None, query: QueryParams, load: Loader) -> Answer:
        with self.twin.lock:
            if pk not in self.twin.webhooks.endpoints:
                raise Refusal(404, {"detail": "No such webhook endpoint."})  # common/lookups.py get_scoped_or_404
            self.twin.webhooks.remove(str(pk))
            return 204, None

    # -- answer shapes -------------------------------------------------------------------------------

    def case_json(self, case: TwinCase) -> dict[str, Any]:
        """cases/serializer.py CaseSerializer, less the computed SLA deadlines and breach/at-risk flags and the
        escalation fields. No `updated_at`: the real one does not show it either."""
        twin = self.twin
        author = next((u for u in twin.users.values() if u.user_id == case.created_by), None)
        return {
            "id": case.id, "name": case.name, "status": case.status, "priority": case.priority,
            "case_type": case.case_type, "closed_on": case.closed_on.isoformat() if case.closed_on else None,
            "description": case.description,
            "created_by": ({"id": author.user_id, "email": author.email, "name": author.name, "profile_pic": None}
                           if author else None),
            "created_at": api_time(case.created_at), "is_active": case.is_active,
            "account": {"id": case.account_id, "name": twin.accounts[case.account_id]} if case.account_id else None,
            "contacts": [_contact_link(twin.contacts[c]) for c in case.contacts], "teams": [],
            "assigned_to": [self.profile_json(p) for p in case.assigned_to], "tags": [],
            "org": {"id": twin.org_id, "name": twin.org_name}, "custom_fields": {},
            "sla_first_response_hours": case.sla_first_response_hours,
            "sla_resolution_hours": case.sla_resolution_hours, "first_response_at": _api_time(case.first_response_at),
            "resolved_at": _api_time(case.resolved_at), "sla_paused_at": _api_time(case.sla_paused_at),
            "parent": None, "is_problem": False, "parent_summary": None, "child_count": 0, "time_summary": None}

    def contact_json(self, contact: TwinContact) -> dict[str, Any]:
        """contacts/serializer.py ContactSerializer, less source*, department, do_not_call, linkedin_url, tags
        and phone_e164 (the real one derives it with a phone-number library; the twin does not guess)."""
        twin = self.twin
        author = next((u for u in twin.users.values() if u.user_id == contact.created_by), None)
        plain = ("first_name", "last_name", "email", "phone", "organization", "title", "address_line", "city",
                 "state", "postcode", "country", "description", "is_active")
        return {"id": contact.id, **{name: getattr(contact, name) for name in plain},
                "assigned_to": [], "teams": [], "created_by": author.user_id if author else None,
                "created_at": api_time(contact.created_at), "updated_at": api_time(contact.updated_at),
                "org": {"id": twin.org_id, "name": twin.org_name}, "account": contact.account_id,
                "account_detail": ({"id": contact.account_id, "name": twin.accounts[contact.account_id]}
                                   if contact.account_id else None),
                "linked_accounts": [], "custom_fields": {}}

    def activity_json(self, row: TwinActivity) -> dict[str, Any]:
        """common/serializer.py ActivitySerializer: `user.id` is the author's profile id, not the user id."""
        user = self.twin.profile(row.profile_id)
        return {"id": row.id, "action": row.action, "action_display": ACTION_DISPLAY.get(row.action, row.action),
                "user": ({"id": user.profile_id, "user_details": {"email": user.email, "profile_pic": None}}
                         if user else None),
                "entity_type": row.entity_type, "entity_id": row.entity_id, "entity_name": row.entity_name,
                "description": "", "metadata": row.metadata, "created_at": api_time(row.created_at)}

    def profile_json(self, profile_id: str) -> dict[str, Any] | None:
        """common/serializer.py ProfileSerializer, less address, phone, access flags and date_of_joining."""
        user = self.twin.profile(profile_id)
        if user is None:
            return None
        return {"id": user.profile_id, "user_details": {"email": user.email, "id": user.user_id, "name": user.name,
                                                        "is_active": True, "profile_pic": None, "last_login": None},
                "role": "ADMIN", "is_active": True, "created_at": api_time(user.created_at)}


# ---- helpers --------------------------------------------------------------------------------------

def _contact_link(contact: TwinContact) -> dict[str, Any]:
    """contacts/serializer.py ContactLinkSerializer: how a case shows its people (no phone, no address)."""
    return {"id": contact.id, "first_name": contact.first_name, "last_name": contact.last_name,
            "email": contact.email}


def _api_time(moment: datetime | None) -> str | None:
    return api_time(moment) if moment else None


def _id_order(record: TwinCase | TwinContact) -> int:
    return uuid.UUID(record.id).int


def _parse_json(raw: bytes) -> Any:
    """DRF's JSONParser: an empty body is `{}`; a bad one is 400 `{"detail": "JSON parse error - …"}`."""
    if not raw:
        return {}
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise Refusal(400, {"detail": f"JSON parse error - {exc}"}) from None


def _page(rows: list[Any], query: QueryParams) -> list[Any]:
    """DRF's LimitOffsetPagination: limit 10 when absent, 0, negative or not a number; offset 0 likewise."""
    def positive(name: str, strict: bool) -> int:
        number = int(query[name])
        if number < 0 or (strict and number == 0):
            raise ValueError(name)
        return number
    try:
        limit = positive("limit", True)
    except (KeyError, ValueError):
        limit = DEFAULT_LIMIT
    try:
        offset = positive("offset", False)
    except (KeyError, ValueError):
        offset = 0
    return [] if not rows or offset > len(rows) else rows[offset:offset + limit]


def _answer_offset(rows: list[Any], page: list[Any]) -> int | None:
    """The answer's `offset`, as wrong as upstream's: how many rows have an id >= the page's last id (ids are
    random UUIDs), None when that is all of them, 0 for an empty page. Page with your own offset instead."""
    if not page:
        return 0
    last = uuid.UUID(page[-1].id).int
    count = sum(uuid.UUID(r.id).int >= last for r in rows)
    return None if count == len(rows) else count


def _query_date(query: QueryParams, name: str) -> date | None:
    """common/validators.py validate_date: YYYY-MM-DD or a full timestamp (its UTC day here), else 400."""
    value = query.get(name)
    if not value:
        return None
    text = value.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}", text):
            return date(*map(int, text.split("-")))
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return moment.astimezone(UTC).date() if moment.tzinfo else moment.date()
    except ValueError:
        raise Refusal(400, {name: [f"'{value}' is not a valid date. Use YYYY-MM-DD."]}) from None


def _catalogue() -> list[dict[str, Any]]:
    labels = {"lead": "Leads", "contact": "Contacts", "account": "Accounts", "deal": "Deals", "ticket": "Tickets",
              "invoice": "Invoices", "task": "Tasks", "interaction": "Interactions"}
    return [{"module": m, "label": label, "events": [e for e in EVENT_NAMES if e.startswith(m + ".")]}
            for m, label in labels.items()]


def _fault_response(fault: Fault) -> Response:
    """An injected failure. 429 is DRF's throttling answer (which the real one never gives: it has no rate
    limits); 500 is Django's stock error page; any other status says plainly that the twin made it."""
    wait = None if fault.retry_after is None else max(0, math.ceil(fault.retry_after))
    headers = {} if wait is None else {"Retry-After": str(wait)}
    if fault.status == 429:
        detail = "Request was throttled." + ("" if wait is None else f" Expected available in {wait} seconds.")
        return JSONResponse({"detail": detail}, 429, headers)
    if fault.status == 500:
        return HTMLResponse("<h1>Server Error (500)</h1>", 500, headers)
    return PlainTextResponse(f"BottleCRM sandbox twin: injected HTTP {fault.status}", int(fault.status or 500),
                             headers)


async def _healthz(request: Request) -> Response:
    return HTMLResponse("<h1 class='topbar'>healthz</h1>")


async def _not_emulated(request: Request) -> Response:
    return JSONResponse({"detail": f"{request.method} {request.url.path} is not emulated by the BottleCRM "
                                   "sandbox twin (connectors/bottlecrm/sandbox.py)."}, 501)
