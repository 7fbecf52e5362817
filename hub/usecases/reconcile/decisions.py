"""Carrying out what reconciliation proposes (by the run itself, or when an operator accepts it), and
operators' decisions: accept a proposal, or override with a value. Through the outbox and the history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import structlog

from hub.core.apply import apply_changes, override, write_back
from hub.core.canonical import FIELDS, JsonScalar, normalize
from hub.core.errors import InvalidValue, TickethubError
from hub.core.model import ApplyResult, FieldChange, Outcome, Provenance
from hub.usecases.context import Hub
from reconcile.report import Decided

log = structlog.get_logger("tickethub.reconcile")

OPERATOR_SYSTEM = "tickethub"  # the provenance system of an operator's decision
OPERATOR_RANK = 1000


class DecisionRefused(TickethubError):
    """An operator decision that cannot be taken; `status` is the HTTP answer (404, 409, 422)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


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
        result = apply_changes(state, changes, hub.mappings, hub.workflow)
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
