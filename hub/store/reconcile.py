"""Reconciliation runs: the run itself (one at a time), the snapshot of every system's copy it compared,
and its discrepancies with their evidence, action and operator decision."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, case, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from hub.core.errors import TickethubError
from hub.store.dialect import as_json, insert_for
from hub.store.tables import field_values, reconcile_copies, reconcile_items, reconcile_parts, reconcile_runs, xrefs

ABANDONED_AFTER = timedelta(minutes=10)  # a running run with no heartbeat for this long was abandoned
IN_BATCH = 500  # IDs per `IN (...)` list (SQLite's limit on bound variables is far above; a chunk may not be)
ITEM_PAGE = 1000  # report items read per query when streaming a report


_LONG_DIGITS = re.compile(r"\d{19}")  # a number this long may be an integer beyond 64 bits


def _loads(text: str) -> Any:
    """A JSON value stored as text, decoded as the typed path would: by orjson, except text with a run of 19 digits
    or more (orjson reads an integer beyond 64 bits as a float, silently, where the standard library keeps it exact;
    such digits in a string only cost the slower decoder) and what orjson refuses."""
    if _LONG_DIGITS.search(text):
        return json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _batches(ids: Sequence[str]) -> Iterator[list[str]]:
    ids = list(ids)
    for start in range(0, len(ids), IN_BATCH):
        yield ids[start:start + IN_BATCH]


class RunInProgress(TickethubError):
    """Another reconciliation run is going on: runs never overlap."""


class ReconcileRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    # ---- runs --------------------------------------------------------------------------------------

    def start(self, mode: str, dry_run: bool, since: datetime | None, systems: Sequence[str],
              tickets: Sequence[str], now: datetime) -> int:
        """A new run, unless another is running (RunInProgress). One whose heartbeat stopped long ago (its
        process died) is marked failed first. The caller commits at once: the row is the lock."""
        self.conn.execute(update(reconcile_runs).where(
            reconcile_runs.c.state == "running", reconcile_runs.c.heartbeat_at < now - ABANDONED_AFTER,
        ).values(state="failed", finished_at=now, error="abandoned: its process stopped reporting"))
        savepoint = self.conn.begin_nested()
        try:
            run_id = self.conn.execute(insert(reconcile_runs).values(
                state="running", phase="read", mode=mode, dry_run=dry_run, since=since, systems=list(systems),
                tickets=list(tickets), started_at=now, heartbeat_at=now, ticket_count=0, copy_count=0,
                not_checked=[]).returning(reconcile_runs.c.id)).scalar_one()
            savepoint.commit()
        except IntegrityError:
            savepoint.rollback()
            running = self.conn.execute(select(reconcile_runs.c.id, reconcile_runs.c.started_at)
                                        .where(reconcile_runs.c.state == "running")).first()
            what = f"run {running.id}, started {running.started_at:%Y-%m-%d %H:%M:%S} UTC" if running else "a run"
            raise RunInProgress(f"a reconciliation is in progress ({what}); try again when it has finished") from None
        return int(run_id)

    def advance(self, run_id: int, phase: str, following: str) -> bool:
        """Move a running run from `phase` to `following`; True for the one caller that did it."""
        done = self.conn.execute(update(reconcile_runs).where(
            reconcile_runs.c.id == run_id, reconcile_runs.c.state == "running", reconcile_runs.c.phase == phase,
        ).values(phase=following))
        return done.rowcount == 1

    # ---- a run's parts (each done once, by whichever worker takes it) ----------------------------------

    def add_parts(self, run_id: int, parts: Mapping[str, Any]) -> None:
        if parts:
            self.conn.execute(insert(reconcile_parts), [{"run_id": run_id, "part": name, "state": "pending",
                                                         "detail": detail} for name, detail in parts.items()])

    def part(self, run_id: int, name: str) -> dict[str, Any] | None:
        row = self.conn.execute(select(reconcile_parts).where(reconcile_parts.c.run_id == run_id,
                                                              reconcile_parts.c.part == name)).first()
        return None if row is None else dict(row._mapping)

    def finish_part(self, run_id: int, name: str, state: str, detail: Any = None) -> bool:
        """Mark a pending part done or failed; False if it was no longer pending (done by another)."""
        values: dict[str, Any] = {"state": state}
        if detail is not None:
            values["detail"] = detail
        done = self.conn.execute(update(reconcile_parts).where(
            reconcile_parts.c.run_id == run_id, reconcile_parts.c.part == name, reconcile_parts.c.state == "pending",
        ).values(**values))
        return done.rowcount == 1

    def pending(self, run_id: int, prefix: str) -> bool:
        """Whether a part of the run whose name starts with `prefix` is still pending (one indexed probe: the
        parts themselves, whose details hold their tickets, are not loaded)."""
        query = select(reconcile_parts.c.part).where(
            reconcile_parts.c.run_id == run_id, reconcile_parts.c.part.startswith(prefix),
            reconcile_parts.c.state == "pending").limit(1)
        return self.conn.execute(query).first() is not None

    def parts(self, run_id: int, prefix: str) -> list[dict[str, Any]]:
        query = (select(reconcile_parts).where(reconcile_parts.c.run_id == run_id,
                                               reconcile_parts.c.part.startswith(prefix))
                 .order_by(reconcile_parts.c.part))
        return [dict(r._mapping) for r in self.conn.execute(query)]

    def heartbeat(self, run_id: int, now: datetime) -> None:
        self.conn.execute(update(reconcile_runs).where(reconcile_runs.c.id == run_id).values(heartbeat_at=now))

    def finish(self, run_id: int, state: str, now: datetime, tickets: int, copies: int,
               not_checked: Sequence[Mapping[str, str]], error: str | None = None) -> None:
        self.conn.execute(update(reconcile_runs).where(reconcile_runs.c.id == run_id).values(
            state=state, finished_at=now, heartbeat_at=now, ticket_count=tickets, copy_count=copies,
            not_checked=list(not_checked), error=error))
        self.drop_snapshot(run_id)

    def drop_snapshot(self, run_id: int) -> None:
        """Forget the run's snapshot. On SQLite, when no other run is going on, the whole table goes at once
        (SQLite empties a table deleted without a condition page by page, not row by row and index entry by
        index entry), taking with it what runs that died before finishing left behind."""
        others = self.conn.execute(select(reconcile_runs.c.id).where(
            reconcile_runs.c.state == "running", reconcile_runs.c.id != run_id).limit(1)).first()
        if self.conn.dialect.name == "sqlite" and others is None:
            self.conn.exec_driver_sql("DELETE FROM reconcile_copies")
        else:
            self.conn.execute(delete(reconcile_copies).where(reconcile_copies.c.run_id == run_id))

    def run(self, run_id: int) -> dict[str, Any] | None:
        row = self.conn.execute(select(reconcile_runs).where(reconcile_runs.c.id == run_id)).first()
        return None if row is None else dict(row._mapping)

    def runs(self, limit: int = 50, before: int | None = None) -> list[dict[str, Any]]:
        """Newest first, each with its discrepancy and review counts."""
        counts = (select(reconcile_items.c.run_id, func.count().label("discrepancies"),
                         func.sum(case((reconcile_items.c.awaiting_review, 1), else_=0)).label("awaiting_review"))
                  .group_by(reconcile_items.c.run_id).subquery())
        query = (select(reconcile_runs, func.coalesce(counts.c.discrepancies, 0).label("discrepancies"),
                        func.coalesce(counts.c.awaiting_review, 0).label("awaiting_review"))
                 .outerjoin(counts, counts.c.run_id == reconcile_runs.c.id)
                 .order_by(reconcile_runs.c.id.desc()).limit(limit))
        if before is not None:
            query = query.where(reconcile_runs.c.id < before)
        return [dict(r._mapping) for r in self.conn.execute(query)]

    def last_finished(self) -> dict[str, Any] | None:
        """The newest run that finished and changed what it found (not a dry run)."""
        row = self.conn.execute(select(reconcile_runs).where(reconcile_runs.c.state == "done",
                                                             reconcile_runs.c.dry_run.is_(False))
                                .order_by(reconcile_runs.c.id.desc()).limit(1)).first()
        return None if row is None else dict(row._mapping)

    # ---- the snapshot --------------------------------------------------------------------------------

    def add_copies(self, run_id: int, system: str, copies: Sequence[Mapping[str, Any]]) -> None:
        """Each copy read from `system` (read again after a retry: the newer read replaces it)."""
        if not copies:
            return
        if self.conn.dialect.name == "sqlite":  # the driver's executemany, the fields encoded once by orjson
            column = reconcile_copies.c.modified_at.type.dialect_impl(self.conn.dialect)  # as the typed path binds it
            bind = column.bind_processor(self.conn.dialect) or (lambda v: v)
            stamps: dict[Any, Any] = {}  # a page's records share a few modified-ats: each converted once

            def when(moment: Any) -> Any:
                if moment not in stamps:
                    stamps[moment] = bind(moment)
                return stamps[moment]

            self.conn.connection.cursor().executemany(
                "INSERT INTO reconcile_copies (run_id, system, local_id, ticket_id, modified_at, author, fields, "
                "fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, system, local_id) DO UPDATE SET "
                "ticket_id = excluded.ticket_id, modified_at = excluded.modified_at, author = excluded.author, "
                "fields = excluded.fields, fingerprint = excluded.fingerprint",
                [(run_id, system, c["local_id"], c["ticket_id"], when(c["modified_at"]), c["author"],
                  as_json(c["fields"]), c["fingerprint"]) for c in copies])
            return
        stmt = insert_for(self.conn.dialect.name, reconcile_copies)
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_id", "system", "local_id"],
            set_={c: stmt.excluded[c] for c in ("ticket_id", "modified_at", "author", "fields", "fingerprint")})
        self.conn.execute(stmt, [{"run_id": run_id, "system": system, **copy} for copy in copies])

    def drop_copies(self, run_id: int, system: str) -> None:
        """Forget what was read of a system that then failed: it is not compared in half."""
        self.conn.execute(delete(reconcile_copies).where(reconcile_copies.c.run_id == run_id,
                                                         reconcile_copies.c.system == system))

    def prints_of(self, run_id: int, ticket_ids: Sequence[str]) -> dict[str, dict[str, list[bytes]]]:
        """ticket -> system -> its copies' fingerprints (the fields stay in the database)."""
        found: dict[str, dict[str, list[bytes]]] = {}
        for batch in _batches(ticket_ids):
            for row in self.conn.execute(select(reconcile_copies.c.ticket_id, reconcile_copies.c.system,
                                                reconcile_copies.c.fingerprint).where(
                    reconcile_copies.c.run_id == run_id, reconcile_copies.c.ticket_id.in_(batch))):
                found.setdefault(row.ticket_id, {}).setdefault(row.system, []).append(bytes(row.fingerprint))
        return found

    def links(self, system: str, local_ids: Sequence[str]) -> dict[str, str]:
        """local ID -> ticket, for the records of `system` that are linked (`TicketRepository.xref_map`, read
        through the driver on SQLite: a read part asks it for every record it reads)."""
        if self.conn.dialect.name != "sqlite":
            found = {}
            for batch in _batches(local_ids):
                found.update({row.local_id: row.ticket_id for row in self.conn.execute(
                    select(xrefs.c.local_id, xrefs.c.ticket_id).where(xrefs.c.system == system,
                                                                      xrefs.c.local_id.in_(batch)))})
            return found
        cursor = self.conn.connection.cursor()
        found = {}
        for batch in _batches(local_ids):
            marks = ", ".join("?" * len(batch))
            found.update(cursor.execute(f"SELECT local_id, ticket_id FROM xrefs WHERE system = ? AND local_id IN "
                                        f"({marks})", (system, *batch)).fetchall())
        return found

    def compare_view(self, run_id: int, ticket_ids: Sequence[str]
                     ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, list[bytes]]]]:
        """What the hash-first check of a chunk needs, and no more: ticket -> field -> the golden value (no
        provenance), and ticket -> system -> its copies' fingerprints (the copies' fields stay in the
        database)."""
        if self.conn.dialect.name != "sqlite":
            values: dict[str, dict[str, Any]] = {}
            for batch in _batches(ticket_ids):
                for row in self.conn.execute(select(field_values.c.ticket_id, field_values.c.field,
                                                    field_values.c.value).where(field_values.c.ticket_id.in_(batch))):
                    values.setdefault(row.ticket_id, {})[row.field] = row.value
            return values, self.prints_of(run_id, ticket_ids)
        # SQLite: the driver's rows; each ticket's values put together as one JSON object by SQLite and decoded
        # by orjson in one call (the typed path decodes each value with the standard library and builds a row
        # object per value: most of the compare's time at a million; one orjson call per value, still a third)
        values = {}
        prints: dict[str, dict[str, list[bytes]]] = {}
        loads = _loads
        cursor = self.conn.connection.cursor()
        for batch in _batches(ticket_ids):
            marks = ", ".join("?" * len(batch))
            for ticket_id, fields in cursor.execute(
                    "SELECT ticket_id, json_group_object(field, json(value)) FROM field_values "
                    f"WHERE ticket_id IN ({marks}) GROUP BY ticket_id", batch).fetchall():
                values[ticket_id] = loads(fields)
            for ticket_id, system, fingerprint in cursor.execute(
                    "SELECT ticket_id, system, fingerprint FROM reconcile_copies WHERE run_id = ? AND ticket_id "
                    f"IN ({marks})", (run_id, *batch)).fetchall():
                prints.setdefault(ticket_id, {}).setdefault(system, []).append(bytes(fingerprint))
        return values, prints

    def copies_of(self, run_id: int, ticket_ids: Sequence[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """ticket -> system -> its copies in this run's snapshot."""
        found: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for batch in _batches(ticket_ids):
            for row in self.conn.execute(select(reconcile_copies).where(
                    reconcile_copies.c.run_id == run_id, reconcile_copies.c.ticket_id.in_(batch))):
                found.setdefault(row.ticket_id, {}).setdefault(row.system, []).append(dict(row._mapping))
        return found

    def snapshot_tickets(self, run_id: int, after: str | None, limit: int) -> list[str]:
        """Tickets that have a copy in the snapshot, in ID order (an incremental run's tickets that changed in a
        system but not in the hub)."""
        query = (select(reconcile_copies.c.ticket_id).distinct().where(
            reconcile_copies.c.run_id == run_id, reconcile_copies.c.ticket_id.is_not(None))
            .order_by(reconcile_copies.c.ticket_id).limit(limit))
        if after is not None:
            query = query.where(reconcile_copies.c.ticket_id > after)
        return list(self.conn.execute(query).scalars())

    def orphans(self, run_id: int) -> Iterator[dict[str, Any]]:
        """Copies linked to no ticket."""
        query = (select(reconcile_copies).where(reconcile_copies.c.run_id == run_id,
                                                reconcile_copies.c.ticket_id.is_(None))
                 .order_by(reconcile_copies.c.system, reconcile_copies.c.local_id))
        for row in self.conn.execute(query):
            yield dict(row._mapping)

    def dangling(self, run_id: int, system: str) -> list[dict[str, Any]]:
        """Cross-references of `system` whose record the full read did not find (deleted in the system)."""
        seen = select(reconcile_copies.c.local_id).where(reconcile_copies.c.run_id == run_id,
                                                         reconcile_copies.c.system == system)
        query = (select(xrefs.c.ticket_id, xrefs.c.local_id)
                 .where(xrefs.c.system == system, xrefs.c.local_id.not_in(seen))
                 .order_by(xrefs.c.ticket_id))
        return [dict(r._mapping) for r in self.conn.execute(query)]

    # ---- discrepancies --------------------------------------------------------------------------------

    def add_items(self, run_id: int, items: Sequence[Mapping[str, Any]]) -> list[int]:
        """Store discrepancies (report item without its id, proposal), in order, in one statement (their IDs
        ascend in that order)."""
        if not items:
            return []
        rows = [{"run_id": run_id, "ticket_id": item["item"].get("ticket_id"), "kind": item["item"]["kind"],
                 "system": item["item"].get("system"), "local_id": item["item"].get("local_id"),
                 "field": item["item"].get("field"), "item": item["item"], "proposal": item.get("proposal"),
                 "awaiting_review": bool(item["item"].get("awaiting_review"))}  # decision: NULL until decided
                for item in items]
        result = self.conn.execute(
            insert(reconcile_items).returning(reconcile_items.c.id, sort_by_parameter_order=True), rows)
        return [int(i) for i in result.scalars()]

    def items(self, run_id: int) -> list[dict[str, Any]]:
        query = select(reconcile_items).where(reconcile_items.c.run_id == run_id).order_by(reconcile_items.c.id)
        return [dict(r._mapping) for r in self.conn.execute(query)]

    def items_page(self, run_id: int, after: int | None, limit: int = ITEM_PAGE,
                   awaiting_review: bool | None = None, kind: str | None = None,
                   ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """The run's next `limit` items after item `after`, in ID order (only those awaiting review or not,
        of one kind, and among `ids`, if given): a report is read a page at a time, never whole."""
        query = (select(reconcile_items).where(reconcile_items.c.run_id == run_id)
                 .order_by(reconcile_items.c.id).limit(limit))
        if after is not None:
            query = query.where(reconcile_items.c.id > after)
        if awaiting_review is not None:
            query = query.where(reconcile_items.c.awaiting_review.is_(awaiting_review))
        if kind is not None:
            query = query.where(reconcile_items.c.kind == kind)
        if ids is not None:
            query = query.where(reconcile_items.c.id.in_(list(ids)))
        return [dict(r._mapping) for r in self.conn.execute(query)]

    def item(self, run_id: int, item_id: int, lock: bool = False) -> dict[str, Any] | None:
        query = select(reconcile_items).where(reconcile_items.c.run_id == run_id, reconcile_items.c.id == item_id)
        if lock and self.conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        return None if row is None else dict(row._mapping)

    def decide(self, item_id: int, item: Mapping[str, Any], decision: Mapping[str, Any]) -> bool:
        """Record an operator's decision on an item not yet decided; False if it already was."""
        done = self.conn.execute(update(reconcile_items).where(
            reconcile_items.c.id == item_id, reconcile_items.c.decision.is_(None),
        ).values(item=dict(item), decision=dict(decision), awaiting_review=False))
        return done.rowcount == 1
