"""Use cases: accept an inbound event into the inbox, then process it into the golden record.

Accepting only stores (so "accepted" means durably stored); processing runs in one transaction:
find or create the ticket through its cross-reference, lock it, apply the changes, save the record,
the audit entries and the outbox, and mark the event processed. Processing twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from functools import partial
from typing import Any

import structlog

from hub.core.apply import apply_changes
from hub.core.errors import InvalidValue, OrphanRecord, UnknownSystem
from hub.core.mapping import FieldMapping, lookup_path
from hub.core.model import ApplyResult, FieldChange, FieldValue, Outcome, Provenance, TicketState
from hub.core.plugin import ConnectorType
from hub.core.ports import Connector, ConnectorError, RecordNotFound, SourceRecord
from hub.core.workflow import Evidence, last_word
from hub.registry import connector_type
from hub.store.engine import retrying
from hub.store.unit_of_work import UnitOfWork
from hub.usecases.alerting import raise_refusals
from hub.usecases.context import Hub
from hub.usecases.ticket_ids import IdBlocks

log = structlog.get_logger("tickethub.services")


@dataclass(frozen=True)
class Processed:
    event_id: str
    state: str  # processed | orphan | rejected | (already <state>)
    ticket_id: str | None = None
    created: bool = False
    outcomes: tuple[Outcome, ...] = ()
    error: str | None = None
    deliveries: tuple[int, ...] = ()  # deliveries scheduled by this event, to publish


def read_records(hub: Hub, system: str, payload: Any,
                 connector_for: Callable[[str], Connector] | None) -> list[SourceRecord]:
    """The records an event is about. A notice that carries its record (generic, polled systems) is parsed;
    other notices name what changed, and the record is read from the system (HTTP, outside any transaction).
    The notice's time, when it has one, is the change's: a read knows only its newest activity's."""
    records = []
    for notice in _connector_type(hub, system).parse_notice(system, payload):
        if notice.record is not None:
            records.append(notice.record)
            continue
        if connector_for is None:
            raise ConnectorError(f"{system}'s notices name records to read, and no connector was given")
        for record in connector_for(system).read(notice.local_id, notice.kind):
            records.append(replace(record, modified_at=notice.modified_at) if notice.modified_at else record)
    return records


def _connector_type(hub: Hub, system: str) -> ConnectorType:
    if system not in hub.settings.systems:
        raise UnknownSystem(f"no system `{system}` is configured")
    return connector_type(hub.settings.systems[system].type)


def process_event(hub: Hub, event_id: str, connector_for: Callable[[str], Connector] | None = None) -> Processed:
    """Turn a stored event into changes on its ticket(s). Idempotent: a processed event is left alone.
    A system that cannot be read right now (ConnectorError) leaves the event for the sweeper to retry.

    A notice that carries its record (generic systems) is parsed, and applied, in one transaction (on
    PostgreSQL the event's row held, so that two workers given it apply it once; new tickets' IDs from the
    process's reserved block, see `_reserve_ids`). A notice that only names what changed is read from its
    system (HTTP) with no transaction open, and so is the fresh evidence a status claim may need; the apply
    then has a transaction of its own."""
    postgres = hub.engine.dialect.name == "postgresql"
    with hub.store.unit_of_work() as uow:
        event = uow.inbox.get(event_id, lock=postgres)
        if event is None:
            raise KeyError(f"no event {event_id}")
        if event["state"] != "received":
            return Processed(event_id, f"already {event['state']}", event["ticket_id"])
        if not _needs_read(hub, event["system"], connector_for):
            records = _records_or_error(hub, event, None)
            fresh = _asks_fresh(hub, records, connector_for)
            # on SQLite an ID applied in this transaction is taken by the apply itself, gap-free
            new_ids = {} if isinstance(records, Exception) or not (postgres or fresh) else _reserve_ids(
                hub, uow, records, event["received_at"])
            if not fresh:
                processed = _apply_event(hub, uow, event, records, new_ids)
                return _logged(processed, event["system"])
    if _needs_read(hub, event["system"], connector_for):
        records = _records_or_error(hub, event, connector_for)
        new_ids = {}
        if not isinstance(records, Exception):
            with hub.store.unit_of_work() as uow:
                new_ids = _reserve_ids(hub, uow, records, event["received_at"])
    if _asks_fresh(hub, records, connector_for):
        assert connector_for is not None and not isinstance(records, Exception)
        records = _with_fresh_evidence(hub, records, connector_for)
    with hub.store.unit_of_work() as uow:
        current = uow.inbox.get(event_id, lock=True)
        if current is None or current["state"] != "received":  # another worker got there first
            return Processed(event_id, f"already {current['state'] if current else 'gone'}")
        processed = _apply_event(hub, uow, event, records, new_ids)
    return _logged(processed, event["system"])


def process_events(hub: Hub, event_ids: Sequence[str], connector_for: Callable[[str], Connector] | None = None
                   ) -> list[Processed | Exception]:
    """Several events, as `process_event` would one by one: for each, in order, what it returned or the
    exception it raised (the event then stays received, for the sweeper).

    The events whose notices carry their records are applied together, up to SET_MAX to a transaction
    (`_apply_set`): their rows read, locked and written a statement per table for them all, not a few statements
    each. If that transaction fails it is rolled back and each event runs alone, so that one event's failure is
    its own. The rest (records read from their system over HTTP, a status claim whose evidence is asked for
    afresh, a record of an unknown system or linked to no ticket) are processed one by one afterwards.
    Measured (bench/pipeline.py, a backlog of 5,000 new tickets drained by one events worker): on PostgreSQL
    289-365 events/s one by one, 781-825 together with a statement a row, 1,118-1,504 with a statement a table
    (`hub.store.dialect.insert_many`); on SQLite 998/s several to a transaction, each event's statements its own,
    1,669/s 32 together (1,395 at 8, see SET_MAX). In-process on PostgreSQL (by hand, five subscribers), 20-32 at
    once cost the hub 0.36-0.47 ms of CPU per event and PostgreSQL 0.38-0.48 ms; one at a time, the hub 2.6-2.7 ms:
    at a few events a second the statements' fixed cost is the events worker's cost."""
    results: dict[str, Processed | Exception] = {}
    ids = list(dict.fromkeys(event_ids))
    most = SET_MAX[hub.engine.dialect.name]
    for start in range(0, len(ids), most):
        results.update(_process_set(hub, ids[start:start + most], connector_for))
    out: list[Processed | Exception] = []
    for event_id in event_ids:
        if event_id not in results:
            results[event_id] = _process_retrying(hub, event_id, connector_for)
        out.append(results[event_id])
    return out


# Events applied in one transaction by process_events, at most. On SQLite the transaction holds the one write lock
# that intake's inserts wait for (~0.45 ms an event): bench/pipeline.py, embedded, one run each, 32 drained 1,669
# events/s with acknowledgement p99 at 500/s 25 ms; 8 drained 1,395/s at 18 ms.
SET_MAX = {"sqlite": 8, "postgresql": 32}


def _process_set(hub: Hub, event_ids: Sequence[str], connector_for: Callable[[str], Connector] | None
                 ) -> dict[str, Processed]:
    """`_apply_set`, again if PostgreSQL aborted it to break a deadlock; {} if it failed otherwise (each event is
    then processed alone)."""
    try:
        done = retrying(partial(_apply_set, hub, event_ids, connector_for))
    except Exception as exc:  # noqa: BLE001 (each runs alone next, and reports its own error)
        log.warning("events processed one by one: applying them together failed", event_ids=list(event_ids),
                    error=type(exc).__name__)
        return {}
    for processed, system in done.values():
        _logged(processed, system)
    return {event_id: processed for event_id, (processed, _) in done.items()}


def _process_retrying(hub: Hub, event_id: str, connector_for: Callable[[str], Connector] | None
                      ) -> Processed | Exception:
    """`process_event`, run again when PostgreSQL aborted it to break a deadlock (`retrying`; it is idempotent,
    though an ID it reserved before the abort is skipped, as any unused one); any other error is returned."""
    try:
        return retrying(partial(process_event, hub, event_id, connector_for))
    except Exception as exc:  # noqa: BLE001 (the caller reports it; the event stays received)
        return exc


def _apply_set(hub: Hub, event_ids: Sequence[str], connector_for: Callable[[str], Connector] | None
               ) -> dict[str, tuple[Processed, str]]:
    """In one transaction: the events among `event_ids` already processed, and those whose notices carry their
    records, applied (each event's row held on PostgreSQL, so that two workers given one apply it once); per
    event, what became of it and its system. The others are left out, for `process_event`."""
    postgres = hub.engine.dialect.name == "postgresql"
    done: dict[str, tuple[Processed, str]] = {}
    batch: list[tuple[Mapping[str, Any], list[SourceRecord] | Exception]] = []
    with hub.store.unit_of_work() as uow:
        events = uow.inbox.get_many(event_ids, lock=postgres)
        for event_id in event_ids:
            event = events.get(event_id)
            if event is None or event["system"] not in hub.settings.systems:
                continue
            if event["state"] != "received":
                done[event_id] = (Processed(event_id, f"already {event['state']}", event["ticket_id"]),
                                  event["system"])
            elif not _needs_read(hub, event["system"], connector_for):
                records = _records_or_error(hub, event, None)
                if not _asks_fresh(hub, records, connector_for):
                    batch.append((event, records))
        done.update(_apply_all(hub, uow, batch))
        uow.commit()
    return done


def _apply_all(hub: Hub, uow: UnitOfWork, batch: Sequence[tuple[Mapping[str, Any], list[SourceRecord] | Exception]]
               ) -> dict[str, tuple[Processed, str]]:
    """`_apply_event` for each of `batch` (events with their parsed records) in the caller's transaction, in a few
    statements for them all: links looked up in one query, new tickets opened in one, the tickets locked (in ID
    order) and loaded in one per table, each record weighed in turn on its ticket as the ones before left it,
    and what changed written, the events marked and their deliveries scheduled a statement each. An event with a
    record of an unknown system or linked to no ticket that it cannot open is left out (for `process_event`)."""
    systems, now = hub.settings.systems, hub.clock()
    done: dict[str, tuple[Processed, str]] = {}
    marks: list[tuple[str, str, str | None, str | None]] = []
    parsed: list[tuple[Mapping[str, Any], list[SourceRecord]]] = []
    for event, records in batch:
        if isinstance(records, Exception):
            refused = _not_applied(event, records)
            marks.append((refused.event_id, refused.state, None, refused.error))
            done[refused.event_id] = (refused, event["system"])
        else:
            parsed.append((event, records))
    first_seen: dict[tuple[str, str], datetime] = {}
    for event, records in parsed:
        for record in records:
            first_seen.setdefault((record.system, record.local_id), event["received_at"])
    ticket_of = uow.tickets.find_xrefs(list(first_seen))
    kept = [(event, records) for event, records in parsed
            if all(r.system in systems and r.system in hub.mappings.systems
                   and ((r.system, r.local_id) in ticket_of or systems[r.system].origin) for r in records)]
    new = [key for key in dict.fromkeys((r.system, r.local_id) for _, records in kept for r in records)
           if key not in ticket_of]
    new_ids = _new_ids(hub, uow, [(key, first_seen[key]) for key in new])
    # linked in key order: two workers opening overlapping sets wait for each other instead of deadlocking
    ticket_of.update(uow.tickets.create_linked([(new_ids[key], *key, first_seen[key]) for key in sorted(new)],
                                               hub.settings.hub.business_code))
    created = {new_ids[key] for key in new if ticket_of[key] == new_ids[key]}
    existing = {ticket_of[(r.system, r.local_id)] for _, records in kept for r in records} - created
    uow.tickets.lock_many(sorted(existing))
    states = uow.tickets.load_states(sorted(existing)) | {ticket_id: TicketState(ticket_id) for ticket_id in created}
    before = dict(states)
    outcomes: dict[str, list[Outcome]] = {ticket_id: [] for ticket_id in states}
    touched: dict[str, list[str]] = {}  # event -> the tickets its records touched, in order
    for event, records in kept:
        event_id, processed = event["event_id"], Processed(event["event_id"], "processed")
        for record in records:
            ticket_id = ticket_of[(record.system, record.local_id)]
            result = _weigh(hub, record, states[ticket_id], event_id, event["received_at"])
            states[ticket_id] = result.state
            outcomes[ticket_id].extend(result.outcomes)
            raise_refusals(hub, uow, ticket_id, result.outcomes, now)
            opened = ticket_id in created and not any(ticket_id in t for t in touched.values())
            touched.setdefault(event_id, []).append(ticket_id)
            processed = Processed(event_id, "processed", processed.ticket_id or ticket_id,
                                  processed.created or opened, processed.outcomes + result.outcomes)
        marks.append((event_id, "processed", processed.ticket_id, None))
        done[event_id] = (processed, event["system"])
    uow.tickets.save_many([(before[t], states[t], outcomes[t], t in created) for t in states], now)
    uow.inbox.mark_many(marks, now)
    scheduled = uow.deliveries.schedule_written(  # a pending delivery for each system the outbox now owes a write
        [(t, system) for t, state in states.items() for system, writes in state.pending.items() if writes], now)
    for event_id, tickets in touched.items():  # a ticket's deliveries are published with the first event on it
        deliveries = [d for ticket_id in dict.fromkeys(tickets) for d in scheduled.pop(ticket_id, [])]
        processed, system = done[event_id]
        done[event_id] = (replace(processed, deliveries=tuple(deliveries)), system)
    return done


def _new_ids(hub: Hub, uow: UnitOfWork, wanted: Sequence[tuple[tuple[str, str], datetime]]
             ) -> dict[tuple[str, str], str]:
    """A global ID for each record that opens a ticket (first seen on the given day): on PostgreSQL from this
    process's block (`hub.usecases.ticket_ids`); on SQLite taken in `uow`, the day's in one statement, gap-free
    and in order."""
    code = hub.settings.hub.business_code
    by_day: dict[date, list[tuple[str, str]]] = {}
    for key, received_at in wanted:
        by_day.setdefault(received_at.date(), []).append(key)
    blocks = hub.shared("ticket_ids", lambda: IdBlocks(hub.store)) if hub.engine.dialect.name == "postgresql" else None
    ids: dict[tuple[str, str], str] = {}
    for day, keys in by_day.items():
        taken = (blocks.take_many(day, code, len(keys)) if blocks
                 else uow.tickets.allocate_ticket_ids(day, code, len(keys)))
        ids.update(zip(keys, taken, strict=True))
    return ids


def _fresh_evidence(hub: Hub, record: SourceRecord) -> list[Evidence]:
    """The evidence to ask for afresh before weighing the status `record` claims (e.g. the courier's word on a
    delivery before "resolved")."""
    mapping = hub.mappings.systems.get(record.system)
    field_mapping = mapping.fields.get("status") if mapping is not None else None
    if hub.workflow is None or field_mapping is None or not field_mapping.reads:
        return []
    found, raw = lookup_path(record.fields, field_mapping.system_field)
    if not found:
        return []
    try:
        rule = hub.workflow.states.get(str(field_mapping.to_canonical(raw)))
    except InvalidValue:
        return []
    return [e for e in rule.evidence if e.fresh_seconds and e.source] if rule is not None else []


def _asks_fresh(hub: Hub, records: list[SourceRecord] | Exception,
                connector_for: Callable[[str], Connector] | None) -> bool:
    return (connector_for is not None and not isinstance(records, Exception)
            and any(_fresh_evidence(hub, r) for r in records))


def _with_fresh_evidence(hub: Hub, records: list[SourceRecord], connector_for: Callable[[str], Connector]
                         ) -> list[SourceRecord]:
    """`records`, preceded by what the evidence's systems say now, where the hub's last word from them is
    older than the workflow allows (read over HTTP, no transaction open). A system that cannot be asked is
    logged and the claim is weighed on what is known."""
    now, wanted = hub.clock(), []
    with hub.store.unit_of_work() as uow:
        for record in records:
            evidence = _fresh_evidence(hub, record)
            ticket_id = uow.tickets.find_by_xref(record.system, record.local_id) if evidence else None
            if ticket_id is None:
                continue
            marks = uow.tickets.load_state(ticket_id).marks
            links = uow.tickets.xrefs_of([ticket_id])[ticket_id]
            for e in evidence:
                last = last_word(e, marks)
                if last is None or (now - last).total_seconds() > (e.fresh_seconds or 0):
                    wanted += [(ticket_id, e.source, local_id) for local_id in links.get(e.source or "", [])]
    fresh: list[SourceRecord] = []
    for ticket_id, system, local_id in dict.fromkeys(wanted):
        assert system is not None
        try:
            fresh.extend(connector_for(system).read(local_id))
            log.info("evidence asked for afresh", ticket_id=ticket_id, system=system, local_id=local_id)
        except ConnectorError as exc:
            log.warning("evidence could not be asked for", ticket_id=ticket_id, system=system, error=str(exc))
    return fresh + records


def _needs_read(hub: Hub, system: str, connector_for: Callable[[str], Connector] | None) -> bool:
    return connector_for is not None and not _connector_type(hub, system).notices_carry_records


def _records_or_error(hub: Hub, event: Mapping[str, Any], connector_for: Callable[[str], Connector] | None
                      ) -> list[SourceRecord] | Exception:
    try:
        return read_records(hub, event["system"], event["payload"], connector_for)
    except (InvalidValue, ConnectorError) as exc:
        if isinstance(exc, ConnectorError) and not isinstance(exc, RecordNotFound):
            log.warning("event waits: system unreadable", system=event["system"], event_id=event["event_id"],
                        error=str(exc))
            raise
        return exc


def _apply_event(hub: Hub, uow: Any, event: Mapping[str, Any], records: list[SourceRecord] | Exception,
                 new_ids: Mapping[tuple[str, str], str]) -> Processed:
    """Apply the event's records, mark it, schedule deliveries, and commit (one transaction)."""
    event_id, now = event["event_id"], hub.clock()
    ticket_ids: list[str] = []
    try:
        if isinstance(records, Exception):
            raise records
        processed = Processed(event_id, "processed")
        for record in records:
            one = _ingest(hub, uow, record, event_id, event["received_at"], now, new_ids)
            ticket_ids.append(one.ticket_id or "")
            processed = Processed(event_id, "processed", processed.ticket_id or one.ticket_id,
                                  processed.created or one.created, processed.outcomes + one.outcomes)
    except (InvalidValue, OrphanRecord, RecordNotFound) as exc:
        refused = _not_applied(event, exc)
        uow.inbox.mark(event_id, refused.state, now, error=refused.error)
        uow.commit()
        return refused
    uow.inbox.mark(event_id, "processed", now, ticket_id=processed.ticket_id)
    scheduled = []
    for ticket_id in dict.fromkeys(t for t in ticket_ids if t):
        scheduled.extend(uow.deliveries.schedule(ticket_id, now))
    uow.commit()
    return replace(processed, deliveries=tuple(scheduled))


def _not_applied(event: Mapping[str, Any], exc: Exception) -> Processed:
    """What becomes of an event whose records could not be applied (logged): orphan (a record linked to no
    ticket, or gone from its system) or rejected (a notice that does not parse)."""
    state = "orphan" if isinstance(exc, (OrphanRecord, RecordNotFound)) else "rejected"
    log.warning("event not applied", system=event["system"], event_id=event["event_id"], state=state, error=str(exc))
    return Processed(event["event_id"], state, error=str(exc))


def _logged(processed: Processed, system: str) -> Processed:
    if processed.state != "processed":
        return processed
    for outcome in processed.outcomes:
        if outcome.kind not in ("applied", "duplicate"):
            log.info("change rejected", ticket_id=processed.ticket_id, system=outcome.change.provenance.system,
                     event_id=processed.event_id, field=outcome.change.field, outcome=outcome.kind,
                     target=outcome.target)
    log.info("event processed", ticket_id=processed.ticket_id, system=system, event_id=processed.event_id,
             created=processed.created, applied=sum(o.kind == "applied" for o in processed.outcomes))
    return processed


def _ingest(hub: Hub, uow: Any, record: SourceRecord, event_id: str, received_at: datetime,
            now: datetime, new_ids: Mapping[tuple[str, str], str]) -> Processed:
    mapping = hub.mappings.systems.get(record.system)
    if mapping is None:
        raise UnknownSystem(f"no system `{record.system}` is configured")
    created = False
    if hub.settings.systems[record.system].origin:  # it looks the link up first
        ticket_id, created = uow.tickets.get_or_create(
            record.system, record.local_id, hub.settings.hub.business_code, received_at,
            ticket_id=new_ids.get((record.system, record.local_id)),
        )
    else:
        found = uow.tickets.find_by_xref(record.system, record.local_id)
        if found is None:
            raise OrphanRecord(
                f"{record.system} record {record.local_id} is linked to no ticket, and {record.system}"
                " is not a ticket origin"
            )
        ticket_id = found
    if not created:  # a ticket created in this transaction is already ours, and empty
        uow.tickets.lock(ticket_id)
    before = TicketState(ticket_id) if created else uow.tickets.load_state(ticket_id)
    result = _weigh(hub, record, before, event_id, received_at)
    uow.tickets.save(before, result, now, created=created)
    raise_refusals(hub, uow, ticket_id, result.outcomes, now)
    return Processed(event_id, "processed", ticket_id, created, result.outcomes)


def _weigh(hub: Hub, record: SourceRecord, before: TicketState, event_id: str, received_at: datetime
           ) -> ApplyResult:
    """What `record` does to its ticket, now `before` (no I/O): the translated changes applied, its own
    echoes of the hub's writes and the values that could not be translated among the outcomes."""
    mapping = hub.mappings.systems[record.system]
    provenance = Provenance(
        system=record.system, author=record.author, author_rank=mapping.author_rank(record.author),
        system_rank=mapping.rank, modified_at=record.modified_at, received_at=received_at, event_id=event_id,
    )
    changes, untranslatable = [], []
    for name, field_mapping in mapping.fields.items():
        found, raw = lookup_path(record.fields, field_mapping.system_field)
        if not found:
            continue
        if _holds_what_the_hub_writes(field_mapping, record.system, before.fields.get(name), raw):
            # its own code for the golden value: agreement, not an edit
            changes.append(FieldChange(name, before.fields[name].value, provenance))
            continue
        try:
            changes.append(FieldChange(name, field_mapping.to_canonical(raw), provenance))
        except InvalidValue as exc:
            untranslatable.append((FieldChange(name, _jsonable(raw), provenance), str(exc)))

    changes, echoes = _split_hub_echo(hub, record, changes, before)
    result = apply_changes(before, changes, hub.mappings, hub.workflow)
    rejected = tuple(
        Outcome("invalid_value", change, before.fields.get(change.field), reason) for change, reason in untranslatable
    )
    return ApplyResult(result.state, echoes + rejected + result.outcomes)


def _reserve_ids(hub: Hub, uow: Any, records: list[SourceRecord], received_at: datetime
                 ) -> dict[tuple[str, str], str]:
    """Global IDs for records that may open a ticket: on PostgreSQL from this process's block
    (`hub.usecases.ticket_ids`), so that the day's counter row is not written, and held, in every new ticket's
    apply (which serialised every new ticket); on SQLite one by one in `uow`, committed here, for an apply
    that comes later in a transaction of its own. An ID not used after all (another worker linked the record
    first) is skipped, never reused."""
    wanted = list(dict.fromkeys((r.system, r.local_id) for r in records
                                if r.system in hub.settings.systems and hub.settings.systems[r.system].origin))
    linked = uow.tickets.find_xrefs(wanted)
    reserved = _new_ids(hub, uow, [(key, received_at) for key in wanted if key not in linked])
    if reserved and hub.engine.dialect.name == "sqlite":
        uow.commit()
    return reserved


def _holds_what_the_hub_writes(field_mapping: FieldMapping, system: str, current: FieldValue | None, raw: Any) -> bool:
    """A field the hub only writes there (it does not read it) holds the golden value in the system's own
    terms: e.g. the courier's `com` code for the WMS's carrier name. Reading it back would refuse it as a
    non-owner's edit on every notice."""
    if field_mapping.reads or current is None or current.value is None:
        return False
    try:
        return bool(field_mapping.to_system(current.value, system) == raw)
    except InvalidValue:
        return False


def _jsonable(raw: Any) -> Any:
    return raw if isinstance(raw, (str, int, float, bool, type(None))) else repr(raw)


def _split_hub_echo(hub: Hub, record: SourceRecord, changes: list[FieldChange],
                    before: TicketState) -> tuple[list[FieldChange], tuple[Outcome, ...]]:
    """A version last written by the hub's own user: (changes still to apply, echoes).

    The fields the hub writes there are its echo, recognised by author because the report may arrive
    before the write has even returned. A field the system owns is never written by the hub: if it differs
    from the golden record, someone changed it before the hub's write, in the same version (a polled system
    keeps one author per version), and it is applied; if it agrees, it is part of the echo."""
    hub_author = hub.settings.systems[record.system].hub_author
    if not hub_author or record.author != hub_author:
        return changes, ()
    fields = hub.mappings.systems[record.system].fields
    kept, echoes = [], []
    for change in changes:
        current = before.fields.get(change.field)
        if fields[change.field].owner and (current is None or current.value != change.value):
            kept.append(change)
        else:
            echoes.append(Outcome("echo", change, current, f"written by the hub's own user {hub_author}"))
    return kept, tuple(echoes)
