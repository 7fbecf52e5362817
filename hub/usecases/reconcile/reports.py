"""A run's report as stored (the document operators and machines read), and its files."""

from __future__ import annotations

from pathlib import Path

from hub.usecases.context import Hub
from reconcile.report import Item, NotChecked, RunInfo, RunReport, TrendPoint, summarise, to_csv, to_html, to_json


def report_dir(hub: Hub) -> Path:
    return hub.settings.reconcile.report_dir or hub.settings.hub.data_dir / "reports"


def write_reports(report: RunReport, directory: Path) -> list[Path]:
    """`reconcile-<run>.json`, `.csv` and `.html` in `directory` (made if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, render in ((".json", to_json), (".csv", to_csv), (".html", to_html)):
        path = directory / f"reconcile-{report.run.id}{suffix}"
        path.write_bytes(render(report))
        written.append(path)
    return written


def load_report(hub: Hub, run_id: int) -> RunReport:
    """The run's report as stored (LookupError if there is no such run)."""
    with hub.store.unit_of_work() as uow:
        run = uow.reconcile.run(run_id)
        if run is None:
            raise LookupError(f"no reconciliation run {run_id}")
        rows = uow.reconcile.items(run_id)
        earlier = [r for r in reversed(uow.reconcile.runs(limit=30, before=run_id))]
    items = [Item(**{**row["item"], "id": row["id"], "awaiting_review": row["awaiting_review"],
                     "decision": row["decision"]}) for row in rows]
    info = RunInfo(id=run["id"], state=run["state"], mode=run["mode"], dry_run=run["dry_run"], since=run["since"],
                   started_at=run["started_at"], finished_at=run["finished_at"], systems=run["systems"],
                   tickets=run["tickets"], error=run["error"])
    trend = [TrendPoint(run_id=r["id"], started_at=r["started_at"], discrepancies=int(r["discrepancies"]),
                        awaiting_review=int(r["awaiting_review"])) for r in earlier]
    return RunReport(run=info, summary=summarise(items, run["ticket_count"], run["copy_count"]),
                     not_checked=[NotChecked(**nc) for nc in run["not_checked"]], items=items, trend=trend)


