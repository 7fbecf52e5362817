"""Tickets: load a ticket's state, save what apply did (record, outbox, echo marks, audit), cross-references,
ticket IDs, and the read views. The repository never updates or deletes an audit row: history only grows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, tuple_, update

from hub.core.errors import TicketNotFound
from hub.core.model import ApplyResult, FieldChange, FieldValue, Outcome, PendingWrite, Provenance, TicketState
from hub.core.ticket_ids import format_ticket_id
from hub.store.dialect import as_json, insert_for, insert_many
from hub.store.tables import (
    audit_log,
    delivered_values,
    field_values,
    id_sequences,
    outbox,
    ticket_workflow,
    tickets,
    xrefs,
)

# Hot-path statements, built once: constructing a statement costs more than running it on SQLite.
_ID: Any = bindparam("ticket_id")
_FIND_XREF = select(xrefs.c.ticket_id).where(xrefs.c.system == bindparam("system"),
                                             xrefs.c.local_id == bindparam("local_id"))
# FOR NO KEY UPDATE on PostgreSQL: events for one ticket still take turns, but a delivery's outcome (its
# foreign keys to the ticket take KEY SHARE) does not wait for the event, which may itself be waiting for that
# delivery's row (its schedule's INSERT ... ON CONFLICT): with FOR UPDATE the two deadlocked, and the outcome
# of a write already sent was lost (sent again after its lease). Tickets' keys never change.
_LOCK_TICKET = select(tickets.c.ticket_id).where(tickets.c.ticket_id == _ID).with_for_update(key_share=True)
_LOAD_FIELDS = select(field_values).where(field_values.c.ticket_id == _ID)
_LOAD_PENDING = select(outbox).where(outbox.c.ticket_id == _ID)
_LOAD_DELIVERED = select(delivered_values).where(delivered_values.c.ticket_id == _ID)
_LOAD_WORKFLOW = select(ticket_workflow).where(ticket_workflow.c.ticket_id == _ID)
# ... for several tickets at once
_IDS: Any = bindparam("ticket_ids", expanding=True)
_FIND_XREFS = select(xrefs.c.system, xrefs.c.local_id, xrefs.c.ticket_id).where(
    tuple_(xrefs.c.system, xrefs.c.local_id).in_(bindparam("keys", expanding=True)))
# PostgreSQL: one primary-key lookup per key, whatever the planner believes. As an IN list of (system, local ID)
# pairs it scanned every link of the system in the first column (an index condition on `system` alone, the local
# IDs a filter) while the table's statistics lagged behind its growth, as in a first burst: 2.4 ms for 20 keys at
# 8,000 links of one system, growing with them, and 0.25 ms once analyzed; this way 0.13 ms either way (LIMIT 1
# keeps the lookup a nested loop of its own instead of a join the planner may hash over the whole table).
_FIND_XREFS_PG = ("SELECT u.system, u.local_id, x.ticket_id FROM json_to_recordset(%(keys)s::json) "
                  "AS u(system text, local_id text) CROSS JOIN LATERAL (SELECT xrefs.ticket_id FROM xrefs "
                  "WHERE xrefs.system = u.system AND xrefs.local_id = u.local_id LIMIT 1) AS x")
_LOCK_TICKETS = (select(tickets.c.ticket_id).where(tickets.c.ticket_id.in_(_IDS)).order_by(tickets.c.ticket_id)
                 .with_for_update(key_share=True))
_LOAD_ALL = {table.name: select(table).where(table.c.ticket_id.in_(_IDS))
             for table in (field_values, outbox, delivered_values, ticket_workflow)}
_TOUCH_TICKETS = update(tickets).where(tickets.c.ticket_id.in_(_IDS)).values(updated_at=bindparam("b_updated_at"))
_DROP_TICKETS = delete(tickets).where(tickets.c.ticket_id.in_(_IDS))


@dataclass(frozen=True)
class Xref:
    system: str
    local_id: str


@dataclass(frozen=True)
class TicketView:
    ticket_id: str
    created_at: datetime
    updated_at: datetime
    fields: dict[str, FieldValue]
    xrefs: list[Xref]


@dataclass(frozen=True)
class AuditEntry:
    id: int
    ticket_id: str
    field: str
    outcome: str
    old_value: Any
    new_value: Any
    system: str
    author: str
    author_rank: int
    source_modified_at: datetime
    received_at: datetime
    event_id: str
    target_system: str | None
    reason: str
    recorded_at: datetime


@cache
def _allocate_statement(dialect: str) -> Any:
    """Upsert that moves the (day, code) counter on by q_count and returns it; built once per dialect."""
    stmt = insert_for(dialect, id_sequences).values(day=bindparam("q_day"), business_code=bindparam("q_code"),
                                                    last_value=bindparam("q_count"))
    return stmt.on_conflict_do_update(
        index_elements=["day", "business_code"],
        set_={"last_value": id_sequences.c.last_value + stmt.excluded.last_value},
    ).returning(id_sequences.c.last_value)


# PostgreSQL: a block of the day's counter reserved by one statement that is a transaction of its own (run on a
# connection in autocommit, `Store.reserve_ticket_ids`), which commits without waiting for the disk (set_config(...,
# true) holds for that transaction; referenced in WHERE, so that it is evaluated). The counter's row is locked only
# while the server runs it: as BEGIN, the upsert and COMMIT from the worker, it stayed locked across the thread's
# next turn at the interpreter, and two events workers' sixteen threads queued on it (pg_stat_activity, bench's
# two-worker drain: 79 sessions found waiting on it in 35 samples).
_RESERVE_IDS = ("INSERT INTO id_sequences (day, business_code, last_value) "
                "SELECT %(day)s, %(code)s, %(count)s "
                "FROM (SELECT set_config('synchronous_commit', 'off', true) AS flush) AS s WHERE s.flush = 'off' "
                "ON CONFLICT (day, business_code) "
                "DO UPDATE SET last_value = id_sequences.last_value + excluded.last_value RETURNING last_value")


@cache
def _link_statement(dialect: str) -> Any:
    """INSERT an xref ... ON CONFLICT DO NOTHING (parameters by column name); built once per dialect."""
    return insert_for(dialect, xrefs).on_conflict_do_nothing(index_elements=["system", "local_id"])


def _numbered_up_to(day: date, code: str, last: int, count: int) -> list[str]:
    """The `count` IDs of (day, code) a counter moved on to `last` has just given, in order."""
    return [format_ticket_id(day, code, n) for n in range(last - count + 1, last + 1)]


class TicketRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    # ---- identity -----------------------------------------------------------------------------

    def allocate_ticket_id(self, day: date, code: str) -> str:
        """The next ID for (day, code), atomically: an upsert that increments and returns the counter."""
        return self.allocate_ticket_ids(day, code, 1)[0]

    def allocate_ticket_ids(self, day: date, code: str, count: int) -> list[str]:
        """The next `count` IDs for (day, code), in order, atomically: one upsert moves the counter on by `count`."""
        last = self.conn.execute(_allocate_statement(self.conn.dialect.name),
                                 {"q_day": f"{day:%Y%m%d}", "q_code": code, "q_count": count}).scalar_one()
        return _numbered_up_to(day, code, last, count)

    def reserve_ticket_ids(self, day: date, code: str, count: int) -> list[str]:
        """PostgreSQL: `allocate_ticket_ids` in one statement that commits by itself without waiting for the disk,
        for a connection in autocommit (see _RESERVE_IDS): IDs reserved before any is used, by a later transaction
        whose durable commit makes this one durable too (the WAL is flushed in order)."""
        last = self.conn.exec_driver_sql(_RESERVE_IDS, {"day": f"{day:%Y%m%d}", "code": code,
                                                        "count": count}).scalar_one()
        return _numbered_up_to(day, code, last, count)

    def find_by_xref(self, system: str, local_id: str) -> str | None:
        return self.conn.execute(_FIND_XREF, {"system": system, "local_id": local_id}).scalar_one_or_none()

    def get_or_create(self, system: str, local_id: str, code: str, now: datetime,
                      ticket_id: str | None = None) -> tuple[str, bool]:
        """The ticket linked to (system, local_id), creating ticket and link if there is none.

        Concurrent callers for the same local ID get the same ticket (`create_linked`: the loser's ticket is
        dropped and it gets the winner's). `ticket_id`, if given, is an ID reserved earlier for this record;
        otherwise one is allocated here.
        """
        existing = self.find_by_xref(system, local_id)
        if existing is not None:
            return existing, False
        ticket_id = ticket_id or self.allocate_ticket_id(now.date(), code)
        linked = self.create_linked([(ticket_id, system, local_id, now)], code)[(system, local_id)]
        return linked, linked == ticket_id

    def find_xrefs(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(system, local ID) -> its ticket, for those of `keys` that are linked (one query)."""
        if not keys:
            return {}
        unique = list(dict.fromkeys(keys))
        if self.conn.dialect.name == "postgresql":
            rows = self.conn.exec_driver_sql(_FIND_XREFS_PG, {"keys": as_json(
                [{"system": system, "local_id": local_id} for system, local_id in unique])})
            return {(system, local_id): ticket_id for system, local_id, ticket_id in rows}
        return {(row.system, row.local_id): row.ticket_id for row in self.conn.execute(_FIND_XREFS, {"keys": unique})}

    def create_linked(self, new: Sequence[tuple[str, str, str, datetime]], code: str) -> dict[tuple[str, str], str]:
        """New tickets, each linked to one record: (ticket ID, system, local ID, created at) each, in a few
        statements. Returns the ticket each record is linked to now: the one given, or, where another transaction
        linked the record first (PostgreSQL), that one's (the ticket given is then dropped, unused)."""
        if not new:
            return {}
        insert_many(self.conn, tickets, [{"ticket_id": ticket_id, "business_code": code, "created_at": at,
                                          "updated_at": at} for ticket_id, _, _, at in new])
        links = [{"system": system, "local_id": local_id, "ticket_id": ticket_id, "created_at": at}
                 for ticket_id, system, local_id, at in new]
        ours = {(system, local_id): ticket_id for ticket_id, system, local_id, _ in new}
        if self.conn.dialect.name == "sqlite":  # the transaction holds the write lock: nobody links meanwhile
            insert_many(self.conn, xrefs, links)
            return ours
        linked = {(row.system, row.local_id) for row in insert_many(self.conn, xrefs, links, on_conflict="nothing",
                                                                     returning=("system", "local_id"))}
        lost = [key for key in ours if key not in linked]
        if lost:
            self.conn.execute(_DROP_TICKETS, {"ticket_ids": [ours[key] for key in lost]})
            winners = self.find_xrefs(lost)
            assert len(winners) == len(lost), "xref insert conflicted but no xref is visible"
            ours.update(winners)
        return ours

    def exists(self, ticket_id: str) -> bool:
        return self.conn.execute(select(tickets.c.ticket_id).where(tickets.c.ticket_id == ticket_id)
                                 ).scalar_one_or_none() is not None

    def link(self, ticket_id: str, system: str, local_id: str, now: datetime) -> None:
        """Link another system's record to an existing ticket (idempotent)."""
        self.conn.execute(_link_statement(self.conn.dialect.name), {
            "system": system, "local_id": local_id, "ticket_id": ticket_id, "created_at": now})

    def lock(self, ticket_id: str) -> None:
        """Hold the ticket's row until the transaction ends (SQLite already holds the write lock)."""
        found = self.conn.execute(_LOCK_TICKET, {"ticket_id": ticket_id}).scalar_one_or_none()
        if found is None:
            raise TicketNotFound(f"ticket {ticket_id} does not exist")

    def lock_many(self, ticket_ids: Sequence[str]) -> None:
        """`lock` for several tickets in one statement, in ID order, so that two transactions locking overlapping
        sets take turns instead of deadlocking; nothing to do on SQLite (the transaction holds the write lock)."""
        ids = sorted(set(ticket_ids))
        if not ids or self.conn.dialect.name == "sqlite":
            return
        missing = set(ids) - set(self.conn.execute(_LOCK_TICKETS, {"ticket_ids": ids}).scalars())
        if missing:
            raise TicketNotFound(f"tickets {', '.join(sorted(missing))} do not exist")

    # ---- state --------------------------------------------------------------------------------

    def load_state(self, ticket_id: str) -> TicketState:
        params = {"ticket_id": ticket_id}
        return _state_of(ticket_id, self.conn.execute(_LOAD_FIELDS, params), self.conn.execute(_LOAD_PENDING, params),
                         self.conn.execute(_LOAD_DELIVERED, params), self.conn.execute(_LOAD_WORKFLOW, params))

    def load_states(self, ticket_ids: Sequence[str]) -> dict[str, TicketState]:
        """`load_state` for several tickets, in one query per table."""
        ids = list(dict.fromkeys(ticket_ids))
        if not ids:
            return {}
        rows: dict[str, dict[str, list[Any]]] = {ticket_id: {} for ticket_id in ids}
        for name, query in _LOAD_ALL.items():
            for row in self.conn.execute(query, {"ticket_ids": ids}):
                rows[row.ticket_id].setdefault(name, []).append(row)
        return {ticket_id: _state_of(ticket_id, *(parts.get(t.name, ()) for t in (field_values, outbox,
                                                                                   delivered_values, ticket_workflow)))
                for ticket_id, parts in rows.items()}

    def save(self, before: TicketState, result: ApplyResult, now: datetime, created: bool = False) -> None:
        """Write what changed between `before` and `result.state`, and append the audit entries.
        `created`: the ticket was created in this transaction (at `now`), so it needs no touching."""
        self.save_many([(before, result.state, result.outcomes, created)], now)

    def save_many(self, saves: Sequence[tuple[TicketState, TicketState, Sequence[Outcome], bool]], now: datetime
                  ) -> None:
        """`save` for several tickets, each (state before, state after, outcomes to audit, created in this
        transaction): each table's rows of them all written in one statement."""
        fields: list[dict[str, Any]] = []
        touched: list[str] = []
        pending: list[dict[str, Any]] = []
        gone: dict[str, list[tuple[str, str, str]]] = {outbox.name: [], delivered_values.name: []}
        workflow: list[dict[str, Any]] = []
        audit: list[dict[str, Any]] = []
        for before, after, outcomes, created in saves:
            ticket_id = before.ticket_id
            changed = [_field_row(ticket_id, name, fv) for name, fv in after.fields.items()
                       if before.fields.get(name) != fv]
            fields += changed
            if changed and not created:
                touched.append(ticket_id)
            pending += [
                {"ticket_id": ticket_id, "system": system, "field": name, "value": pw.value,
                 "system_field": pw.system_field, "system_value": pw.system_value,
                 "provenance": _provenance_to_json(pw.provenance), "queued_at": now}
                for system, writes in after.pending.items() for name, pw in writes.items()
                if before.pending.get(system, {}).get(name) != pw]
            for table, was, now_is in ((outbox, before.pending, after.pending),
                                       (delivered_values, before.delivered, after.delivered)):
                gone[table.name] += [(ticket_id, system, name) for system, names in was.items() for name in names
                                     if name not in now_is.get(system, {})]
            if after.claims != before.claims or after.marks != before.marks:
                workflow.append({
                    "ticket_id": ticket_id,
                    "claims": [{"value": c.value, "provenance": _provenance_to_json(c.provenance)}
                               for c in sorted(after.claims, key=FieldChange.precedence)],
                    "marks": {key: at.isoformat() for key, at in sorted(after.marks.items())},
                })
            audit += [_audit_row(ticket_id, o, now) for o in outcomes if o.kind != "duplicate"]
        insert_many(self.conn, field_values, fields, on_conflict="update")
        if touched:
            self.conn.execute(_TOUCH_TICKETS, {"ticket_ids": touched, "b_updated_at": now})
        for table in (outbox, delivered_values):
            if gone[table.name]:  # the (ticket, system, field) rows `before` had and `after` no longer has
                self.conn.execute(delete(table).where(
                    tuple_(table.c.ticket_id, table.c.system, table.c.field).in_(gone[table.name])))
            if table is outbox:
                insert_many(self.conn, outbox, pending, on_conflict="update")
        insert_many(self.conn, ticket_workflow, workflow, on_conflict="update")
        insert_many(self.conn, audit_log, audit)

    def record_delivered(self, ticket_id: str, system: str, values: dict[str, Any], now: datetime) -> None:
        """Remember what the hub wrote to `system`, so that the system's report of it is an echo."""
        self.record_delivered_many([(ticket_id, system, values, now)])

    def record_delivered_many(self, written: Sequence[tuple[str, str, dict[str, Any], datetime]]) -> None:
        """`record_delivered` for several (ticket, system, values, when) at once, in one statement."""
        rows = [{"ticket_id": ticket_id, "system": system, "field": f, "value": v, "delivered_at": now}
                for ticket_id, system, values, now in written for f, v in values.items()]
        insert_many(self.conn, delivered_values, rows, on_conflict="update")

    # ---- read side ----------------------------------------------------------------------------

    # ---- reconciliation: the golden records in chunks --------------------------------------------

    def ticket_ids(self, after: str | None, limit: int, changed_since: datetime | None = None,
                   only: Sequence[str] = ()) -> list[str]:
        """The next `limit` ticket IDs after `after`, in ID order (changed at or after `changed_since`, and
        among `only`, if given)."""
        query = select(tickets.c.ticket_id).order_by(tickets.c.ticket_id).limit(limit)
        if after is not None:
            query = query.where(tickets.c.ticket_id > after)
        if changed_since is not None:
            query = query.where(tickets.c.updated_at >= changed_since)
        if only:
            query = query.where(tickets.c.ticket_id.in_(list(only)))
        return list(self.conn.execute(query).scalars())

    def golden_fields(self, ticket_ids: Sequence[str]) -> dict[str, dict[str, FieldValue]]:
        """Each ticket's field values with provenance (one query for the chunk)."""
        found: dict[str, dict[str, FieldValue]] = {ticket_id: {} for ticket_id in ticket_ids}
        for row in self.conn.execute(select(field_values).where(field_values.c.ticket_id.in_(list(ticket_ids)))):
            found[row.ticket_id][row.field] = FieldValue(row.value, _provenance_of(row))
        return found

    def golden_values(self, ticket_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Each ticket's field values alone (no provenance: a cheaper read, for comparing fingerprints)."""
        found: dict[str, dict[str, Any]] = {ticket_id: {} for ticket_id in ticket_ids}
        query = select(field_values.c.ticket_id, field_values.c.field, field_values.c.value).where(
            field_values.c.ticket_id.in_(list(ticket_ids)))
        for row in self.conn.execute(query):
            found[row.ticket_id][row.field] = row.value
        return found

    def xrefs_of(self, ticket_ids: Sequence[str]) -> dict[str, dict[str, list[str]]]:
        """ticket -> system -> its local IDs (one query for the chunk)."""
        found: dict[str, dict[str, list[str]]] = {ticket_id: {} for ticket_id in ticket_ids}
        for row in self.conn.execute(select(xrefs).where(xrefs.c.ticket_id.in_(list(ticket_ids)))
                                     .order_by(xrefs.c.system, xrefs.c.local_id)):
            found[row.ticket_id].setdefault(row.system, []).append(row.local_id)
        return found

    def owed_fields(self, ticket_ids: Sequence[str]) -> dict[str, dict[str, set[str]]]:
        """ticket -> system -> the fields the hub still owes it (outbox rows not yet delivered)."""
        found: dict[str, dict[str, set[str]]] = {}
        for row in self.conn.execute(select(outbox.c.ticket_id, outbox.c.system, outbox.c.field)
                                     .where(outbox.c.ticket_id.in_(list(ticket_ids)))):
            found.setdefault(row.ticket_id, {}).setdefault(row.system, set()).add(row.field)
        return found

    def xref_map(self, system: str, local_ids: Sequence[str]) -> dict[str, str]:
        """local ID -> ticket, for the records of `system` that are linked."""
        rows = self.conn.execute(select(xrefs.c.local_id, xrefs.c.ticket_id).where(
            xrefs.c.system == system, xrefs.c.local_id.in_(list(local_ids))))
        return {row.local_id: row.ticket_id for row in rows}

    def queue_writes(self, ticket_id: str, system: str, writes: Mapping[str, PendingWrite], now: datetime) -> None:
        """Put writes the hub owes `system` in the outbox (replacing older ones of the same fields), as apply
        would for a subscriber: used by reconciliation's repairs and operator decisions."""
        insert_many(self.conn, outbox, [{
            "ticket_id": ticket_id, "system": system, "field": name, "value": pw.value,
            "system_field": pw.system_field, "system_value": pw.system_value,
            "provenance": _provenance_to_json(pw.provenance), "queued_at": now} for name, pw in writes.items()],
            on_conflict="update")

    def audit(self, ticket_id: str, outcomes: Sequence[Outcome], now: datetime) -> None:
        """Append entries to the ticket's history."""
        insert_many(self.conn, audit_log, [_audit_row(ticket_id, o, now) for o in outcomes])

    def audit_note(self, ticket_id: str, kind: str, status: str, now: datetime, reason: str) -> None:
        """A history entry the hub itself makes about the ticket's status (a dwell alert, an escalation)."""
        self.conn.execute(insert(audit_log), [{
            "ticket_id": ticket_id, "field": "status", "outcome": kind, "old_value": status, "new_value": status,
            "system": "tickethub", "author": "workflow", "author_rank": 0, "source_modified_at": now,
            "received_at": now, "event_id": f"{kind}:{now.isoformat()}", "target_system": None, "reason": reason,
            "recorded_at": now}])

    def get(self, ticket_id: str) -> TicketView:
        row = self.conn.execute(select(tickets).where(tickets.c.ticket_id == ticket_id)).one_or_none()
        if row is None:
            raise TicketNotFound(f"no ticket {ticket_id}")
        state = self.load_state(ticket_id)
        links = [
            Xref(r.system, r.local_id)
            for r in self.conn.execute(
                select(xrefs).where(xrefs.c.ticket_id == ticket_id).order_by(xrefs.c.system, xrefs.c.local_id)
            )
        ]
        return TicketView(ticket_id, row.created_at, row.updated_at, dict(state.fields), links)

    def history(self, ticket_id: str) -> list[AuditEntry]:
        if self.conn.execute(select(tickets.c.ticket_id).where(tickets.c.ticket_id == ticket_id)).first() is None:
            raise TicketNotFound(f"no ticket {ticket_id}")
        rows = self.conn.execute(
            select(audit_log).where(audit_log.c.ticket_id == ticket_id).order_by(audit_log.c.id)
        )
        return [AuditEntry(**row._mapping) for row in rows]

    def pending_writes(self, system: str | None = None) -> list[dict[str, Any]]:
        query = select(outbox).order_by(outbox.c.queued_at, outbox.c.ticket_id, outbox.c.field)
        if system is not None:
            query = query.where(outbox.c.system == system)
        return [dict(r._mapping) for r in self.conn.execute(query)]


def _state_of(ticket_id: str, field_rows: Iterable[Any], pending_rows: Iterable[Any], delivered_rows: Iterable[Any],
              workflow_rows: Iterable[Any]) -> TicketState:
    fields = {row.field: FieldValue(row.value, _provenance_of(row)) for row in field_rows}
    pending: dict[str, dict[str, PendingWrite]] = {}
    for row in pending_rows:
        pending.setdefault(row.system, {})[row.field] = PendingWrite(
            row.value, row.system_field, row.system_value, _provenance_from_json(row.provenance)
        )
    delivered: dict[str, dict[str, Any]] = {}
    for row in delivered_rows:
        delivered.setdefault(row.system, {})[row.field] = row.value
    claims: frozenset[FieldChange] = frozenset()
    marks: dict[str, datetime] = {}
    for row in workflow_rows:
        claims = frozenset(FieldChange("status", c["value"], _provenance_from_json(c["provenance"]))
                           for c in row.claims)
        marks = {key: datetime.fromisoformat(at) for key, at in row.marks.items()}
    return TicketState(ticket_id, fields, pending, delivered, claims, marks)


def _provenance_of(row: Any) -> Provenance:
    return Provenance(
        system=row.source_system, author=row.author, author_rank=row.author_rank, system_rank=row.system_rank,
        modified_at=row.source_modified_at, received_at=row.received_at, event_id=row.event_id,
    )


def _field_row(ticket_id: str, name: str, fv: FieldValue) -> dict[str, Any]:
    p = fv.provenance
    return {
        "ticket_id": ticket_id, "field": name, "value": fv.value, "source_system": p.system,
        "author": p.author, "author_rank": p.author_rank, "system_rank": p.system_rank,
        "source_modified_at": p.modified_at, "received_at": p.received_at, "event_id": p.event_id,
    }


def _audit_row(ticket_id: str, outcome: Outcome, now: datetime) -> dict[str, Any]:
    change, p = outcome.change, outcome.change.provenance
    return {
        "ticket_id": ticket_id, "field": change.field, "outcome": outcome.kind,
        "old_value": None if outcome.old is None else outcome.old.value, "new_value": change.value,
        "system": p.system, "author": p.author, "author_rank": p.author_rank,
        "source_modified_at": p.modified_at, "received_at": p.received_at, "event_id": p.event_id,
        "target_system": outcome.target, "reason": outcome.reason, "recorded_at": now,
    }


def _provenance_to_json(p: Provenance) -> dict[str, Any]:
    return {
        "system": p.system, "author": p.author, "author_rank": p.author_rank, "system_rank": p.system_rank,
        "modified_at": p.modified_at.isoformat(), "received_at": p.received_at.isoformat(),
        "event_id": p.event_id,
    }


def _provenance_from_json(data: dict[str, Any]) -> Provenance:
    return Provenance(
        system=data["system"], author=data["author"], author_rank=data["author_rank"],
        system_rank=data["system_rank"], modified_at=datetime.fromisoformat(data["modified_at"]),
        received_at=datetime.fromisoformat(data["received_at"]), event_id=data["event_id"],
    )
