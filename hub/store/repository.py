"""The unit of work and the repository over the tables: load a ticket's state, save what apply did.

A `UnitOfWork` is one database transaction; it rolls back unless `commit()` was called. The
repository never updates or deletes an audit row: history only grows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine, bindparam, delete, insert, select, text, tuple_, update

from hub.core.errors import TicketNotFound
from hub.core.model import ApplyResult, FieldValue, Outcome, PendingWrite, Provenance, TicketState
from hub.core.ticket_ids import format_ticket_id
from hub.store.deliveries import DeliveryRepository
from hub.store.dialect import insert_for
from hub.store.engine import SqliteWriteLock
from hub.store.polls import PollRepository
from hub.store.tables import (
    audit_log,
    delivered_values,
    field_values,
    id_sequences,
    inbox_events,
    outbox,
    tickets,
    xrefs,
)

T = TypeVar("T")

_TABLES = {t.name: t for t in (field_values, outbox, delivered_values)}

# Hot-path statements, built once: constructing a statement costs more than running it on SQLite.
_ID: Any = bindparam("ticket_id")
_FIND_XREF = select(xrefs.c.ticket_id).where(xrefs.c.system == bindparam("system"),
                                             xrefs.c.local_id == bindparam("local_id"))
_LOCK_TICKET = select(tickets.c.ticket_id).where(tickets.c.ticket_id == _ID).with_for_update()
_TOUCH_TICKET = update(tickets).where(tickets.c.ticket_id == bindparam("b_ticket_id")).values(
    updated_at=bindparam("b_updated_at"))
_LOAD_FIELDS = select(field_values).where(field_values.c.ticket_id == _ID)
_LOAD_PENDING = select(outbox).where(outbox.c.ticket_id == _ID)
_LOAD_DELIVERED = select(delivered_values).where(delivered_values.c.ticket_id == _ID)
_GET_EVENT = select(inbox_events).where(inbox_events.c.event_id == bindparam("event_id"))
_LOCK_EVENT = _GET_EVENT.with_for_update()
_MARK_EVENT = (
    update(inbox_events)
    .where(inbox_events.c.event_id == bindparam("b_event_id"))
    .values(state=bindparam("b_state"), processed_at=bindparam("b_processed_at"),
            ticket_id=bindparam("b_ticket_id"), error=bindparam("b_error"))
)


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


class Store:
    """Hands out units of work on one engine.

    On SQLite every transaction takes the database's one write lock (BEGIN IMMEDIATE), and a transaction
    that finds it taken polls for it with growing sleeps (up to 100 ms each). Threads and processes
    therefore queue for it on `SqliteWriteLock` first, and are woken the moment it is free."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._writer = SqliteWriteLock(engine.url.database) if engine.dialect.name == "sqlite" else None
        self._waiting: list[_Work[Any]] = []  # together(): work of this process's threads, not yet run
        self._waiting_lock = threading.Lock()
        self._leader = threading.Lock()

    def together(self, work: Callable[[UnitOfWork], T], *, anywhere: bool = False) -> T:
        """Run `work` in a transaction and commit it; return what it returned, or raise what it raised
        (then nothing it did is kept). `work` must not commit.

        On SQLite the work that threads of this process have waiting runs in one transaction (group commit):
        one thread at a time leads, running what is waiting (up to TOGETHER_MAX, and for TOGETHER_SECONDS of
        the write lock at most) while the others sleep until theirs is done or the lead is handed to them.
        The deliveries worker's 128 threads each took the write lock twice per write, and queueing for it,
        taking it and committing cost more than the statements (bench/pipeline.py, end to end at 100/s: the
        lock busy ~77% of the time for ~240 writes a second); the API's threads storing webhooks likewise
        (intake alone, two runs in turn each: 1,014 and 1,096 webhooks/s at 0.94-1.02 ms of CPU each, one
        transaction a webhook; 1,457 and 1,522/s at 0.69-0.71 ms, together). If any work raises, the
        transaction is rolled back and each runs again alone, so that one work's failure is its own.

        On PostgreSQL (concurrent writers) each work is a unit of work of its own, unless `anywhere`: then
        works are combined there too, which saves each its round trips and its commit. Only for work whose
        locks two transactions cannot take in opposite orders in the normal course: storing webhooks
        (unique keys), deliveries' claims (one advisory lock, then the delivery's own row) and outcomes (their
        own rows). A deadlock that still happens (the same webhook IDs crossed at two API processes, one
        delivery's repeated messages at two workers) is broken by PostgreSQL, and the works of the
        transaction it aborts run again alone."""
        return self._together([_Work(work)], anywhere)[0].outcome()

    def together_each(self, works: Sequence[Callable[[UnitOfWork], T]], *, anywhere: bool = False
                      ) -> list[T | BaseException]:
        """Several works of this thread, each as `together` would run it: in order, what each returned or the
        exception it raised (a work that raised is rolled back alone; the others are kept)."""
        return [item.error if item.error is not None else item.result  # type: ignore[misc]
                for item in self._together([_Work(work) for work in works], anywhere)]

    def _together(self, mine: list[_Work[T]], anywhere: bool) -> list[_Work[T]]:
        if self._writer is None and not anywhere:
            for item in mine:
                self._run_alone(item)
            return mine
        with self._waiting_lock:
            self._waiting.extend(mine)  # together, in order: a batch cut short goes back to the head in order
        while (pending := next((item for item in mine if not item.done), None)) is not None:
            if not self._leader.acquire(blocking=False):
                pending.wake.wait()  # until the leader has run it, or hands this thread the lead
                pending.wake.clear()
                continue
            try:
                with self._waiting_lock:
                    batch, self._waiting = self._waiting[:TOGETHER_MAX], self._waiting[TOGETHER_MAX:]
                self._run_together(batch)
            finally:
                self._leader.release()
                with self._waiting_lock:
                    following = self._waiting[0] if self._waiting else None
                if following is not None:  # it arrived while this batch ran: it leads the next one
                    following.wake.set()
        return mine

    def _run_alone(self, item: _Work[Any]) -> None:
        try:
            with self.unit_of_work() as uow:
                item.result = item.work(uow)
                uow.commit()
        except Exception as exc:  # noqa: BLE001 (handed to the thread whose work it is)
            item.error = exc

    def _run_together(self, batch: list[_Work[Any]]) -> None:
        """Run `batch` in one transaction, stopping early once it has held the write lock TOGETHER_SECONDS:
        what is left goes back to the head of the queue."""
        ran = batch
        try:
            with self.unit_of_work() as uow:
                deadline = time.perf_counter() + TOGETHER_SECONDS
                for position, item in enumerate(batch):
                    if position and time.perf_counter() > deadline:
                        ran = batch[:position]
                        with self._waiting_lock:
                            self._waiting[:0] = batch[position:]
                        break
                    item.result = item.work(uow)
                uow.commit()
        except Exception as exc:  # noqa: BLE001 (rolled back: run each alone, to give each its own outcome)
            if len(ran) == 1:
                ran[0].error = exc
            else:
                for item in ran:
                    self._run_alone(item)
        for item in ran:
            item.done = True
            item.wake.set()

    def ping(self) -> None:
        """Raise if the database does not answer (readiness)."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    @contextmanager
    def unit_of_work(self) -> Iterator[UnitOfWork]:
        with self._writer or nullcontext(), self.engine.connect() as conn:
            uow = UnitOfWork(conn)
            conn.begin()
            try:
                yield uow
            finally:
                if conn.in_transaction():
                    conn.rollback()


TOGETHER_MAX = 32  # works run in one transaction by Store.together, at most
TOGETHER_SECONDS = 0.005  # ... and no more once it has held the write lock this long (others wait for it)


class _Work(Generic[T]):
    def __init__(self, work: Callable[[UnitOfWork], T]):
        self.work, self.done, self.wake = work, False, threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class UnitOfWork:
    def __init__(self, conn: Connection):
        self.conn = conn
        self.tickets = TicketRepository(conn)
        self.inbox = InboxRepository(conn)
        self.deliveries = DeliveryRepository(conn)

    @property
    def polls(self) -> PollRepository:
        return PollRepository(self.conn)

    def commit(self) -> None:
        # The next statement, if any, begins the next transaction (autobegin). Beginning one here at once
        # cost an empty BEGIN IMMEDIATE (SQLite's write lock) and a ROLLBACK on every unit of work.
        self.conn.commit()


def _upsert(conn: Connection, table: Any) -> Any:
    return insert_for(conn.dialect.name, table)


@cache
def _replace_statement(dialect: str, table_name: str) -> Any:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE every other column; built once per dialect."""
    table = _TABLES[table_name]
    stmt = insert_for(dialect, table)
    keys = [c.name for c in table.primary_key.columns]
    return stmt.on_conflict_do_update(
        index_elements=keys, set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
    )


@cache
def _accept_statement(dialect: str) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING event_id, with bound values; built once per dialect."""
    return (insert_for(dialect, inbox_events)
            .values(event_id=bindparam("a_event_id"), system=bindparam("a_system"),
                    external_id=bindparam("a_external_id"), received_at=bindparam("a_received_at"),
                    payload=bindparam("a_payload"), state="received",
                    dispatched_at=bindparam("a_dispatched_at", type_=inbox_events.c.dispatched_at.type))
            .on_conflict_do_nothing()
            .returning(inbox_events.c.event_id))


@cache
def _allocate_statement(dialect: str) -> Any:
    """Upsert that increments the (day, code) counter and returns it; built once per dialect."""
    stmt = insert_for(dialect, id_sequences).values(day=bindparam("q_day"), business_code=bindparam("q_code"),
                                                    last_value=1)
    return stmt.on_conflict_do_update(
        index_elements=["day", "business_code"], set_={"last_value": id_sequences.c.last_value + 1},
    ).returning(id_sequences.c.last_value)


@cache
def _link_statement(dialect: str, returning: bool = False) -> Any:
    """INSERT an xref ... ON CONFLICT DO NOTHING (parameters by column name), with RETURNING ticket_id if
    asked; built once per dialect."""
    stmt = insert_for(dialect, xrefs).on_conflict_do_nothing(index_elements=["system", "local_id"])
    return stmt.returning(xrefs.c.ticket_id) if returning else stmt


_NEW_TICKET = insert(tickets)
_NEW_XREF = insert(xrefs)


def _replace(conn: Connection, table: Any) -> Any:
    return _replace_statement(conn.dialect.name, table.name)


class TicketRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    # ---- identity -----------------------------------------------------------------------------

    def allocate_ticket_id(self, day: date, code: str) -> str:
        """The next ID for (day, code), atomically: an upsert that increments and returns the counter."""
        sequence = self.conn.execute(_allocate_statement(self.conn.dialect.name),
                                     {"q_day": f"{day:%Y%m%d}", "q_code": code}).scalar_one()
        return format_ticket_id(day, code, sequence)

    def find_by_xref(self, system: str, local_id: str) -> str | None:
        return self.conn.execute(_FIND_XREF, {"system": system, "local_id": local_id}).scalar_one_or_none()

    def get_or_create(self, system: str, local_id: str, code: str, now: datetime,
                      ticket_id: str | None = None) -> tuple[str, bool]:
        """The ticket linked to (system, local_id), creating ticket and link if there is none.

        Concurrent callers for the same local ID get the same ticket: the link is inserted with
        ON CONFLICT DO NOTHING inside a savepoint, and the loser reads the winner's link.
        `ticket_id`, if given, is an ID reserved earlier for this record; otherwise one is allocated here.
        """
        existing = self.find_by_xref(system, local_id)
        if existing is not None:
            return existing, False
        if self.conn.dialect.name == "sqlite":  # the transaction holds the write lock: nobody links meanwhile
            ticket_id = ticket_id or self.allocate_ticket_id(now.date(), code)
            self.conn.execute(_NEW_TICKET, {"ticket_id": ticket_id, "business_code": code, "created_at": now,
                                            "updated_at": now})
            self.conn.execute(_NEW_XREF, {"system": system, "local_id": local_id, "ticket_id": ticket_id,
                                          "created_at": now})
            return ticket_id, True
        with self.conn.begin_nested() as savepoint:
            ticket_id = ticket_id or self.allocate_ticket_id(now.date(), code)
            self.conn.execute(_NEW_TICKET, {"ticket_id": ticket_id, "business_code": code, "created_at": now,
                                            "updated_at": now})
            linked = self.conn.execute(_link_statement(self.conn.dialect.name, returning=True), {
                "system": system, "local_id": local_id, "ticket_id": ticket_id, "created_at": now,
            }).scalar_one_or_none()
            if linked is None:
                savepoint.rollback()
        if linked is None:
            winner = self.find_by_xref(system, local_id)
            assert winner is not None, "xref insert conflicted but no xref is visible"
            return winner, False
        return ticket_id, True

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

    # ---- state --------------------------------------------------------------------------------

    def load_state(self, ticket_id: str) -> TicketState:
        fields = {
            row.field: FieldValue(row.value, _provenance_of(row))
            for row in self.conn.execute(_LOAD_FIELDS, {"ticket_id": ticket_id})
        }
        pending: dict[str, dict[str, PendingWrite]] = {}
        for row in self.conn.execute(_LOAD_PENDING, {"ticket_id": ticket_id}):
            pending.setdefault(row.system, {})[row.field] = PendingWrite(
                row.value, row.system_field, row.system_value, _provenance_from_json(row.provenance)
            )
        delivered: dict[str, dict[str, Any]] = {}
        for row in self.conn.execute(_LOAD_DELIVERED, {"ticket_id": ticket_id}):
            delivered.setdefault(row.system, {})[row.field] = row.value
        return TicketState(ticket_id, fields, pending, delivered)

    def save(self, before: TicketState, result: ApplyResult, now: datetime, created: bool = False) -> None:
        """Write what changed between `before` and `result.state`, and append the audit entries.
        `created`: the ticket was created in this transaction (at `now`), so it needs no touching."""
        after, ticket_id = result.state, before.ticket_id
        changed = [(name, fv) for name, fv in after.fields.items() if before.fields.get(name) != fv]
        if changed:
            self.conn.execute(_replace(self.conn, field_values),
                              [_field_row(ticket_id, name, fv) for name, fv in changed])
            if not created:
                self.conn.execute(_TOUCH_TICKET, {"b_ticket_id": ticket_id, "b_updated_at": now})
        self._save_pending(ticket_id, before, after, now)
        gone_marks = [
            (system, name)
            for system, marks in before.delivered.items()
            for name in marks
            if name not in after.delivered.get(system, {})
        ]
        if gone_marks:
            self.conn.execute(
                delete(delivered_values).where(
                    delivered_values.c.ticket_id == ticket_id,
                    tuple_(delivered_values.c.system, delivered_values.c.field).in_(gone_marks),
                )
            )
        rows = [_audit_row(ticket_id, o, now) for o in result.outcomes if o.kind != "duplicate"]
        if rows:
            self.conn.execute(insert(audit_log), rows)

    def _save_pending(self, ticket_id: str, before: TicketState, after: TicketState, now: datetime) -> None:
        removed = [
            (system, name)
            for system, writes in before.pending.items()
            for name in writes
            if name not in after.pending.get(system, {})
        ]
        if removed:
            self.conn.execute(
                delete(outbox).where(
                    outbox.c.ticket_id == ticket_id, tuple_(outbox.c.system, outbox.c.field).in_(removed)
                )
            )
        upserts = [
            {
                "ticket_id": ticket_id, "system": system, "field": name, "value": pw.value,
                "system_field": pw.system_field, "system_value": pw.system_value,
                "provenance": _provenance_to_json(pw.provenance), "queued_at": now,
            }
            for system, writes in after.pending.items()
            for name, pw in writes.items()
            if before.pending.get(system, {}).get(name) != pw
        ]
        if upserts:
            self.conn.execute(_replace(self.conn, outbox), upserts)

    def record_delivered(self, ticket_id: str, system: str, values: dict[str, Any], now: datetime) -> None:
        """Remember what the hub wrote to `system`, so that the system's report of it is an echo."""
        if not values:
            return
        self.conn.execute(
            _replace(self.conn, delivered_values),
            [{"ticket_id": ticket_id, "system": system, "field": f, "value": v, "delivered_at": now}
             for f, v in values.items()],
        )

    # ---- read side ----------------------------------------------------------------------------

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


class InboxRepository:
    """Inbound events, stored before anything else happens; (system, external id) is unique."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def accept(self, system: str, external_id: str, payload: Any, now: datetime,
               dispatched: bool = False) -> tuple[str, bool]:
        """Store the event; return (event_id, duplicate). A repeated external id changes nothing.
        `dispatched`: a relay in this process publishes it at once (see `hub.messaging.relay.Relay`)."""
        event_id = f"{system}:{external_id}"
        inserted = self.conn.execute(_accept_statement(self.conn.dialect.name), {
            "a_event_id": event_id, "a_system": system, "a_external_id": external_id, "a_received_at": now,
            "a_payload": payload, "a_dispatched_at": now if dispatched else None}).scalar_one_or_none()
        return event_id, inserted is None

    def accept_many(self, system: str, events: Mapping[str, Any], now: datetime) -> list[str]:
        """Store several events (external id -> payload) in one statement; the event IDs not stored before,
        in the given order. Same rows and IDs as `accept`."""
        rows = [{"event_id": f"{system}:{external_id}", "system": system, "external_id": external_id,
                 "received_at": now, "payload": payload, "state": "received"}
                for external_id, payload in events.items()]
        if not rows:
            return []
        stored = set(self.conn.execute(_upsert(self.conn, inbox_events).values(rows).on_conflict_do_nothing()
                                       .returning(inbox_events.c.event_id)).scalars())
        return [row["event_id"] for row in rows if row["event_id"] in stored]

    def get(self, event_id: str, lock: bool = False) -> dict[str, Any] | None:
        """The event; with `lock`, its row is held until the transaction ends (PostgreSQL), so that two
        workers given the same event apply it once."""
        row = self.conn.execute(_LOCK_EVENT if lock else _GET_EVENT, {"event_id": event_id}).one_or_none()
        return None if row is None else dict(row._mapping)

    def mark(self, event_id: str, state: str, now: datetime, ticket_id: str | None = None,
             error: str | None = None) -> None:
        self.conn.execute(_MARK_EVENT, {"b_event_id": event_id, "b_state": state, "b_processed_at": now,
                                        "b_ticket_id": ticket_id, "b_error": error})

    def mark_dispatched(self, event_ids: Sequence[str], now: datetime | None) -> None:
        """Stamp events as published now (a poller publishing its own), or as never published (None: a
        publish that failed, for the relay's next round)."""
        if event_ids:
            self.conn.execute(update(inbox_events).where(inbox_events.c.event_id.in_(list(event_ids)))
                              .values(dispatched_at=now))

    def count(self, states: Sequence[str] = ()) -> int:
        from sqlalchemy import func

        query = select(func.count()).select_from(inbox_events)
        if states:
            query = query.where(inbox_events.c.state.in_(states))
        return int(self.conn.execute(query).scalar_one())


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
