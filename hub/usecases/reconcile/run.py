"""A reconciliation run, in parts that any process may take, each done once:

1. `start_run`: at most one run at a time (the run row is the lock); incremental since the last finished run
   (minus the clock-skew tolerance and a minute), or full (`--full`, weekly, or the first run). One `read`
   part per system;
2. `read_part`: one system's records through its connector's bulk read, page by page, each mapped to canonical
   fields, fingerprinted and stored with its ticket (none: an orphan). A system that cannot be read (no
   export, refused, still failing after the page retries) is "not checked", and what was read of it is
   dropped, so it is never compared in half. A part redone (its worker died) starts the system again;
3. `plan_compare` (by whoever finished the last read): the tickets in chunks, one `compare` part each;
4. `compare_part`: per (ticket, system) the fingerprints first, deepdiff only where they differ; each
   differing field decided once (`discrepancies`); the chunk's repairs, its report items and the part's
   completion commit in one transaction, so a chunk redone after a crash is never applied twice;
5. `finish_run` (by whoever finished the last chunk): orphans, records deleted in a system (full runs), and
   the run closed with its counts.

`run_reconcile` does them in turn in one process (the CLI); on a team deployment the Celery tasks in
`hub.tasks` spread the read and compare parts over every worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import islice
from typing import Any, Protocol

import structlog

from hub.core.errors import InvalidValue, TickethubError
from hub.core.mapping import MappingSet
from hub.core.ports import BulkReadUnavailable, Connector, ConnectorError
from hub.usecases.context import Hub
from hub.usecases.reconcile.decisions import carry_out
from hub.usecases.reconcile.discrepancies import CopyReader, Found, TicketCheck
from hub.usecases.reconcile.reports import StoredReport, report_dir, stored_report, write_reports
from reconcile.fingerprint import fingerprint

log = structlog.get_logger("tickethub.reconcile")

READ_BATCH = 2000  # copies stored per transaction while reading a system


class Progress(Protocol):
    """What a run reports as it goes (the CLI draws it as a progress bar; `NO_PROGRESS` ignores it)."""

    def read(self, system: str, records: int) -> None: ...

    def compared(self, tickets: int, copies: int, discrepancies: int) -> None: ...


class _Silent:
    def read(self, system: str, records: int) -> None:
        pass

    def compared(self, tickets: int, copies: int, discrepancies: int) -> None:
        pass


NO_PROGRESS: Progress = _Silent()


@dataclass(frozen=True)
class ReconcileRequest:
    full: bool = False  # every record, and records deleted in a system found as dangling links
    since: datetime | None = None  # only what changed at or after this (incremental); default: last run
    systems: tuple[str, ...] = ()  # only these systems (default: every configured one)
    tickets: tuple[str, ...] = ()  # only these tickets
    dry_run: bool = False


@dataclass
class RunOutcome:
    run_id: int
    report: StoredReport  # its items stay in the store, read a page at a time as its files are written
    deliveries: list[int] = field(default_factory=list)  # to publish


def run_reconcile(hub: Hub, connector_for: Callable[[str], Connector], request: ReconcileRequest,
                  progress: Progress = NO_PROGRESS) -> RunOutcome:
    """One whole run in this process; raises RunInProgress if another is going on."""
    run_id, systems = start_run(hub, request)
    deliveries: list[int] = []
    try:
        for system in systems:
            read_part(hub, connector_for, run_id, system, progress)
        for part in plan_compare(hub, run_id):
            delivered, _ = compare_part(hub, run_id, part, progress)
            deliveries.extend(delivered)
    except Exception as exc:
        log.exception("reconciliation failed", run_id=run_id)
        finish_run(hub, run_id, f"{type(exc).__name__}: {exc}"[:2000])
        raise TickethubError(f"reconciliation run {run_id} failed: {exc}") from exc
    return RunOutcome(run_id, finish_run(hub, run_id), deliveries)


def scheduled_run(hub: Hub, connector_for: Callable[[str], Connector]) -> RunOutcome:
    """The nightly run in one process: full on [reconcile] full_on (in the schedule's time zone), else
    incremental; its report files are written to the report folder."""
    outcome = run_reconcile(hub, connector_for, ReconcileRequest(full=full_tonight(hub)))
    write_reports(outcome.report, report_dir(hub))
    return outcome


def full_tonight(hub: Hub) -> bool:
    from zoneinfo import ZoneInfo

    settings = hub.settings.reconcile
    zone = ZoneInfo(settings.timezone) if settings.timezone else None
    return hub.clock().astimezone(zone).strftime("%a").lower().startswith(settings.full_on[:3].lower())


def start_run(hub: Hub, request: ReconcileRequest) -> tuple[int, list[str]]:
    """Open a run (RunInProgress if one is going on) with a read part per system: (run, systems)."""
    unknown = sorted(set(request.systems) - set(hub.settings.systems))
    if unknown:
        raise InvalidValue(f"no system {', '.join(f'`{s}`' for s in unknown)} is configured; known: "
                           f"{', '.join(sorted(hub.settings.systems))}")
    systems = list(request.systems) or sorted(hub.settings.systems)
    since = request.since
    with hub.store.unit_of_work() as uow:
        if since is None and not request.full and not request.tickets:
            last = uow.reconcile.last_finished()
            if last is not None:  # the skew and a minute of margin: a change stamped a bit early is not missed
                since = last["started_at"] - timedelta(seconds=hub.settings.hub.clock_skew_seconds + 60)
        mode = "incremental" if since is not None else "full"
        run_id = uow.reconcile.start(mode, request.dry_run, since, systems, request.tickets, hub.clock())
        uow.reconcile.add_parts(run_id, {f"read:{system}": {} for system in systems})
        uow.commit()
    log.info("reconciliation started", run_id=run_id, mode=mode, since=since.isoformat() if since else None,
             systems=systems, dry_run=request.dry_run)
    return run_id, systems


@dataclass
class _RunView:
    """A run as a part sees it (any process): what was asked, and the systems read so far."""

    run_id: int
    since: datetime | None
    systems: list[str]
    tickets: list[str]
    dry_run: bool
    checked: list[str]

    @classmethod
    def load(cls, hub: Hub, run_id: int) -> _RunView:
        with hub.store.unit_of_work() as uow:
            run = uow.reconcile.run(run_id)
            if run is None:
                raise LookupError(f"no reconciliation run {run_id}")
            done = [p["part"].split(":", 1)[1] for p in uow.reconcile.parts(run_id, "read:") if p["state"] == "done"]
        return cls(run_id, run["since"], run["systems"], run["tickets"], run["dry_run"], done)

    def check(self, hub: Hub) -> TicketCheck:
        return TicketCheck(compared_mappings(hub), self.checked, hub.settings.hub.clock_skew_seconds, self.dry_run,
                           self.tickets)


def read_part(hub: Hub, connector_for: Callable[[str], Connector], run_id: int, system: str,
              progress: Progress = NO_PROGRESS) -> bool:
    """Read `system` into the run's snapshot. True for the caller that finished the read phase (it then plans
    the comparison); a part already done is not read again."""
    run = _RunView.load(hub, run_id)
    name = f"read:{system}"
    with hub.store.unit_of_work() as uow:
        part = uow.reconcile.part(run_id, name)
    if part is not None and part["state"] == "pending":
        state, detail = _read(hub, connector_for, run, system, progress)
        with hub.store.unit_of_work() as uow:
            uow.reconcile.finish_part(run_id, name, state, detail)
            uow.commit()
    return _phase_over(hub, run_id, "read", "compare")


def _phase_over(hub: Hub, run_id: int, phase: str, following: str) -> bool:
    """When no part of `phase` is pending, move the run to `following`: True for the one caller that did."""
    with hub.store.unit_of_work() as uow:
        if uow.reconcile.pending(run_id, f"{phase}:"):
            return False
        advanced = uow.reconcile.advance(run_id, phase, following)
        uow.commit()
    return advanced


def _read(hub: Hub, connector_for: Callable[[str], Connector], run: _RunView, system: str,
          progress: Progress) -> tuple[str, dict[str, Any]]:
    """(state, detail) of reading one system: done, or failed with the reason it is not checked."""
    mapping = compared_mappings(hub).systems.get(system)
    with hub.store.unit_of_work() as uow:  # a part redone after a crash starts the system again
        uow.reconcile.drop_copies(run.run_id, system)
        uow.commit()
    if mapping is None:
        return "failed", {"reason": "its mapping is not loaded"}
    read = 0
    translate = CopyReader(mapping)
    only = set(run.tickets)
    try:
        records = iter(connector_for(system).read_all(run.since))
        while chunk := list(islice(records, READ_BATCH)):
            with hub.store.unit_of_work() as uow:
                links = uow.reconcile.links(system, [r.local_id for r in chunk])
                rows = []
                for record in chunk:
                    ticket_id = links.get(record.local_id)
                    if only and ticket_id not in only:
                        continue
                    fields = translate(record)
                    rows.append({"local_id": record.local_id, "ticket_id": ticket_id, "modified_at": record.modified_at,
                                 "author": record.author, "fields": fields, "fingerprint": fingerprint(fields)})
                uow.reconcile.add_copies(run.run_id, system, rows)
                uow.reconcile.heartbeat(run.run_id, hub.clock())
                uow.commit()
            read += len(chunk)
            progress.read(system, len(chunk))
    except BulkReadUnavailable as exc:
        return _not_checked(run.run_id, system, str(exc))
    except (ConnectorError, TickethubError) as exc:
        with hub.store.unit_of_work() as uow:  # never compared in half
            uow.reconcile.drop_copies(run.run_id, system)
            uow.commit()
        return _not_checked(run.run_id, system, f"could not be read: {exc}")
    log.info("system read", run_id=run.run_id, system=system, records=read)
    return "done", {"records": read}


def _not_checked(run_id: int, system: str, reason: str) -> tuple[str, dict[str, Any]]:
    log.warning("system not checked", run_id=run_id, system=system, reason=reason)
    return "failed", {"reason": reason}


def plan_compare(hub: Hub, run_id: int) -> list[str]:
    """The compare parts (chunks of tickets), created once; their names."""
    run = _RunView.load(hub, run_id)
    with hub.store.unit_of_work() as uow:
        existing = [p["part"] for p in uow.reconcile.parts(run_id, "compare:")]
        if existing:
            return existing
        chunks = list(_ticket_chunks(uow, run, hub.settings.reconcile.chunk_tickets))
        parts = {f"compare:{n:07d}": {"tickets": chunk} for n, chunk in enumerate(chunks)}
        uow.reconcile.add_parts(run_id, parts)
        uow.commit()
    return list(parts)


def _ticket_chunks(uow: Any, run: _RunView, size: int) -> Iterable[list[str]]:
    """Full: every ticket (or those asked for), in ID order. Incremental: tickets the hub changed since and
    tickets a system changed since (those in the snapshot)."""
    if run.since is None:
        after = None
        while chunk := uow.tickets.ticket_ids(after, size, only=run.tickets):
            yield chunk
            after = chunk[-1]
        return
    wanted: set[str] = set()
    for source in (lambda a: uow.tickets.ticket_ids(a, 5000, run.since, run.tickets),
                   lambda a: uow.reconcile.snapshot_tickets(run.run_id, a, 5000)):
        after = None
        while batch := source(after):
            wanted.update(batch)
            after = batch[-1]
    ordered = sorted(wanted)
    for start in range(0, len(ordered), size):
        yield ordered[start:start + size]


def compare_part(hub: Hub, run_id: int, name: str, progress: Progress = NO_PROGRESS) -> tuple[list[int], bool]:
    """Compare one chunk and act on it: (deliveries to publish, whether this finished the compare phase)."""
    run = _RunView.load(hub, run_id)
    with hub.store.unit_of_work() as uow:
        part = uow.reconcile.part(run_id, name)
    deliveries: list[int] = []
    if part is not None and part["state"] == "pending":
        chunk: list[str] = part["detail"]["tickets"]
        check = run.check(hub)
        with hub.store.unit_of_work() as uow:
            values, prints = uow.reconcile.compare_view(run_id, chunk)
            # the links matter only where a checked system has no copy of the ticket (it may be missing it)
            unread = [t for t in chunk if not all(prints.get(t, {}).get(s) for s in check.checked)]
            links = uow.tickets.xrefs_of(unread) if unread else {}
            look = [t for t in chunk if check.needs_look(values.get(t, {}), links.get(t, {}), prints.get(t, {}))]
            golden = uow.tickets.golden_fields(look) if look else {}
            owed = uow.tickets.owed_fields(look) if look else {}
            copies = uow.reconcile.copies_of(run_id, look) if look else {}
            if look:
                links.update(uow.tickets.xrefs_of([t for t in look if t not in links]))
        compared = sum(len(p) for per_ticket in prints.values() for p in per_ticket.values())
        found: Found = []
        for ticket_id in look:
            ticket_copies = {s: [check.copy(row) for row in rows] for s, rows in copies.get(ticket_id, {}).items()}
            found.extend(check.ticket(ticket_id, golden.get(ticket_id, {}), links.get(ticket_id, {}),
                                      owed.get(ticket_id, {}), ticket_copies))
        with hub.store.unit_of_work() as uow:  # repairs, items and the part's completion: all or nothing
            deliveries = _act(hub, uow, run_id, found)
            if not uow.reconcile.finish_part(run_id, name, "done", {"ticket_count": len(chunk), "copies": compared}):
                return [], False  # another worker did it meanwhile: this attempt rolls back
            uow.reconcile.heartbeat(run_id, hub.clock())
            uow.commit()
        progress.compared(len(chunk), compared, len(found))
    return deliveries, _phase_over(hub, run_id, "compare", "report")


def _act(hub: Hub, uow: Any, run_id: int, found: Found) -> list[int]:
    """Store the discrepancies and carry out the proposals the run may carry out itself."""
    by_ticket: dict[str, list[dict[str, Any]]] = {}
    for item, proposal in found:
        if proposal is not None and item.get("action") == "repaired":
            by_ticket.setdefault(item["ticket_id"], []).append(proposal)
    deliveries: list[int] = []
    for ticket_id, proposals in by_ticket.items():
        deliveries.extend(carry_out(hub, uow, ticket_id, proposals, f"reconcile-run-{run_id}"))
    uow.reconcile.add_items(run_id, [{"item": item, "proposal": proposal} for item, proposal in found])
    return deliveries


def finish_run(hub: Hub, run_id: int, error: str | None = None) -> StoredReport:
    """Report orphans and (full runs) records deleted in a system, and close the run with its counts."""
    run = _RunView.load(hub, run_id)
    with hub.store.unit_of_work() as uow:
        reads = uow.reconcile.parts(run_id, "read:")
        compares = uow.reconcile.parts(run_id, "compare:")
        if error is None:
            _act(hub, uow, run_id, _orphans_and_dangling(hub, uow, run))
        not_checked = [{"system": p["part"].split(":", 1)[1], "reason": p["detail"].get("reason", "not read")}
                       for p in reads if p["state"] != "done"]
        tickets = sum(int(p["detail"].get("ticket_count", 0)) for p in compares if p["state"] == "done")
        copies = sum(int(p["detail"].get("copies", 0)) for p in compares if p["state"] == "done")
        uow.reconcile.finish(run_id, "failed" if error else "done", hub.clock(), tickets, copies, not_checked, error)
        uow.commit()
    report = stored_report(hub, run_id)
    log.info("reconciliation finished", run_id=run_id, state=report.run.state, tickets=tickets, copies=copies,
             discrepancies=report.summary.discrepancies, awaiting_review=report.summary.awaiting_review,
             not_checked=[nc["system"] for nc in not_checked])
    return report


def _orphans_and_dangling(hub: Hub, uow: Any, run: _RunView) -> Found:
    found: Found = []
    if run.tickets:
        return found
    for row in uow.reconcile.orphans(run.run_id):
        origin = hub.settings.systems[row["system"]].origin
        found.append(({"ticket_id": None, "system": row["system"], "local_id": row["local_id"], "kind": "orphan",
                       "field": None, "values": [], "responsible": row["author"],
                       "reason": f"no ticket is linked to {row['system']} record {row['local_id']}"
                       + (f" ({row['system']} opens tickets: its notice may have been missed)" if origin else ""),
                       "action": "reported"}, None))
    if run.since is None:
        for system in run.checked:
            for row in uow.reconcile.dangling(run.run_id, system):
                found.append(({"ticket_id": row["ticket_id"], "system": system, "local_id": row["local_id"],
                               "kind": "dangling", "field": None, "values": [],
                               "reason": f"the ticket is linked to {system} record {row['local_id']}, which {system} "
                               "no longer has (deleted there?)", "action": "reported"}, None))
    return found


def compared_mappings(hub: Hub) -> MappingSet:
    """The mappings as reconciliation compares copies: under a status workflow, a system that only reports
    `status` (reads it, does not own it, is not written it) holds its own claim, not a copy of the golden
    status, so its status is not compared (the workflow has already weighed it)."""
    if hub.workflow is None:
        return hub.mappings
    systems = {}
    for name, mapping in hub.mappings.systems.items():
        status = mapping.fields.get("status")
        if status is not None and not status.writes and not status.owner:
            mapping = replace(mapping, fields={k: v for k, v in mapping.fields.items() if k != "status"})
        systems[name] = mapping
    return MappingSet(systems)
