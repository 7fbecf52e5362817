"""JSON shapes of the read side, shared by the HTTP API and the CLI."""

from __future__ import annotations

from typing import Any

from hub.core.canonical import format_datetime
from hub.core.model import FieldValue
from hub.store.tickets import AuditEntry, TicketView


def field_json(fv: FieldValue) -> dict[str, Any]:
    p = fv.provenance
    return {
        "value": fv.value,
        "provenance": {
            "system": p.system,
            "author": p.author,
            "author_rank": p.author_rank,
            "system_rank": p.system_rank,
            "modified_at": format_datetime(p.modified_at),
            "received_at": format_datetime(p.received_at),
            "event_id": p.event_id,
        },
    }


def ticket_json(view: TicketView) -> dict[str, Any]:
    status = view.fields.get("status")
    return {
        "ticket_id": view.ticket_id,
        "status": status.value if status else None,
        "created_at": format_datetime(view.created_at),
        "updated_at": format_datetime(view.updated_at),
        "fields": {name: field_json(fv) for name, fv in sorted(view.fields.items())},
        "xrefs": [{"system": x.system, "local_id": x.local_id} for x in view.xrefs],
    }


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "field": entry.field,
        "outcome": entry.outcome,
        "old_value": entry.old_value,
        "new_value": entry.new_value,
        "system": entry.system,
        "author": entry.author,
        "author_rank": entry.author_rank,
        "source_modified_at": format_datetime(entry.source_modified_at),
        "received_at": format_datetime(entry.received_at),
        "recorded_at": format_datetime(entry.recorded_at),
        "event_id": entry.event_id,
        "target_system": entry.target_system,
        "reason": entry.reason,
    }


def delivery_json(row: dict[str, Any], attempts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    data = {
        "id": row["id"],
        "ticket_id": row["ticket_id"],
        "system": row["system"],
        "state": row["state"],
        "fields": {name: f["system_value"] for name, f in (row["fields"] or {}).items()},
        "attempts": row["attempts"],
        "last_status": row["last_status"],
        "last_error": row["last_error"],
        "next_attempt_at": when(row["next_attempt_at"]),
        "created_at": when(row["created_at"]),
        "updated_at": when(row["updated_at"]),
        "delivered_at": when(row["delivered_at"]),
        "replayed_as": row["replayed_as"],
    }
    if attempts is not None:
        data["attempt_log"] = [
            {"number": a["number"], "outcome": a["outcome"], "status_code": a["status_code"], "error": a["error"],
             "started_at": when(a["started_at"]), "finished_at": when(a["finished_at"]),
             "retry_after_seconds": a["retry_after_seconds"]}
            for a in attempts
        ]
    return data


def when(value: Any) -> str | None:
    """A stored time as ISO 8601 (UTC), or None."""
    return format_datetime(value) if value is not None else None
