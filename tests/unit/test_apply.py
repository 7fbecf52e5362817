"""Examples of `hub.core.apply.apply_changes`: echo, stale, ownership, refused values and ties."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from hub.core.apply import apply_changes
from hub.core.canonical import JsonScalar
from hub.core.mapping import FieldMapping, MappingSet, SystemMapping
from hub.core.model import FieldChange, FieldValue, PendingWrite, Provenance, TicketState
from hub.mapping_files import DEFAULT_DIR, default_systems, load_mappings

pytestmark = pytest.mark.unit

TICKET = "20260213-SVC-00892"
T0 = datetime(2026, 2, 13, 9, 0, tzinfo=UTC)
MAPPINGS = load_mappings(DEFAULT_DIR, default_systems())
_events = iter(range(1, 10_000))


def change(
    field: str,
    value: JsonScalar,
    system: str,
    *,
    at: datetime = T0,
    author: str = "agent@example.com",
    author_rank: int = 10,
    system_rank: int | None = None,
    event_id: str | None = None,
    mapping_set: MappingSet = MAPPINGS,
) -> FieldChange:
    rank = mapping_set.systems[system].rank if system_rank is None else system_rank
    provenance = Provenance(
        system=system,
        author=author,
        author_rank=author_rank,
        system_rank=rank,
        modified_at=at,
        received_at=at + timedelta(seconds=2),
        event_id=event_id or f"ev-{next(_events)}",
    )
    return FieldChange(field, value, provenance)


def apply(*changes: FieldChange, state: TicketState | None = None, mapping_set: MappingSet = MAPPINGS):
    return apply_changes(state or TicketState(TICKET), changes, mapping_set)


# --- echo -------------------------------------------------------------------------------------------


def shipped_and_delivered_to_erp() -> TicketState:
    """A ticket whose status `shipped` came from the CRM and has been written to the ERP."""
    first = apply(change("status", "shipped", "crm"))
    return TicketState(TICKET, fields=first.state.fields, delivered={"erp": {"status": "shipped"}})


def test_the_erp_reporting_back_the_value_the_hub_wrote_is_an_echo() -> None:
    """When the ERP reports the status the hub just wrote there, it is recognised as the hub's own echo."""
    state = shipped_and_delivered_to_erp()
    reported = MAPPINGS.systems["erp"].fields["status"].to_canonical("shipped")
    echo = change("status", reported, "erp", at=T0 + timedelta(minutes=5))

    result = apply(echo, state=state)

    assert [(o.kind, o.target) for o in result.outcomes] == [("echo", None)]
    assert "erp" in result.outcomes[0].reason
    assert result.state.fields == state.fields
    assert result.state.pending == {}
    assert result.state.delivered == {"erp": {"status": "shipped"}}


def test_an_echo_is_recognised_as_often_as_it_comes_back() -> None:
    """Repeated reports of the delivered value stay echoes and never queue a write."""
    state = shipped_and_delivered_to_erp()

    result = apply(change("status", "shipped", "erp"), change("status", "shipped", "erp"), state=state)

    assert [o.kind for o in result.outcomes] == ["echo", "echo"]
    assert result.state.pending == {}


def test_the_erp_reporting_a_different_value_clears_the_echo_mark() -> None:
    """Once the ERP reports something else, a later report of the old value is a real (and here refused) change."""
    state = shipped_and_delivered_to_erp()

    moved_on = apply(change("status", "closed", "erp"), state=state)
    back_again = apply(change("status", "shipped", "erp"), state=moved_on.state)

    assert [o.kind for o in moved_on.outcomes] == ["not_owner"]
    assert moved_on.state.delivered == {}
    # the old value is the record's current one: the ERP agrees with the record, it edits nothing
    assert [o.kind for o in back_again.outcomes] == ["duplicate"]
    assert back_again.state.fields == state.fields


def test_an_owner_reporting_a_new_value_after_an_echo_mark_is_applied() -> None:
    """A mark of a delivered value does not stop the owner's own newer, different value."""
    crm_name = apply(change("customer.name", "Ada Lovelace", "crm")).state
    state = TicketState(TICKET, fields=crm_name.fields, delivered={"crm": {"customer.name": "Ada Lovelace"}})

    result = apply(change("customer.name", "Ada King", "crm", at=T0 + timedelta(hours=1)), state=state)

    assert result.outcomes[0].kind == "applied"
    assert result.state.fields["customer.name"].value == "Ada King"
    assert result.state.delivered == {}


# --- stale and ownership ----------------------------------------------------------------------------


def test_an_older_change_is_stale_and_the_reason_says_which_value_is_newer() -> None:
    """A change older than the current value is not applied, and the reason names both times and the source."""
    newer = change("customer.phone", "+49 30 2222222", "crm", at=T0 + timedelta(hours=1))
    older = change("customer.phone", "+49 30 1111111", "crm", at=T0)

    result = apply(newer, older)

    stale = result.outcomes[-1]
    assert stale.kind == "stale"
    assert stale.old == FieldValue("+49 30 2222222", newer.provenance)
    assert "2026-02-13T09:00:00+00:00" in stale.reason
    assert "2026-02-13T10:00:00+00:00" in stale.reason
    assert "crm" in stale.reason
    assert result.state.fields["customer.phone"].value == "+49 30 2222222"


def test_a_change_from_a_system_that_does_not_own_the_field_is_refused_naming_the_owner() -> None:
    """The ERP editing the customer's phone is refused, and the reason says the CRM owns it."""
    result = apply(change("customer.phone", "+49 30 9999999", "erp", author="admin", author_rank=90))

    (outcome,) = result.outcomes
    assert outcome.kind == "not_owner"
    assert outcome.reason == "erp does not own `customer.phone`; it is owned by crm"
    assert outcome.change.provenance.author == "admin"
    assert result.state.fields == {}
    assert result.state.pending == {}



def test_a_subscriber_editing_a_field_it_does_not_own_is_owed_the_golden_value_back() -> None:
    """The ERP user's phone edit is refused and the CRM's phone is written back to the ERP (its edit undone
    there), not to anyone else; a system that is never written the field is owed nothing."""
    crm = apply(change("customer.phone", "+49 30 1111111", "crm"))
    delivered = TicketState(TICKET, fields=crm.state.fields, delivered={"erp": {"customer.phone": "+49 30 1111111"}})

    edited = apply(change("customer.phone", "+49 30 9999999", "erp", author="admin", at=T0 + timedelta(hours=1)),
                   state=delivered)

    assert [o.kind for o in edited.outcomes] == ["not_owner"]
    assert edited.state.fields == crm.state.fields
    assert set(edited.state.pending) == {"erp"}
    owed = edited.state.pending["erp"]["customer.phone"]
    assert (owed.value, owed.system_field, owed.provenance.system) == ("+49 30 1111111", "party.phone", "crm")
    # the MES is never written the customer's phone: its refused report owes it nothing
    mes = apply(change("customer.phone", "+49 30 9999999", "mes"), state=delivered)
    assert mes.state.pending == {}


def test_a_non_owners_edit_is_left_alone_where_its_policy_is_report() -> None:
    """With `reconcile = "report"` for the ERP's phone, the refused edit is not undone in the ERP."""
    erp = MAPPINGS.systems["erp"]
    phone = replace(erp.fields["customer.phone"], reconcile="report")
    lenient = replace(MAPPINGS, systems={**MAPPINGS.systems,
                                         "erp": replace(erp, fields={**erp.fields, "customer.phone": phone})})
    crm = apply(change("customer.phone", "+49 30 1111111", "crm"), mapping_set=lenient)
    state = TicketState(TICKET, fields=crm.state.fields)

    edited = apply(change("customer.phone", "+49 30 9999999", "erp", mapping_set=lenient), state=state,
                   mapping_set=lenient)

    assert [o.kind for o in edited.outcomes] == ["not_owner"] and edited.state.pending == {}
# --- values refused by a target or by the canonical model --------------------------------------------


def test_a_phone_the_erp_refuses_is_kept_and_sent_everywhere_else() -> None:
    """A phone the ERP's pattern refuses still updates the record and the WMS, but is not queued for the ERP."""
    earlier = apply(change("customer.phone", "+49 30 1234567", "crm")).state
    assert earlier.pending["erp"]["customer.phone"].system_value == "+49 30 1234567"

    result = apply(change("customer.phone", "call me maybe", "crm", at=T0 + timedelta(hours=1)), state=earlier)

    kinds = [(o.kind, o.target) for o in result.outcomes]
    assert kinds == [("applied", None), ("invalid_value", "erp")]
    refusal = result.outcomes[1]
    assert "erp" in refusal.reason
    assert "party.phone" in refusal.reason
    assert "call me maybe" in refusal.reason
    assert result.state.fields["customer.phone"].value == "call me maybe"
    assert "customer.phone" not in result.state.pending.get("erp", {})
    assert result.state.pending["wms"]["customer.phone"] == PendingWrite(
        "call me maybe", "shipment.recipient_phone", "call me maybe", result.outcomes[0].change.provenance
    )


def test_an_applied_change_is_queued_for_every_subscriber_in_its_own_terms() -> None:
    """A CRM status change is queued for the ERP as the ERP's own status word, and not for the CRM itself."""
    result = apply(change("status", "closed", "crm"))

    assert [o.kind for o in result.outcomes] == ["applied"]
    assert set(result.state.pending) == {"erp"}
    write = result.state.pending["erp"]["status"]
    assert (write.value, write.system_field, write.system_value) == ("closed", "sale.service_state", "done")


@pytest.mark.parametrize(
    ("field", "value", "system", "says"),
    [
        ("status", "bogus", "crm", "not one of new, assigned"),
        ("production.progress", 150, "mes", "above the maximum 100"),
        ("production.progress", -1, "mes", "below the minimum 0"),
        ("production.progress", True, "mes", "whole number"),
        ("billing.amount", "a lot", "erp", "not a number"),
        ("shipment.delivered_at", "2026-02-13T10:00:00", "courier", "no time zone"),
    ],
)
def test_a_value_the_canonical_model_refuses_is_not_applied(field: str, value: JsonScalar, system: str, says: str):
    """An owner sending a value not valid for the field gets invalid_value with a reason, and nothing changes."""
    result = apply(change(field, value, system))

    (outcome,) = result.outcomes
    assert (outcome.kind, outcome.target) == ("invalid_value", None)
    assert says in outcome.reason
    assert result.state.fields == {}
    assert result.state.pending == {}


@pytest.mark.parametrize("progress", [0, 50, 100])
def test_production_progress_from_0_to_100_percent_is_applied(progress: int) -> None:
    """The MES may report any progress from 0 to 100 percent, and the CRM is told."""
    result = apply(change("production.progress", progress, "mes"))

    assert [o.kind for o in result.outcomes] == ["applied"]
    assert result.state.pending["crm"]["production.progress"].system_value == progress


def test_a_value_is_stored_in_its_normal_form() -> None:
    """An amount of "120.50" from the ERP is stored and sent on as "120.5", and sending "120.5" again is a duplicate."""
    first = apply(change("billing.amount", "120.50", "erp", event_id="ev-amount"))
    again = apply(change("billing.amount", "120.50", "erp", event_id="ev-amount"), state=first.state)

    assert first.state.fields["billing.amount"].value == "120.5"
    assert first.state.pending["crm"]["billing.amount"].system_value == "120.5"
    assert [o.kind for o in again.outcomes] == ["duplicate"]


def test_an_unknown_field_is_refused_as_invalid() -> None:
    """A change to a field the canonical model does not have is refused and says so."""
    result = apply(change("customer.nmae", "Ada", "crm"))

    (outcome,) = result.outcomes
    assert outcome.kind == "invalid_value"
    assert "`customer.nmae` is not a canonical field" in outcome.reason


# --- ties -------------------------------------------------------------------------------------------


def test_a_tie_on_modified_at_goes_to_the_higher_author_rank_in_either_order() -> None:
    """Two CRM edits at the same moment: the supervisor's wins over the agent's, whichever arrives first."""
    supervisor = change("customer.address", "Hauptstr. 1", "crm", author="supervisor@example.com", author_rank=80)
    agent = change("customer.address", "Nebenstr. 2", "crm", author="agent@example.com", author_rank=50)

    for order in ((supervisor, agent), (agent, supervisor)):
        result = apply(*order)
        assert result.state.fields["customer.address"].value == "Hauptstr. 1"
    loser = apply(supervisor, agent).outcomes[-1]
    assert loser.kind == "stale"
    assert "author rank 50 is below 80" in loser.reason


TWO_OWNERS = MappingSet(
    {
        "crm": SystemMapping(
            "crm",
            "crm.toml",
            rank=50,
            fields={"customer.email": FieldMapping("customer.email", "contact.email", "both", owner=True)},
        ),
        "helpdesk": SystemMapping(
            "helpdesk",
            "helpdesk.toml",
            rank=30,
            fields={"customer.email": FieldMapping("customer.email", "requester_email", "both", owner=True)},
        ),
    }
)


def test_a_tie_on_modified_at_and_author_rank_goes_to_the_higher_system_rank() -> None:
    """Two owners changing the e-mail at the same moment with equal author ranks: the higher-ranked system wins."""
    crm = change("customer.email", "ada@crm.example", "crm", author_rank=50, mapping_set=TWO_OWNERS)
    helpdesk = change("customer.email", "ada@help.example", "helpdesk", author_rank=50, mapping_set=TWO_OWNERS)

    for order in ((crm, helpdesk), (helpdesk, crm)):
        result = apply(*order, mapping_set=TWO_OWNERS)
        assert result.state.fields["customer.email"].value == "ada@crm.example"
        assert result.state.pending == {
            "helpdesk": {
                "customer.email": PendingWrite("ada@crm.example", "requester_email", "ada@crm.example", crm.provenance)
            }
        }
    loser = apply(crm, helpdesk, mapping_set=TWO_OWNERS).outcomes[-1]
    assert loser.kind == "stale"
    assert "system rank 30 is below 50" in loser.reason


def test_author_rank_outweighs_system_rank() -> None:
    """At the same moment, a higher-ranked author in the lower-ranked system still wins."""
    crm = change("customer.email", "ada@crm.example", "crm", author_rank=10, mapping_set=TWO_OWNERS)
    helpdesk = change("customer.email", "ada@help.example", "helpdesk", author_rank=70, mapping_set=TWO_OWNERS)

    for order in ((crm, helpdesk), (helpdesk, crm)):
        assert apply(*order, mapping_set=TWO_OWNERS).state.fields["customer.email"].value == "ada@help.example"


def test_a_full_tie_is_settled_the_same_way_in_either_order() -> None:
    """Equal time and ranks from two systems still settle on one winner, whichever arrives first."""
    crm = change("customer.email", "ada@crm.example", "crm", author_rank=50, system_rank=5, mapping_set=TWO_OWNERS)
    helpdesk = change(
        "customer.email", "ada@help.example", "helpdesk", author_rank=50, system_rank=5, mapping_set=TWO_OWNERS
    )

    forward = apply(crm, helpdesk, mapping_set=TWO_OWNERS)
    backward = apply(helpdesk, crm, mapping_set=TWO_OWNERS)

    assert forward.state == backward.state
    assert forward.state.fields["customer.email"].value == "ada@help.example"
    assert backward.outcomes[-1].kind == "stale"
    assert "stable order" in backward.outcomes[-1].reason


# --- monotonic progress -----------------------------------------------------------------------------


def test_a_newer_lower_progress_is_a_conflict_and_the_progress_stays():
    """Production progress only grows: the MES reporting 30 after 60 is a conflict, not an update."""
    first = apply(change("production.progress", 60, "mes", at=T0))
    result = apply(change("production.progress", 30, "mes", at=T0 + timedelta(hours=1)), state=first.state)

    [outcome] = result.outcomes
    assert outcome.kind == "conflict"
    assert "only grows" in outcome.reason and "60" in outcome.reason
    assert result.state.fields["production.progress"].value == 60


def test_an_older_higher_progress_still_wins():
    """Arriving late does not make a higher progress lose: the record holds the highest value reported."""
    first = apply(change("production.progress", 30, "mes", at=T0 + timedelta(hours=1)))
    result = apply(change("production.progress", 60, "mes", at=T0), state=first.state)

    assert [o.kind for o in result.outcomes] == ["applied"]
    assert result.state.fields["production.progress"].value == 60


def test_an_older_lower_progress_is_merely_stale():
    """A lower value that is also older was overtaken, not a regression: stale, as for any field."""
    first = apply(change("production.progress", 60, "mes", at=T0 + timedelta(hours=1)))
    result = apply(change("production.progress", 30, "mes", at=T0), state=first.state)

    assert [o.kind for o in result.outcomes] == ["stale"]
