"""The inbox: inbound events, stored before anything else happens; (system, external id) is unique."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update

from hub.store.dialect import insert_for, update_many
from hub.store.tables import inbox_events

_GET_EVENT = select(inbox_events).where(inbox_events.c.event_id == bindparam("event_id"))
_LOCK_EVENT = _GET_EVENT.with_for_update()
_GET_EVENTS = (select(inbox_events).where(inbox_events.c.event_id.in_(bindparam("event_ids", expanding=True)))
               .order_by(inbox_events.c.event_id))
_LOCK_EVENTS = _GET_EVENTS.with_for_update()


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
        insert = insert_for(self.conn.dialect.name, inbox_events).values(rows).on_conflict_do_nothing()
        stored = set(self.conn.execute(insert.returning(inbox_events.c.event_id)).scalars())
        return [row["event_id"] for row in rows if row["event_id"] in stored]

    def get(self, event_id: str, lock: bool = False) -> dict[str, Any] | None:
        """The event; with `lock`, its row is held until the transaction ends (PostgreSQL), so that two
        workers given the same event apply it once."""
        row = self.conn.execute(_LOCK_EVENT if lock else _GET_EVENT, {"event_id": event_id}).one_or_none()
        return None if row is None else dict(row._mapping)

    def get_many(self, event_ids: Sequence[str], lock: bool = False) -> dict[str, dict[str, Any]]:
        """`get` for several events in one query (with `lock`, their rows are taken in event ID order)."""
        if not event_ids:
            return {}
        rows = self.conn.execute(_LOCK_EVENTS if lock else _GET_EVENTS, {"event_ids": list(dict.fromkeys(event_ids))})
        return {row.event_id: dict(row._mapping) for row in rows}

    def mark(self, event_id: str, state: str, now: datetime, ticket_id: str | None = None,
             error: str | None = None) -> None:
        self.mark_many([(event_id, state, ticket_id, error)], now)

    def mark_many(self, marks: Sequence[tuple[str, str, str | None, str | None]], now: datetime) -> None:
        """`mark` several events, each (event ID, state, ticket ID, error), in one batch."""
        if marks:
            update_many(self.conn, inbox_events, "event_id", [
                {"event_id": event_id, "state": state, "processed_at": now, "ticket_id": ticket_id, "error": error}
                for event_id, state, ticket_id, error in marks])

    def mark_dispatched(self, event_ids: Sequence[str], now: datetime | None) -> None:
        """Stamp events as published now (a poller publishing its own), or as never published (None: a
        publish that failed, for the relay's next round)."""
        if event_ids:
            self.conn.execute(update(inbox_events).where(inbox_events.c.event_id.in_(list(event_ids)))
                              .values(dispatched_at=now))

    def count(self, states: Sequence[str] = ()) -> int:

        query = select(func.count()).select_from(inbox_events)
        if states:
            query = query.where(inbox_events.c.state.in_(states))
        return int(self.conn.execute(query).scalar_one())
