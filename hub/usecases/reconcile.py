"""Use case: reconcile. Read every system's copy of the tickets, compare it with the golden record, decide
each disagreement by the rules in `reconcile.resolve`, repair what policy allows, and report the rest.

A run, in order (README "Reconciliation"):

1. start: at most one run at a time (the run row is the lock); incremental since the last finished run
   (minus the clock-skew tolerance), or full (`--full`, weekly, or the first run);
2. snapshot: each system's records through its connector's bulk read, page by page, each mapped to canonical
   fields, fingerprinted and stored with its ticket (by cross-reference; none: an orphan). A system that
   cannot be read (no export, refused, still failing after the page retries) is "not checked", and what was
   read of it is dropped, so it is never compared in half;
3. compare, a chunk of tickets at a time: per (ticket, system) the fingerprints first, deepdiff only where
   they differ; fields with a write still owed to the system (outbox) are left out, since the system is
   about to change; each differing field is decided once per ticket (golden value and owners' copies);
4. act: an owner's newer copy (a missed change) is applied to the golden record through `apply` (audited,
   the run as the event); a copy that differs from the winner is owed the winner (outbox, deliveries with
   retries, dead letters and echo suppression as for any write), unless its mapping says `report` or
   `review`; a tie nobody wins waits for an operator. A dry run decides the same and changes nothing;
5. report: every discrepancy with every candidate value, the winner, the rule and the reason, the action,
   who is responsible; the systems not checked; orphans and (full runs) records deleted in a system.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import structlog

from hub.core.apply import apply_changes, override, write_back
from hub.core.canonical import FIELDS, JsonScalar, normalize
from hub.core.errors import InvalidValue, TickethubError
from hub.core.mapping import SystemMapping, lookup_path
from hub.core.model import ApplyResult, FieldChange, FieldValue, Outcome, Provenance
from hub.core.ports import BulkReadUnavailable, Connector, ConnectorError, SourceRecord
from hub.usecases.context import Hub
from reconcile.compare import differing_fields
from reconcile.fingerprint import fingerprint
from reconcile.report import (
    Decided,
    Item,
    NotChecked,
    RunInfo,
    RunReport,
    TrendPoint,
    Value,
    summarise,
    to_csv,
    to_html,
    to_json,
)
from reconcile.resolve import GOLDEN, Candidate, Decision, resolve, same

log = structlog.get_logger("tickethub.reconcile")

READ_BATCH = 500  # copies stored per transaction while reading a system
TICKET_CHUNK = 500  # tickets compared per transaction
OPERATOR_SYSTEM = "tickethub"  # the provenance system of an operator's decision
OPERATOR_RANK = 1000


class DecisionRefused(TickethubError):
    """An operator decision that cannot be taken; `status` is the HTTP answer (404, 409, 422)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


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
    report: RunReport
    deliveries: list[int] = field(default_factory=list)  # to publish


def run_reconcile(hub: Hub, connector_for: Callable[[str], Connector], request: ReconcileRequest,
                  progress: Progress = NO_PROGRESS) -> RunOutcome:
    """One reconciliation run; raises RunInProgress if another is going on."""
    unknown = sorted(set(request.systems) - set(hub.settings.systems))
    if unknown:
        raise InvalidValue(f"no system {', '.join(f'`{s}`' for s in unknown)} is configured; known: "
                           f"{', '.join(sorted(hub.settings.systems))}")
    systems = list(request.systems) or sorted(hub.settings.systems)
    started = hub.clock()
    since = request.since
    with hub.store.unit_of_work() as uow:
        if since is None and not request.full and not request.tickets:
            last = uow.reconcile.last_finished()
            if last is not None:  # the skew and a minute of margin: a change stamped a bit early is not missed
                since = last["started_at"] - timedelta(seconds=hub.settings.hub.clock_skew_seconds + 60)
        mode = "incremental" if since is not None else "full"
        run_id = uow.reconcile.start(mode, request.dry_run, since, systems, request.tickets, started)
        uow.commit()
    bound = log.bind(run_id=run_id)
    bound.info("reconciliation started", mode=mode, since=since.isoformat() if since else None, systems=systems)
    run = _Run(hub, run_id, request, systems, since, bound)
    try:
        run.snapshot(connector_for, progress)
        run.compare(progress)
        state = "done"
        error = None
    except Exception as exc:
        state, error = "failed", f"{type(exc).__name__}: {exc}"[:2000]
        bound.exception("reconciliation failed")
    with hub.store.unit_of_work() as uow:
        uow.reconcile.finish(run_id, state, hub.clock(), run.tickets, run.copies,
                             [nc.model_dump() for nc in run.not_checked], error)
        uow.commit()
    report = load_report(hub, run_id)
    bound.info("reconciliation finished", state=state, tickets=run.tickets, copies=run.copies,
               discrepancies=report.summary.discrepancies, awaiting_review=report.summary.awaiting_review,
               not_checked=[nc.system for nc in run.not_checked])
    if error is not None:
        raise TickethubError(f"reconciliation run {run_id} failed: {error}")
    return RunOutcome(run_id, report, run.deliveries)


@dataclass
class _Copy:
    system: str
    local_id: str
    author: str
    modified_at: datetime | None
    fields: dict[str, Any]
    fingerprint: bytes


class _Run:
    def __init__(self, hub: Hub, run_id: int, request: ReconcileRequest, systems: list[str],
                 since: datetime | None, log: Any):
        self.hub, self.run_id, self.request, self.systems, self.since, self.log = (
            hub, run_id, request, systems, since, log)
        self.mappings = hub.mappings
        self.skew = hub.settings.hub.clock_skew_seconds
        self.checked: list[str] = []
        self.not_checked: list[NotChecked] = []
        self.tickets = self.copies = 0
        self.deliveries: list[int] = []
        self.event_id = f"reconcile-run-{run_id}"

    # ---- 2. snapshot --------------------------------------------------------------------------------

    def snapshot(self, connector_for: Callable[[str], Connector], progress: Progress) -> None:
        for system in self.systems:
            mapping = self.mappings.systems.get(system)
            if mapping is None:
                self._not_checked(system, "its mapping is not loaded")
                continue
            try:
                read = self._read_system(system, mapping, connector_for(system), progress)
            except BulkReadUnavailable as exc:
                self._not_checked(system, str(exc))
                continue
            except (ConnectorError, TickethubError) as exc:
                with self.hub.store.unit_of_work() as uow:  # never compared in half
                    uow.reconcile.drop_copies(self.run_id, system)
                    uow.commit()
                self._not_checked(system, f"could not be read: {exc}")
                continue
            self.checked.append(system)
            self.copies += read

    def _not_checked(self, system: str, reason: str) -> None:
        self.log.warning("system not checked", system=system, reason=reason)
        self.not_checked.append(NotChecked(system=system, reason=reason))

    def _read_system(self, system: str, mapping: SystemMapping, connector: Connector, progress: Progress) -> int:
        read = 0
        records = connector.read_all(self.since)
        while chunk := list(islice(records, READ_BATCH)):
            with self.hub.store.unit_of_work() as uow:
                links = uow.tickets.xref_map(system, [r.local_id for r in chunk])
                rows = []
                for record in chunk:
                    ticket_id = links.get(record.local_id)
                    if self.request.tickets and ticket_id not in self.request.tickets:
                        continue
                    fields = canonical_copy(mapping, record)
                    rows.append({"local_id": record.local_id, "ticket_id": ticket_id, "modified_at": record.modified_at,
                                 "author": record.author, "fields": fields, "fingerprint": fingerprint(fields)})
                uow.reconcile.add_copies(self.run_id, system, rows)
                uow.reconcile.heartbeat(self.run_id, self.hub.clock())
                uow.commit()
            read += len(chunk)
            progress.read(system, len(chunk))
        return read

    # ---- 3 and 4. compare, decide, act ----------------------------------------------------------------

    def compare(self, progress: Progress) -> None:
        for chunk in self._ticket_chunks():
            with self.hub.store.unit_of_work() as uow:
                golden = uow.tickets.golden_fields(chunk)
                links = uow.tickets.xrefs_of(chunk)
                owed = uow.tickets.owed_fields(chunk)
                copies = uow.reconcile.copies_of(self.run_id, chunk)
            found: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
            compared = 0
            for ticket_id in chunk:
                ticket_copies = {s: [self._copy(row) for row in rows] for s, rows in copies.get(ticket_id, {}).items()}
                compared += sum(len(c) for c in ticket_copies.values())
                found.extend(self._ticket(ticket_id, golden.get(ticket_id, {}), links.get(ticket_id, {}),
                                          owed.get(ticket_id, {}), ticket_copies))
            self._act(found)
            self.tickets += len(chunk)
            progress.compared(len(chunk), compared, len(found))
        self._act(self._orphans_and_dangling())

    def _ticket_chunks(self) -> Iterator[list[str]]:
        """The tickets to compare, a chunk at a time, with no transaction held between chunks."""
        if self.since is None:
            after = None
            while True:
                with self.hub.store.unit_of_work() as uow:
                    chunk = uow.tickets.ticket_ids(after, TICKET_CHUNK, only=self.request.tickets)
                if not chunk:
                    return
                yield chunk
                after = chunk[-1]
        # incremental: tickets the hub changed since, and tickets a system changed since (in the snapshot)
        wanted: set[str] = set()
        with self.hub.store.unit_of_work() as uow:
            for source in (lambda a: uow.tickets.ticket_ids(a, 5000, self.since, self.request.tickets),
                           lambda a: uow.reconcile.snapshot_tickets(self.run_id, a, 5000)):
                after = None
                while batch := source(after):
                    wanted.update(batch)
                    after = batch[-1]
        ordered = sorted(wanted)
        for start in range(0, len(ordered), TICKET_CHUNK):
            yield ordered[start:start + TICKET_CHUNK]

    def _copy(self, row: Mapping[str, Any]) -> _Copy:
        return _Copy(row["system"], row["local_id"], row["author"], row["modified_at"], row["fields"],
                     bytes(row["fingerprint"]))

    def _ticket(self, ticket_id: str, golden: Mapping[str, FieldValue], links: Mapping[str, list[str]],
                owed: Mapping[str, set[str]], copies: Mapping[str, list[_Copy]]
                ) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """The discrepancies of one ticket, each as (report item, proposal)."""
        found: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        decisions: dict[str, Decision] = {}
        for system in self.checked:
            mapping = self.mappings.systems[system]
            mine = copies.get(system, [])
            if not mine:
                if not links.get(system):
                    found.extend(self._missing(ticket_id, system, mapping, golden, owed.get(system, set())))
                continue
            for copy in mine:
                expected = {name: golden[name].value if name in golden else None for name in mapping.fields}
                actual = {name: copy.fields.get(name) for name in mapping.fields}
                for name in differing_fields(expected, actual, None, copy.fingerprint):
                    if name in owed.get(system, set()):
                        continue  # the hub is about to write it there
                    if name not in decisions:
                        decisions[name] = resolve(name, self._candidates(name, golden.get(name), copies), self.skew)
                    found.extend(self._field(ticket_id, system, copy, name, decisions[name], golden.get(name)))
        return _unique(found)

    def _candidates(self, name: str, golden: FieldValue | None, copies: Mapping[str, list[_Copy]]) -> list[Candidate]:
        found = []
        if golden is not None:
            p = golden.provenance
            found.append(Candidate(GOLDEN, p.system, golden.value, p.author, p.author_rank, p.system_rank,
                                   p.modified_at))
        for owner in sorted(self.mappings.owners(name)):
            if owner not in self.checked:
                continue
            mapping = self.mappings.systems[owner]
            for copy in copies.get(owner, []):
                if not mapping.fields[name].reads:
                    continue
                found.append(Candidate(owner, owner, copy.fields.get(name), copy.author,
                                       mapping.author_rank(copy.author), mapping.rank, copy.modified_at))
        if not found:  # nobody the rules weigh holds it: the golden record's (empty) value stands
            found.append(Candidate(GOLDEN, "", None, "", 0, 0, None))
        return found

    def _field(self, ticket_id: str, system: str, copy: _Copy, name: str, decision: Decision,
               golden: FieldValue | None) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        values = [_value(c, self.mappings.owners(name)) for c in decision.candidates]
        if not any(v.source == system for v in values):
            values.append(_value(Candidate(system, system, copy.fields.get(name), copy.author,
                                           self.mappings.systems[system].author_rank(copy.author),
                                           self.mappings.systems[system].rank, copy.modified_at, False),
                                 self.mappings.owners(name)))
        base: dict[str, Any] = {"ticket_id": ticket_id, "system": system, "local_id": copy.local_id, "field": name,
                "values": [v.model_dump(mode="json") for v in values], "responsible": copy.author}
        if decision.winner is None:
            return [({**base, "kind": "conflict", "rule": "flagged", "reason": decision.reason,
                      "action": "awaiting_review", "awaiting_review": True}, None)]
        winner = decision.winner
        base.update(winner=_value(winner, self.mappings.owners(name)).model_dump(mode="json"), rule=decision.rule)
        found: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        golden_value = golden.value if golden is not None else None
        if winner.source != GOLDEN and not same(winner.value, golden_value):
            # an owner changed it and the hub never heard: apply it, as its webhook would have
            proposal = {"apply": {"field": name, "value": winner.value, "system": winner.system,
                                  "author": winner.author, "author_rank": winner.author_rank,
                                  "system_rank": winner.system_rank, "modified_at": _iso(winner.modified_at)}}
            policy = self.mappings.systems[winner.system].fields[name].reconcile
            item = {**base, "system": winner.system, "kind": "missed_change", "responsible": winner.author,
                    "local_id": copy.local_id if winner.system == system else None,
                    "reason": f"{decision.reason}; the hub's record missed this change",
                    **_policy_action(policy, self.request.dry_run)}
            found.append((item, proposal))
        if not same(copy.fields.get(name), winner.value):
            owner = system in self.mappings.owners(name)
            mapping = self.mappings.systems[system].fields[name]
            kind = "conflict" if owner else "drift"
            if not mapping.writes or winner.value is None:
                why = (f"{system} is not written `{name}` (its mapping only reads it)" if not mapping.writes
                       else "the hub holds no value for it, and a copy is never erased")
                found.append(({**base, "kind": kind, "reason": f"{decision.reason}; {why}: reported",
                               "action": "reported"}, None))
            else:
                why = (f"{decision.reason}; {system}'s copy was changed by {copy.author}" if not owner
                       else decision.reason)
                item = {**base, "kind": kind, "reason": why, **_policy_action(mapping.reconcile, self.request.dry_run)}
                found.append((item, {"write": {"system": system, "field": name, "value": winner.value}}))
        return found

    def _missing(self, ticket_id: str, system: str, mapping: SystemMapping, golden: Mapping[str, FieldValue],
                 owed: set[str]) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """A system that is written fields of the ticket has no record of it (and no write to it is owed)."""
        wanted = {name: golden[name].value for name, fm in mapping.fields.items()
                  if fm.writes and name in golden and golden[name].value is not None}
        if not wanted or owed or self.request.tickets and ticket_id not in self.request.tickets:
            return []
        policy = "review" if any(mapping.fields[n].reconcile == "review" for n in wanted) else (
            "report" if all(mapping.fields[n].reconcile == "report" for n in wanted) else "repair")
        item = {"ticket_id": ticket_id, "system": system, "kind": "missing", "field": None, "rule": "ownership",
                "values": [], "reason": f"{system} is written {', '.join(sorted(wanted))} of this ticket and has no "
                f"record of it (no cross-reference, no write owed)", **_policy_action(policy, self.request.dry_run)}
        return [(item, {"write": {"system": system, "fields": wanted}})]

    def _orphans_and_dangling(self) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        found: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        if self.request.tickets:
            return found
        with self.hub.store.unit_of_work() as uow:
            for row in uow.reconcile.orphans(self.run_id):
                origin = self.hub.settings.systems[row["system"]].origin
                found.append(({"ticket_id": None, "system": row["system"], "local_id": row["local_id"],
                               "kind": "orphan", "field": None, "values": [], "responsible": row["author"],
                               "reason": f"no ticket is linked to {row['system']} record {row['local_id']}"
                               + (f" ({row['system']} opens tickets: its notice may have been missed)"
                                  if origin else ""), "action": "reported"}, None))
            if self.since is None:
                for system in self.checked:
                    for row in uow.reconcile.dangling(self.run_id, system):
                        found.append(({"ticket_id": row["ticket_id"], "system": system, "local_id": row["local_id"],
                                       "kind": "dangling", "field": None, "values": [],
                                       "reason": f"the ticket is linked to {system} record {row['local_id']}, which "
                                       f"{system} no longer has (deleted there?)", "action": "reported"}, None))
        return found

    def _act(self, found: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> None:
        """Store the discrepancies and, unless dry or held for review, carry out their proposals (one
        transaction per ticket, so that a failure leaves the others done)."""
        if not found:
            return
        by_ticket: dict[str, list[dict[str, Any]]] = {}
        for item, proposal in found:
            if proposal is not None and item.get("action") == "repaired":
                by_ticket.setdefault(item["ticket_id"], []).append(proposal)
        for ticket_id, proposals in by_ticket.items():
            with self.hub.store.unit_of_work() as uow:
                self.deliveries.extend(carry_out(self.hub, uow, ticket_id, proposals, self.event_id))
                uow.commit()
        with self.hub.store.unit_of_work() as uow:
            uow.reconcile.add_items(self.run_id, [{"item": item, "proposal": proposal} for item, proposal in found])
            uow.reconcile.heartbeat(self.run_id, self.hub.clock())
            uow.commit()


def canonical_copy(mapping: SystemMapping, record: SourceRecord) -> dict[str, Any]:
    """A system's record as canonical values, for every field its mapping maps; a value the mapping cannot
    translate is kept as it is (it will differ from the golden value and be reported)."""
    fields: dict[str, Any] = {}
    for name, field_mapping in mapping.fields.items():
        found, raw = lookup_path(record.fields, field_mapping.system_field)
        if not found:
            continue
        try:
            fields[name] = field_mapping.to_canonical(raw)
        except InvalidValue:
            fields[name] = raw if isinstance(raw, (str, int, float, bool)) or raw is None else repr(raw)
    return fields


def carry_out(hub: Hub, uow: Any, ticket_id: str, proposals: Sequence[Mapping[str, Any]], event_id: str,
              operator: str | None = None) -> list[int]:
    """Do what reconciliation (or an operator accepting it) proposed for one ticket, inside `uow`: apply an
    owner's missed change to the golden record, owe a system the winning value. Returns the deliveries
    scheduled (to publish after the commit)."""
    now = hub.clock()
    state = uow.tickets.load_state(ticket_id)
    before = state
    outcomes: list[Outcome] = []
    changes = []
    for proposal in proposals:
        if "apply" in proposal:
            a = proposal["apply"]
            changes.append(FieldChange(a["field"], a["value"], Provenance(
                a["system"], a["author"], a["author_rank"], a["system_rank"],
                datetime.fromisoformat(a["modified_at"]) if a["modified_at"] else now, now, event_id)))
    if changes:
        result = apply_changes(state, changes, hub.mappings)
        state, outcomes = result.state, list(result.outcomes)
    for proposal in proposals:
        if "write" in proposal:
            w = proposal["write"]
            values = w["fields"] if "fields" in w else {w["field"]: w["value"]}
            for name, value in values.items():
                provenance = state.fields[name].provenance if name in state.fields else Provenance(
                    OPERATOR_SYSTEM, operator or "reconciliation", OPERATOR_RANK, OPERATOR_RANK, now, now, event_id)
                state, refused = write_back(state, name, value, provenance, [w["system"]], hub.mappings)
                outcomes.extend(refused)
    uow.tickets.save(before, ApplyResult(state, tuple(outcomes)), now)
    return list(uow.deliveries.schedule(ticket_id, now))


def _policy_action(policy: str, dry_run: bool) -> dict[str, Any]:
    if policy == "review":
        return {"action": "awaiting_review", "awaiting_review": True}
    if policy == "report":
        return {"action": "reported"}
    return {"action": "would_repair" if dry_run else "repaired"}


def _value(candidate: Candidate, owners: Iterable[str]) -> Value:
    return Value(source=candidate.source, system=candidate.system, value=candidate.value, author=candidate.author,
                 author_rank=candidate.author_rank, system_rank=candidate.system_rank,
                 modified_at=candidate.modified_at, owner=candidate.source == GOLDEN or candidate.system in owners)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _unique(found: list[tuple[dict[str, Any], dict[str, Any] | None]]
            ) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """One missed-change item per (ticket, field), however many copies differed."""
    seen, out = set(), []
    for item, proposal in found:
        key = (item["kind"], item.get("ticket_id"), item.get("system"), item.get("field"))
        if item["kind"] == "missed_change" and key in seen:
            continue
        seen.add(key)
        out.append((item, proposal))
    return out


def scheduled_run(hub: Hub, connector_for: Callable[[str], Connector]) -> RunOutcome:
    """The nightly run: full on [reconcile] full_on (in the schedule's time zone), else incremental; its
    report files are written to the report folder."""
    from zoneinfo import ZoneInfo

    settings = hub.settings.reconcile
    zone = ZoneInfo(settings.timezone) if settings.timezone else None
    today = hub.clock().astimezone(zone).strftime("%a").lower()
    outcome = run_reconcile(hub, connector_for, ReconcileRequest(full=today.startswith(settings.full_on[:3].lower())))
    write_reports(outcome.report, report_dir(hub))
    return outcome


def report_dir(hub: Hub) -> Path:
    return hub.settings.reconcile.report_dir or hub.settings.hub.data_dir / "reports"


def write_reports(report: RunReport, directory: Path) -> list[Path]:
    """`reconcile-<run>.json`, `.csv` and `.html` in `directory` (made if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, render in ((".json", to_json), (".csv", to_csv), (".html", to_html)):
        path = directory / f"reconcile-{report.run.id}{suffix}"
        path.write_bytes(render(report))
        written.append(path)
    return written


# ---- reports and decisions ---------------------------------------------------------------------------

def load_report(hub: Hub, run_id: int) -> RunReport:
    """The run's report as stored (LookupError if there is no such run)."""
    with hub.store.unit_of_work() as uow:
        run = uow.reconcile.run(run_id)
        if run is None:
            raise LookupError(f"no reconciliation run {run_id}")
        rows = uow.reconcile.items(run_id)
        earlier = [r for r in reversed(uow.reconcile.runs(limit=30, before=run_id))]
    items = [Item(**{**row["item"], "id": row["id"], "awaiting_review": row["awaiting_review"],
                     "decision": row["decision"]}) for row in rows]
    info = RunInfo(id=run["id"], state=run["state"], mode=run["mode"], dry_run=run["dry_run"], since=run["since"],
                   started_at=run["started_at"], finished_at=run["finished_at"], systems=run["systems"],
                   tickets=run["tickets"], error=run["error"])
    trend = [TrendPoint(run_id=r["id"], started_at=r["started_at"], discrepancies=int(r["discrepancies"]),
                        awaiting_review=int(r["awaiting_review"])) for r in earlier]
    return RunReport(run=info, summary=summarise(items, run["ticket_count"], run["copy_count"]),
                     not_checked=[NotChecked(**nc) for nc in run["not_checked"]], items=items, trend=trend)


def decide(hub: Hub, run_id: int, item_id: int, operator: str, accept: bool, value: Any = None) -> list[int]:
    """An operator's decision on one discrepancy: accept the proposal, or override with `value`. Carried out
    through the outbox and audited; returns the deliveries to publish. DecisionRefused says what is wrong
    (404 unknown run or item, 409 already decided, 422 nothing to accept or a value the field refuses)."""
    if not operator.strip():
        raise DecisionRefused(422, "give the operator's name")
    now = hub.clock()
    with hub.store.unit_of_work() as uow:
        if uow.reconcile.run(run_id) is None:
            raise DecisionRefused(404, f"no reconciliation run {run_id}")
        row = uow.reconcile.item(run_id, item_id, lock=True)
        if row is None:
            raise DecisionRefused(404, f"run {run_id} has no item {item_id}")
        if row["decision"] is not None:
            by = row["decision"]
            raise DecisionRefused(409, f"item {item_id} was already decided ({by['decision']} by {by['operator']})")
        item = row["item"]
        ticket_id, name = item.get("ticket_id"), item.get("field")
        if not ticket_id or not name:
            raise DecisionRefused(422, f"item {item_id} ({item['kind']}) has no field value to decide; it is a "
                                       "report to act on in the system itself")
        event_id = f"reconcile-run-{run_id}-item-{item_id}"
        if accept:
            proposal = row["proposal"]
            if not proposal:
                raise DecisionRefused(422, f"item {item_id} has no proposal to accept (the copies tie): override "
                                           "it with a value")
            if item.get("action") == "repaired":
                raise DecisionRefused(409, f"item {item_id} was already repaired by the run; nothing to accept")
            deliveries = carry_out(hub, uow, ticket_id, [proposal], event_id, operator)
            action, decided = "accepted", Decided(decision="accept", operator=operator, decided_at=now)
        else:
            if name not in FIELDS:
                raise DecisionRefused(422, f"`{name}` is not a canonical field")
            try:
                normalize(name, value)
            except InvalidValue as exc:
                raise DecisionRefused(422, f"`{name}`: {exc}") from None
            state = uow.tickets.load_state(ticket_id)
            provenance = Provenance(OPERATOR_SYSTEM, operator, OPERATOR_RANK, OPERATOR_RANK, now, now, event_id)
            result = override(state, name, value, provenance, hub.mappings,
                              f"operator {operator} decided it in reconciliation run {run_id} (item {item_id})")
            uow.tickets.save(state, result, now)
            deliveries = list(uow.deliveries.schedule(ticket_id, now))
            action, decided = "overridden", Decided(decision="override", value=_jsonable(value), operator=operator,
                                                    decided_at=now)
        updated = {**item, "action": action, "awaiting_review": False}
        if not uow.reconcile.decide(item_id, updated, decided.model_dump(mode="json")):
            raise DecisionRefused(409, f"item {item_id} was decided meanwhile")
        uow.commit()
    log.info("reconciliation item decided", run_id=run_id, item_id=item_id, ticket_id=ticket_id,
             operator=operator, decision=decided.decision)
    return deliveries


def _jsonable(value: Any) -> JsonScalar:
    return value if isinstance(value, (str, int, bool)) or value is None else str(value)
