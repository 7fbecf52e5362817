"""The golden record in memory: field values with provenance, pending writes, and what apply reports.

Plain frozen dataclasses; no database, no HTTP. The store turns rows into these and back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from hub.core.canonical import JsonScalar


@dataclass(frozen=True)
class Provenance:
    """Where a value came from: which system, who, when it was changed there, when the hub heard."""

    system: str
    author: str
    author_rank: int
    system_rank: int
    modified_at: datetime  # the source system's modified-at, UTC
    received_at: datetime  # when the hub accepted the event carrying it, UTC
    event_id: str


@dataclass(frozen=True)
class FieldChange:
    """One canonical field set to one value by one source, as carried by one event."""

    field: str
    value: JsonScalar
    provenance: Provenance

    def precedence(self) -> tuple[datetime, int, int, str, str, str]:
        """Last-writer-wins order: modified-at, then author rank, then system rank, then a stable order.

        The stable order (system, event, value) makes the order total, so that any permutation of the
        same changes settles on the same winner.
        """
        p = self.provenance
        return (p.modified_at, p.author_rank, p.system_rank, p.system, p.event_id, _canonical_json(self.value))


@dataclass(frozen=True)
class FieldValue:
    value: JsonScalar
    provenance: Provenance

    def as_change(self, field_name: str) -> FieldChange:
        return FieldChange(field_name, self.value, self.provenance)


@dataclass(frozen=True)
class PendingWrite:
    """A field the hub owes a subscribed system: canonical value, the system's own field and value."""

    value: JsonScalar
    system_field: str
    system_value: JsonScalar
    provenance: Provenance


OutcomeKind = Literal["applied", "duplicate", "not_owner", "stale", "echo", "invalid_value", "conflict",
                      "not_allowed", "no_evidence"]


@dataclass(frozen=True)
class Outcome:
    """What became of one change (or, with `target`, of passing it on to one subscribed system)."""

    kind: OutcomeKind
    change: FieldChange
    old: FieldValue | None
    reason: str = ""
    target: str | None = None  # set when a target system would refuse the value: it is not sent there


@dataclass(frozen=True)
class TicketState:
    """A ticket as apply sees it.

    `pending` is the outbox: per subscribed system, per field, the write the hub owes it.
    `delivered` is, per system and field, the last value the hub wrote there; a change reporting that
    same value back is the hub's own echo.
    `claims` and `marks` are the status workflow's input (hub.core.workflow): every status a system
    reported, and when each piece of evidence was first reported.
    """

    ticket_id: str
    fields: Mapping[str, FieldValue] = field(default_factory=dict)
    pending: Mapping[str, Mapping[str, PendingWrite]] = field(default_factory=dict)
    delivered: Mapping[str, Mapping[str, JsonScalar]] = field(default_factory=dict)
    claims: frozenset[FieldChange] = frozenset()
    marks: Mapping[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class ApplyResult:
    state: TicketState
    outcomes: tuple[Outcome, ...]



def _canonical_json(value: JsonScalar) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
