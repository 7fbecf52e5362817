"""Outbound webhooks of the BottleCRM sandbox twin: endpoints, signed deliveries, retries and the log.

Mirrors django-crm 1.35 (`webhooks/models.py`, `emit.py`, `events.py`, `tasks.py`; see
docs/peers/bottlecrm.md). One event is one envelope `{"id", "event", "created_at", "org_id", "data"}`
with one event id; each subscribed endpoint gets its own delivery row, whose id is the
`X-BottleCRM-Delivery` header on every attempt. An attempt is signed at send time
(`t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`, the secret's UTF-8 bytes as the key), so a
retry carries the same body and delivery id under a fresh `t`. Outcomes: 2xx succeeded; 410 failed and
the endpoint is turned off; anything else (another status, refused, a 10 s timeout) is retried after
1 min, 5 min, 30 min, 2 h and 6 h, then failed. Retries only happen when a sweep runs
(`sweep_due`, upstream's every-minute `dispatch_due_deliveries`).

Times come from the twin's clock, never the wall clock, so tests can walk the retry schedule. The
request goes out through the `httpx.Client` the twin was given, so it also carries httpx's default
`Accept` and `Connection` headers, which the real one (urllib3) does not send.
"""

from __future__ import annotations

import json
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import httpx

from connectors.bottlecrm.signing import sign_bottlecrm

# upstream `webhooks/events.py` CATALOGUE, in its order; the twin emits only ticket.created/updated and
# contact.created/updated, but accepts a subscription to any of these, as the real one does
EVENT_NAMES: tuple[str, ...] = (
    "lead.created", "lead.updated", "lead.deleted",
    "contact.created", "contact.updated", "contact.deleted",
    "account.created", "account.updated", "account.deleted",
    "deal.created", "deal.updated", "deal.deleted", "deal.won", "deal.lost",
    "ticket.created", "ticket.updated", "ticket.comment_added",
    "invoice.created", "invoice.updated", "invoice.paid",
    "task.created", "task.updated", "task.deleted",
    "interaction.created",
)
BACKOFF: tuple[timedelta, ...] = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30),
                                  timedelta(hours=2), timedelta(hours=6))
MAX_ATTEMPTS = len(BACKOFF) + 1
CLAIM = timedelta(minutes=2)  # upstream pushes next_attempt_at out by this while an attempt is in flight
TIMEOUT_SECONDS = 10.0
SWEEP_BATCH = 500  # upstream queues at most this many due deliveries per org per sweep
MAX_ENDPOINTS = 10
USER_AGENT = "BottleCRM-Webhooks"
GONE_REASON = "The endpoint answered 410 Gone, so it was turned off."
TURNED_OFF = "The endpoint is turned off."
PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"


class WebhookRefused(ValueError):
    """A registration the real API answers with 400; `body` is that answer's JSON."""

    def __init__(self, body: Mapping[str, Any]):
        super().__init__(json.dumps(body))
        self.body = dict(body)


# ---- wire formats ---------------------------------------------------------------------------------

def api_time(moment: datetime) -> str:
    """A datetime as DRF renders it in a REST answer: microseconds (when non-zero) and `Z`."""
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def payload_time(moment: datetime) -> str:
    """A datetime as Django's JSON encoder writes it into webhook `data`: milliseconds and `Z`."""
    text = moment.isoformat()
    if moment.microsecond:
        text = text[:23] + text[26:]
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def to_json(value: Any) -> Any:
    """Plain JSON types, as upstream's `events.to_json` makes them (UUIDs, dates, datetimes as text)."""
    if isinstance(value, datetime):
        return payload_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """The delivery body: compact JSON, non-ASCII escaped (upstream's `json.dumps(..., separators=(",", ":"))`)."""
    return json.dumps(payload, separators=(",", ":")).encode()


def _looks_like_url(text: str) -> bool:
    # a loose stand-in for Django's URLValidator: a scheme it takes and a host
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL:
        return False
    return parsed.scheme in ("http", "https", "ftp", "ftps") and bool(parsed.host)


# ---- records --------------------------------------------------------------------------------------

@dataclass
class Endpoint:
    id: str
    url: str
    events: list[str]
    secret: str
    description: str
    created_by: dict[str, str] | None  # None: registered through the twin's Python API
    created_at: datetime
    updated_at: datetime
    is_active: bool = True
    disabled_reason: str = ""

    @property
    def secret_hint(self) -> str:
        return f"whsec_...{self.secret[-4:]}"

    def as_json(self) -> dict[str, Any]:
        """The endpoint as `GET /api/webhooks/` shows it (the secret only as a hint)."""
        return {"id": self.id, "url": self.url, "description": self.description, "events": list(self.events),
                "format": "json", "is_active": self.is_active, "disabled_reason": self.disabled_reason,
                "secret_hint": self.secret_hint, "created_by": self.created_by,
                "created_at": api_time(self.created_at), "updated_at": api_time(self.updated_at)}


@dataclass
class Delivery:
    """One event to one endpoint across all its attempts (upstream's `WebhookDelivery` row)."""

    id: str
    endpoint_id: str
    event: str
    event_id: str
    payload: dict[str, Any]
    created_at: datetime
    next_attempt_at: datetime | None
    status: str = PENDING
    attempts: int = 0
    response_status: int | None = None
    error: str = ""
    last_attempt_at: datetime | None = None


@dataclass(frozen=True)
class WebhookAttempt:
    """One POST the twin made (or tried to make): what it sent and what came back."""

    delivery_id: str
    event: str
    event_id: str
    url: str
    headers: dict[str, str]
    body: bytes
    at: datetime
    status_code: int | None  # None: no answer (refused, timed out)
    error: str = ""

    def json(self) -> Any:
        return json.loads(self.body)


# ---- the outbox -----------------------------------------------------------------------------------

@dataclass
class Webhooks:
    """The twin's endpoints and deliveries. Every method takes `lock` itself; none holds it while sending."""

    client: httpx.Client
    now: Callable[[], datetime]
    org_id: str
    lock: threading.RLock = field(default_factory=threading.RLock)
    stamp: Callable[[], datetime] | None = None  # a clock that moves on per stamp, for the envelope's time
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    log: list[WebhookAttempt] = field(default_factory=list)

    def register(self, url: Any, events: Any, description: Any, created_by: Mapping[str, str] | None, *,
                 secret_sent: bool = False) -> Endpoint:
        """Add an endpoint with upstream's checks (webhooks/views.py, serializers.py), minus its SSRF guard
        (https and port 443 only, public addresses only); WebhookRefused carries the 400 body it would send."""
        with self.lock:
            if len(self.endpoints) >= MAX_ENDPOINTS:  # checked first, and the one answer with an `error` key
                raise WebhookRefused({"error": True,
                                      "errors": f"An organization can have at most {MAX_ENDPOINTS} webhooks."})
        errors: dict[str, list[str]] = {}
        if url is None or (isinstance(url, str) and not url.strip()):
            errors["url"] = ["This field is required." if url is None else "This field may not be blank."]
        elif not isinstance(url, str) or len(url.strip()) > 500 or not _looks_like_url(url.strip()):
            errors["url"] = ["Enter a valid URL."]
        if events is not None:  # absent: upstream stores the model default, an endpoint with no events
            unknown = [e for e in events if not isinstance(e, str) or e not in EVENT_NAMES] \
                if isinstance(events, list) else []
            if not isinstance(events, list) or not events:
                errors["events"] = ["Choose at least one event."]
            elif unknown:
                errors["events"] = [f"Unknown event: {', '.join(str(e) for e in unknown[:5])}."]
        if not isinstance(description, str):
            errors["description"] = ["Not a valid string."]
        if not errors and secret_sent:
            errors["secret"] = ["The signing secret is generated by the server."]
        if errors:
            raise WebhookRefused(errors)
        with self.lock:
            stamp = self.now()
            endpoint = Endpoint(str(uuid.uuid4()), str(url).strip(), [e for e in EVENT_NAMES if e in (events or [])],
                                "whsec_" + secrets.token_urlsafe(32), str(description).strip(),
                                dict(created_by) if created_by else None, stamp, stamp)
            self.endpoints[endpoint.id] = endpoint
            return endpoint

    def remove(self, endpoint_id: str) -> None:
        """Delete an endpoint and its delivery log, as upstream's DELETE does."""
        with self.lock:
            self.endpoints.pop(endpoint_id)
            for delivery in [d for d in self.deliveries.values() if d.endpoint_id == endpoint_id]:
                del self.deliveries[delivery.id]

    def fan_out(self, event: str, data: Mapping[str, Any]) -> list[str]:
        """Queue `event` for every active endpoint subscribed to it, under one event id; the delivery ids."""
        with self.lock:
            wanted = [e for e in self.endpoints.values() if e.is_active and event in e.events]
            if not wanted:
                return []
            stamp = (self.stamp or self.now)()  # upstream: when the event is queued, after the save
            payload = {"id": str(uuid.uuid4()), "event": event, "created_at": stamp.isoformat(),
                       "org_id": self.org_id, "data": to_json(data)}
            queued = []
            for endpoint in wanted:
                delivery = Delivery(str(uuid.uuid4()), endpoint.id, event, payload["id"], payload, stamp, stamp)
                self.deliveries[delivery.id] = delivery
                queued.append(delivery.id)
            return queued

    def attempt(self, delivery_id: str) -> Delivery | None:
        """One attempt at a pending, due delivery (upstream's `attempt_delivery`); None if not due or not pending."""
        with self.lock:
            delivery = self.deliveries.get(delivery_id)
            now = self.now()
            if (delivery is None or delivery.status != PENDING or delivery.next_attempt_at is None
                    or delivery.next_attempt_at > now):
                return None
            delivery.next_attempt_at = now + CLAIM
            endpoint = self.endpoints[delivery.endpoint_id]
            if not endpoint.is_active:
                delivery.status, delivery.next_attempt_at, delivery.error = FAILED, None, TURNED_OFF
                return delivery
            url, secret = endpoint.url, endpoint.secret  # the endpoint's current URL and secret, as upstream
            body = encode_body(delivery.payload)
            headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                       "X-BottleCRM-Event": delivery.event, "X-BottleCRM-Delivery": delivery.id,
                       "X-BottleCRM-Signature": sign_bottlecrm(secret, int(now.timestamp()), body)}
        status_code, error = self._post(url, body, headers)
        with self.lock:
            self.log.append(WebhookAttempt(delivery.id, delivery.event, delivery.event_id, url, headers, body, now,
                                           status_code, error))
            delivery.attempts += 1
            delivery.last_attempt_at, delivery.response_status, delivery.next_attempt_at = now, status_code, None
            if status_code is not None and 200 <= status_code < 300:
                delivery.status, delivery.error = SUCCEEDED, ""
            elif status_code == 410:
                delivery.status, delivery.error = FAILED, GONE_REASON
                endpoint.is_active, endpoint.disabled_reason = False, GONE_REASON
            else:
                delivery.error = f"The endpoint answered HTTP {status_code}." if status_code is not None else error
                if delivery.attempts < MAX_ATTEMPTS:
                    delivery.next_attempt_at = now + BACKOFF[delivery.attempts - 1]
                else:
                    delivery.status = FAILED
            return delivery

    def sweep_due(self, *, make_all_due: bool = False) -> int:
        """Attempt every pending delivery that is due, newest first (upstream's `dispatch_due_deliveries`
        queries with the model's `-created_at` ordering); with `make_all_due`, first make every pending one
        due, as the real harness's `retry_due_webhooks(now=True)` does. Returns how many it took up."""
        with self.lock:
            now = self.now()
            pending = [d for d in self.deliveries.values() if d.status == PENDING]
            if make_all_due:
                for delivery in pending:
                    delivery.next_attempt_at = now
            due = [d.id for d in sorted(pending, key=lambda d: d.created_at, reverse=True)
                   if d.next_attempt_at is not None and d.next_attempt_at <= now][:SWEEP_BATCH]
        for delivery_id in due:
            self.attempt(delivery_id)
        return len(due)

    def send_first_attempts(self) -> int:
        """Make the first attempt of every delivery never tried yet, oldest first (a production worker's
        immediate send after the commit). Returns how many it sent or settled."""
        with self.lock:
            fresh = sorted((d for d in self.deliveries.values() if d.status == PENDING and d.attempts == 0),
                           key=lambda d: d.created_at)
        return sum(self.attempt(d.id) is not None for d in fresh)

    def _post(self, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int | None, str]:
        # upstream keeps a fixed sentence per failure class, never the exception's own text
        try:
            answer = self.client.post(url, content=body, headers=dict(headers), timeout=TIMEOUT_SECONDS,
                                      follow_redirects=False)
        except httpx.TimeoutException:
            return None, f"Timed out after {TIMEOUT_SECONDS:.0f} seconds."
        except (httpx.TransportError, OSError):
            return None, "Could not connect to the endpoint."
        except Exception:  # a receiver bug must not break the request that caused the event (upstream: same)
            return None, "The delivery failed."
        return answer.status_code, ""
