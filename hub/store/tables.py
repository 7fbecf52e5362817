"""The database schema (SQLAlchemy Core). Alembic migrations in `migrations/` create and evolve it.

- tickets / field_values: the golden record, one row per field with its provenance;
- xrefs: (system, local ID) <-> global ticket ID;
- audit_log: append-only history of every applied or rejected change (triggers refuse UPDATE/DELETE);
- inbox_events: every inbound event, stored before anything else happens (dedup by system + event id);
- outbox: the writes the hub owes each subscribed system, coalesced per (ticket, system, field);
- deliveries / delivery_attempts: writes to one system for one ticket, their state and every attempt;
- delivered_values: the last value the hub wrote to each system, to recognise its echo;
- id_sequences: per-day-per-business-code counters for global ticket IDs;
- poll_watermarks: per polled system, how far its changes have been read;
- reconcile_runs / reconcile_items / reconcile_copies: each reconciliation run, its discrepancies (with
  evidence, action and operator decision) and the snapshot of every system's copy it compared.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which keeps no zone) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the store; use UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JsonValue = JSON().with_variant(JSONB(), "postgresql")
BigId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

tickets = Table(
    "tickets",
    metadata,
    Column("ticket_id", String(32), primary_key=True),
    Column("business_code", String(6), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

field_values = Table(
    "field_values",
    metadata,
    Column("ticket_id", String(32), ForeignKey("tickets.ticket_id"), primary_key=True),
    Column("field", String(64), primary_key=True),
    Column("value", JsonValue, nullable=True),
    Column("source_system", String(64), nullable=False),
    Column("author", String(255), nullable=False),
    Column("author_rank", Integer, nullable=False),
    Column("system_rank", Integer, nullable=False),
    Column("source_modified_at", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("event_id", String(255), nullable=False),
    # the dwell check's scan: tickets by the moment their status was entered (status rows only)
    Index("ix_field_values_status_since", "source_modified_at",
          sqlite_where=text("field = 'status'"), postgresql_where=text("field = 'status'")),
)

xrefs = Table(
    "xrefs",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("local_id", String(255), primary_key=True),
    Column("ticket_id", String(32), ForeignKey("tickets.ticket_id"), nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("ticket_id", String(32), ForeignKey("tickets.ticket_id"), nullable=False),
    Column("field", String(64), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("old_value", JsonValue, nullable=True),
    Column("new_value", JsonValue, nullable=True),
    Column("system", String(64), nullable=False),
    Column("author", String(255), nullable=False),
    Column("author_rank", Integer, nullable=False),
    Column("source_modified_at", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("target_system", String(64), nullable=True),
    Column("reason", Text, nullable=False, default=""),
    Column("recorded_at", UTCDateTime, nullable=False),
    Index("ix_audit_log_ticket", "ticket_id", "id"),
)

inbox_events = Table(
    "inbox_events",
    metadata,
    Column("event_id", String(255), primary_key=True),
    Column("system", String(64), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("payload", JsonValue, nullable=False),
    Column("state", String(16), nullable=False, default="received"),
    Column("ticket_id", String(32), nullable=True),
    Column("processed_at", UTCDateTime, nullable=True),
    Column("error", Text, nullable=True),
    Column("dispatched_at", UTCDateTime, nullable=True),  # when a process_event task was last published
    UniqueConstraint("system", "external_id"),
    Index("ix_inbox_events_state", "state", "received_at"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("ticket_id", String(32), ForeignKey("tickets.ticket_id"), primary_key=True),
    Column("system", String(64), primary_key=True),
    Column("field", String(64), primary_key=True),
    Column("value", JsonValue, nullable=True),
    Column("system_field", String(255), nullable=False),
    Column("system_value", JsonValue, nullable=True),
    Column("provenance", JsonValue, nullable=False),
    Column("queued_at", UTCDateTime, nullable=False),
    Index("ix_outbox_system", "system", "queued_at"),
)

ACTIVE_DELIVERY_STATES = ("pending", "in_flight", "retry_wait")

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("ticket_id", String(32), ForeignKey("tickets.ticket_id"), nullable=False),
    Column("system", String(64), nullable=False),
    # pending -> in_flight -> delivered | retry_wait (-> in_flight ...) | dead (-> replayed)
    Column("state", String(16), nullable=False),
    Column("fields", JsonValue, nullable=False),  # canonical field -> {system_field, system_value, value, provenance}
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("first_accepted_at", UTCDateTime, nullable=True),  # earliest acceptance of an event it carries
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("replayed_as", BigInteger().with_variant(Integer(), "sqlite"), nullable=True),
    # the worker holding it in flight (host:pid:start); a worker whose heartbeat stopped is dead for everyone
    Column("claimed_by", String(160), nullable=True),
    Index("ix_deliveries_state", "state", "next_attempt_at"),
    Index("ix_deliveries_ticket", "ticket_id", "system"),
    # at most one delivery in progress per (ticket, system): writes to one record never overtake each other
    Index(
        "uq_deliveries_active", "ticket_id", "system", unique=True,
        sqlite_where=text("state IN ('pending', 'in_flight', 'retry_wait')"),
        postgresql_where=text("state IN ('pending', 'in_flight', 'retry_wait')"),
    ),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("delivery_id", BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("deliveries.id"),
           nullable=False, index=True),
    Column("number", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=False),
    Column("outcome", String(16), nullable=False),  # delivered | retry | dead
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("retry_after_seconds", Float, nullable=True),
)

delivered_values = Table(
    "delivered_values",
    metadata,
    Column("ticket_id", String(32), ForeignKey("tickets.ticket_id"), primary_key=True),
    Column("system", String(64), primary_key=True),
    Column("field", String(64), primary_key=True),
    Column("value", JsonValue, nullable=True),
    Column("delivered_at", UTCDateTime, nullable=False),
)

id_sequences = Table(
    "id_sequences",
    metadata,
    Column("day", String(8), primary_key=True),
    Column("business_code", String(6), primary_key=True),
    Column("last_value", Integer, nullable=False),
)

poll_watermarks = Table(
    "poll_watermarks",
    metadata,
    Column("system", String(64), primary_key=True),
    # the newest modified-at read from the system so far (its own clock); the next poll starts an
    # overlap window before it
    Column("watermark", UTCDateTime, nullable=True),
    Column("polled_at", UTCDateTime, nullable=False),  # when the last complete poll finished (hub's clock)
    Column("records", BigInteger().with_variant(Integer(), "sqlite"), nullable=False, default=0),
    Column("failed_at", UTCDateTime, nullable=True),  # the last poll that could not read the system
    Column("last_error", Text, nullable=True),  # why; cleared by the next complete poll
)

reconcile_runs = Table(
    "reconcile_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("state", String(16), nullable=False),  # running | done | failed
    Column("phase", String(16), nullable=False),  # read | compare | report (while running)
    Column("mode", String(16), nullable=False),  # full | incremental
    Column("dry_run", Boolean, nullable=False),
    Column("since", UTCDateTime, nullable=True),  # incremental: changes at or after this
    Column("systems", JsonValue, nullable=False),  # the systems asked for
    Column("tickets", JsonValue, nullable=False),  # only these tickets, if any
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),  # a running run whose heartbeat stopped was abandoned
    Column("finished_at", UTCDateTime, nullable=True),
    Column("ticket_count", Integer, nullable=False, default=0),
    Column("copy_count", Integer, nullable=False, default=0),
    Column("not_checked", JsonValue, nullable=False),  # [{system, reason}]
    Column("error", Text, nullable=True),
    # at most one run at a time: a second start finds this index taken
    Index("uq_reconcile_runs_running", "state", unique=True, sqlite_where=text("state = 'running'"),
          postgresql_where=text("state = 'running'")),
)

reconcile_items = Table(
    "reconcile_items",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("reconcile_runs.id"), nullable=False, index=True),
    Column("ticket_id", String(32), nullable=True, index=True),
    Column("kind", String(16), nullable=False),  # conflict | missed_change | drift | orphan | dangling | missing
    Column("system", String(64), nullable=True),
    Column("local_id", String(255), nullable=True),
    Column("field", String(64), nullable=True),
    Column("item", JsonValue, nullable=False),  # the report's item: values, winner, rule, reason, action ...
    Column("proposal", JsonValue, nullable=True),  # what repairing it does (applied now, or on acceptance)
    Column("awaiting_review", Boolean, nullable=False),
    Column("decision", JsonValue, nullable=True),  # an operator's accept / override
)

reconcile_parts = Table(
    "reconcile_parts",
    metadata,
    # a run's pieces of work, each done once whichever worker takes it: `read:<system>`, `compare:<n>`
    Column("run_id", Integer, ForeignKey("reconcile_runs.id"), primary_key=True),
    Column("part", String(80), primary_key=True),
    Column("state", String(16), nullable=False),  # pending | done | failed
    Column("detail", JsonValue, nullable=False),  # compare: its tickets; read failed: why
)

reconcile_copies = Table(
    "reconcile_copies",
    metadata,
    Column("run_id", Integer, ForeignKey("reconcile_runs.id"), primary_key=True),
    Column("system", String(64), primary_key=True),
    Column("local_id", String(255), primary_key=True),
    Column("ticket_id", String(32), nullable=True),  # None: an orphan
    Column("modified_at", UTCDateTime, nullable=True),
    Column("author", String(255), nullable=False),
    Column("fields", JsonValue, nullable=False),  # canonical field -> value, as the system's mapping reads it
    Column("fingerprint", LargeBinary(16), nullable=False),
    # covering for the hash-first check (compare_view): the fingerprints of a chunk's copies without their rows
    Index("ix_reconcile_copies_run_ticket_print", "run_id", "ticket_id", "system", "fingerprint"),
)

ticket_workflow = Table(
    "ticket_workflow",
    metadata,
    # the status workflow's input per ticket (hub.core.workflow): every status claimed, and the evidence marks
    Column("ticket_id", String(32), ForeignKey("tickets.ticket_id"), primary_key=True),
    Column("claims", JsonValue, nullable=False),  # [{value, provenance}]
    Column("marks", JsonValue, nullable=False),  # mark key -> earliest modified-at (ISO)
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # what makes two alerts the same alert (a refused claim's event, a dwell breach's state and entry): raised once
    Column("alert_key", String(255), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),  # no_evidence | not_allowed | not_owner | dwell | dwell_escalation
    Column("ticket_id", String(32), nullable=True, index=True),
    Column("status", String(32), nullable=True),
    Column("system", String(64), nullable=True),
    Column("author", String(255), nullable=True),
    Column("since", UTCDateTime, nullable=True),  # dwell: when the ticket entered the state
    Column("facts", JsonValue, nullable=False),
    Column("raised_at", UTCDateTime, nullable=False),
)

alert_sends = Table(
    "alert_sends",
    metadata,
    # one alert to one channel: sent through Celery with retries, like a delivery but never blocking a ticket
    Column("alert_id", BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("alerts.id"), primary_key=True),
    Column("channel", String(64), primary_key=True),
    Column("state", String(16), nullable=False),  # pending | sent | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("dispatched_at", UTCDateTime, nullable=True),  # when a send task was last published
    Column("sent_at", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Index("ix_alert_sends_state", "state", "next_attempt_at"),
)

worker_heartbeats = Table(
    "worker_heartbeats",
    metadata,
    # each worker process that claims deliveries, while it lives: its claims are reclaimed soon after it stops
    Column("worker_id", String(160), primary_key=True),  # host:pid:start
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
)
