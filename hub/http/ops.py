"""Operations endpoints: deliveries and their dead letters, replay, Prometheus metrics, readiness."""

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import JSONResponse, Response

from hub import metrics
from hub.bootstrap import Hub
from hub.http.views import delivery_json, when
from hub.store.engine import reason
from hub.usecases.replay import replay_delivery
from hub.usecases.stats import service_stats

DeliveryState = Literal["pending", "in_flight", "retry_wait", "delivered", "dead", "replayed", "superseded"]


SERVICE_STATS_SECONDS = 30.0  # the service metrics scan a day of history: computed at most this often per process


class _Recent:
    """A value computed at most once per `seconds` (the last one is served meanwhile)."""

    def __init__(self, compute: Callable[[], Any], seconds: float):
        self.compute, self.seconds = compute, seconds
        self._value: Any = None
        self._at = -math.inf
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if time.monotonic() - self._at >= self.seconds:
                self._value, self._at = self.compute(), time.monotonic()
            return self._value


def ops_router(hub: Hub, require_token: Callable[..., None],
               publish_deliveries: Callable[[list[int]], None] | None = None,
               broker_check: Callable[[], None] | None = None) -> APIRouter:
    router = APIRouter()
    authed = [Depends(require_token)]
    service = _Recent(lambda: service_stats(hub), SERVICE_STATS_SECONDS)

    @router.get("/deliveries", dependencies=authed, summary="Deliveries, newest first (dead letters: state=dead)")
    def list_deliveries(state: DeliveryState | None = None, system: str | None = None,
                        since: Annotated[datetime | None, Query(description="updated at or after (ISO 8601)")] = None,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        if system is not None and system not in hub.settings.systems:
            raise HTTPException(404, f"no system `{system}` is configured")
        if since is not None and since.tzinfo is None:
            raise HTTPException(422, "since: give a time zone, e.g. 2026-02-13T09:00:00Z")
        with hub.store.unit_of_work() as uow:
            rows = uow.deliveries.find(state, system, since, limit)
        return {"deliveries": [delivery_json(r) for r in rows]}

    @router.get("/deliveries/{delivery_id}", dependencies=authed, summary="One delivery with every attempt")
    def get_delivery(delivery_id: int) -> dict[str, Any]:
        with hub.store.unit_of_work() as uow:
            row = uow.deliveries.get(delivery_id)
            if row is None:
                raise HTTPException(404, f"no delivery {delivery_id}")
            return delivery_json(row, uow.deliveries.attempts(delivery_id))

    @router.post("/deliveries/{delivery_id}/replay", dependencies=authed, status_code=202,
                 summary="Send a dead-lettered delivery again (its fields that are still current)")
    def replay(delivery_id: int) -> dict[str, Any]:
        try:
            created = replay_delivery(hub, delivery_id)
        except LookupError as exc:
            status = 404 if "no delivery" in str(exc) else 409
            raise HTTPException(status, str(exc)) from exc
        if publish_deliveries is not None:
            publish_deliveries(created)
        return {"replayed": delivery_id, "deliveries": created}

    @router.get("/polls", dependencies=authed, summary="Polled systems: how far each has been read, and its last error")
    def list_polls() -> dict[str, Any]:
        with hub.store.unit_of_work() as uow:
            rows = {r["system"]: r for r in uow.polls.all()}

        polls = []
        for name, config in sorted(hub.settings.systems.items()):
            if not config.polled:
                continue
            row = rows.get(name, {})
            polls.append({"system": name, "interval_seconds": config.poll_interval_seconds,
                          "overlap_seconds": config.poll_overlap_seconds, "watermark": when(row.get("watermark")),
                          "polled_at": when(row.get("polled_at")), "records": row.get("records", 0),
                          "failed_at": when(row.get("failed_at")), "last_error": row.get("last_error")})
        return {"polls": polls}

    @router.get("/metrics", dependencies=authed, summary="Prometheus metrics (text exposition format)")
    def get_metrics() -> Response:
        return Response(metrics.render(hub, service.get()), media_type="text/plain; version=0.0.4; charset=utf-8")

    @router.get("/readyz", summary="Ready: the database and the broker answer")
    def readyz() -> JSONResponse:
        report: dict[str, str] = {}
        try:
            hub.store.ping()
            report["database"] = "ok"
        except Exception as exc:  # any failure to reach the database means not ready
            report["database"] = f"unavailable: {reason(exc)}"
        if broker_check is not None:
            try:
                broker_check()
                report["broker"] = "ok"
            except Exception as exc:  # likewise for the broker
                report["broker"] = type(exc).__name__
        ready = all(v == "ok" for v in report.values())
        return JSONResponse({"status": "ok" if ready else "unavailable", **report}, status_code=200 if ready else 503)

    return router


def celery_broker_check() -> None:
    """Open and close a connection to the configured broker (raises if it does not answer)."""
    from hub.messaging.celery_app import celery_app

    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
