"""The report's renderings, read as they go (`iter_json`, `iter_csv`, `iter_html`), give the bytes of the
whole document's: the JSON that `tickethub.reconcile.run/1` documents, the CSV's columns and rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from reconcile.report import (
    Item,
    Listing,
    NotChecked,
    RunInfo,
    RunReport,
    TrendPoint,
    Value,
    iter_csv,
    iter_html,
    iter_json,
    summarise,
    to_csv,
    to_html,
    to_json,
)

T0 = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)


def _report(count: int) -> RunReport:
    items = []
    for n in range(count):
        golden = Value(source="golden", system="crm", value=f"王小明 {n}", author="agent@example.com", author_rank=50,
                       system_rank=100, modified_at=T0 + timedelta(seconds=n), owner=True)
        copy = Value(source="erp", system="erp", value={"金额": [n, None, True]} if n % 2 else n, author="clerk",
                     author_rank=10, system_rank=50, modified_at=None, owner=False)
        items.append(Item(id=n + 1, ticket_id=f"20261204-SVC-{n:05d}" if n % 5 else None,
                          kind=("drift", "conflict", "orphan")[n % 3], system="erp" if n % 4 else None,
                          field="customer.name" if n % 3 != 2 else None, values=[golden, copy],
                          winner=golden if n % 2 else None, rule="newest" if n % 2 else "none",
                          reason=f"第{n}条\nline two, \"quoted\"",
                          action="would_repair" if n % 3 else "awaiting_review",
                          awaiting_review=n % 3 == 0, responsible="clerk" if n % 2 else None))
    run = RunInfo(id=7, state="done", mode="full", dry_run=True, since=None, started_at=T0, finished_at=T0,
                  systems=["crm", "erp"])
    return RunReport(run=run, summary=summarise(items, 10, 20), items=items,
                     not_checked=[NotChecked(system="wms", reason="no export")],
                     trend=[TrendPoint(run_id=6, started_at=T0 - timedelta(days=1), discrepancies=3,
                                       awaiting_review=1)])


@pytest.mark.parametrize("count", [0, 1, 2, 1200])
def test_the_json_read_as_it_goes_is_the_whole_documents(count: int) -> None:
    report = _report(count)
    whole = orjson.dumps(report.model_dump(mode="json", by_alias=True), option=orjson.OPT_INDENT_2)
    assert to_json(report) == whole
    head = report.model_copy(update={"items": []})
    assert b"".join(iter_json(head, iter(report.items))) == whole
    assert RunReport.model_validate_json(whole) == report


@pytest.mark.parametrize("count", [0, 1, 1200])
def test_the_csv_and_the_page_read_as_they_go_are_the_whole_documents(count: int) -> None:
    report = _report(count)
    csv = to_csv(report)
    assert csv.startswith(b"\xef\xbb\xbfrun_id,item_id,ticket_id,kind,system,local_id,field,values,winner,")
    assert b"".join(iter_csv(7, iter(report.items))) == csv
    assert csv.count(b"\r\n") == 1 + count  # a row ends in CRLF; a reason's own line breaks are quoted
    review = [i for i in report.items if i.awaiting_review]
    page = b"".join(iter_html(report.model_copy(update={"items": []}), Listing(count, lambda: report.items),
                              Listing(len(review), lambda: review), report.items))
    assert page == to_html(report)
    assert f"Discrepancies ({count})".encode() in page and f"Awaiting review ({len(review)})".encode() in page
