"""The signed webhook intake, `POST /webhooks/{system}`: check, then store in the inbox, then answer 202.

Checks run in a fixed order, each answered with a message that says what is wrong:
404 unknown system · 413 body over the limit (Content-Length, then the bytes actually read) · 401 no
secret configured, or a missing, forged or stale signature · 415 not JSON · 422 malformed JSON or a
payload the system's connector cannot parse. Only then is the event committed to the inbox, so 202
means stored; a repeated event id answers 202 with `duplicate: true` and changes nothing.
The signature is the authentication: webhooks need no bearer token. Nothing here logs a secret or a
signature value.

A system whose connector type declares an inbound format (`ConnectorType.inbound`, e.g. Kuaidi100's signed
form post) is checked in the same order, except that its `decode` turns the body into the payload in place of
the Content-Type and JSON checks (415/422 as it says), and every answer, 202 or a refusal, is the one its
vendor expects (`reply`): a vendor that does not get its acknowledgement keeps sending.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
import re
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import structlog
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from hub import metrics
from hub.bootstrap import Hub
from hub.core.errors import InvalidValue
from hub.core.plugin import InboundFormat, UnsupportedBody
from hub.core.signing import DEFAULT_TOLERANCE, SignatureError
from hub.store.engine import unavailable
from hub.usecases.ingest import accept_event

log = structlog.get_logger("tickethub.intake")

MAX_BODY_BYTES = 1024 * 1024
MAX_DEPTH = 64  # deeper JSON is refused before anything recurses over it
MAX_EVENT_ID = 190  # the inbox keys events as "<system>:<id>" in 255 characters; system names are <= 64
_EVENT_ID = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces: ids are echoed in logs and URLs

RETRY_AFTER_SECONDS = 5  # what a 503 asks a sender (or reader) to wait while the database is away
DATABASE_AWAY = "the database is not reachable right now; nothing was stored: send it again later"


# The threads that store webhooks (each waits for its group commit, `Store.together`): this process's own, started
# with the API (`start_store_threads`) and kept. Starlette's thread pool starts a thread when a burst needs one and
# drops it after 10 s idle, and each start waits for the interpreter behind the busy threads: the API's first burst
# after start-up (bench/pipeline.py's acknowledgement run, 500/s, PostgreSQL; its worst 30 of 2,500 all within the
# first 70 ms) had p99 118-150 ms, 78-110 ms on threads of its own, 6-40 ms with `settle_heap` too (hub/cli/serve.py).
STORE_THREADS = 40
_store_pool: ThreadPoolExecutor | None = None
_store_pool_lock = threading.Lock()


def store_threads() -> ThreadPoolExecutor:
    """The intake's pool, made on first use; once made, every webhook takes it without the lock."""
    global _store_pool
    if _store_pool is not None:
        return _store_pool
    with _store_pool_lock:
        if _store_pool is None:
            _store_pool = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="tickethub-intake")
        return _store_pool


def start_store_threads() -> None:
    """Start every intake thread now, before the first webhook."""
    started = threading.Barrier(STORE_THREADS + 1)
    pool = store_threads()
    for _ in range(STORE_THREADS):
        pool.submit(started.wait, 10)
    started.wait(10)


def database_away() -> JSONResponse:
    return JSONResponse({"detail": DATABASE_AWAY}, status_code=503,
                        headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


class WebhookAccepted(BaseModel):
    event_id: str
    duplicate: bool


class ErrorBody(BaseModel):
    detail: str


class Rejected(Exception):
    """A webhook refused with `status` and a message saying what is wrong (already logged and counted)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


class _Disconnected(Exception):
    pass


class WebhookIntake:
    """The checks and the store behind `POST /webhooks/{system}`, served two ways with the same answers:
    as a FastAPI route (`router()`, which also documents it in the OpenAPI schema) and as a plain ASGI
    handler (`serve`) that the hub's app runs ahead of FastAPI's routing, dependency solving and response
    validation, which cost more per webhook than checking and storing it."""

    PREFIX = "/webhooks/"

    def __init__(self, hub: Hub, secrets: Mapping[str, Sequence[str]], *, max_body_bytes: int = MAX_BODY_BYTES,
                 tolerance: float = DEFAULT_TOLERANCE):
        self.hub, self.max_body_bytes, self.tolerance = hub, max_body_bytes, tolerance
        self.active = {name: tuple(values) for name, values in secrets.items()}

    def reject(self, status: int, system: str, reason: str, event_id: str | None = None) -> Rejected:
        log.warning("webhook rejected", system=system, event_id=event_id, status=status, reason=reason)
        label = system if system in self.hub.settings.systems else "(unknown)"  # unbounded labels would explode
        metrics.EVENTS.labels(label, f"rejected_{status}").inc()
        return Rejected(status, reason)

    def known(self, system: str) -> None:
        if system not in self.hub.settings.systems:
            raise self.reject(404, system, f"no system `{system}` is configured")

    def too_large(self, system: str) -> Rejected:
        return self.reject(413, system, f"body is over the {self.max_body_bytes}-byte limit for webhooks")

    def check(self, system: str, headers: Mapping[str, str], body: bytes) -> tuple[str, Any]:
        """(event id, payload) of a webhook that passes every check after size; Rejected otherwise."""
        settings = self.hub.settings.systems[system]
        if not self.active.get(system):
            variable = settings.webhook_secrets_env
            fix = (f"set the secret(s) in ${variable}" if variable else
                   f"set webhook_secrets_env = \"TICKETHUB_{system.upper().replace('-', '_')}_WEBHOOK_SECRETS\""
                   f" under [systems.{system}] and put the secret(s) in that variable")
            raise self.reject(401, system, f"no webhook secret is configured for {system}: {fix}")
        try:
            external_id = settings.connector_type.signature.verify(
                self.active[system], headers, body, self.hub.clock().timestamp(), tolerance=self.tolerance)
        except SignatureError as exc:
            raise self.reject(401, system, f"signature check failed: {exc}") from None

        inbound = settings.connector_type.inbound
        if inbound is None:
            problem = _content_type_problem(headers.get("content-type", ""))
            if problem:
                raise self.reject(415, system, problem, external_id)
        try:
            payload = _parse_json(body) if inbound is None else _decoded(inbound, headers, body)
            if len(external_id) > MAX_EVENT_ID or not _EVENT_ID.match(external_id):
                raise InvalidValue(f"the event id must be 1 to {MAX_EVENT_ID} printable ASCII characters"
                                   " without spaces")
            settings.connector_type.parse_notice(system, payload)
        except UnsupportedBody as exc:
            raise self.reject(415, system, str(exc), external_id) from None
        except InvalidValue as exc:
            raise self.reject(422, system, str(exc), external_id) from None
        return external_id, payload

    def inbound(self, system: str) -> InboundFormat | None:
        """The system's inbound format, if its type declares one (None for an unknown system)."""
        settings = self.hub.settings.systems.get(system)
        return settings.connector_type.inbound if settings is not None else None

    def answer(self, system: str, status: int, event_id: str | None, duplicate: bool,
               reason: str) -> tuple[int, Mapping[str, Any]]:
        """(HTTP status, JSON body) for what intake decided: the hub's own answer, or the one the system's
        vendor expects when its type declares an inbound format."""
        inbound = self.inbound(system)
        if inbound is not None:
            return inbound.reply(status, event_id, duplicate, reason)
        if status == 202:
            return 202, {"event_id": event_id, "duplicate": duplicate}
        return status, {"detail": reason}

    async def store(self, system: str, external_id: str, payload: Any) -> tuple[str, bool]:
        """Commit the event to the inbox; Rejected(503) while the database is away (nothing stored: the
        sender's retry is the only copy, and it is accepted then)."""
        try:
            context = contextvars.copy_context()  # the request's log context goes with it, as Starlette's would
            return await asyncio.get_running_loop().run_in_executor(
                store_threads(), partial(context.run, accept_event, self.hub, system, external_id, payload))
        except Exception as exc:
            if not unavailable(exc):
                raise
            log.warning("webhook not stored: database away", system=system, event_id=external_id,
                        error=type(exc).__name__)
            metrics.EVENTS.labels(system, "rejected_503").inc()
            raise Rejected(503, DATABASE_AWAY) from None

    # ---- served as plain ASGI ------------------------------------------------------------------

    def system_of(self, scope: Mapping[str, Any]) -> str | None:
        """The system named by a `POST /webhooks/{system}` request, or None for any other request."""
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(self.PREFIX):
            return None
        path = scope["path"]
        system = path[len(self.PREFIX):]
        return system if system and "/" not in system else None

    async def serve(self, system: str, scope: Mapping[str, Any], receive: Any, send: Any) -> None:
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:  # the first of repeated headers counts, as in Starlette
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        try:
            self.known(system)
            body = await _read_limited(headers.get("content-length", ""), _asgi_chunks(receive), self.max_body_bytes)
            if body is None:
                raise self.too_large(system)
            external_id, payload = self.check(system, headers, body)
            event_id, duplicate = await self.store(system, external_id, payload)
        except Rejected as exc:
            retry = [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())] if exc.status == 503 else []
            await _send_json(send, *self.answer(system, exc.status, None, False, exc.reason), extra=retry)
            return
        except _Disconnected:
            return  # the client went away before sending the whole body: nothing stored, nobody to answer
        await _send_json(send, *self.answer(system, 202, event_id, duplicate, _accepted(duplicate)))

    # ---- served (and documented) by FastAPI ----------------------------------------------------

    def router(self) -> APIRouter:
        router = APIRouter(tags=["webhooks"])

        @router.post(
            "/webhooks/{system}", status_code=202, response_model=WebhookAccepted,
            summary="Receive a system's signed change notice into the inbox",
            responses={
                200: {"description": "stored, answered as the system's vendor expects (a connector type with an "
                                     "inbound format, e.g. Kuaidi100: `{\"result\": true, \"returnCode\": "
                                     "\"200\", \"message\": \"成功\"}`); its refusals keep the statuses below"},
                **{status: {"model": ErrorBody, "description": text} for status, text in (
                    (401, "no secret configured, or a missing, forged or stale signature"),
                    (404, "unknown system"), (413, "body too large"), (415, "not JSON"),
                    (422, "malformed JSON, or a payload the system's connector cannot parse"))}},
            openapi_extra=_OPENAPI_EXTRA,
        )
        async def receive_webhook(system: str, request: Request) -> WebhookAccepted | JSONResponse:
            try:
                self.known(system)
                body = await _read_limited(request.headers.get("content-length", ""), request.stream(),
                                           self.max_body_bytes)
                if body is None:
                    raise self.too_large(system)
                headers: dict[str, str] = {}
                for name, value in request.headers.items():  # the first of repeated headers, as `serve` takes
                    headers.setdefault(name.lower(), value)
                external_id, payload = self.check(system, headers, body)
                event_id, duplicate = await self.store(system, external_id, payload)
            except Rejected as exc:
                retry = {"Retry-After": str(RETRY_AFTER_SECONDS)} if exc.status == 503 else None
                if self.inbound(system) is None:
                    raise HTTPException(exc.status, exc.reason, headers=retry) from None
                status, content = self.answer(system, exc.status, None, False, exc.reason)
                return JSONResponse(dict(content), status_code=status, headers=retry)
            if self.inbound(system) is None:
                return WebhookAccepted(event_id=event_id, duplicate=duplicate)
            status, content = self.answer(system, 202, event_id, duplicate, _accepted(duplicate))
            return JSONResponse(dict(content), status_code=status)

        return router


def _accepted(duplicate: bool) -> str:
    return "already stored (a duplicate)" if duplicate else "stored"


def _decoded(inbound: InboundFormat, headers: Mapping[str, str], body: bytes) -> Any:
    """The payload of a body in the type's own format, checked like a JSON body for what the inbox can keep."""
    try:
        payload = inbound.decode(headers, body)
    except RecursionError:  # a decoder's JSON nested past Python's limit
        raise InvalidValue(f"body nests deeper than {MAX_DEPTH} levels") from None
    _check_storable(payload)
    return payload


async def _send_json(send: Any, status: int, content: Mapping[str, Any],
                     extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json"),
                            *extra]})
    await send({"type": "http.response.body", "body": body})


async def _read_limited(declared: str, chunks: AsyncIterator[bytes], limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed `limit` (its Content-Length, then the bytes read)."""
    if declared.isdigit() and int(declared) > limit:
        return None
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


async def _asgi_chunks(receive: Any) -> AsyncIterator[bytes]:
    """The request body's chunks from an ASGI `receive`; _Disconnected if the client goes away first."""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _Disconnected
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


def _content_type_problem(content_type: str) -> str | None:
    media, *params = (part.strip().lower() for part in content_type.split(";"))
    kind, _, subtype = media.partition("/")
    if kind != "application" or not (subtype == "json" or subtype.endswith("+json")):
        shown = f"`{media}`" if media else "missing"
        return f"Content-Type is {shown}; send application/json"
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            return f"charset `{value.strip()}` is not accepted; JSON is sent as utf-8"
    return None


def _parse_json(body: bytes) -> Any:
    """The body as JSON the store can keep; InvalidValue saying what is wrong otherwise."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidValue(f"body is not UTF-8 (byte {exc.start})") from None
    try:
        payload = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise InvalidValue(f"body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except ValueError as exc:  # NaN/Infinity, an out-of-range number, an integer too long to convert
        raise InvalidValue(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidValue(f"body nests deeper than {MAX_DEPTH} levels") from None
    _check_storable(payload)
    return payload


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _check_storable(payload: Any) -> None:
    """Refuse what the inbox cannot keep on every database: deep nesting, NUL, unpaired surrogates."""
    stack: list[tuple[Any, int, str]] = [(payload, 1, "(body)")]
    while stack:
        value, depth, where = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidValue(f"body nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, f"a key in {where}")
                stack.append((item, depth + 1, key[:40] if where == "(body)" else f"{where}.{key[:40]}"))
        elif isinstance(value, list):
            stack.extend((item, depth + 1, f"{where}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, where)


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise InvalidValue(f"{where[:200]}: text contains a NUL character (\\u0000), which cannot be stored")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValue(f"{where[:200]}: text contains an unpaired UTF-16 surrogate (\\ud800-\\udfff)") from None


_OPENAPI_EXTRA: dict[str, Any] = {
    "description": (
        "The system's own change notice as JSON, signed per Standard Webhooks (`webhook-id`, "
        "`webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`, "
        "5-minute tolerance, any active secret) unless the system's connector declares its vendor's "
        "scheme (BottleCRM: `X-BottleCRM-Signature`, `X-BottleCRM-Delivery`), or its vendor's own body "
        "(Kuaidi100: a form post `param=<JSON>&sign=<upper-case hex MD5 of param + salt>`, answered with the "
        "vendor's acknowledgement). No bearer token: the signature is the authentication."
    ),
    "parameters": [
        {"name": name, "in": "header", "required": False, "schema": {"type": "string"}, "description": text}
        for name, text in (
            ("webhook-id", "the event id; a repeated id is a duplicate"),
            ("webhook-timestamp", "unix seconds"),
            ("webhook-signature", "space-separated `v1,<base64>` signatures"),
        )
    ],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
}
