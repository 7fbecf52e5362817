"""The connector for Tryton 8.2 over its JSON-RPC: one model per system (ERP `sale.sale`, MES
`production`, WMS `stock.shipment.out`; connectors/tryton/models.py). How the real server behaves is
written down in docs/peers/tryton.md.

Why JSON-RPC rather than the 8.x REST API: JSON-RPC is what Tryton's own clients use, it has been
stable for many releases, it runs the workflow buttons, and it takes `_timestamp` for optimistic
locking; REST needs an application key validated per user and pages with Range headers.

Tryton has no webhooks, so the hub polls (`poll`): records whose `write_date` — or, never edited,
`create_date` — is at or after a watermark, in (modified-at, id) order, a page at a time. The caller
moves the watermark and keeps an overlap window; the inbox de-duplicates what the overlap repeats.

The record the mapping sees is flat, in Tryton's field names: `{"state": "running", "reference": …,
"product.code": "PUMP-100", …}`. Author: the login of `write_uid` (of `create_uid` when never
edited). Writes pass the `_timestamp` just read, so a record changed in between is refused
(ConcurrencyException) and the write is retried later from a fresh read, never forced.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any

import httpx

from connectors.tryton.models import MODELS, ModelSpec, Relation
from connectors.tryton.rpc import TrytonFault, TrytonSession, TrytonUnreachable, decode
from hub.core.canonical import parse_datetime
from hub.core.errors import InvalidValue
from hub.core.ports import (
    UNKNOWN_AUTHOR,
    FieldSchema,
    Notice,
    RecordNotFound,
    SourceRecord,
    TransientReadError,
    WriteRequest,
    WriteResult,
)
from hub.core.retry import read_page

PAGE_SIZE = 500
# Tryton error types that no retry can mend: the record or the value is refused as it is
REFUSALS = {"UserError", "UserWarning", "ValidationError", "RequiredValidationError", "SizeValidationError",
            "DigitsValidationError", "SelectionValidationError", "DomainValidationError", "AccessError",
            "ForeignKeyError", "SQLConstraintError", "AccessDenied", "Forbidden"}


def schema_for(model: str) -> Mapping[str, FieldSchema]:
    return MODELS[model].schema


class TrytonConnector:
    def __init__(self, system: str, base_url: str, database: str, login: str, password: str, model: str,
                 client: httpx.Client, page_size: int = PAGE_SIZE):
        if model not in MODELS:
            raise InvalidValue(f"Tryton model `{model}` is not one tickethub maps; known: {', '.join(MODELS)}")
        self.system = system
        self.spec: ModelSpec = MODELS[model]
        self.SCHEMA = self.spec.schema
        self.session = TrytonSession(client, base_url, database, login, password)
        self.page_size = page_size

    @property
    def model(self) -> str:
        return self.spec.model

    # ---- polling ----------------------------------------------------------------------------------

    def poll(self, since: datetime | None, retry_pages: bool = False) -> Iterator[SourceRecord]:
        """Every record changed at or after `since` (all of them when None), oldest change first, by
        (modified-at, id), read a page at a time. Records never edited (null write_date) count by their
        create_date."""
        if since is None:
            edited: list[Any] = [("write_date", "!=", None)]
            fresh: list[Any] = [("write_date", "=", None)]
        else:
            edited = [("write_date", ">=", since)]
            fresh = [("write_date", "=", None), ("create_date", ">=", since)]
        yield from _merge(self._keyset(edited, "write_date", retry_pages),
                          self._keyset(fresh, "create_date", retry_pages))

    def _keyset(self, domain: list[Any], stamp: str, retry_pages: bool) -> Iterator[SourceRecord]:
        """Pages ordered by (stamp, id), each starting after the last (stamp, id) seen: a record moved
        by an edit during the scan cannot shift a page boundary and be skipped."""
        after: tuple[datetime, int] | None = None
        while True:
            page_domain = list(domain)
            if after is not None:
                page_domain.append(["OR", (stamp, ">", after[0]), [(stamp, "=", after[0]), ("id", ">", after[1])]])
            fetch = partial(self._search, page_domain, stamp)
            rows = read_page(fetch) if retry_pages else fetch()
            linked = self._backlinks([int(row["id"]) for row in rows])
            for row in rows:
                yield self._record({**row, **linked.get(int(row["id"]), {})})
            if len(rows) < self.page_size:
                return
            last = rows[-1]
            after = (_stamp(last.get(stamp)), int(last["id"]))

    def _search(self, domain: list[Any], stamp: str) -> Any:
        """One keyset page; a Tryton that did not answer (or answered 5xx/429) is a transient failure."""
        try:
            return self.session.call(f"model.{self.model}.search_read", domain, 0, self.page_size,
                                     [[stamp, "ASC"], ["id", "ASC"]], self.spec.read_fields, self.session.context())
        except TrytonUnreachable as exc:
            if exc.status_code is None or exc.status_code >= 500 or exc.status_code == 429:
                raise TransientReadError(str(exc)) from exc
            raise

    # ---- webhooks (none: polled records arrive as notices carrying the record) ----------------------

    def parse_notice(self, headers: Mapping[str, str], payload: Any) -> list[Notice]:
        """A polled record, as the poller stored it in the inbox (`record_payload`)."""
        return parse_polled(self.system, payload)

    @staticmethod
    def record_payload(record: SourceRecord) -> dict[str, Any]:
        return {"local_id": record.local_id, "modified_at": record.modified_at.isoformat(),
                "author": record.author, "fields": dict(record.fields), "version": record.version}

    # ---- reads ------------------------------------------------------------------------------------

    def read(self, local_id: str, kind: str = "record") -> list[SourceRecord]:
        return [self._record(self._read_row(local_id))]

    def read_all(self, since: datetime | None = None) -> Iterator[SourceRecord]:
        """Reconciliation's bulk read: the poll's scan, with each page retried here (a poll is not: beat polls
        again at the next interval, and retrying inside it would stack a second retry layer)."""
        yield from self.poll(since, retry_pages=True)

    def _read_row(self, local_id: str) -> dict[str, Any]:
        record_id = _record_id(local_id)
        try:
            rows = self.session.call(f"model.{self.model}.read", [record_id],
                                     [*self.spec.read_fields, "_timestamp"], self.session.context())
        except TrytonFault as exc:
            if _missing(exc):
                raise RecordNotFound(f"{self.system}: {self.model} {local_id} does not exist") from exc
            raise
        if not rows:
            raise RecordNotFound(f"{self.system}: {self.model} {local_id} does not exist")
        return {**rows[0], **self._backlinks([record_id]).get(record_id, {})}

    def _backlinks(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """Per record id, the fields read from the records that point at it (one search per backlink)."""
        found: dict[int, dict[str, Any]] = {}
        for name, link in self.spec.backlinks.items():
            if not ids:
                break
            rows = self.session.call(f"model.{link.model}.search_read", [(link.field, "in", ids)], 0, None,
                                     [["id", "ASC"]], [link.field, link.reads], self.session.context())
            for row in rows:
                for record_id in row.get(link.field) or ():
                    if record_id in ids:
                        found.setdefault(int(record_id), {}).setdefault(name, row.get(link.reads))
        return found

    def _record(self, row: Mapping[str, Any]) -> SourceRecord:
        flat = _flatten(row)
        modified = _stamp(flat.get("write_date") or flat.get("create_date"))
        author = flat.get("write_uid.login") if flat.get("write_date") else flat.get("create_uid.login")
        fields = {name: _plain(flat.get(name)) for name in self.spec.schema}
        return SourceRecord(self.system, str(row["id"]), modified, str(author or UNKNOWN_AUTHOR), fields,
                            flat.get("_timestamp"))

    # ---- writes -----------------------------------------------------------------------------------

    def write(self, request: WriteRequest) -> WriteResult:
        if request.local_id is None:
            return self.create(request)
        try:
            row = self._read_row(request.local_id)
            values = self._values(request.fields)
            key = f"{self.model},{row['id']}"
            self.session.call(f"model.{self.model}.write", [row["id"]], values,
                              self.session.context(_timestamp={key: row.get("_timestamp")}))
        except RecordNotFound as exc:
            return WriteResult(404, error=str(exc), permanent=True)
        except (TrytonFault, TrytonUnreachable, InvalidValue) as exc:
            return _failure(exc)
        return WriteResult(200, local_id=request.local_id)

    def create(self, request: WriteRequest) -> WriteResult:
        try:
            values = {**self.spec.create_defaults, **self._values(request.fields)}
            if self.spec.ticket_field and self.spec.ticket_field not in values:
                values[self.spec.ticket_field] = request.ticket_id
            [new_id] = self.session.call(f"model.{self.model}.create", [values], self.session.context())
        except (TrytonFault, TrytonUnreachable, InvalidValue) as exc:
            return _failure(exc)
        return WriteResult(200, local_id=str(new_id))

    def _values(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, value in fields.items():
            schema = self.spec.schema.get(name)
            if schema is None or not schema.writable:
                raise InvalidValue(f"{self.system}: `{name}` cannot be written to a Tryton {self.model}")
            relation = self.spec.relations.get(name)
            if relation is None:
                values[name] = value
                continue
            target = name.split(".", 1)[0]
            if value is None:
                values[target] = None
                continue
            related = self._related(relation, value)
            values[target] = related["id"]
            for own, theirs in relation.fills.items():
                filled = related.get(theirs)
                values[own] = (filled[0] if filled else None) if isinstance(filled, list) else filled
        return values

    def _related(self, relation: Relation, value: Any) -> dict[str, Any]:
        """The related record a value names (with the fields `fills` needs), created if allowed."""
        context = self.session.context()
        wanted = sorted({"id", *relation.fills.values()})
        found = self.session.call(f"model.{relation.model}.search_read", [(relation.key, "=", value)], 0, 1,
                                  [["id", "ASC"]], wanted, context)
        if found:
            return dict(found[0])
        if relation.create is None:
            raise InvalidValue(f"{self.system}: no {relation.model} has {relation.key} = {value!r}")
        [new_id] = self.session.call(f"model.{relation.model}.create", [{relation.key: value, **relation.create}],
                                     context)
        return dict(self.session.call(f"model.{relation.model}.read", [new_id], wanted, context)[0])


def _failure(exc: Exception) -> WriteResult:
    if isinstance(exc, TrytonFault):
        if exc.kind == "ConcurrencyException":  # changed since we read it: retry from a fresh read
            return WriteResult(409, error=str(exc))
        if exc.kind in REFUSALS:
            return WriteResult(422, error=str(exc), permanent=True)
        return WriteResult(500, error=str(exc))
    if isinstance(exc, InvalidValue):
        return WriteResult(422, error=str(exc), permanent=True)
    assert isinstance(exc, TrytonUnreachable)
    return WriteResult(exc.status_code, error=str(exc))


def _missing(exc: TrytonFault) -> bool:
    text = exc.message.lower()
    return "exist" in text and ("does not" in text or "don't" in text or "not exist" in text) or "deleted" in text


def _record_id(local_id: str) -> int:
    try:
        return int(local_id)
    except ValueError:
        raise RecordNotFound(f"`{local_id}` is not a Tryton record id") from None


def _flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Tryton answers a dotted read (`product.code`) as `{"product.": {"code": …}}`; make it flat."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if key.endswith(".") and isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}"))
        elif key.endswith(".") and value is None:
            continue
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _stamp(value: Any) -> datetime:
    value = decode(value)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    raise InvalidValue(f"Tryton gave no modification time ({value!r})")


def _plain(value: Any) -> Any:
    """JSON-safe values for the inbox: decimals as strings, dates as ISO text."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _merge(*streams: Iterator[SourceRecord]) -> Iterator[SourceRecord]:
    return heapq.merge(*streams, key=lambda r: (r.modified_at, int(r.local_id)))


def parse_polled(system: str, payload: Any) -> list[Notice]:
    """A polled record, as the poller stored it in the inbox (`TrytonConnector.record_payload`). Pure."""
    if not isinstance(payload, dict) or not isinstance(payload.get("fields"), dict):
        raise InvalidValue("a Tryton change is an object with `local_id`, `modified_at`, `author`, `fields`")
    try:
        record = SourceRecord(system, str(payload["local_id"]), parse_datetime(payload["modified_at"]),
                              str(payload["author"]), payload["fields"], payload.get("version"))
    except (KeyError, TypeError) as exc:
        raise InvalidValue(f"a Tryton change lacks {exc}") from exc
    return [Notice(record.local_id, record.modified_at, record=record)]
