"""Property tests of the status workflow inside apply: order does not matter, and the golden status is always
reachable from `new` through allowed transitions, each reported by a system allowed to, whose evidence held.

Changes are status claims from every system (allowed to report them or not) and the evidence the default
workflow reads (the WMS's waybill, the courier's parcel state, the ERP's parts), at a few moments close
enough together that the clock-skew tolerance and exact ties matter.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.core.apply import apply_changes
from hub.core.model import FieldChange, Provenance, TicketState
from hub.core.workflow import settle
from hub.mapping_files import DEFAULT_DIR, default_systems, load_mappings
from hub.workflow_files import load_workflow

pytestmark = pytest.mark.unit

TICKET = "20260213-SVC-00001"
SKEW = 2.0
MAPPINGS = load_mappings(DEFAULT_DIR, default_systems())
WORKFLOW = load_workflow(DEFAULT_DIR / "workflow.toml", sorted(default_systems()), skew_seconds=SKEW)
T0 = datetime(2026, 2, 13, 9, 0, tzinfo=UTC)
# seconds after T0: 0/1/2/3 are within the skew of each other, 60 and 61 too
MOMENTS = (0, 1, 3, 60, 61, 120, 300)

CLAIMS = [("crm", s) for s in ("new", "assigned", "in_repair", "ready_to_ship", "resolved", "closed", "cancelled",
                               "shipped")] + [("mes", s) for s in ("in_repair", "in_production", "ready_to_ship",
                                                                   "waiting_parts")] + [
    ("wms", "shipped"), ("courier", "delivered")]
EVIDENCE = [("shipment.waybill", "wms", "SF1"), ("shipment.waybill", "wms", "SF2"),
            ("shipment.status", "courier", "delivered"), ("shipment.status", "courier", "in_transit"),
            ("parts.reserved", "erp", True), ("parts.reserved", "erp", False)]


@st.composite
def histories(draw: st.DrawFn) -> list[FieldChange]:
    rows = draw(st.lists(st.tuples(
        st.one_of(st.sampled_from([("status", s, v) for s, v in CLAIMS]),
                  st.sampled_from([(f, s, v) for f, s, v in EVIDENCE])),
        st.sampled_from(MOMENTS), st.sampled_from((10, 50, 80))), min_size=1, max_size=16))
    changes = []
    for number, ((field, system, value), seconds, rank) in enumerate(rows):
        at = T0 + timedelta(seconds=seconds)
        changes.append(FieldChange(field, value, Provenance(system, f"user-{rank}", rank, MAPPINGS.systems[system].rank,
                                                            at, at + timedelta(minutes=5), f"ev-{number}")))
    return changes


def one_by_one(changes: list[FieldChange]) -> TicketState:
    state = TicketState(TICKET)
    for change in changes:
        state = apply_changes(state, [change], MAPPINGS, WORKFLOW).state
    return state


@settings(max_examples=400, deadline=None)
@given(data=st.data(), changes=histories())
def test_any_order_any_repeats_gives_the_same_ticket(data: st.DataObject, changes: list[FieldChange]) -> None:
    together = apply_changes(TicketState(TICKET), changes, MAPPINGS, WORKFLOW).state
    repeats = data.draw(st.lists(st.sampled_from(changes), max_size=len(changes)), label="repeats")
    shuffled = data.draw(st.permutations(changes + repeats), label="order")
    apart = one_by_one(shuffled)
    assert apart.fields == together.fields
    assert apart.claims == together.claims and apart.marks == together.marks
    assert apart.pending == together.pending


@settings(max_examples=400, deadline=None)
@given(changes=histories())
def test_the_golden_status_is_reachable_through_allowed_transitions_whose_evidence_held(
        changes: list[FieldChange]) -> None:
    state = one_by_one(changes)
    claims = [c for c in changes if c.field == "status"]
    if not claims:
        assert "status" not in state.fields
        return
    settled = settle(WORKFLOW, state.claims, state.marks)
    path = sorted((c for c, v in settled.verdicts.items() if v.kind in ("accepted", "superseded")),
                  key=FieldChange.precedence)
    current = WORKFLOW.initial
    for step in path:  # checked against the raw changes and the workflow, not the marks
        rule = WORKFLOW.states[str(step.value)]
        assert step.provenance.system in rule.by
        assert "*" in rule.sources or current in rule.sources
        assert not WORKFLOW.states[current].terminal
        for evidence in rule.evidence:
            assert any(c.field == evidence.field and c.provenance.system == evidence.source
                       and (c.value == evidence.equals if evidence.equals is not None else c.value)
                       and c.provenance.modified_at <= step.provenance.modified_at + timedelta(seconds=SKEW)
                       for c in changes), f"{step.value} accepted without {evidence.describe()}"
        current = str(step.value)
    assert state.fields["status"].value == current
    # nobody can reach a state the path does not justify: every claim of a different, later state was refused
    for claim, verdict in settled.verdicts.items():
        if verdict.kind in ("not_owner", "not_allowed", "no_evidence"):
            assert claim not in path
