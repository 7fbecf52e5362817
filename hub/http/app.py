"""The HTTP API (FastAPI): the read side of tickets, and health. Thin: parse, call the store, shape.

Everything except health needs `Authorization: Bearer <token>`, the token coming from the
environment variable the configuration names (`api_token_env`).
"""


import hmac
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.types import Receive, Scope, Send

from hub.bootstrap import Hub
from hub.core.errors import InvalidTicketId, TicketNotFound
from hub.core.ticket_ids import parse_ticket_id
from hub.http.console.pages import install as install_console
from hub.http.ops import ops_router
from hub.http.reconcile import reconcile_router
from hub.http.views import audit_json, ticket_json
from hub.http.webhooks import WebhookIntake, database_away
from hub.plugins import load_webhook_secrets
from hub.store.engine import unavailable

_bearer = HTTPBearer(auto_error=False)


class HubApp(FastAPI):
    """FastAPI, with `POST /webhooks/{system}` answered by the intake's plain ASGI handler before any of
    FastAPI's middleware and routing run (the hot path; the route stays registered and documented)."""

    intake: WebhookIntake | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        intake = self.intake
        system = intake.system_of(scope) if intake is not None else None
        if system is not None:
            assert intake is not None
            await intake.serve(system, scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(hub: Hub, api_token: str, webhook_secrets: Mapping[str, Sequence[str]] | None = None,
               publish_deliveries: Callable[[list[int]], None] | None = None,
               broker_check: Callable[[], None] | None = None) -> FastAPI:
    if not api_token:
        raise ValueError("the API needs a bearer token")
    app = HubApp(title="tickethub", version="0.1.0",
                 description="One service ticket, consistent across CRM, ERP, MES, WMS and courier systems.")
    if webhook_secrets is None:  # resolved once, here at start: a malformed secret stops the app (ConfigError)
        webhook_secrets = load_webhook_secrets(hub.settings, os.environ)
    app.intake = WebhookIntake(hub, webhook_secrets)
    app.include_router(app.intake.router())

    def require_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), api_token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    def ticket_id_param(ticket_id: Annotated[str, Path(description="e.g. 20260213-SVC-00892")]) -> str:
        try:
            parse_ticket_id(ticket_id)
        except InvalidTicketId as exc:
            raise HTTPException(422, str(exc)) from exc
        return ticket_id

    @app.exception_handler(DBAPIError)
    @app.exception_handler(PoolTimeout)
    async def _database_away(_request: Request, exc: Exception) -> JSONResponse:
        if not unavailable(exc):
            raise exc
        return database_away()

    @app.exception_handler(TicketNotFound)
    async def _not_found(_request: Request, exc: TicketNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    authed = [Depends(require_token)]

    @app.get("/tickets/{ticket_id}", dependencies=authed, summary="The golden record with provenance")
    def get_ticket(ticket_id: Annotated[str, Depends(ticket_id_param)]) -> dict[str, Any]:
        with hub.store.unit_of_work() as uow:
            return ticket_json(uow.tickets.get(ticket_id))

    @app.get("/tickets/{ticket_id}/history", dependencies=authed, summary="The audit trail, oldest first")
    def get_history(ticket_id: Annotated[str, Depends(ticket_id_param)]) -> dict[str, Any]:
        with hub.store.unit_of_work() as uow:
            entries = uow.tickets.history(ticket_id)
        return {"ticket_id": ticket_id, "entries": [audit_json(e) for e in entries]}

    @app.get("/tickets", dependencies=authed, summary="Look a ticket up by a system's local ID")
    def find_ticket(system: Annotated[str, Query(min_length=1)],
                    local_id: Annotated[str, Query(min_length=1)]) -> dict[str, Any]:
        if system not in hub.settings.systems:
            raise HTTPException(404, f"no system `{system}` is configured")
        with hub.store.unit_of_work() as uow:
            ticket_id = uow.tickets.find_by_xref(system, local_id)
            if ticket_id is None:
                raise TicketNotFound(f"no ticket is linked to {system} record {local_id}")
            return ticket_json(uow.tickets.get(ticket_id))

    @app.get("/healthz", summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(ops_router(hub, require_token, publish_deliveries, broker_check))
    app.include_router(reconcile_router(hub, require_token, publish_deliveries))
    install_console(app, hub, api_token, publish_deliveries, broker_check)
    return app
