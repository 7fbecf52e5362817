"""Reconciliation over HTTP: the runs, each run's report (JSON, CSV, HTML), and operators' decisions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from hub.usecases.context import Hub
from hub.usecases.reconcile import FORMATS, DecisionRefused, StoredReport, decide, stored_report

RunId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the run's number")]
MEDIA = {"json": "application/json", "csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8"}


class DecisionIn(BaseModel):
    """An operator's decision on one item of the run."""

    item_id: int = Field(ge=1, le=2**63 - 1)
    decision: Literal["accept", "override"] = Field(description="accept the run's proposal, or override it")
    value: Any = Field(default=None, description="with override: the value the field takes")
    operator: str = Field(min_length=1, max_length=255, description="who decides (kept in the history)")


def reconcile_router(hub: Hub, require_token: Callable[..., None],
                     publish_deliveries: Callable[[list[int]], None] | None = None) -> APIRouter:
    router = APIRouter(prefix="/reconcile", tags=["reconciliation"], dependencies=[Depends(require_token)])

    def report_of(run_id: int) -> StoredReport:
        try:
            return stored_report(hub, run_id)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None

    @router.get("/runs", summary="Reconciliation runs, newest first, with their counts")
    def list_runs(limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
        with hub.store.unit_of_work() as uow:
            rows = uow.reconcile.runs(limit)
        return {"runs": [{
            "id": r["id"], "state": r["state"], "mode": r["mode"], "dry_run": r["dry_run"],
            "started_at": r["started_at"], "finished_at": r["finished_at"], "tickets": r["ticket_count"],
            "copies": r["copy_count"], "discrepancies": int(r["discrepancies"]),
            "awaiting_review": int(r["awaiting_review"]), "not_checked": r["not_checked"],
            "links": {f: f"/reconcile/runs/{r['id']}.{f}" for f in MEDIA}} for r in rows]}

    def rendered(fmt: str) -> Callable[..., Response]:
        def serve(run_id: RunId) -> Response:  # streamed: the items are read from the store as it is sent
            headers = {"Content-Disposition": f'inline; filename="reconcile-{run_id}.{fmt}"'}
            return StreamingResponse(report_of(run_id).stream(fmt), media_type=MEDIA[fmt], headers=headers)

        return serve

    for fmt in FORMATS:
        router.add_api_route(f"/runs/{{run_id}}.{fmt}", rendered(fmt), methods=["GET"],
                             response_class=Response, summary=f"A run's report as {fmt.upper()}")

    @router.get("/runs/{run_id}", summary="A run: its summary, systems not checked, and where its reports are")
    def get_run(run_id: RunId) -> dict[str, Any]:
        report = report_of(run_id)
        return {"run": report.run.model_dump(mode="json"), "summary": report.summary.model_dump(mode="json"),
                "not_checked": [nc.model_dump() for nc in report.not_checked],
                "awaiting_review": [i.model_dump(mode="json") for i in report.iter_items(awaiting_review=True)],
                "links": {f: f"/reconcile/runs/{run_id}.{f}" for f in MEDIA}}

    @router.post("/runs/{run_id}/decisions", summary="Decide an item: accept the proposal, or override it")
    def post_decision(run_id: RunId, body: DecisionIn) -> dict[str, Any]:
        try:
            deliveries = decide(hub, run_id, body.item_id, body.operator, body.decision == "accept", body.value)
        except DecisionRefused as exc:
            raise HTTPException(exc.status, str(exc)) from None
        if publish_deliveries is not None:
            publish_deliveries(deliveries)
        return {"run_id": run_id, "item_id": body.item_id, "decision": body.decision, "deliveries": deliveries}

    return router
