"""Use case: the service metrics an operator watches (README "Service metrics"), over a window.

- flow time: from a ticket's creation in the hub to the moment every system it was written to first had it
  (the slowest system's first successful delivery), p50/p95 over tickets created in the window whose
  every system has it; tickets still waiting for a system are counted apart;
- time in each state: how long tickets stayed in a status before the next (p50/p95 per state);
- status changes: reported ones accepted and refused, by reason and system; the share that carried the
  evidence they needed (accepted / (accepted + refused for no evidence));
- dwell breaches by state (alerts and escalations raised);
- first-attempt delivery success per system.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hub.store.stats import StatsRepository
from hub.usecases.context import Hub


@dataclass(frozen=True)
class Spread:
    count: int
    p50: float | None
    p95: float | None


@dataclass
class ServiceStats:
    since: datetime
    until: datetime
    flow_seconds: Spread
    flow_waiting: int  # tickets created in the window that some written system does not have yet
    state_seconds: dict[str, Spread] = field(default_factory=dict)
    status_accepted: int = 0
    status_refused: dict[str, dict[str, int]] = field(default_factory=dict)  # reason -> system -> count
    evidence_share: float | None = None
    dwell_breaches: dict[str, dict[str, int]] = field(default_factory=dict)  # dwell|dwell_escalation -> state -> n
    first_attempt_success: dict[str, float] = field(default_factory=dict)  # system -> share
    first_attempts: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["since"], data["until"] = self.since.isoformat(), self.until.isoformat()
        return data


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile (no interpolation: every reported value is one that was measured)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def spread(values: Sequence[float]) -> Spread:
    return Spread(len(values), percentile(values, 0.5), percentile(values, 0.95))


def service_stats(hub: Hub, since: datetime | None = None) -> ServiceStats:
    until = hub.clock()
    since = since or until - timedelta(days=1)
    with hub.store.unit_of_work() as uow:
        repo = uow.stats
        flows, waiting = _flows(repo, since)
        states = _state_times(repo, since)
        outcomes = repo.status_outcomes(since)
        breaches = repo.dwell_breaches(since)
        attempts = repo.first_attempts(since)
    refused: dict[str, dict[str, int]] = defaultdict(dict)
    accepted = 0
    for outcome, system, count in outcomes:
        if outcome == "applied":
            accepted += count
        else:
            refused[outcome][system] = refused[outcome].get(system, 0) + count
    lacking = sum(refused.get("no_evidence", {}).values())
    dwell: dict[str, dict[str, int]] = defaultdict(dict)
    for kind, state, count in breaches:
        dwell[kind][state or "?"] = count
    return ServiceStats(
        since=since, until=until, flow_seconds=spread(flows), flow_waiting=waiting,
        state_seconds={state: spread(values) for state, values in sorted(states.items())},
        status_accepted=accepted, status_refused=dict(refused),
        evidence_share=accepted / (accepted + lacking) if accepted + lacking else None,
        dwell_breaches=dict(dwell),
        first_attempt_success={system: ok / total for system, total, ok in attempts if total},
        first_attempts={system: total for system, total, _ in attempts},
    )


def _flows(repo: StatsRepository, since: datetime) -> tuple[list[float], int]:
    per_ticket: dict[str, tuple[datetime, list[datetime | None]]] = {}
    for ticket_id, created_at, _system, first in repo.first_presence(since):
        per_ticket.setdefault(ticket_id, (created_at, []))[1].append(first)
    flows, waiting = [], 0
    for created_at, firsts in per_ticket.values():
        if any(f is None for f in firsts):
            waiting += 1
            continue
        flows.append(max(((f - created_at).total_seconds() for f in firsts if f is not None), default=0.0))
    return flows, waiting


def _state_times(repo: StatsRepository, since: datetime) -> dict[str, list[float]]:
    times: dict[str, list[float]] = defaultdict(list)
    previous: tuple[str, Any, datetime] | None = None
    for ticket_id, status, entered_at in repo.status_moves(since):
        if previous is not None and previous[0] == ticket_id and previous[1] != status:
            times[str(previous[1])].append(max(0.0, (entered_at - previous[2]).total_seconds()))
        previous = (ticket_id, status, entered_at)
    return times
