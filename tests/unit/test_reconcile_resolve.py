"""Reconciliation's pure rules: fingerprints, field differences, and who wins a disagreement and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from reconcile.compare import differing_fields
from reconcile.fingerprint import fingerprint
from reconcile.resolve import GOLDEN, Candidate, resolve

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def cand(source: str, value: object, seconds: float, author: str = "agent", author_rank: int = 10,
         system_rank: int = 50, system: str | None = None) -> Candidate:
    return Candidate(source, system or (source if source != GOLDEN else "crm"), value, author, author_rank,
                     system_rank, T0 + timedelta(seconds=seconds))


def test_a_fingerprint_ignores_key_order_and_empty_fields_and_keeps_chinese_text() -> None:
    """The same values in any key order, with or without empty fields, hash the same; a change does not."""
    a = {"customer.name": "王小明", "status": "new", "parts.reserved": None}
    b = {"status": "new", "customer.name": "王小明"}
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint({**b, "customer.name": "王小鸣"})


def test_only_the_fields_that_differ_are_reported() -> None:
    """Two copies differing in one field name that field alone; agreeing copies name none."""
    golden = {"customer.name": "Ada", "status": "new", "billing.amount": "12.50"}
    assert differing_fields(golden, dict(golden)) == []
    assert differing_fields(golden, {**golden, "status": "assigned"}) == ["status"]
    assert differing_fields(golden, {"customer.name": "Ada", "billing.amount": "12.50"}) == ["status"]


def test_the_newest_change_wins_beyond_the_skew_tolerance() -> None:
    """A copy changed 10 s after the other, with 2 s of tolerance, wins by `newest`, whatever the ranks."""
    decision = resolve("customer.phone", [cand(GOLDEN, "+1", 0, author_rank=90), cand("crm", "+2", 10)], 2)
    assert decision.rule == "newest" and decision.winner is not None and decision.winner.value == "+2"
    assert "10 s after" in decision.reason


def test_changes_within_the_skew_are_a_tie_that_author_rank_breaks() -> None:
    """Two owners changing within the tolerance: the higher author rank wins, even with the older stamp."""
    decision = resolve("status", [cand("crm", "assigned", 1.5, "junior", 10),
                                  cand("erp", "cancelled", 0, "supervisor", 80)], 2)
    assert decision.rule == "author_rank" and decision.winner is not None
    assert decision.winner.value == "cancelled" and "supervisor in erp outranks junior in crm" in decision.reason


def test_equal_author_ranks_fall_to_system_rank_then_to_an_operator() -> None:
    """Ties go to the higher system rank; with system ranks equal too, the field is flagged for review."""
    by_system = resolve("status", [cand("crm", "new", 0, system_rank=50), cand("erp", "closed", 1, system_rank=40)], 2)
    assert by_system.rule == "system_rank" and by_system.winner is not None and by_system.winner.value == "new"
    flagged = resolve("status", [cand("crm", "new", 0), cand("erp", "closed", 1)], 2)
    assert flagged.rule == "flagged" and flagged.winner is None and len(flagged.candidates) == 2


def test_copies_that_agree_need_no_rule() -> None:
    """The same value everywhere is `agree`."""
    assert resolve("status", [cand(GOLDEN, "new", 0), cand("crm", "new", 5)], 2).rule == "agree"


def test_an_unknown_modified_at_counts_as_oldest() -> None:
    """A copy with no time loses to any copy that has one."""
    undated = Candidate("erp", "erp", "closed", "x", 99, 99, None)
    decision = resolve("status", [undated, cand("crm", "new", 0)], 2)
    assert decision.rule == "newest" and decision.winner is not None and decision.winner.value == "new"


candidates = st.lists(st.builds(
    cand, source=st.sampled_from([GOLDEN, "crm", "erp", "mes"]), value=st.sampled_from(["a", "b", "c"]),
    seconds=st.integers(0, 20), author_rank=st.integers(0, 3), system_rank=st.integers(0, 3)), min_size=1, max_size=5)


@given(candidates, st.randoms())
def test_the_decision_does_not_depend_on_the_order_of_the_candidates(found: list[Candidate], rng: object) -> None:
    """Shuffled candidates give the same rule and the same winning value."""
    shuffled = list(found)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    first, second = resolve("status", found, 2), resolve("status", shuffled, 2)
    assert first.rule == second.rule
    assert (first.winner.value if first.winner else None) == (second.winner.value if second.winner else None)


@given(candidates)
def test_a_winner_is_always_one_of_the_candidates_and_never_older_than_the_skew_allows(found: list[Candidate]) -> None:
    """The winner holds a candidate's value and was modified within the tolerance of the newest."""
    decision = resolve("status", found, 2)
    newest = max(c.modified_at for c in found if c.modified_at)
    if decision.winner is not None:
        assert decision.winner in found
        assert decision.winner.modified_at is not None
        assert (newest - decision.winner.modified_at).total_seconds() <= 2 or decision.rule == "agree"
