"""Deliveries in the database: scheduling from the outbox, claiming, finishing, replaying, sweeping.

At most one delivery per (ticket, system) is in progress at a time (a partial unique index), so two
writes to the same record never overtake each other. A delivery takes its fields from the outbox
when it is first claimed, so it carries the newest values of that moment; a retry, or a re-claim
after a worker died, sends exactly the same content again (receivers may dedupe on `webhook-id`).
Fields that arrive meanwhile wait in the outbox for the next delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, literal, or_, select, text, tuple_, update

from hub.store.dialect import as_json, insert_for, insert_many, update_many, utc
from hub.store.tables import (
    ACTIVE_DELIVERY_STATES,
    JsonValue,
    UTCDateTime,
    deliveries,
    delivery_attempts,
    field_values,
    inbox_events,
    outbox,
    worker_heartbeats,
    xrefs,
)

_ACTIVE = text("state IN ('pending', 'in_flight', 'retry_wait')")


@dataclass(frozen=True)
class Claim:
    delivery_id: int
    ticket_id: str
    system: str
    local_id: str | None
    fields: dict[str, dict[str, Any]]  # canonical field -> {system_field, system_value, value, provenance}
    attempt: int
    created_at: datetime
    first_accepted_at: datetime | None = None  # earliest acceptance of an event it carries

    def system_fields(self) -> dict[str, Any]:
        return {f["system_field"]: f["system_value"] for f in self.fields.values()}


@dataclass(frozen=True)
class Finish:
    """What became of a claim's write: `verdict` delivered | retry (again at `next_attempt_at`) | dead."""

    claim: Claim
    verdict: str
    started: datetime  # the attempt: claimed ...
    finished: datetime  # ... and answered
    status_code: int | None
    error: str | None
    next_attempt_at: datetime | None = None
    retry_after: float | None = None


# Hot-path statements, built once (building a statement, and its cache key, cost more than running it).
_P = bindparam
_WAITING_COLUMNS = (outbox.c.ticket_id, outbox.c.system, literal("pending"), literal({}, JsonValue), literal(0),
                    _P("s_now", type_=UTCDateTime), _P("s_now", type_=UTCDateTime))


@cache
def _schedule_statement(dialect: str) -> Any:
    waiting = select(*_WAITING_COLUMNS).where(outbox.c.ticket_id.in_(_P("s_tickets", expanding=True))).distinct()
    return _pending_from(dialect, waiting).returning(deliveries.c.id, deliveries.c.ticket_id)


@cache
def _schedule_pairs_statement(dialect: str) -> Any:
    waiting = (select(*_WAITING_COLUMNS).distinct()
               .where(tuple_(outbox.c.ticket_id, outbox.c.system).in_(_P("s_pairs", expanding=True))))
    return _pending_from(dialect, waiting).returning(deliveries.c.id, deliveries.c.ticket_id, deliveries.c.system)


def _pending_from(dialect: str, waiting: Any) -> Any:
    """A pending delivery for each (ticket, system) that `waiting` selects and that has none in progress."""
    return (insert_for(dialect, deliveries)
            .from_select(["ticket_id", "system", "state", "fields", "attempts", "created_at", "updated_at"], waiting)
            .on_conflict_do_nothing(index_elements=["ticket_id", "system"], index_where=_ACTIVE))


_SCHEDULE_PAIRS = (  # PostgreSQL: _pending_from for (ticket, system) pairs given as a JSON array
    "INSERT INTO deliveries (ticket_id, system, state, fields, attempts, created_at, updated_at) "
    "SELECT u.ticket_id, u.system, 'pending', '{}'::jsonb, 0, %(now)s, %(now)s "
    "FROM json_to_recordset(%(rows)s::json) AS u(ticket_id text, system text) "
    f"ON CONFLICT (ticket_id, system) WHERE state IN ({', '.join(repr(s) for s in ACTIVE_DELIVERY_STATES)}) "
    "DO NOTHING RETURNING id, ticket_id")


_LOCAL_ID = (select(xrefs.c.local_id)
             .where(xrefs.c.ticket_id == deliveries.c.ticket_id, xrefs.c.system == deliveries.c.system)
             .order_by(xrefs.c.created_at).limit(1).scalar_subquery().label("local_id"))
_CLAIM_ROWS = (select(deliveries, _LOCAL_ID).where(deliveries.c.id.in_(_P("c_ids", expanding=True)))
               .order_by(deliveries.c.id).with_for_update(of=deliveries))
_IN_FLIGHT_BY_SYSTEM = (select(deliveries.c.system, func.count()).select_from(deliveries)
                        .where(deliveries.c.system.in_(_P("c_systems", expanding=True)),
                               deliveries.c.state == "in_flight",
                               deliveries.c.lease_until > _P("c_now", type_=UTCDateTime),
                               deliveries.c.id.not_in(_P("c_ids", expanding=True)))
                        .group_by(deliveries.c.system))
_TAKE_OUTBOX = (delete(outbox).where(tuple_(outbox.c.ticket_id, outbox.c.system).in_(_P("c_pairs", expanding=True)))
                .returning(outbox.c.ticket_id, outbox.c.system, outbox.c.field, outbox.c.system_field,
                           outbox.c.system_value, outbox.c.value, outbox.c.provenance))
_SUPERSEDED = (update(deliveries).where(deliveries.c.id == _P("c_id"))
               .values(state="superseded", updated_at=_P("c_now", type_=UTCDateTime), lease_until=None))
_ALL_MINE = and_(tuple_(deliveries.c.id, deliveries.c.attempts).in_(_P("f_held", expanding=True)),
                 deliveries.c.state == "in_flight")
_VERDICTS: dict[str, dict[str, Any]] = {
    "delivered": {"state": "delivered", "delivered_at": _P("f_now", type_=UTCDateTime),
                  "updated_at": _P("f_now", type_=UTCDateTime), "lease_until": None, "last_status": _P("f_status"),
                  "last_error": None},
    "retry": {"state": "retry_wait", "next_attempt_at": _P("f_next", type_=UTCDateTime),
              "updated_at": _P("f_now", type_=UTCDateTime), "lease_until": None, "last_status": _P("f_status"),
              "last_error": _P("f_error")},
    "dead": {"state": "dead", "updated_at": _P("f_now", type_=UTCDateTime), "lease_until": None,
             "last_status": _P("f_status"), "last_error": _P("f_error")},
}
# for every (id, attempt) in f_held at once, saying which of them the claim (that attempt) still held
_FINISHED_ALL = {verdict: update(deliveries).where(_ALL_MINE).values(**values).returning(deliveries.c.id)
                 for verdict, values in _VERDICTS.items()}
# PostgreSQL: claims take turns, so that each counts the deliveries in flight truly. One lock for every
# system, not one each: a worker claims several deliveries in one transaction (its threads' claims combined),
# and two workers taking two systems' locks in opposite orders would deadlock.
# In the same round trip: the transaction commits without waiting for the disk (see below; the ticket IDs' block is
# reserved so too, tickets._RESERVE_IDS), so that the turn ends at the commit.
_CLAIM_TURN = text("SELECT pg_advisory_xact_lock(hashtext('tickethub:claims')), "
                   "set_config('synchronous_commit', 'off', true)")


class DeliveryRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def schedule(self, ticket_id: str, now: datetime) -> list[int]:
        """A pending delivery for every system with outbox rows for the ticket and none in progress."""
        return self.schedule_tickets([ticket_id], now)[ticket_id]

    def schedule_tickets(self, ticket_ids: Sequence[str], now: datetime) -> dict[str, list[int]]:
        """`schedule` for several tickets in one statement: the deliveries created, per ticket, in id order."""
        created: dict[str, list[int]] = {ticket_id: [] for ticket_id in ticket_ids}
        if created:
            for row in self.conn.execute(_schedule_statement(self.conn.dialect.name),
                                         {"s_tickets": list(created), "s_now": now}):
                created[row.ticket_id].append(int(row.id))
        return {ticket_id: sorted(ids) for ticket_id, ids in created.items()}

    def schedule_written(self, pairs: Sequence[tuple[str, str]], now: datetime) -> dict[str, list[int]]:
        """`schedule_tickets` for tickets whose outbox this transaction has just written, given as the (ticket,
        system) pairs that have rows there now: per ticket, the deliveries created. On PostgreSQL the pairs go in
        as they are, the outbox unread: a planner whose statistics lagged behind a backlog read it whole for every
        set of events (2.3 ms a set of 32 at 15,000 rows, and growing with it)."""
        tickets = list(dict.fromkeys(ticket_id for ticket_id, _ in pairs))
        if self.conn.dialect.name != "postgresql":
            return self.schedule_tickets(tickets, now)
        created: dict[str, list[int]] = {ticket_id: [] for ticket_id in tickets}
        if pairs:
            rows = [{"ticket_id": ticket_id, "system": system} for ticket_id, system in sorted(set(pairs))]
            for delivery_id, ticket_id in self.conn.exec_driver_sql(
                    _SCHEDULE_PAIRS, {"rows": as_json(rows), "now": utc(now)}):
                created[ticket_id].append(int(delivery_id))
        return {ticket_id: sorted(ids) for ticket_id, ids in created.items()}

    def schedule_many(self, pairs: Sequence[tuple[str, str]], now: datetime) -> dict[tuple[str, str], list[int]]:
        """`schedule` for the given systems of tickets, (ticket, system) pairs, in one statement: the deliveries
        created, per pair."""
        created: dict[tuple[str, str], list[int]] = {pair: [] for pair in pairs}
        if pairs:
            for row in self.conn.execute(_schedule_pairs_statement(self.conn.dialect.name),
                                         {"s_pairs": list(dict.fromkeys(pairs)), "s_now": now}):
                created[(row.ticket_id, row.system)].append(int(row.id))
        return created

    def claim(self, delivery_id: int, now: datetime, lease: timedelta, max_in_flight: Callable[[str], int],
              worker: str | None = None) -> Claim | str:
        """Take a due delivery in flight with the newest outbox values; else say why not
        (`gone`, `not_due`, `busy`, `in_flight`, `superseded`)."""
        return self.claim_many([delivery_id], now, lease, max_in_flight, worker)[delivery_id]

    def claim_many(self, delivery_ids: Sequence[int], now: datetime, lease: timedelta,
                   max_in_flight: Callable[[str], int], worker: str | None = None) -> dict[int, Claim | str]:
        """`claim` for several deliveries in a few statements, not a few each (a first attempt takes the newest
        outbox values; the claim records its worker and a lease): the rows locked in one
        SELECT (in id order), the in-flight counts read once per system, the outbox taken in one DELETE, the
        claims written in one batch. The same answers, one per id, as claiming them one after another."""
        ids = list(dict.fromkeys(delivery_ids))
        rows = {int(r.id): r for r in self.conn.execute(_CLAIM_ROWS, {"c_ids": ids})}
        results: dict[int, Claim | str] = {}
        candidates = []
        for delivery_id in ids:
            row = rows.get(delivery_id)
            if row is None or row.state not in ACTIVE_DELIVERY_STATES:
                results[delivery_id] = "gone"
            elif row.state == "in_flight" and row.lease_until is not None and row.lease_until > now:
                results[delivery_id] = "in_flight"
            elif row.state == "retry_wait" and row.next_attempt_at is not None and row.next_attempt_at > now:
                results[delivery_id] = "not_due"
            else:
                candidates.append(row)
        if not candidates:
            return results
        if self.conn.dialect.name == "postgresql":  # claims take turns across workers (see _CLAIM_TURN)
            # ... and their turn ends at the commit, not after the WAL flush that follows it (every claim of every
            # worker waited for the disk in turn). Safe for at-least-once: the WAL is flushed in order, so the
            # outcome's durable commit (or any later one) makes the claim durable too; a crash before that loses
            # only the claim, and the write, sent or not, goes out again with the same webhook-id and fields.
            self.conn.execute(_CLAIM_TURN)
        busy: dict[str, int] = {str(system): int(count) for system, count in self.conn.execute(
            _IN_FLIGHT_BY_SYSTEM, {"c_systems": sorted({r.system for r in candidates}), "c_now": now,
                                   "c_ids": [int(r.id) for r in candidates]})}
        admitted = []
        for row in candidates:
            if busy.get(row.system, 0) >= max_in_flight(row.system):
                results[int(row.id)] = "busy"
                continue
            busy[row.system] = busy.get(row.system, 0) + 1
            admitted.append(row)
        taken: dict[tuple[str, str], dict[str, Any]] = {}
        first_time = [(r.ticket_id, r.system) for r in admitted if r.attempts == 0]
        if first_time:
            for pending in self.conn.execute(_TAKE_OUTBOX, {"c_pairs": first_time}):
                taken.setdefault((pending.ticket_id, pending.system), {})[pending.field] = {
                    "system_field": pending.system_field, "system_value": pending.system_value,
                    "value": pending.value, "provenance": pending.provenance}
        updates, superseded = [], []
        for row in admitted:
            fields = dict(row.fields or {})
            if row.attempts == 0:
                fields.update(taken.get((row.ticket_id, row.system), {}))
            if not fields:
                superseded.append({"c_id": int(row.id), "c_now": now})
                results[int(row.id)] = "superseded"
                continue
            accepted = [datetime.fromisoformat(f["provenance"]["received_at"]) for f in fields.values()]
            first_accepted = row.first_accepted_at or min(accepted)
            updates.append({"id": int(row.id), "state": "in_flight", "fields": fields, "attempts": row.attempts + 1,
                            "updated_at": now, "lease_until": now + lease, "first_accepted_at": first_accepted,
                            "claimed_by": worker})
            results[int(row.id)] = Claim(int(row.id), row.ticket_id, row.system, row.local_id, fields,
                                         row.attempts + 1, row.created_at, first_accepted)
        if superseded:
            self.conn.execute(_SUPERSEDED, superseded)
        update_many(self.conn, deliveries, "id", updates)
        return results

    def finish(self, claim: Claim, verdict: str, now: datetime, status_code: int | None, error: str | None,
               next_attempt_at: datetime | None = None) -> bool:
        """Move the delivery from in flight to `verdict` (delivered | retry | dead), if this claim still
        holds it (not re-claimed after its lease ran out); False if it does not (nothing changed)."""
        finish = Finish(claim, verdict, now, now, status_code, error, next_attempt_at)
        return claim.delivery_id in self.finish_many([finish])

    def finish_many(self, finishes: Sequence[Finish]) -> set[int]:
        """`finish` for several claims, in one statement per distinct outcome and time (typically one per batch
        written together: delivered, 200); the ids of those whose claim still held them (the others unchanged)."""
        groups: dict[tuple[str, int | None, str | None, datetime | None, datetime], list[tuple[int, int]]] = {}
        for f in finishes:
            groups.setdefault((f.verdict, f.status_code, f.error, f.next_attempt_at, f.finished), []).append(
                (f.claim.delivery_id, f.claim.attempt))
        held: set[int] = set()
        for (verdict, status_code, error, next_at, now), pairs in groups.items():
            held.update(int(i) for i in self.conn.execute(_FINISHED_ALL[verdict], {
                "f_held": pairs, "f_now": now, "f_status": status_code, "f_error": error, "f_next": next_at}).scalars())
        return held

    def record_attempts(self, finishes: Sequence[Finish], late: Collection[int] = ()) -> None:
        """An attempt row for each (its verdict, or `late` for the deliveries in `late`), in one statement."""
        insert_many(self.conn, delivery_attempts, [{
            "delivery_id": f.claim.delivery_id, "number": f.claim.attempt, "started_at": f.started,
            "finished_at": f.finished, "outcome": "late" if f.claim.delivery_id in late else f.verdict,
            "status_code": f.status_code, "error": f.error, "retry_after_seconds": f.retry_after} for f in finishes])

    def replay(self, delivery_id: int, now: datetime) -> tuple[list[int], list[str]]:
        """Put a dead delivery's fields back in the outbox and schedule them; fields whose value has
        since been superseded in the golden record are not replayed (returned as the second list)."""
        row = self.conn.execute(
            select(deliveries).where(deliveries.c.id == delivery_id).with_for_update()
        ).one_or_none()
        if row is None or row.state != "dead":
            raise LookupError(f"delivery {delivery_id} is not dead-lettered" if row else f"no delivery {delivery_id}")
        current = {
            r.field: r.event_id for r in self.conn.execute(
                select(field_values.c.field, field_values.c.event_id).where(field_values.c.ticket_id == row.ticket_id))
        }
        stmt = insert_for(self.conn.dialect.name, outbox)
        skipped = []
        for name, data in row.fields.items():
            if current.get(name) != data["provenance"]["event_id"]:
                skipped.append(name)
                continue
            self.conn.execute(stmt.values(
                ticket_id=row.ticket_id, system=row.system, field=name, value=data["value"],
                system_field=data["system_field"], system_value=data["system_value"],
                provenance=data["provenance"], queued_at=now,
            ).on_conflict_do_nothing(index_elements=["ticket_id", "system", "field"]))
        created = self.schedule_many([(row.ticket_id, row.system)], now)[(row.ticket_id, row.system)]
        active = created or list(self.conn.execute(
            select(deliveries.c.id).where(deliveries.c.ticket_id == row.ticket_id,
                                          deliveries.c.system == row.system,
                                          deliveries.c.state.in_(ACTIVE_DELIVERY_STATES))).scalars())
        self._set(delivery_id, state="replayed", updated_at=now, replayed_as=active[0] if active else None)
        return created, skipped

    # ---- relay and sweeper ------------------------------------------------------------------------

    def take_undispatched_events(self, now: datetime, limit: int, stale_before: datetime | None = None) -> list[str]:
        """Received events never published (or, with `stale_before`, published that long ago and still not
        processed, unless merely queued behind a backlog: see `_behind_backlog`); marks them dispatched
        now. Concurrent relays on PostgreSQL skip each other's rows."""
        condition: Any = inbox_events.c.dispatched_at.is_(None)
        if stale_before is not None:
            condition = or_(condition, inbox_events.c.dispatched_at < stale_before)
        query = (select(inbox_events.c.event_id, inbox_events.c.received_at, inbox_events.c.dispatched_at)
                 .where(inbox_events.c.state == "received", condition)
                 .order_by(inbox_events.c.received_at).limit(limit))
        if self.conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = list(self.conn.execute(query))
        if stale_before is not None and any(r.dispatched_at is not None for r in rows):
            waiting = self._behind_backlog([r for r in rows if r.dispatched_at is not None], stale_before)
            rows = [r for r in rows if r.event_id not in waiting]
        ids = [r.event_id for r in rows]
        if ids:
            self.conn.execute(update(inbox_events).where(inbox_events.c.event_id.in_(ids)).values(dispatched_at=now))
        return ids

    def _behind_backlog(self, stale: list[Any], stale_before: datetime) -> set[str]:
        """Of events published before `stale_before` and not processed, those merely queued: the workers
        processed events in the last such period, but none published after them. Queues hand messages out
        in order, so an event is presumed lost (or its processing failed) once an event published after it
        was processed, or when nothing was processed for a whole period; publishing again an event that is
        only waiting its turn lengthened every queue it was waiting in."""
        done = inbox_events.c.state.in_(("processed", "orphan", "rejected"))
        working = self.conn.execute(
            select(inbox_events.c.event_id).where(done, inbox_events.c.processed_at >= stale_before).limit(1)
        ).first()
        if working is None:
            return set()
        frontier = self.conn.execute(
            select(func.max(inbox_events.c.dispatched_at))
            .where(done, inbox_events.c.received_at >= min(r.received_at for r in stale))
        ).scalar_one_or_none()
        return {r.event_id for r in stale if frontier is None or r.dispatched_at >= frontier}

    def beat(self, worker: str, host: str, pid: int, started_at: datetime, now: datetime) -> None:
        """A worker that claims deliveries is alive (every few seconds)."""
        stmt = insert_for(self.conn.dialect.name, worker_heartbeats).values(
            worker_id=worker, host=host, pid=pid, started_at=started_at, heartbeat_at=now)
        self.conn.execute(stmt.on_conflict_do_update(index_elements=["worker_id"], set_={"heartbeat_at": now}))

    def forget_worker(self, worker: str) -> None:
        """A worker that stopped (or is known dead): its claims are taken back by the next sweep."""
        self.conn.execute(delete(worker_heartbeats).where(worker_heartbeats.c.worker_id == worker))

    def workers_on(self, host: str) -> list[tuple[str, int]]:
        beats = worker_heartbeats
        return [(r.worker_id, r.pid) for r in self.conn.execute(
            select(beats.c.worker_id, beats.c.pid).where(beats.c.host == host))]

    def reclaim(self, now: datetime, dead_before: datetime, limit: int = 1000) -> list[int]:
        """Deliveries in flight with a worker that is dead (its heartbeat stopped before `dead_before`, or it
        is gone): their lease is ended now, so the next claim takes them (a new attempt: the dead worker's
        outcome, should it come back, no longer counts). Claims without a worker wait out their lease."""
        alive = select(worker_heartbeats.c.worker_id).where(worker_heartbeats.c.heartbeat_at >= dead_before)
        ids = [int(i) for i in self.conn.execute(
            select(deliveries.c.id).where(deliveries.c.state == "in_flight", deliveries.c.lease_until > now,
                                          deliveries.c.claimed_by.isnot(None), deliveries.c.claimed_by.not_in(alive))
            .order_by(deliveries.c.id).limit(limit)).scalars()]
        if ids:
            self.conn.execute(update(deliveries).where(deliveries.c.id.in_(ids), deliveries.c.state == "in_flight")
                              .values(lease_until=now))
        return ids

    def overdue(self, now: datetime, stale_before: datetime, limit: int = 1000) -> list[int]:
        """Deliveries whose task was lost: pending too long (unless merely queued behind a backlog, as
        `_queued_behind` tells), retry time long past, or lease run out."""
        query = select(deliveries.c.id, deliveries.c.state).where(or_(
            and_(deliveries.c.state == "pending", deliveries.c.updated_at < stale_before),
            and_(deliveries.c.state == "retry_wait", deliveries.c.next_attempt_at < stale_before),
            and_(deliveries.c.state == "in_flight", deliveries.c.lease_until < now),
        )).order_by(deliveries.c.id).limit(limit)
        rows = list(self.conn.execute(query))
        pending = [int(r.id) for r in rows if r.state == "pending"]
        waiting = self._queued_behind(pending, now, stale_before) if pending else set()
        ids = [int(r.id) for r in rows if int(r.id) not in waiting]
        if ids:  # pushed back so that the next sweep does not publish them again at once
            self.conn.execute(update(deliveries).where(deliveries.c.id.in_(ids), deliveries.c.state == "pending")
                              .values(updated_at=now))
        return ids

    def _queued_behind(self, pending: list[int], now: datetime, stale_before: datetime) -> set[int]:
        """Of deliveries pending since before `stale_before`, those merely queued: workers are writing
        (a delivery in flight, or an attempt finished in that period), but none created after them was
        claimed yet (tasks are published as deliveries are created, and queues hand them out in order).
        The others are presumed lost."""
        in_flight = self.conn.execute(
            select(deliveries.c.id).where(deliveries.c.state == "in_flight", deliveries.c.lease_until > now).limit(1)
        ).first()
        last_attempt = self.conn.execute(
            select(delivery_attempts.c.finished_at).order_by(delivery_attempts.c.id.desc()).limit(1)
        ).scalar_one_or_none()
        if in_flight is None and (last_attempt is None or last_attempt < stale_before):
            return set()  # nobody is writing: not a backlog being worked through
        frontier = self.conn.execute(
            select(func.max(deliveries.c.id)).where(deliveries.c.id >= min(pending), deliveries.c.attempts > 0)
        ).scalar_one_or_none()
        return {i for i in pending if frontier is None or i > frontier}

    def unscheduled_tickets(self, limit: int = 1000) -> list[str]:
        """Tickets with outbox rows but no delivery in progress for that system (e.g. after a crash)."""
        active = select(deliveries.c.id).where(
            deliveries.c.ticket_id == outbox.c.ticket_id, deliveries.c.system == outbox.c.system,
            deliveries.c.state.in_(ACTIVE_DELIVERY_STATES)).exists()
        query = select(outbox.c.ticket_id).where(~active).distinct().limit(limit)
        return list(self.conn.execute(query).scalars())

    # ---- read side --------------------------------------------------------------------------------

    def find(self, state: str | None = None, system: str | None = None, since: datetime | None = None,
             limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """Deliveries, newest first, `limit` of them after skipping `offset` (a page)."""
        query = _filtered(select(deliveries), state, system, since).order_by(deliveries.c.id.desc())
        return [dict(r._mapping) for r in self.conn.execute(query.limit(limit).offset(offset))]

    def count(self, state: str | None = None, system: str | None = None, since: datetime | None = None) -> int:
        """How many deliveries `find` would list without a limit."""
        query = _filtered(select(func.count()).select_from(deliveries), state, system, since)
        return int(self.conn.execute(query).scalar_one())

    def for_ticket(self, ticket_id: str, limit: int = 500) -> list[dict[str, Any]]:
        """The ticket's deliveries, oldest first."""
        query = (select(deliveries).where(deliveries.c.ticket_id == ticket_id)
                 .order_by(deliveries.c.id).limit(limit))
        return [dict(r._mapping) for r in self.conn.execute(query)]

    def attempts_of(self, delivery_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        """Every attempt of these deliveries, per delivery, in order."""
        found: dict[int, list[dict[str, Any]]] = {i: [] for i in delivery_ids}
        if delivery_ids:
            rows = self.conn.execute(select(delivery_attempts)
                                     .where(delivery_attempts.c.delivery_id.in_(list(delivery_ids)))
                                     .order_by(delivery_attempts.c.delivery_id, delivery_attempts.c.number,
                                               delivery_attempts.c.id))
            for r in rows:
                found[r.delivery_id].append(dict(r._mapping))
        return found

    def get(self, delivery_id: int) -> dict[str, Any] | None:
        row = self.conn.execute(select(deliveries).where(deliveries.c.id == delivery_id)).one_or_none()
        return None if row is None else dict(row._mapping)

    def attempts(self, delivery_id: int) -> list[dict[str, Any]]:
        rows = self.conn.execute(select(delivery_attempts).where(delivery_attempts.c.delivery_id == delivery_id)
                                 .order_by(delivery_attempts.c.number, delivery_attempts.c.id))
        return [dict(r._mapping) for r in rows]

    def counts(self) -> list[tuple[str, str, int]]:
        rows = self.conn.execute(select(deliveries.c.system, deliveries.c.state, func.count())
                                 .group_by(deliveries.c.system, deliveries.c.state))
        return [(r[0], r[1], int(r[2])) for r in rows]

    def _set(self, delivery_id: int, **values: Any) -> None:
        self.conn.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(**values))


def _filtered(query: Any, state: str | None, system: str | None, since: datetime | None) -> Any:
    if state:
        query = query.where(deliveries.c.state == state)
    if system:
        query = query.where(deliveries.c.system == system)
    if since:
        query = query.where(deliveries.c.updated_at >= since)
    return query
