"""JSON shapes of the read side, shared by the HTTP API and the CLI."""

from __future__ import annotations

from typing import Any

from hub.canonical import format_datetime
from hub.model import FieldValue
from hub.store.repository import AuditEntry, TicketView


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
