"""Alerts and their sends: each alert is raised once (its key), then sent to each channel through Celery,
retried like a delivery, never in the way of ticket processing. Dwell breaches are found here too: tickets
whose golden status has not changed for longer than the state's limit, with no alert for that stay yet."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, exists, func, insert, literal_column, or_, select, text, update

from hub.store.dialect import insert_for
from hub.store.tables import alert_sends, alerts, field_values

# written out, not bound, so that the partial index ix_field_values_status_since matches it
_STATUS_ROWS = text("field_values.field = 'status'")


class AlertRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def raise_alert(self, key: str, kind: str, now: datetime, channels: Sequence[str], *, ticket_id: str | None,
                    status: str | None = None, system: str | None = None, author: str | None = None,
                    since: datetime | None = None, facts: Mapping[str, Any] | None = None) -> int | None:
        """Record an alert and a pending send per channel; None (and nothing written) if `key` was raised before."""
        stmt = insert_for(self.conn.dialect.name, alerts).values(
            alert_key=key, kind=kind, ticket_id=ticket_id, status=status, system=system, author=author,
            since=since, facts=dict(facts or {}), raised_at=now).on_conflict_do_nothing().returning(alerts.c.id)
        alert_id = self.conn.execute(stmt).scalar_one_or_none()
        if alert_id is None:
            return None
        if channels:
            self.conn.execute(insert(alert_sends), [
                {"alert_id": alert_id, "channel": channel, "state": "pending", "attempts": 0,
                 "next_attempt_at": now, "dispatched_at": None} for channel in channels])
        return int(alert_id)

    def get(self, alert_id: int) -> dict[str, Any] | None:
        row = self.conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
        return None if row is None else dict(row._mapping)

    def send(self, alert_id: int, channel: str) -> dict[str, Any] | None:
        row = self.conn.execute(select(alert_sends).where(alert_sends.c.alert_id == alert_id,
                                                          alert_sends.c.channel == channel)).first()
        return None if row is None else dict(row._mapping)

    def record_send(self, alert_id: int, channel: str, state: str, now: datetime, error: str | None = None,
                    next_attempt_at: datetime | None = None) -> None:
        # a retry is published with its countdown: as dispatched when it falls due, so the sweep leaves it be
        values: dict[str, Any] = {"state": state, "attempts": alert_sends.c.attempts + 1, "last_error": error,
                                  "next_attempt_at": next_attempt_at, "dispatched_at": next_attempt_at or now}
        if state == "sent":
            values["sent_at"] = now
        self.conn.execute(update(alert_sends).where(alert_sends.c.alert_id == alert_id,
                                                    alert_sends.c.channel == channel).values(**values))

    def take_due(self, now: datetime, stale_before: datetime, limit: int = 500) -> list[tuple[int, str]]:
        """Pending sends that are due and were not published recently (a lost or crashed task): marked
        published now, for the caller to publish."""
        due = [(r.alert_id, r.channel) for r in self.conn.execute(
            select(alert_sends.c.alert_id, alert_sends.c.channel).where(
                alert_sends.c.state == "pending", alert_sends.c.next_attempt_at <= now,
                or_(alert_sends.c.dispatched_at.is_(None), alert_sends.c.dispatched_at < stale_before))
            .order_by(alert_sends.c.next_attempt_at).limit(limit))]
        for alert_id, channel in due:
            self.conn.execute(update(alert_sends).where(alert_sends.c.alert_id == alert_id,
                                                        alert_sends.c.channel == channel).values(dispatched_at=now))
        return due

    def dwell_breaches(self, kind: str, limits: Mapping[str, float], now: datetime, limit: int = 1000
                       ) -> list[dict[str, Any]]:
        """Tickets whose status has been one of `limits`' states for longer than its limit (seconds) and that
        have no `kind` alert for this stay in it (a stay is the state and the moment it was entered)."""
        if not limits:
            return []
        fv = field_values
        rows = []
        for state, seconds in limits.items():
            already = exists().where(alerts.c.ticket_id == fv.c.ticket_id, alerts.c.kind == kind,
                                     alerts.c.status == state, alerts.c.since == fv.c.source_modified_at)
            query = (select(fv.c.ticket_id, fv.c.source_system, fv.c.author, fv.c.source_modified_at)
                     .where(_STATUS_ROWS, _json_text_is(fv.c.value, state, self.conn.dialect.name),
                            fv.c.source_modified_at <= now - timedelta(seconds=seconds), ~already)
                     .order_by(fv.c.source_modified_at).limit(limit))
            rows += [{"ticket_id": r.ticket_id, "status": state, "system": r.source_system, "author": r.author,
                      "since": r.source_modified_at, "limit_seconds": seconds} for r in self.conn.execute(query)]
        return rows

    def recent(self, since: datetime | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        query = select(alerts).order_by(alerts.c.id.desc()).limit(limit)
        if since is not None:
            query = query.where(alerts.c.raised_at >= since)
        return [dict(r._mapping) for r in self.conn.execute(query)]


def _json_text_is(column: Any, text: str, dialect: str) -> Any:
    """`column` (JSON) holds the string `text`."""
    if dialect == "postgresql":
        return column.op("#>>")(literal_column("'{}'")) == text
    return and_(func.json_type(column) == "text", func.json_extract(column, "$") == text)
