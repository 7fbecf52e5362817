"""A reconciliation run's report: one document (`RunReport`, whose JSON Schema is the contract for
machines: `tickethub reconcile schema` prints it), rendered as JSON, CSV and a self-contained HTML page.
Pure: the caller stores or writes what these return.

A run with many discrepancies need not be held whole: `Tally` summarises items one at a time, and
`iter_json`, `iter_csv` and `iter_html` render the document from its head (a `RunReport` whose items are
ignored) and the items as an iterable read as it goes, giving the same bytes as `to_json`, `to_csv` and
`to_html` (which are these over the report's own items)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, Literal, NamedTuple

import orjson
from jinja2 import Environment, PackageLoader
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


class Tally:
    """A summary's counts, taken one item at a time (a run's items need not be held to be summarised)."""

    def __init__(self) -> None:
        self.discrepancies = self.awaiting_review = 0
        self._counts: tuple[Counter[str], ...] = (Counter(), Counter(), Counter(), Counter(), Counter())

    def add(self, system: str | None, field: str | None, rule: str, kind: str, action: str,
            awaiting_review: bool) -> None:
        self.discrepancies += 1
        self.awaiting_review += bool(awaiting_review)
        by_system, by_field, by_rule, by_kind, by_action = self._counts
        by_system[system or "(none)"] += 1
        by_field[field or "(record)"] += 1
        by_rule[rule] += 1
        by_kind[kind] += 1
        by_action[action] += 1

    def add_item(self, item: Item) -> None:
        self.add(item.system, item.field, item.rule, item.kind, item.action, item.awaiting_review)

    def summary(self, tickets: int, copies: int) -> Summary:
        by_system, by_field, by_rule, by_kind, by_action = (dict(c.most_common()) for c in self._counts)
        return Summary(tickets=tickets, copies_compared=copies, discrepancies=self.discrepancies,
                       awaiting_review=self.awaiting_review, by_system=by_system, by_field=by_field,
                       by_rule=by_rule, by_kind=by_kind, by_action=by_action)


def summarise(items: Iterable[Item], tickets: int, copies: int) -> Summary:
    tally = Tally()
    for item in items:
        tally.add_item(item)
    return tally.summary(tickets, copies)


_ITEMS_MARK = "\u0000items\u0000"  # where the items go in the head's JSON (no report holds a NUL)


def iter_json(report: RunReport, items: Iterable[Item]) -> Iterator[bytes]:
    """`to_json` of `report` with `items` as its items (the report's own are ignored), an item at a time."""
    head = report.model_dump(mode="json", by_alias=True)
    head["items"] = [_ITEMS_MARK]
    before, after = orjson.dumps(head, option=orjson.OPT_INDENT_2).split(
        b'[\n    "' + orjson.dumps(_ITEMS_MARK)[1:-1] + b'"\n  ]', 1)
    yield before
    opened = False
    for item in items:
        text = orjson.dumps(item.model_dump(mode="json", by_alias=True), option=orjson.OPT_INDENT_2)
        yield (b",\n    " if opened else b"[\n    ") + text.replace(b"\n", b"\n    ")
        opened = True
    yield (b"\n  ]" if opened else b"[]") + after


def to_json(report: RunReport) -> bytes:
    return b"".join(iter_json(report, report.items))


CSV_COLUMNS = ("run_id", "item_id", "ticket_id", "kind", "system", "local_id", "field", "values", "winner",
               "winner_source", "rule", "reason", "action", "awaiting_review", "responsible")
_ROWS_PER_CHUNK = 500


def iter_csv(run_id: int, items: Iterable[Item]) -> Iterator[bytes]:
    """`to_csv` of run `run_id` with these items, a few hundred rows at a time."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    yield b"\xef\xbb\xbf"
    for n, item in enumerate(items, 1):
        values = "; ".join(f"{v.source}={_text(v.value)} ({v.author}, {_when(v.modified_at)})" for v in item.values)
        writer.writerow([run_id, item.id, item.ticket_id or "", item.kind, item.system or "",
                         item.local_id or "", item.field or "", values,
                         _text(item.winner.value) if item.winner else "", item.winner.source if item.winner else "",
                         item.rule, item.reason, item.action, "yes" if item.awaiting_review else "no",
                         item.responsible or ""])
        if n % _ROWS_PER_CHUNK == 0:
            yield out.getvalue().encode("utf-8")
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode("utf-8")


def to_csv(report: RunReport) -> bytes:
    """One row per discrepancy, UTF-8 with a BOM so that Excel and WPS open Chinese text ungarbled."""
    return b"".join(iter_csv(report.run.id, report.items))


_ENV = Environment(loader=PackageLoader("reconcile", "templates"), autoescape=True,
                   trim_blocks=True, lstrip_blocks=True)
_ENV.filters["text"] = lambda v: _text(v)
_ENV.filters["when"] = lambda v: _when(v)


class Listing:
    """Items a page lists: counted beforehand, iterated afresh each time the page goes through them."""

    def __init__(self, count: int, items: Callable[[], Iterable[Item]]):
        self._count, self._items = count, items

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items())


class _Drifted(NamedTuple):
    ticket_id: str | None
    field: str | None


class _Page(NamedTuple):
    """What the template reads of a report, with its items as a listing."""

    run: RunInfo
    summary: Summary
    not_checked: list[NotChecked]
    items: Listing
    trend: list[TrendPoint]


def iter_html(report: RunReport, items: Listing, review: Listing, drift: Iterable[Item],
              ticket_url: str = "") -> Iterator[bytes]:
    """`to_html` of `report` with `items` as its items, `review` those awaiting review and `drift` those of
    kind drift (the report's own items are ignored), rendered as it goes."""
    groups: dict[tuple[str, str], list[_Drifted]] = {}
    for item in drift:
        if item.kind == "drift":
            groups.setdefault((item.responsible or "unknown", item.system or ""), []).append(
                _Drifted(item.ticket_id, item.field))
    by_author = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    peak = max([p.discrepancies for p in report.trend] + [report.summary.discrepancies, 1])
    page = _Page(report.run, report.summary, report.not_checked, items, report.trend)
    pending: list[str] = []
    size = 0
    for text in _ENV.get_template("report.html.j2").generate(report=page, drift=by_author, review=review,
                                                             peak=peak, ticket_url=ticket_url):
        pending.append(text)
        size += len(text)
        if size >= 1 << 16:
            yield "".join(pending).encode("utf-8")
            pending, size = [], 0
    yield "".join(pending).encode("utf-8")


def to_html(report: RunReport, ticket_url: str = "") -> bytes:
    """A self-contained page (no external assets): summary, discrepancies with every candidate and the
    winner, drift by responsible author, items awaiting review, systems not checked, the trend."""
    review = [i for i in report.items if i.awaiting_review]
    return b"".join(iter_html(report, Listing(len(report.items), lambda: report.items),
                              Listing(len(review), lambda: review), report.items, ticket_url))


def _text(value: Any) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"
