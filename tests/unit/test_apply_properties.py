"""Property tests of `hub.core.apply.apply_changes`: order does not matter, ownership holds, nothing is lost.

Changes are drawn from a few canonical fields with valid and invalid values, from owners and
non-owners, with modified-at and author ranks from small sets so that ties happen. They run against
the default mappings and against a hand-built mapping set where fields have several owners, so that
ties are settled by author rank, then system rank, then the stable order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.core.apply import apply_changes
from hub.core.canonical import FIELDS, JsonScalar, normalize
from hub.core.errors import InvalidValue
from hub.core.mapping import FieldMapping, MappingSet, SystemMapping
from hub.core.model import ApplyResult, FieldChange, Outcome, Provenance, TicketState
from hub.mapping_files import DEFAULT_DIR, default_systems, load_mappings

pytestmark = pytest.mark.unit

TICKET = "20260213-SVC-00001"
UNTARGETED_KINDS = {"applied", "duplicate", "not_owner", "stale", "echo", "invalid_value", "conflict"}

# Few moments and ranks, so that ties on modified-at and on author rank are common.
MOMENTS = (
    datetime(2026, 2, 13, 9, 0, 0, tzinfo=UTC),
    datetime(2026, 2, 13, 9, 0, 1, tzinfo=UTC),
    datetime(2026, 2, 13, 10, 30, 0, tzinfo=UTC),
)
RECEIVED = (datetime(2026, 2, 13, 11, 0, 0, tzinfo=UTC), datetime(2026, 2, 13, 11, 0, 5, tzinfo=UTC))
AUTHOR_RANKS = (10, 50, 80)
AUTHORS = ("agent@example.com", "admin", "robot")

DEFAULT_MAPPINGS = load_mappings(DEFAULT_DIR, default_systems())

# Per field: values valid canonically (some of them refused by a subscriber, some not in normal form)
# and values the canonical model refuses.
DEFAULT_VALUES: dict[str, tuple[JsonScalar, ...]] = {
    # "call me maybe" is refused by the ERP's phone pattern; 4930123 is not text.
    "customer.phone": ("+49 30 1234567", "555-0100", "call me maybe", None, 4930123),
    # The ERP takes at most 500 characters of address.
    "customer.address": ("Hauptstr. 1, Berlin", "x" * 501, 42),
    "status": ("new", "shipped", "closed", "bogus", "Shipped"),
    "production.progress": (0, 40, 100, 150, -1, True, "50"),
    # "120.50" is the same amount as "120.5"; True, "abc" and "NaN" are not amounts.
    "billing.amount": ("120.5", "120.50", 99, "-5", "abc", True, "NaN"),
    # The first two are the same instant; the third has no time zone.
    "shipment.delivered_at": (
        "2026-02-13T10:00:00Z",
        "2026-02-13T11:00:00+01:00",
        "2026-02-13T10:00:00",
        "yesterday",
        None,
    ),
    # Not a canonical field at all.
    "customer.nmae": ("Ada",),
}


def _all_status_values() -> tuple[tuple[str, str], ...]:
    return tuple((status.upper(), status) for status in FIELDS["status"].choices)


# Hand-built: `customer.phone` has three owners (alpha ranks above beta and gamma, which tie), `status`
# has two. beta, gamma and delta each refuse some values as targets.
SEVERAL_OWNERS = MappingSet(
    {
        "alpha": SystemMapping(
            "alpha",
            "alpha.toml",
            rank=20,
            fields={
                "customer.phone": FieldMapping("customer.phone", "phone", "both", owner=True),
                "status": FieldMapping("status", "state", "both", owner=True, values=_all_status_values()),
            },
        ),
        "beta": SystemMapping(
            "beta",
            "beta.toml",
            rank=10,
            fields={
                "customer.phone": FieldMapping("customer.phone", "tel", "both", owner=True, max_length=12),
                "status": FieldMapping("status", "st", "read", owner=True, values=_all_status_values()),
            },
        ),
        "gamma": SystemMapping(
            "gamma",
            "gamma.toml",
            rank=10,
            fields={
                "customer.phone": FieldMapping("customer.phone", "phone_no", "read", owner=True),
                "status": FieldMapping("status", "state", "write", values=(("N", "new"), ("C", "closed"))),
            },
        ),
        "delta": SystemMapping(
            "delta",
            "delta.toml",
            rank=5,
            fields={
                "customer.phone": FieldMapping("customer.phone", "digits", "write", pattern=r"\d+"),
                "status": FieldMapping("status", "state", "both", values=_all_status_values()),
            },
        ),
    }
)

SEVERAL_OWNERS_VALUES: dict[str, tuple[JsonScalar, ...]] = {
    # beta refuses the 14-character one; delta refuses anything but digits.
    "customer.phone": ("+49 30 1234567", "5550100", "555 0100", None, 42),
    # gamma takes only new and closed.
    "status": ("new", "shipped", "closed", "bogus"),
}


@st.composite
def change_sets(
    draw: st.DrawFn, mapping_set: MappingSet, values: dict[str, tuple[JsonScalar, ...]]
) -> list[FieldChange]:
    """A list of changes, one per distinct event id."""
    systems = sorted(mapping_set.systems)
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from([(name, value) for name in sorted(values) for value in values[name]]),
                st.sampled_from(systems),
                st.sampled_from(AUTHORS),
                st.sampled_from(AUTHOR_RANKS),
                st.sampled_from(MOMENTS),
                st.sampled_from(RECEIVED),
            ),
            max_size=14,
        )
    )
    changes = []
    for number, ((name, value), system, author, author_rank, modified_at, received_at) in enumerate(rows):
        provenance = Provenance(
            system=system,
            author=author,
            author_rank=author_rank,
            system_rank=mapping_set.systems[system].rank,
            modified_at=modified_at,
            received_at=received_at,
            event_id=f"ev-{number}",
        )
        changes.append(FieldChange(name, value, provenance))
    return changes


@st.composite
def shuffled_with_repeats(draw: st.DrawFn, changes: list[FieldChange]) -> list[FieldChange]:
    """The same set of changes in any order, with any of them repeated."""
    repeats = draw(st.lists(st.sampled_from(changes), max_size=len(changes))) if changes else []
    return draw(st.permutations(changes + repeats))


MAPPING_CASES = [
    pytest.param(DEFAULT_MAPPINGS, DEFAULT_VALUES, id="default-mappings"),
    pytest.param(SEVERAL_OWNERS, SEVERAL_OWNERS_VALUES, id="several-owners"),
]


def apply_in_one_call(changes: Sequence[FieldChange], mapping_set: MappingSet) -> ApplyResult:
    return apply_changes(TicketState(TICKET), changes, mapping_set)


def apply_one_per_call(
    changes: Sequence[FieldChange], mapping_set: MappingSet, state: TicketState | None = None
) -> tuple[ApplyResult, list[ApplyResult]]:
    """Apply each change in its own call; return the combined result and each call's result."""
    state = state or TicketState(TICKET)
    results = []
    for change in changes:
        result = apply_changes(state, [change], mapping_set)
        results.append(result)
        state = result.state
    outcomes = tuple(outcome for result in results for outcome in result.outcomes)
    return ApplyResult(state, outcomes), results


def normalized(change: FieldChange) -> FieldChange | None:
    """The change with its value in normal form, or None if the canonical model refuses it."""
    if change.field not in FIELDS:
        return None
    try:
        return FieldChange(change.field, normalize(change.field, change.value), change.provenance)
    except InvalidValue:
        return None


def expected_winners(changes: Sequence[FieldChange], mapping_set: MappingSet) -> dict[str, FieldChange]:
    """Per field, the valid owner change with the highest precedence (highest value, if monotonic)."""
    winners: dict[str, FieldChange] = {}
    for change in changes:
        if change.provenance.system not in mapping_set.owners(change.field):
            continue
        valid = normalized(change)
        if valid is None:
            continue
        best = winners.get(change.field)
        if best is None or _rank(valid) > _rank(best):
            winners[change.field] = valid
    return winners


def _rank(change: FieldChange) -> tuple[object, ...]:
    """A monotonic field (progress) keeps its highest value; any other, the newest by precedence."""
    if FIELDS[change.field].monotonic:
        return (change.value, change.precedence())
    return (change.precedence(),)


def untargeted(outcomes: Sequence[Outcome]) -> list[Outcome]:
    return [outcome for outcome in outcomes if outcome.target is None]


@pytest.mark.parametrize(("mapping_set", "values"), MAPPING_CASES)
@settings(deadline=None)
@given(data=st.data())
def test_any_order_and_any_repetition_give_the_same_record_and_outbox(
    mapping_set: MappingSet, values: dict[str, tuple[JsonScalar, ...]], data: st.DataObject
) -> None:
    """The golden record and the outbox depend only on the set of changes, not their order or repeats."""
    changes = data.draw(change_sets(mapping_set, values), label="changes")
    reordered = data.draw(shuffled_with_repeats(changes), label="reordered")

    reference = apply_in_one_call(changes, mapping_set).state
    in_one_call = apply_in_one_call(reordered, mapping_set).state
    one_per_call, _ = apply_one_per_call(reordered, mapping_set)

    assert in_one_call.fields == reference.fields
    assert in_one_call.pending == reference.pending
    assert one_per_call.state.fields == reference.fields
    assert one_per_call.state.pending == reference.pending


@pytest.mark.parametrize(("mapping_set", "values"), MAPPING_CASES)
@settings(deadline=None)
@given(data=st.data())
def test_applying_the_same_changes_again_changes_nothing(
    mapping_set: MappingSet, values: dict[str, tuple[JsonScalar, ...]], data: st.DataObject
) -> None:
    """Replaying changes the hub has already applied, in any order, leaves record and outbox as they are."""
    changes = data.draw(change_sets(mapping_set, values), label="changes")
    first = apply_in_one_call(changes, mapping_set)
    replay = apply_changes(first.state, data.draw(st.permutations(changes), label="replay"), mapping_set)

    assert replay.state == first.state
    assert [o for o in replay.outcomes if o.kind == "applied"] == []


@pytest.mark.parametrize(("mapping_set", "values"), MAPPING_CASES)
@settings(deadline=None)
@given(data=st.data())
def test_a_non_owner_never_sets_a_value_and_is_always_told_not_owner(
    mapping_set: MappingSet, values: dict[str, tuple[JsonScalar, ...]], data: st.DataObject
) -> None:
    """A change from a system that does not own the field is recorded as not_owner and never becomes the value."""
    changes = data.draw(change_sets(mapping_set, values), label="changes")
    result = apply_in_one_call(data.draw(shuffled_with_repeats(changes), label="reordered"), mapping_set)

    for outcome in untargeted(result.outcomes):
        change = outcome.change
        if change.field not in FIELDS:
            continue
        if change.provenance.system in mapping_set.owners(change.field):
            assert outcome.kind != "not_owner"
        else:  # reporting the value the record holds at that moment is agreement, not an edit
            assert outcome.kind in ("not_owner", "duplicate")
            assert outcome.kind == "not_owner" or change.value == (outcome.old.value if outcome.old else None)
            current = result.state.fields.get(change.field)
            assert current is None or current.provenance.system in mapping_set.owners(change.field)


@pytest.mark.parametrize(("mapping_set", "values"), MAPPING_CASES)
@settings(deadline=None)
@given(data=st.data())
def test_every_change_gets_exactly_one_outcome_of_its_own(
    mapping_set: MappingSet, values: dict[str, tuple[JsonScalar, ...]], data: st.DataObject
) -> None:
    """Every change, even one the hub already holds or delivered, gets exactly one outcome; none vanishes."""
    changes = data.draw(change_sets(mapping_set, values), label="changes")
    reordered = data.draw(shuffled_with_repeats(changes), label="reordered")
    # Marks of values the hub wrote earlier, so that some reports are echoes.
    marks = data.draw(
        st.dictionaries(
            st.sampled_from(sorted(mapping_set.systems)),
            st.dictionaries(
                st.sampled_from(sorted(values)),
                st.sampled_from(sorted(values)).flatmap(lambda name: st.sampled_from(values[name])),
                max_size=3,
            ),
            max_size=3,
        ),
        label="delivered",
    )
    start = TicketState(TICKET, delivered=marks)

    in_one_call = apply_changes(start, reordered, mapping_set)
    own = untargeted(in_one_call.outcomes)
    assert len(own) == len(reordered)
    for outcome, change in zip(own, reordered, strict=True):
        assert outcome.kind in UNTARGETED_KINDS
        assert (outcome.change.field, outcome.change.provenance) == (change.field, change.provenance)

    _, per_call = apply_one_per_call(reordered, mapping_set, start)
    for result, change in zip(per_call, reordered, strict=True):
        (outcome,) = untargeted(result.outcomes)
        assert outcome.change.provenance == change.provenance
        # A target-refusal is a consequence of applying, never a change's own outcome.
        targeted = [o for o in result.outcomes if o.target is not None]
        assert all(o.kind == "invalid_value" for o in targeted)
        assert not targeted or outcome.kind == "applied"


@pytest.mark.parametrize(("mapping_set", "values"), MAPPING_CASES)
@settings(deadline=None)
@given(data=st.data())
def test_each_field_holds_the_valid_owner_change_of_highest_precedence(
    mapping_set: MappingSet, values: dict[str, tuple[JsonScalar, ...]], data: st.DataObject
) -> None:
    """Each field ends with the newest valid owner value (ties: author rank, system rank, stable order)."""
    changes = data.draw(change_sets(mapping_set, values), label="changes")
    result = apply_in_one_call(data.draw(shuffled_with_repeats(changes), label="reordered"), mapping_set)

    winners = expected_winners(changes, mapping_set)
    assert set(result.state.fields) == set(winners)
    for name, winner in winners.items():
        current = result.state.fields[name]
        assert (current.value, current.provenance) == (winner.value, winner.provenance)
        # Spelled out without precedence(): nothing valid from an owner is newer, or as new and ranked higher
        # (for a field that only grows, among the owners' changes carrying its highest value).
        valid = [n for c in changes
                 if c.field == name and c.provenance.system in mapping_set.owners(name) and (n := normalized(c))]
        if FIELDS[name].monotonic:
            highest = max(v.value for v in valid)  # type: ignore[type-var]
            assert current.value == highest
            valid = [v for v in valid if v.value == highest]
        rivals = [v.provenance for v in valid]
        p = current.provenance
        assert max((r.modified_at, r.author_rank, r.system_rank) for r in rivals) == (
            p.modified_at,
            p.author_rank,
            p.system_rank,
        )


@pytest.mark.parametrize(("mapping_set", "values"), MAPPING_CASES)
@settings(deadline=None)
@given(data=st.data())
def test_outbox_holds_the_winner_for_every_subscriber_but_its_source_or_a_refusal(
    mapping_set: MappingSet, values: dict[str, tuple[JsonScalar, ...]], data: st.DataObject
) -> None:
    """The outbox owes each subscriber, except the winner's source, the winner as it stores it, or says why not."""
    changes = data.draw(change_sets(mapping_set, values), label="changes")
    reordered = data.draw(shuffled_with_repeats(changes), label="reordered")
    winners = expected_winners(changes, mapping_set)

    for result in (apply_in_one_call(reordered, mapping_set), apply_one_per_call(reordered, mapping_set)[0]):
        pending = result.state.pending
        expected_slots = set()
        for name, winner in winners.items():
            source = winner.provenance.system
            assert name not in pending.get(source, {})
            for target in mapping_set.subscribers(name):
                if target == source:
                    continue
                mapping = mapping_set.systems[target].fields[name]
                try:
                    system_value = mapping.to_system(winner.value, target)
                except InvalidValue:
                    assert name not in pending.get(target, {})
                    assert any(
                        o.kind == "invalid_value" and o.target == target and o.change == winner for o in result.outcomes
                    ), f"no refusal recorded for {target} / {name}"
                    continue
                expected_slots.add((target, name))
                write = pending[target][name]
                assert (write.value, write.system_field, write.system_value, write.provenance) == (
                    winner.value,
                    mapping.system_field,
                    system_value,
                    winner.provenance,
                )
        held = {(target, name) for target, writes in pending.items() for name in writes}
        assert held == expected_slots
