"""The raw facts behind the service metrics (`tickethub stats`, /metrics): read-only queries over the tickets,
the audit trail, the deliveries and the alerts changed since a moment. The use case turns them into rates
and percentiles."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, case, func, select

from hub.store.tables import alerts, audit_log, deliveries, delivery_attempts, tickets

STATUS_OUTCOMES = ("applied", "not_owner", "not_allowed", "no_evidence")


class StatsRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def first_presence(self, since: datetime) -> Iterator[tuple[str, datetime, str, datetime | None]]:
        """(ticket, created at, system, first delivered there or None) for every system the hub wrote, or
        owes a write, for tickets created since `since`."""
        query = (select(tickets.c.ticket_id, tickets.c.created_at, deliveries.c.system,
                        func.min(deliveries.c.delivered_at))
                 .join(deliveries, deliveries.c.ticket_id == tickets.c.ticket_id)
                 .where(tickets.c.created_at >= since)
                 .group_by(tickets.c.ticket_id, tickets.c.created_at, deliveries.c.system))
        for row in self.conn.execution_options(yield_per=2000).execute(query):
            yield row[0], row[1], row[2], row[3]

    def status_moves(self, since: datetime) -> Iterator[tuple[str, Any, datetime]]:
        """(ticket, status, entered at) for every status the golden record took since `since`, per ticket
        in order (the source's modified-at)."""
        query = (select(audit_log.c.ticket_id, audit_log.c.new_value, audit_log.c.source_modified_at)
                 .where(audit_log.c.field == "status", audit_log.c.outcome == "applied",
                        audit_log.c.target_system.is_(None), audit_log.c.recorded_at >= since)
                 .order_by(audit_log.c.ticket_id, audit_log.c.source_modified_at, audit_log.c.id))
        for row in self.conn.execution_options(yield_per=2000).execute(query):
            yield row[0], row[1], row[2]

    def status_outcomes(self, since: datetime) -> list[tuple[str, str, int]]:
        """(outcome, system, count) of reported status changes: accepted (applied) or refused, by reason."""
        query = (select(audit_log.c.outcome, audit_log.c.system, func.count())
                 .where(audit_log.c.field == "status", audit_log.c.outcome.in_(STATUS_OUTCOMES),
                        audit_log.c.target_system.is_(None), audit_log.c.system != "tickethub",
                        audit_log.c.recorded_at >= since)
                 .group_by(audit_log.c.outcome, audit_log.c.system))
        return [(r[0], r[1], int(r[2])) for r in self.conn.execute(query)]

    def dwell_breaches(self, since: datetime) -> list[tuple[str, str | None, int]]:
        query = (select(alerts.c.kind, alerts.c.status, func.count())
                 .where(alerts.c.kind.in_(("dwell", "dwell_escalation")), alerts.c.raised_at >= since)
                 .group_by(alerts.c.kind, alerts.c.status))
        return [(r[0], r[1], int(r[2])) for r in self.conn.execute(query)]

    def first_attempts(self, since: datetime) -> list[tuple[str, int, int]]:
        """(system, first attempts, of which delivered) for deliveries created since `since`."""
        ok = func.sum(case((delivery_attempts.c.outcome == "delivered", 1), else_=0))
        query = (select(deliveries.c.system, func.count(), ok)
                 .join(delivery_attempts, and_(delivery_attempts.c.delivery_id == deliveries.c.id,
                                               delivery_attempts.c.number == 1))
                 .where(deliveries.c.created_at >= since)
                 .group_by(deliveries.c.system))
        return [(r[0], int(r[1]), int(r[2] or 0)) for r in self.conn.execute(query)]
