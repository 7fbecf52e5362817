"""Deciding a field two copies disagree on (design §4). Pure.

The candidates are the golden value and each owner's copy. In order:

1. `newest`       the newest source modified-at wins, unless another candidate holding a different value
                  was modified within the clock-skew tolerance of it: then the two are a tie, and
2. `author_rank`  the tie goes to the higher author rank, then
3. `system_rank`  to the higher system rank;
4. `flagged`      otherwise nobody wins and an operator decides.

`agree` means every candidate holds the same value. Every decision keeps its evidence: each candidate with
system, author, ranks and modified-at. Non-owners whose copy differs from the winner are drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from reconcile.fingerprint import canonical_bytes

Rule = Literal["agree", "newest", "author_rank", "system_rank", "flagged"]
GOLDEN = "golden"  # the source of the hub's own record among the candidates


@dataclass(frozen=True)
class Candidate:
    """One copy's value of one field, with what the rules weigh."""

    source: str  # GOLDEN, or the system whose copy it is
    system: str  # for GOLDEN, the system the golden value came from
    value: Any
    author: str
    author_rank: int
    system_rank: int
    modified_at: datetime | None  # the source's modified-at (None: unknown, oldest of all)
    owner: bool = True


@dataclass(frozen=True)
class Decision:
    field: str
    rule: Rule
    winner: Candidate | None  # None when flagged
    candidates: tuple[Candidate, ...]
    reason: str


def same(a: Any, b: Any) -> bool:
    """Values compare as canonical JSON (1 and 1.0 are the same; so are equal dicts in any key order)."""
    return canonical_bytes({"v": a}) == canonical_bytes({"v": b})


def _age(candidate: Candidate) -> float:
    return candidate.modified_at.timestamp() if candidate.modified_at else float("-inf")


def resolve(field: str, candidates: Sequence[Candidate], skew_seconds: float) -> Decision:
    """Decide `field` among the golden value and the owners' copies."""
    if not candidates:
        raise ValueError(f"no candidates for {field}")
    ordered = sorted(candidates, key=_age, reverse=True)
    newest = ordered[0]
    if all(same(c.value, newest.value) for c in ordered):
        return Decision(field, "agree", newest, tuple(ordered), "every copy holds the same value")
    tied = [c for c in ordered if _age(newest) - _age(c) <= skew_seconds]
    if all(same(c.value, newest.value) for c in tied):
        runner = next(c for c in ordered if not same(c.value, newest.value))
        gap = _age(newest) - _age(runner)
        return Decision(field, "newest", newest, tuple(ordered),
                        f"{_who(newest)} changed it {gap:.0f} s after {_who(runner)} (beyond the "
                        f"{skew_seconds:g} s clock-skew tolerance)")
    for rule, rank in (("author_rank", lambda c: c.author_rank), ("system_rank", lambda c: c.system_rank)):
        top = max(rank(c) for c in tied)
        leaders = [c for c in tied if rank(c) == top]
        if all(same(c.value, leaders[0].value) for c in leaders):
            losers = [c for c in tied if not same(c.value, leaders[0].value)]
            what = "author" if rule == "author_rank" else "system"
            return Decision(field, rule, leaders[0], tuple(ordered),  # type: ignore[arg-type]
                            f"changed within {skew_seconds:g} s of each other: {_who(leaders[0])} outranks "
                            f"{', '.join(_who(c) for c in losers)} ({what} rank {top} over "
                            f"{', '.join(str(rank(c)) for c in losers)})")
        tied = leaders
    return Decision(field, "flagged", None, tuple(ordered),
                    f"{len(tied)} copies changed within {skew_seconds:g} s of each other with equal author and "
                    "system ranks: an operator decides")


def _who(candidate: Candidate) -> str:
    where = "the hub's record" if candidate.source == GOLDEN else candidate.system
    return f"{candidate.author} in {where}"
