"""Polling systems that send no webhooks (Tryton): read what changed since the watermark, store each
changed record in the inbox as an event, then move the watermark.

Why no change is skipped: the poll starts an overlap window before the watermark, because a system
may stamp a change with the time its transaction started and commit it after newer changes were
already read (Tryton does). Why none is applied twice: each record version becomes the inbox event
`<local id>@<modified-at>`, so the overlap's repeats are duplicates the inbox refuses. The watermark
moves only after the records are stored, and only forward: a crash in the middle re-reads, never skips.

A record not yet linked to a ticket is linked when its mapping's `reference_field` holds a ticket's
global ID (e.g. a shipment whose reference is the ticket it ships).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Any, Protocol

import structlog

from hub.core.errors import UnknownSystem
from hub.core.mapping import lookup_path
from hub.core.ports import ConnectorError, SourceRecord
from hub.store.tickets import TicketRepository
from hub.usecases.context import Hub

log = structlog.get_logger("tickethub.polling")

BATCH = 500


class Pollable(Protocol):
    system: str

    def poll(self, since: datetime | None) -> Iterator[SourceRecord]: ...

    @staticmethod
    def record_payload(record: SourceRecord) -> dict[str, Any]: ...


@dataclass(frozen=True)
class PollResult:
    system: str
    seen: int  # records read, overlap included
    accepted: int  # new record versions stored as events
    linked: int  # records linked to a ticket by their reference field
    since: datetime | None
    watermark: datetime | None
    error: str | None = None  # the system could not be read (the watermark did not move)


def poll_system(hub: Hub, system: str, connector: Pollable,
                publish: Callable[[list[str]], None] | None = None, batch: int = BATCH) -> PollResult:
    """One poll of `system`. New events are published (`publish`) a batch at a time while the poll goes
    on, and marked dispatched, so that the relay does not publish them too; the sweeper republishes
    any whose message is lost."""
    config = hub.settings.systems.get(system)
    if config is None:
        raise UnknownSystem(f"no system `{system}` is configured")
    overlap = timedelta(seconds=config.poll_overlap_seconds)
    with hub.store.unit_of_work() as uow:
        watermark = uow.polls.watermark(system)
    since = watermark - overlap if watermark is not None else None
    reference_field = hub.mappings.systems[system].reference_field if system in hub.mappings.systems else None

    seen = accepted = linked = 0
    newest = watermark
    try:
        for chunk in _batched(connector.poll(since), batch):
            stored, tied = _store(hub, system, chunk, connector, reference_field, publish)
            seen, accepted, linked = seen + len(chunk), accepted + len(stored), linked + tied
            newest = max([r.modified_at for r in chunk] + ([newest] if newest else []))
    except ConnectorError as exc:  # unreachable, refused: what was stored stays; the next poll re-reads
        with hub.store.unit_of_work() as uow:
            uow.polls.fail(system, hub.clock(), str(exc))
            uow.commit()
        log.warning("system could not be polled", system=system, seen=seen, accepted=accepted, error=str(exc))
        return PollResult(system, seen, accepted, linked, since, watermark, error=str(exc))
    with hub.store.unit_of_work() as uow:
        uow.polls.advance(system, newest, hub.clock(), accepted)
        uow.commit()
    log.info("system polled", system=system, seen=seen, accepted=accepted, linked=linked,
             since=since.isoformat() if since else None, watermark=newest.isoformat() if newest else None)
    return PollResult(system, seen, accepted, linked, since, newest)


def _store(hub: Hub, system: str, chunk: list[SourceRecord], connector: Pollable, reference_field: str | None,
           publish: Callable[[list[str]], None] | None) -> tuple[list[str], int]:
    """One page in one transaction: its new events (published after the commit) and how many records it linked."""
    linked = 0
    now = hub.clock()
    with hub.store.unit_of_work() as uow:
        # each record version is one event, `<local id>@<modified-at>`: the overlap's repeats are duplicates
        versions = {f"{r.local_id}@{r.modified_at.isoformat()}": r for r in chunk}
        new_ids = uow.inbox.accept_many(system, {key: connector.record_payload(r) for key, r in versions.items()},
                                        now)
        if reference_field:
            for event_id in new_ids:
                record = versions[event_id.split(":", 1)[1]]
                linked += _link_by_reference(uow.tickets, system, record, reference_field, now)
        if new_ids and publish is not None:
            uow.inbox.mark_dispatched(new_ids, now)
        uow.commit()
    if new_ids and publish is not None:
        publish(new_ids)
    return new_ids, linked


def _link_by_reference(repository: TicketRepository, system: str, record: SourceRecord, reference_field: str,
                       now: datetime) -> int:
    if repository.find_by_xref(system, record.local_id) is not None:
        return 0
    found, value = lookup_path(record.fields, reference_field)
    if not found or not isinstance(value, str) or not value or not repository.exists(value):
        return 0
    repository.link(value, system, record.local_id, now)
    log.info("record linked by reference", ticket_id=value, system=system, local_id=record.local_id)
    return 1


def _batched(items: Iterable[SourceRecord], size: int) -> Iterator[list[SourceRecord]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
