"""A reconciliation run's report: one document (`RunReport`, whose JSON Schema is the contract for
machines: `tickethub reconcile schema` prints it), rendered as JSON, CSV and a self-contained HTML page.
Pure: the caller stores or writes what these return."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import datetime
from typing import Any, Literal

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_ID: Literal["tickethub.reconcile.run/1"] = "tickethub.reconcile.run/1"
Kind = Literal["conflict", "missed_change", "drift", "orphan", "dangling", "missing"]
Action = Literal["repaired", "would_repair", "reported", "awaiting_review", "accepted", "overridden"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Value(_Model):
    """One copy's value of the field, with its evidence."""

    source: str = Field(description="`golden` (the hub's record) or the system whose copy it is")
    system: str
    value: Any = None
    author: str
    author_rank: int
    system_rank: int
    modified_at: datetime | None
    owner: bool


class Decided(_Model):
    """An operator's decision on an item."""

    decision: Literal["accept", "override"]
    value: Any = None
    operator: str
    decided_at: datetime


class Item(_Model):
    """One discrepancy: what differs where, who is responsible, what won and why, what was done."""

    id: int
    ticket_id: str | None
    kind: Kind
    system: str | None = Field(description="the system whose copy differs (or that lacks the record)")
    local_id: str | None = None
    field: str | None = None
    values: list[Value] = Field(default_factory=list, description="every candidate value, newest first")
    winner: Value | None = None
    rule: Literal["agree", "newest", "author_rank", "system_rank", "flagged", "ownership", "none"] = "none"
    reason: str
    action: Action
    awaiting_review: bool = False
    responsible: str | None = Field(default=None, description="the author who last changed the differing copy")
    decision: Decided | None = None


class NotChecked(_Model):
    system: str
    reason: str


class TrendPoint(_Model):
    run_id: int
    started_at: datetime
    discrepancies: int
    awaiting_review: int


class Summary(_Model):
    tickets: int = 0
    copies_compared: int = 0
    discrepancies: int = 0
    awaiting_review: int = 0
    by_system: dict[str, int] = Field(default_factory=dict)
    by_field: dict[str, int] = Field(default_factory=dict)
    by_rule: dict[str, int] = Field(default_factory=dict)
    by_kind: dict[str, int] = Field(default_factory=dict)
    by_action: dict[str, int] = Field(default_factory=dict)


class RunInfo(_Model):
    id: int
    state: Literal["running", "done", "failed"]
    mode: Literal["full", "incremental"]
    dry_run: bool
    since: datetime | None
    started_at: datetime
    finished_at: datetime | None
    systems: list[str] = Field(description="the systems this run was asked to check")
    tickets: list[str] = Field(default_factory=list, description="only these tickets, if given")
    error: str | None = None


class RunReport(_Model):
    schema_: Literal["tickethub.reconcile.run/1"] = Field(default=SCHEMA_ID, alias="schema")
    run: RunInfo
    summary: Summary
    not_checked: list[NotChecked]
    items: list[Item]
    trend: list[TrendPoint] = Field(default_factory=list, description="earlier runs, oldest first")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def summarise(items: list[Item], tickets: int, copies: int) -> Summary:
    return Summary(
        tickets=tickets, copies_compared=copies, discrepancies=len(items),
        awaiting_review=sum(i.awaiting_review for i in items),
        by_system=dict(Counter(i.system or "(none)" for i in items).most_common()),
        by_field=dict(Counter(i.field or "(record)" for i in items).most_common()),
        by_rule=dict(Counter(i.rule for i in items).most_common()),
        by_kind=dict(Counter(i.kind for i in items).most_common()),
        by_action=dict(Counter(i.action for i in items).most_common()))


def to_json(report: RunReport) -> bytes:
    return orjson.dumps(report.model_dump(mode="json", by_alias=True), option=orjson.OPT_INDENT_2)


CSV_COLUMNS = ("run_id", "item_id", "ticket_id", "kind", "system", "local_id", "field", "values", "winner",
               "winner_source", "rule", "reason", "action", "awaiting_review", "responsible")


def to_csv(report: RunReport) -> bytes:
    """One row per discrepancy, UTF-8 with a BOM so that Excel and WPS open Chinese text ungarbled."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for item in report.items:
        values = "; ".join(f"{v.source}={_text(v.value)} ({v.author}, {_when(v.modified_at)})" for v in item.values)
        writer.writerow([report.run.id, item.id, item.ticket_id or "", item.kind, item.system or "",
                         item.local_id or "", item.field or "", values,
                         _text(item.winner.value) if item.winner else "", item.winner.source if item.winner else "",
                         item.rule, item.reason, item.action, "yes" if item.awaiting_review else "no",
                         item.responsible or ""])
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


_ENV = Environment(loader=PackageLoader("reconcile", "templates"), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)
_ENV.filters["text"] = lambda v: _text(v)
_ENV.filters["when"] = lambda v: _when(v)


def to_html(report: RunReport, ticket_url: str = "") -> bytes:
    """A self-contained page (no external assets): summary, discrepancies with every candidate and the
    winner, drift by responsible author, items awaiting review, systems not checked, the trend."""
    drift: dict[tuple[str, str], list[Item]] = {}
    for item in report.items:
        if item.kind == "drift":
            drift.setdefault((item.responsible or "unknown", item.system or ""), []).append(item)
    by_author = sorted(drift.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    peak = max([p.discrepancies for p in report.trend] + [report.summary.discrepancies, 1])
    return _ENV.get_template("report.html.j2").render(
        report=report, drift=by_author, review=[i for i in report.items if i.awaiting_review], peak=peak,
        ticket_url=ticket_url).encode("utf-8")


def _text(value: Any) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"
