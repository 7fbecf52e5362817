"""A run's report as stored (the document operators and machines read), and its files.

A run's items stay in the store: `stored_report` holds the run, its summary (counted over the items a page at
a time), the systems not checked and the trend, and reads the items a page at a time whenever they are
rendered, so that writing the files of a run with a great many discrepancies never holds them all."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.usecases.context import Hub
from reconcile.report import (
    Item,
    Listing,
    NotChecked,
    RunInfo,
    RunReport,
    Summary,
    Tally,
    TrendPoint,
    iter_csv,
    iter_html,
    iter_json,
    to_csv,
    to_html,
    to_json,
)

FORMATS = ("json", "csv", "html")  # the report's files and downloads


def report_dir(hub: Hub) -> Path:
    return hub.settings.reconcile.report_dir or hub.settings.hub.data_dir / "reports"


@dataclass(frozen=True)
class StoredReport:
    """A run's report with its items left in the store: what `RunReport` says, read as it is rendered."""

    hub: Hub
    run: RunInfo
    summary: Summary
    not_checked: list[NotChecked]
    trend: list[TrendPoint]

    def iter_items(self, awaiting_review: bool | None = None, kind: str | None = None,
                   ids: Sequence[int] | None = None) -> Iterator[Item]:
        """The items in ID order (only those awaiting review or not, of one kind, or among `ids`), a page at
        a time."""
        after: int | None = None
        while True:
            with self.hub.store.unit_of_work() as uow:
                rows = uow.reconcile.items_page(self.run.id, after, awaiting_review=awaiting_review, kind=kind,
                                                ids=ids)
            if not rows:
                return
            yield from (_item(row) for row in rows)
            after = rows[-1]["id"]

    @property
    def items(self) -> list[Item]:
        """Every item, in memory: for callers that want the whole document (the files never do)."""
        return list(self.iter_items())

    def stream(self, fmt: str) -> Iterator[bytes]:
        """The report as `fmt` (json | csv | html: what `to_json`, `to_csv`, `to_html` make of the whole
        document), its items read from the store as it is rendered."""
        head = self.head()
        items = Listing(self.summary.discrepancies, self.iter_items)
        if fmt == "json":
            return iter_json(head, items)
        if fmt == "csv":
            return iter_csv(head.run.id, items)
        if fmt == "html":
            review = Listing(self.summary.awaiting_review, lambda: self.iter_items(awaiting_review=True))
            return iter_html(head, items, review, self.iter_items(kind="drift"))
        raise ValueError(f"no report format `{fmt}`; known: {', '.join(FORMATS)}")

    def head(self) -> RunReport:
        """The report without its items."""
        return RunReport(run=self.run, summary=self.summary, not_checked=self.not_checked, items=[],
                         trend=self.trend)

    def document(self) -> RunReport:
        return self.head().model_copy(update={"items": self.items})


def stored_report(hub: Hub, run_id: int) -> StoredReport:
    """The run's report, its items left in the store (LookupError if there is no such run)."""
    with hub.store.unit_of_work() as uow:
        run = uow.reconcile.run(run_id)
        if run is None:
            raise LookupError(f"no reconciliation run {run_id}")
        earlier = [r for r in reversed(uow.reconcile.runs(limit=30, before=run_id))]
    info = RunInfo(id=run["id"], state=run["state"], mode=run["mode"], dry_run=run["dry_run"], since=run["since"],
                   started_at=run["started_at"], finished_at=run["finished_at"], systems=run["systems"],
                   tickets=run["tickets"], error=run["error"])
    trend = [TrendPoint(run_id=r["id"], started_at=r["started_at"], discrepancies=int(r["discrepancies"]),
                        awaiting_review=int(r["awaiting_review"])) for r in earlier]
    tally = Tally()
    after: int | None = None
    while True:  # the summary, counted over the items' stored fields a page at a time
        with hub.store.unit_of_work() as uow:
            rows = uow.reconcile.items_page(run_id, after)
        if not rows:
            break
        for row in rows:
            item = row["item"]
            tally.add(item.get("system"), item.get("field"), item.get("rule", "none"), item["kind"], item["action"],
                      row["awaiting_review"])
        after = rows[-1]["id"]
    return StoredReport(hub, info, tally.summary(run["ticket_count"], run["copy_count"]),
                        [NotChecked(**nc) for nc in run["not_checked"]], trend)


def load_report(hub: Hub, run_id: int) -> RunReport:
    """The run's report as stored, whole (LookupError if there is no such run)."""
    return stored_report(hub, run_id).document()


def write_reports(report: RunReport | StoredReport, directory: Path) -> list[Path]:
    """`reconcile-<run>.json`, `.csv` and `.html` in `directory` (made if missing); a stored report's items
    are read from the store as each file is written."""
    directory.mkdir(parents=True, exist_ok=True)
    whole = {"json": to_json, "csv": to_csv, "html": to_html}
    written = []
    for fmt in FORMATS:
        path = directory / f"reconcile-{report.run.id}.{fmt}"
        with path.open("wb") as out:
            if isinstance(report, StoredReport):
                for chunk in report.stream(fmt):
                    out.write(chunk)
            else:
                out.write(whole[fmt](report))
        written.append(path)
    return written


def _item(row: dict[str, Any]) -> Item:
    return Item(**{**row["item"], "id": row["id"], "awaiting_review": row["awaiting_review"],
                   "decision": row["decision"]})
