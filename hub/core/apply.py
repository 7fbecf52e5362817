"""Apply field changes to a ticket: pure, deterministic, order-insensitive.

Each canonical field is a last-writer-wins register ordered by `FieldChange.precedence()`. The guards
run in this order, and every change ends in exactly one outcome:

1. echo          the system reports back the value the hub last wrote to it (not a new change);
2. not_owner     the source system does not own the field (never applied, always recorded), unless it
                 reports the value the record already holds: that is agreement, a duplicate; a source that
                 is written the field is owed the golden value again (its edit is undone there) unless
                 its mapping's policy for the field is `report` or `review`;
3. invalid_value the value is not valid canonically;
4. duplicate     the very same change is already the current value (a no-op);
5. conflict      a monotonic field (production progress) would go down: never applied, however new;
   a higher value of such a field wins however old, so the field holds the highest value reported;
6. stale         the current value takes precedence over it;
7. applied       it becomes the current value.

An applied change puts a pending write in the outbox of every subscribed system except its source,
replacing any older pending write of that field; a subscriber that would refuse the value gets none, and an
`invalid_value` outcome with `target` says so. The source's own pending write of the field is dropped: it now
holds a value at least as new. These rules make the outbox, like the record, depend only on the set of
changes applied, not on their order or repetition.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from hub.core.canonical import FIELDS, JsonScalar, normalize
from hub.core.errors import InvalidValue
from hub.core.mapping import MappingSet
from hub.core.model import ApplyResult, FieldChange, FieldValue, Outcome, PendingWrite, Provenance, TicketState
from hub.core.workflow import REFUSALS, Settled, Workflow, add_marks, settle

WORKFLOW_AUTHOR = "workflow"  # the author of a status the workflow fell back to (no claim was accepted)


def apply_changes(state: TicketState, changes: Iterable[FieldChange], mappings: MappingSet,
                  workflow: Workflow | None = None) -> ApplyResult:
    """Apply `changes`; with a `workflow`, `status` is settled by it (see the module and hub.core.workflow)."""
    fields = dict(state.fields)
    pending = {system: dict(writes) for system, writes in state.pending.items()}
    delivered = {system: dict(marks) for system, marks in state.delivered.items()}
    outcomes: list[Outcome] = []
    claims = set(state.claims)
    new_claims: list[FieldChange] = []

    for change in changes:
        if workflow is not None and change.field == "status":
            refused = _claim(change, fields, delivered, claims)
            if refused is None:
                claims.add(change)
                new_claims.append(change)
            else:
                outcomes.append(refused)
            continue
        outcomes.extend(_apply_one(change, fields, pending, delivered, mappings))

    marks = dict(state.marks)
    if workflow is not None:
        fields_read = workflow.evidence_fields
        evidence = [o.change for o in outcomes if o.change.field in fields_read and o.target is None
                    and o.kind in ("applied", "stale", "duplicate", "conflict")
                    and o.change.provenance.system in mappings.owners(o.change.field)]
        moved = add_marks(marks, evidence, fields_read)
        if new_claims or moved:
            outcomes.extend(_settle_status(workflow, claims, marks, new_claims, fields, pending, mappings))

    new_state = TicketState(
        ticket_id=state.ticket_id,
        fields=fields,
        pending={system: writes for system, writes in pending.items() if writes},
        delivered={system: marks for system, marks in delivered.items() if marks},
        claims=frozenset(claims),
        marks=marks,
    )
    return ApplyResult(new_state, tuple(outcomes))


def _claim(change: FieldChange, fields: dict[str, FieldValue], delivered: dict[str, dict[str, JsonScalar]],
           claims: set[FieldChange]) -> Outcome | None:
    """A reported status before the workflow weighs it: its outcome if it is no claim at all (the hub's own
    echo, not a status, already known), None if it joins the ticket's claims."""
    current, source = fields.get("status"), change.provenance.system
    marks = delivered.get(source, {})
    if "status" in marks:
        if marks["status"] == change.value:
            return Outcome("echo", change, current, f"{source} reports back the value the hub wrote to it")
        del marks["status"]
    try:
        value = normalize("status", change.value)
    except InvalidValue as exc:
        return Outcome("invalid_value", change, current, str(exc))
    if value is None:
        return Outcome("invalid_value", change, current, "a ticket's status cannot be emptied")
    change = FieldChange("status", value, change.provenance) if value != change.value else change
    if change in claims:
        return Outcome("duplicate", change, current)
    return None


def _settle_status(workflow: Workflow, claims: set[FieldChange], marks: dict, new_claims: list[FieldChange],
                   fields: dict[str, FieldValue], pending: dict[str, dict[str, PendingWrite]],
                   mappings: MappingSet) -> list[Outcome]:
    """Settle the claims; what became of each new one; the golden status and the writes it owes.

    A system is owed the golden status (when its mapping writes `status`) unless its own newest claim is
    that status: so a new status goes to every subscriber but the one that reported it, and a refused
    claim has the golden status written back to the system that made it. Only the systems whose view
    may have changed are looked at: all of them when the golden status moved, else those that claimed."""
    current = fields.get("status")
    settled = settle(workflow, claims, marks)
    golden = _golden(settled, claims)
    outcomes: list[Outcome] = []
    changed = golden is not None and golden != current
    if changed:
        assert golden is not None
        fields["status"] = golden
        if settled.winner is None or settled.winner not in new_claims:
            reason = "the workflow settles on it now that its evidence or an earlier report has arrived"
            outcomes.append(Outcome("applied", golden.as_change("status"), current, reason))
    if golden is not None:
        looked_at = mappings.subscribers("status") if changed else {c.provenance.system for c in new_claims}
        _owe_status(sorted(looked_at), golden, current, claims, pending, mappings, outcomes)
    for claim in new_claims:
        verdict = settled.verdicts[claim]
        if changed and claim == settled.winner:  # accepted, or the initial state as first reported
            outcomes.append(Outcome("applied", claim, current))
        elif verdict.kind == "accepted":
            outcomes.append(Outcome("duplicate", claim, current))
        elif verdict.kind == "agrees":
            outcomes.append(Outcome("duplicate", claim, current, verdict.reason))
        elif verdict.kind == "superseded":
            outcomes.append(Outcome("stale", claim, current, verdict.reason))
        else:
            assert verdict.kind in REFUSALS
            outcomes.append(Outcome(verdict.kind, claim, current, verdict.reason))  # type: ignore[arg-type]
    return outcomes


def _golden(settled: Settled, claims: set[FieldChange]) -> FieldValue | None:
    if settled.status is None:
        return None
    if settled.winner is not None:
        return FieldValue(settled.status, settled.winner.provenance)
    first = min(claims, key=FieldChange.precedence).provenance  # every claim refused: the initial state
    return FieldValue(settled.status, Provenance("tickethub", WORKFLOW_AUTHOR, 0, 0, first.modified_at,
                                                 first.received_at, first.event_id))


def _owe_status(systems: list[str], golden: FieldValue, current: FieldValue | None, claims: set[FieldChange],
                pending: dict[str, dict[str, PendingWrite]], mappings: MappingSet, outcomes: list[Outcome]) -> None:
    newest: dict[str, FieldChange] = {}
    for claim in claims:
        mine = newest.get(claim.provenance.system)
        if mine is None or claim.precedence() > mine.precedence():
            newest[claim.provenance.system] = claim
    change = golden.as_change("status")
    for system in systems:
        mapping = mappings.systems[system].fields.get("status") if system in mappings.systems else None
        if mapping is None or not mapping.writes:
            continue
        if system in newest and newest[system].value == golden.value:
            pending.get(system, {}).pop("status", None)  # it holds the golden status already
            continue
        try:
            system_value = mapping.to_system(golden.value, system)
        except InvalidValue as exc:
            pending.get(system, {}).pop("status", None)
            outcomes.append(Outcome("invalid_value", change, current, str(exc), target=system))
            continue
        pending.setdefault(system, {})["status"] = PendingWrite(golden.value, mapping.system_field, system_value,
                                                                golden.provenance)


def _apply_one(
    change: FieldChange,
    fields: dict[str, FieldValue],
    pending: dict[str, dict[str, PendingWrite]],
    delivered: dict[str, dict[str, JsonScalar]],
    mappings: MappingSet,
) -> list[Outcome]:
    name, source = change.field, change.provenance.system
    current = fields.get(name)

    if name not in FIELDS:
        return [Outcome("invalid_value", change, current, f"`{name}` is not a canonical field")]

    marks = delivered.get(source, {})
    if name in marks:
        if marks[name] == change.value:
            return [Outcome("echo", change, current, f"{source} reports back the value the hub wrote to it")]
        del marks[name]  # the system's value has moved on from what the hub wrote: later reports are real

    owners = mappings.owners(name)
    if source not in owners and change.value == (current.value if current else None):
        # a non-owner reporting the value the record already holds agrees with it: nothing was edited
        return [Outcome("duplicate", change, current, f"{source} holds the current value")]
    if source not in owners:
        who = ", ".join(sorted(owners)) or "no system"
        _restore(name, source, current, pending, mappings)
        return [Outcome("not_owner", change, current, f"{source} does not own `{name}`; it is owned by {who}")]

    try:
        value = normalize(name, change.value)
    except InvalidValue as exc:
        return [Outcome("invalid_value", change, current, str(exc))]
    if value != change.value:
        change = FieldChange(name, value, change.provenance)

    if current is not None:
        if current.as_change(name) == change:
            return [Outcome("duplicate", change, current)]
        rises = _rises(name, current.value, value)
        if rises is False:
            if change.precedence() < current.as_change(name).precedence():
                return [Outcome("stale", change, current, _stale_reason(change, current))]
            return [Outcome("conflict", change, current,
                            f"`{name}` only grows: {value} would take it back from {current.value}")]
        if rises is None and change.precedence() < current.as_change(name).precedence():
            return [Outcome("stale", change, current, _stale_reason(change, current))]

    fields[name] = FieldValue(value, change.provenance)
    outcomes = [Outcome("applied", change, current)]
    _owe(change, current, pending, delivered, mappings, outcomes)
    return outcomes


def _owe(change: FieldChange, current: FieldValue | None, pending: dict[str, dict[str, PendingWrite]],
         delivered: dict[str, dict[str, JsonScalar]], mappings: MappingSet, outcomes: list[Outcome]) -> None:
    """The outbox after `change` became the golden value: every subscriber but its source is owed it. (Not
    skipped where the hub last wrote that very value: a different value may be in flight there, and the
    delivered mark does not know it.)"""
    name, source, value = change.field, change.provenance.system, change.value
    pending.get(source, {}).pop(name, None)
    for target in mappings.subscribers(name):
        if target == source:
            continue
        mapping = mappings.systems[target].fields[name]
        try:
            system_value = mapping.to_system(value, target)
        except InvalidValue as exc:
            pending.get(target, {}).pop(name, None)
            outcomes.append(Outcome("invalid_value", change, current, str(exc), target=target))
            continue
        pending.setdefault(target, {})[name] = PendingWrite(value, mapping.system_field, system_value,
                                                            change.provenance)


def _restore(name: str, source: str, current: FieldValue | None, pending: dict[str, dict[str, PendingWrite]],
             mappings: MappingSet) -> None:
    """A subscriber edited a field it does not own: it is owed the golden value again (the edit is undone
    there, not left to the nightly run) when its mapping's policy for the field is `repair` (the default; with
    `report` or `review` the copy is left for the reconciliation report). Nothing when the record has no value
    yet, or when the system would refuse the golden value (that refusal was recorded when it was applied)."""
    mapping = mappings.systems[source].fields.get(name) if source in mappings.systems else None
    if current is None or current.value is None or mapping is None or not mapping.writes:
        return
    if mapping.reconcile != "repair":
        return
    try:
        system_value = mapping.to_system(current.value, source)
    except InvalidValue:
        return
    pending.setdefault(source, {})[name] = PendingWrite(current.value, mapping.system_field, system_value,
                                                        current.provenance)


def _rises(name: str, current: JsonScalar, value: JsonScalar) -> bool | None:
    """For a monotonic field, whether `value` is above (True) or below (False) the current value; None
    when equal, or for other fields: then last-writer-wins decides. The highest value wins whatever the
    order of arrival, so the record still depends only on the set of changes."""
    if not FIELDS[name].monotonic or current is None or value is None or current == value:
        return None
    return value > current  # type: ignore[operator]


def _stale_reason(change: FieldChange, current: FieldValue) -> str:
    theirs, ours = change.provenance, current.provenance
    if theirs.modified_at != ours.modified_at:
        return (
            f"modified at {theirs.modified_at.isoformat()}, before the current value"
            f" from {ours.system} ({ours.modified_at.isoformat()})"
        )
    if theirs.author_rank != ours.author_rank:
        return f"same modified-at; author rank {theirs.author_rank} is below {ours.author_rank}"
    if theirs.system_rank != ours.system_rank:
        return f"same modified-at and author rank; system rank {theirs.system_rank} is below {ours.system_rank}"
    return "same modified-at and ranks; the stable order (system, event) puts the current value first"


def write_back(state: TicketState, field_name: str, value: JsonScalar, provenance: Provenance,
               targets: Iterable[str], mappings: MappingSet) -> tuple[TicketState, tuple[Outcome, ...]]:
    """Owe `targets` a write of `field_name` = `value` (reconciliation repairing a copy, or an operator's
    decision): a pending write per target, replacing any older one. A target whose mapping does not write the
    field, or that would refuse the value, gets none; an `invalid_value` outcome with `target` says why."""
    pending = {system: dict(writes) for system, writes in state.pending.items()}
    change = FieldChange(field_name, value, provenance)
    refused = []
    for target in targets:
        mapping = mappings.systems[target].fields.get(field_name) if target in mappings.systems else None
        if mapping is None or not mapping.writes:
            refused.append(Outcome("invalid_value", change, state.fields.get(field_name),
                                   f"{target} is not written `{field_name}` (its mapping does not write it)",
                                   target=target))
            continue
        try:
            system_value = mapping.to_system(value, target)
        except InvalidValue as exc:
            refused.append(Outcome("invalid_value", change, state.fields.get(field_name), str(exc), target=target))
            continue
        pending.setdefault(target, {})[field_name] = PendingWrite(value, mapping.system_field, system_value, provenance)
    return replace(state, pending=pending), tuple(refused)


def override(state: TicketState, field_name: str, value: JsonScalar, provenance: Provenance,
             mappings: MappingSet, reason: str) -> ApplyResult:
    """An operator sets the field (a reconciliation decision): it becomes the golden value whatever the
    owners hold, and every system that is written the field is owed it. InvalidValue if the value is not
    valid for the field."""
    value = normalize(field_name, value)
    change = FieldChange(field_name, value, provenance)
    fields = dict(state.fields)
    current = fields.get(field_name)
    fields[field_name] = FieldValue(value, provenance)
    written, refused = write_back(replace(state, fields=fields),
                                  field_name, value, provenance, mappings.subscribers(field_name), mappings)
    return ApplyResult(written, (Outcome("applied", change, current, reason), *refused))
