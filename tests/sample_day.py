"""A sample ticket's life, played in process through the real intake path (inbox, apply, store): what `ticket
show` and the history have to print."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from rich.console import Console

from hub.bootstrap import Hub
from hub.usecases.ingest import accept_event
from hub.usecases.process import process_event


def sample_events(start: Any) -> list[tuple[str, str, dict[str, Any], str]]:
    """(system, event id, payload, what it shows), in the order they arrive."""

    def at(minutes: int) -> str:
        return (start + timedelta(minutes=minutes)).isoformat()

    return [
        ("crm", "demo-1", {"local_id": "CASE-1001", "modified_at": at(0), "author": "agent@example.com", "fields": {
            "contact": {"name": "Ada Lovelace", "phone": "+44 20 7946 0000", "email": "ada@example.com",
                        "address": "12 Analytical Row, London"},
            "case": {"serial_number": "SN-88231", "product": "Difference Engine 2",
                     "description": "Crank jams at column 4", "status": "New"}}},
         "the CRM opens a case: the hub assigns a global ticket ID"),
        ("erp", "demo-2", {"local_id": "SO-0000", "modified_at": at(2), "author": "accounting",
                           "fields": {"sale": {"total_amount": "10"}}},
         "an ERP order linked to no ticket: an orphan, reported, not applied"),
        ("erp", "demo-2b", {"local_id": "SO-5521", "modified_at": at(5), "author": "accounting",
                            "fields": {"sale": {"total_amount": "149.90", "parts_reserved": True}}},
         "the ERP order for the ticket reports billing and reserved parts"),
        ("mes", "demo-2c", {"local_id": "MO-77", "modified_at": at(8), "author": "shopfloor-lead",
                            "fields": {"production": {"percent_done": 40}}},
         "the MES reports repair progress"),
        ("crm", "demo-3", {"local_id": "CASE-1001", "modified_at": at(10), "author": "agent@example.com",
                           "fields": {"case": {"status": "Assigned"}}},
         "the CRM assigns the case"),
        ("crm", "demo-4", {"local_id": "CASE-1001", "modified_at": at(20), "author": "supervisor@example.com",
                           "fields": {"contact": {"phone": "call me after 5"}}},
         "a phone number the ERP refuses: kept in the record, withheld from the ERP"),
        ("crm", "demo-5", {"local_id": "CASE-1001", "modified_at": at(15), "author": "agent@example.com",
                           "fields": {"contact": {"phone": "+44 20 7946 0001"}}},
         "an older edit arriving late: stale, the newer value stays"),
        ("crm", "demo-6", {"local_id": "CASE-1001", "modified_at": at(25), "author": "agent@example.com",
                           "fields": {"case": {"repair_progress": 90}}},
         "the CRM edits production progress, which only the MES owns: rejected"),
        ("crm", "demo-1", {"local_id": "CASE-1001", "modified_at": at(0), "author": "agent@example.com",
                           "fields": {}},
         "the first webhook delivered again: a duplicate, nothing changes"),
    ]


def play_sample(hub: Hub, console: Console) -> str:
    start = hub.clock().replace(microsecond=0) - timedelta(hours=1)
    ticket_id = None
    for system, external_id, payload, story in sample_events(start):
        event_id, duplicate = accept_event(hub, system, external_id, payload)
        if duplicate:
            console.print(f"[dim]{system:>4}[/] {story}: [yellow]duplicate[/] of {event_id}")
            continue
        result = process_event(hub, event_id)
        if ticket_id is None and result.ticket_id:
            ticket_id = result.ticket_id
            _link_downstream_records(hub, ticket_id)
        kinds = ", ".join(sorted({o.kind + (f"→{o.target}" if o.target else "") for o in result.outcomes}))
        console.print(f"[dim]{system:>4}[/] {story}: [bold]{result.state}[/] {kinds} {result.error or ''}")
    if ticket_id is None:  # a re-run on the same database: every event was a duplicate
        with hub.store.unit_of_work() as uow:
            ticket_id = uow.tickets.find_by_xref("crm", "CASE-1001")
    assert ticket_id is not None
    return ticket_id


def _link_downstream_records(hub: Hub, ticket_id: str) -> None:
    """The ERP order and MES production order of the ticket, linked directly (no deliveries run here)."""
    with hub.store.unit_of_work() as uow:
        now = hub.clock()
        uow.tickets.link(ticket_id, "erp", "SO-5521", now)
        uow.tickets.link(ticket_id, "mes", "MO-77", now)
        uow.commit()
