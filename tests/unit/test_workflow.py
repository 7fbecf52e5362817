"""The status workflow in apply: evidence, allowed transitions, who may report what, write-back; the file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.core.apply import apply_changes
from hub.core.errors import MappingError
from hub.core.model import ApplyResult, FieldChange, Provenance, TicketState
from hub.mapping_files import DEFAULT_DIR, default_systems, load_mappings
from hub.workflow_files import check_workflow, load_workflow, parse_duration

pytestmark = pytest.mark.unit

TICKET = "20260213-SVC-00001"
T0 = datetime(2026, 2, 13, 9, 0, tzinfo=UTC)
MAPPINGS = load_mappings(DEFAULT_DIR, default_systems())
WORKFLOW = load_workflow(DEFAULT_DIR / "workflow.toml", sorted(default_systems()), skew_seconds=2)
RANKS = {name: m.rank for name, m in MAPPINGS.systems.items()}


def change(field: str, value: object, system: str, minutes: float, event: str, author: str = "someone") -> FieldChange:
    at = T0 + timedelta(minutes=minutes)
    return FieldChange(field, value, Provenance(system, author, 10, RANKS[system], at, at, event))  # type: ignore[arg-type]


def run(*changes: FieldChange, state: TicketState | None = None) -> ApplyResult:
    return apply_changes(state or TicketState(TICKET), changes, MAPPINGS, WORKFLOW)


def shipped_ticket() -> TicketState:
    """A ticket the WMS has shipped with a waybill."""
    return run(change("status", "new", "crm", 0, "e1"), change("status", "in_repair", "mes", 10, "e2"),
               change("status", "ready_to_ship", "mes", 20, "e3"),
               change("shipment.waybill", "SF1234567890", "wms", 29, "e4"),
               change("status", "shipped", "wms", 30, "e5")).state


def test_a_ticket_walks_the_workflow_when_each_state_has_its_evidence() -> None:
    state = shipped_ticket()
    assert state.fields["status"].value == "shipped"
    assert state.fields["status"].provenance.system == "wms"
    # every subscriber but the WMS is owed the new status (the CRM and the ERP are written it)
    assert state.pending["crm"]["status"].system_value == "Shipped"
    assert "wms" not in state.pending or "status" not in state.pending["wms"]


def test_resolved_before_the_courier_confirms_delivery_is_refused_and_the_valid_status_written_back() -> None:
    state = shipped_ticket()
    result = run(change("status", "resolved", "crm", 40, "e6", author="agent@example.com"), state=state)
    [refused] = [o for o in result.outcomes if o.change.field == "status"]
    assert refused.kind == "no_evidence" and '`shipment.status` = "delivered" by courier' in refused.reason
    assert refused.change.provenance.author == "agent@example.com"
    assert result.state.fields["status"].value == "shipped"
    assert result.state.pending["crm"]["status"].system_value == "Shipped"  # the CRM is told the truth


def test_delivered_needs_the_couriers_signed_state_and_resolved_then_follows() -> None:
    state = shipped_ticket()
    without = run(change("status", "delivered", "courier", 50, "e7"), state=state)
    [refused] = [o for o in without.outcomes if o.change.field == "status"]
    assert refused.kind == "no_evidence" and "shipment.status" in refused.reason and "courier" in refused.reason

    signed = run(change("shipment.status", "delivered", "courier", 50, "e7"),
                 change("status", "delivered", "courier", 50, "e7"), state=state)
    assert signed.state.fields["status"].value == "delivered"
    resolved = run(change("status", "resolved", "crm", 55, "e8"), state=signed.state)
    assert resolved.state.fields["status"].value == "resolved"
    assert [o.kind for o in resolved.outcomes if o.change.field == "status"] == ["applied"]


def test_a_claim_refused_for_evidence_that_had_not_arrived_yet_is_accepted_when_it_arrives() -> None:
    """The delivery happened (courier time 10:50) before the agent resolved (10:55), but the push arrived
    after: order of arrival must not matter, so the resolved claim stands once the push is in."""
    state = shipped_ticket()
    early = run(change("status", "resolved", "crm", 55, "e8"), state=state)
    assert early.state.fields["status"].value == "shipped"
    late = run(change("shipment.status", "delivered", "courier", 50, "e7"),
               change("status", "delivered", "courier", 50, "e7"), state=early.state)
    assert late.state.fields["status"].value == "resolved"
    assert late.state.fields["status"].provenance.system == "crm"


def test_a_claim_made_before_its_evidence_existed_stays_refused() -> None:
    state = shipped_ticket()
    early = run(change("status", "resolved", "crm", 40, "e8"), state=state)
    late = run(change("shipment.status", "delivered", "courier", 50, "e7"),
               change("status", "delivered", "courier", 50, "e7"), state=early.state)
    assert late.state.fields["status"].value == "delivered"


def test_a_transition_the_workflow_does_not_have_is_not_allowed() -> None:
    state = shipped_ticket()
    result = run(change("status", "assigned", "crm", 40, "e6"), state=state)
    [refused] = [o for o in result.outcomes if o.change.field == "status"]
    assert refused.kind == "not_allowed" and "shipped -> assigned" in refused.reason
    assert "resolved" in refused.reason  # it says where the ticket may go from here


def test_only_the_systems_the_workflow_names_may_report_a_state() -> None:
    state = shipped_ticket()
    result = run(change("status", "delivered", "crm", 60, "e9", author="agent@example.com"), state=state)
    [refused] = [o for o in result.outcomes if o.change.field == "status"]
    assert refused.kind == "not_owner" and "courier reports it" in refused.reason


def test_final_states_stay_final() -> None:
    state = run(change("status", "new", "crm", 0, "e1"), change("status", "cancelled", "crm", 5, "e2")).state
    result = run(change("status", "in_repair", "mes", 10, "e3"), state=state)
    assert result.state.fields["status"].value == "cancelled"
    assert [o.kind for o in result.outcomes if o.change.field == "status"] == ["not_allowed"]
    assert "final" in result.outcomes[0].reason


def test_the_hubs_own_write_reported_back_is_an_echo_not_a_claim() -> None:
    state = shipped_ticket()
    echoed = TicketState(state.ticket_id, state.fields, state.pending, {"crm": {"status": "shipped"}},
                         state.claims, state.marks)
    result = run(change("status", "shipped", "crm", 31, "e6"), state=echoed)
    assert [o.kind for o in result.outcomes] == ["echo"]
    assert result.state.claims == state.claims


def test_evidence_within_the_clock_skew_counts() -> None:
    state = run(change("status", "new", "crm", 0, "e1"), change("status", "in_repair", "mes", 10, "e2"),
                change("status", "ready_to_ship", "mes", 20, "e3")).state
    at = 30.0
    result = run(change("status", "shipped", "wms", at, "e5"),
                 change("shipment.waybill", "SF1", "wms", at + 1.5 / 60, "e4"), state=state)
    assert result.state.fields["status"].value == "shipped"
    result = run(change("status", "shipped", "wms", at, "e5"),
                 change("shipment.waybill", "SF1", "wms", at + 3 / 60, "e4"), state=state)
    assert result.state.fields["status"].value == "ready_to_ship"


def test_durations() -> None:
    assert parse_duration("2h") == 7200 and parse_duration("1h30m") == 5400 and parse_duration(90) == 90
    assert parse_duration("2d") == 172800
    for bad in ("soon", "", "-5m", 0):
        with pytest.raises(ValueError):
            parse_duration(bad)  # type: ignore[arg-type]


def test_a_wrong_workflow_file_names_each_problem_with_its_key(tmp_path: Path) -> None:
    path = tmp_path / "workflow.toml"
    path.write_text('[workflow]\ninitial = "new"\n[states.new]\n'
                    '[states.shipped]\nfrom = ["ready"]\nby = ["wsm"]\n'
                    'evidence = [{ field = "shipment.waybil", from = "wms" }]\ndwell = "2h"\nescalate = "1h"\n'
                    '[states.teleported]\nfrom = ["new"]\nby = ["crm"]\n', encoding="utf-8")
    workflow, problems = check_workflow(path, ["crm", "wms"])
    assert workflow is None
    keys = {p.key for p in problems}
    assert {"states.shipped.from", "states.shipped.by", "states.shipped.evidence[0].field",
            "states.shipped.escalate", "states.teleported"} <= keys
    with pytest.raises(MappingError) as raised:
        load_workflow(path, ["crm", "wms"])
    assert "wsm" in str(raised.value)
    bad_duration = tmp_path / "w2.toml"
    bad_duration.write_text('[states.new]\ndwell = "soon"\n', encoding="utf-8")
    _, problems = check_workflow(bad_duration, ["crm"])
    assert [p.key for p in problems] == ["states.new.dwell"] and "duration" in problems[0].message
