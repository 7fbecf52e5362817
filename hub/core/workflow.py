"""The status workflow: which transitions are allowed, who may report each, what evidence it needs. Pure.

A ticket's `status` is not a plain last-writer-wins register when a workflow is configured. Every status a
system reports is a **claim**, kept in the ticket's set of claims; the golden status is what `settle`
makes of that set: starting from the initial state, it takes the claims in last-writer-wins order
(`FieldChange.precedence`) and accepts one when

1. its system may report that state (`by`),                      otherwise `not_owner`;
2. the transition from the state reached so far is allowed (`from`), otherwise `not_allowed`;
3. every piece of evidence the state needs held at the claim's own modified-at (plus the clock-skew
   tolerance),                                                    otherwise `no_evidence`.

Evidence is a condition on a canonical field and the system that reported it ("shipment.waybill from the
WMS", "shipment.status = delivered from the courier"). Whether it held at a moment is read from the
ticket's **marks**: for each (field, system, value) the earliest modified-at at which that system reported
that value. Marks only ever move earlier and claims only accumulate, so the golden status depends only on
the set of changes received, never on their order: a claim refused because its evidence had not yet
arrived is accepted once the evidence arrives, if the evidence is older than the claim. A claim made
before its evidence existed stays refused; the system has to report the state again.

Because every accepted step is an allowed transition with its evidence, the golden status is always
reachable from the initial state through the workflow; terminal states have no way out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Literal

from hub.core.canonical import FIELDS, JsonScalar
from hub.core.model import FieldChange

ANY = "*"  # in `from`: any state that is not terminal

VerdictKind = Literal["accepted", "agrees", "superseded", "not_owner", "not_allowed", "no_evidence"]
REFUSALS: tuple[str, ...] = ("not_owner", "not_allowed", "no_evidence")


@dataclass(frozen=True)
class Evidence:
    """One condition a state needs: `field` reported by `source` (any system when None), equal to `equals`
    (any non-empty value when None). `fresh_seconds`: before accepting, the hub asks the source again when
    its last word on the field is older than this (a courier's delivery, confirmed at that moment)."""

    field: str
    source: str | None = None
    equals: JsonScalar = None
    fresh_seconds: float | None = None

    def describe(self) -> str:
        what = f"`{self.field}`" + (f" = {json.dumps(self.equals, ensure_ascii=False)}" if self.equals is not None
                                     else " set")
        what += f" by {self.source}" if self.source else ""
        return what + (f" (asked again when older than {self.fresh_seconds:g} s)" if self.fresh_seconds else "")

    def matches(self, field_name: str, system: str, value: JsonScalar) -> bool:
        if field_name != self.field or (self.source is not None and system != self.source):
            return False
        if self.equals is None:
            return value is not None and value != ""
        return value == self.equals


@dataclass(frozen=True)
class StateRule:
    """How a ticket may enter one state."""

    name: str
    sources: tuple[str, ...] = ()  # the states it may be entered from (`*`: any non-terminal state)
    by: tuple[str, ...] = ()  # the systems that may report it (empty: none may; the initial state needs none)
    evidence: tuple[Evidence, ...] = ()
    terminal: bool = False  # nothing leaves it
    dwell_seconds: float | None = None  # a ticket in this state longer than this raises an alert
    escalate_seconds: float | None = None  # ... and, past this, one escalation


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    reason: str = ""
    missing: tuple[Evidence, ...] = ()


@dataclass(frozen=True)
class Workflow:
    initial: str
    states: Mapping[str, StateRule]
    source: str = "(workflow)"  # the file it came from, for messages
    skew_seconds: float = 0.0  # [hub] clock_skew_seconds: evidence this much younger than a claim still counts

    @cached_property
    def evidence_fields(self) -> frozenset[str]:  # read on every apply: worked out once
        return frozenset(e.field for rule in self.states.values() for e in rule.evidence)

    def allows(self, current: str, target: str) -> bool:
        here, rule = self.states.get(current), self.states.get(target)
        if here is None or rule is None or here.terminal:
            return False
        return ANY in rule.sources or current in rule.sources

    def next_states(self, current: str) -> list[str]:
        return [name for name in self.states if name != current and self.allows(current, name)]


# ---- evidence marks --------------------------------------------------------------------------------

Marks = Mapping[str, datetime]  # mark key -> earliest modified-at


def mark_key(field_name: str, system: str, value: JsonScalar) -> str:
    return json.dumps([field_name, system, value], ensure_ascii=False, separators=(",", ":"))


def parse_mark(key: str) -> tuple[str, str, JsonScalar]:
    field_name, system, value = json.loads(key)
    return field_name, system, value


def add_marks(marks: dict[str, datetime], changes: Iterable[FieldChange], fields: frozenset[str]) -> bool:
    """Record, for each change of an evidence field, the earliest moment its system reported that value.
    Returns whether any mark moved (a new one, or an earlier moment)."""
    moved = False
    for change in changes:
        if change.field not in fields or change.value is None or change.value == "":
            continue
        key = mark_key(change.field, change.provenance.system, change.value)
        at = change.provenance.modified_at
        if key not in marks or at < marks[key]:
            marks[key] = at
            moved = True
    return moved


def held_at(evidence: Evidence, marks: Marks, moment: datetime) -> bool:
    return any(at <= moment and evidence.matches(*parse_mark(key)) for key, at in marks.items())


def last_word(evidence: Evidence, marks: Marks) -> datetime | None:
    """The newest moment the evidence's source reported the evidence field (any value), or None."""
    times = [at for key, at in marks.items()
             if (m := parse_mark(key))[0] == evidence.field and (evidence.source is None or m[1] == evidence.source)]
    return max(times) if times else None


# ---- settling the claims ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Settled:
    status: str | None  # None while no claim was ever made
    winner: FieldChange | None  # the accepted claim that set it (None: the initial state, or no claims)
    verdicts: Mapping[FieldChange, Verdict]


def settle(workflow: Workflow, claims: Iterable[FieldChange], marks: Marks) -> Settled:
    """The golden status a set of claims comes to, and what became of each claim."""
    ordered = sorted(set(claims), key=FieldChange.precedence)
    if not ordered:
        return Settled(None, None, {})
    skew = timedelta(seconds=workflow.skew_seconds)
    current, winner = workflow.initial, None
    verdicts: dict[FieldChange, Verdict] = {}
    accepted: list[FieldChange] = []
    for claim in ordered:
        target, system = str(claim.value), claim.provenance.system
        rule = workflow.states.get(target)
        if target == current:
            verdicts[claim] = Verdict("agrees", f"the ticket is already {current}")
            if winner is None:
                winner = claim  # the initial state as reported: its provenance dates it
            continue
        if rule is None:
            verdicts[claim] = Verdict("not_allowed", f"`{target}` is not a state of the workflow ({workflow.source})")
            continue
        if system not in rule.by:
            who = ", ".join(rule.by) or "no system"
            verdicts[claim] = Verdict("not_owner", f"{system} may not report {target}; {who} reports it")
            continue
        if not workflow.allows(current, target):
            verdicts[claim] = Verdict("not_allowed", _not_allowed(workflow, current, target))
            continue
        missing = tuple(e for e in rule.evidence if not held_at(e, marks, claim.provenance.modified_at + skew))
        if missing:
            verdicts[claim] = Verdict("no_evidence", f"{target} needs " + "; ".join(e.describe() for e in missing)
                                      + f" (none by {claim.provenance.modified_at.isoformat()})", missing)
            continue
        current, winner = target, claim
        accepted.append(claim)
    for claim in accepted:
        verdicts[claim] = Verdict("accepted") if claim == winner else Verdict(
            "superseded", f"accepted, then the ticket moved on to {current}")
    return Settled(current, winner, verdicts)


def _not_allowed(workflow: Workflow, current: str, target: str) -> str:
    if workflow.states[current].terminal:
        return f"{current} is final: the ticket cannot become {target}"
    options = workflow.next_states(current)
    return (f"{current} -> {target} is not an allowed transition; from {current} it may become "
            f"{', '.join(options) or 'nothing'}")


# ---- checking a workflow ---------------------------------------------------------------------------

# the roles the shipped workflow names: a deployment without one of them (no courier, say) may keep the file as
# it is, the states only that role reports are then never reached; any other unknown name is a typo
STANDARD_ROLES = ("crm", "erp", "mes", "wms", "courier")


def problems(workflow: Workflow, systems: Sequence[str]) -> list[tuple[str, str, str]]:
    """(key, problem, fix) for what is wrong with a workflow against the configured systems."""
    found: list[tuple[str, str, str]] = []
    systems = [*systems, *(role for role in STANDARD_ROLES if role not in systems)]
    states = set(FIELDS["status"].choices)
    if workflow.initial not in workflow.states:
        found.append(("workflow.initial", f"`{workflow.initial}` has no [states.{workflow.initial}] table",
                      "add it or name another initial state"))
    for name, rule in workflow.states.items():
        key = f"states.{name}"
        if name not in states:
            found.append((key, f"`{name}` is not a canonical status", f"use one of {', '.join(sorted(states))}"))
        for source in rule.sources:
            if source != ANY and source not in workflow.states:
                found.append((f"{key}.from", f"`{source}` is not a state of this workflow",
                              f"use `*` or one of {', '.join(workflow.states)}"))
        for system in rule.by:
            if system not in systems:
                found.append((f"{key}.by", f"no system `{system}` is configured",
                              f"use one of {', '.join(systems)}"))
        for i, evidence in enumerate(rule.evidence):
            where = f"{key}.evidence[{i}]"
            if evidence.field not in FIELDS:
                found.append((f"{where}.field", f"`{evidence.field}` is not a canonical field",
                              "name a canonical field"))
            if evidence.source is not None and evidence.source not in systems:
                found.append((f"{where}.from", f"no system `{evidence.source}` is configured",
                              f"use one of {', '.join(systems)}"))
        if name != workflow.initial and not rule.sources:
            found.append((f"{key}.from", f"no state leads to {name}", "list the states it may be entered from"))
        if (rule.dwell_seconds is not None and rule.escalate_seconds is not None
                and rule.escalate_seconds <= rule.dwell_seconds):
            found.append((f"{key}.escalate", "the escalation limit must be longer than the dwell limit",
                          "make `escalate` longer than `dwell`"))
    return found
