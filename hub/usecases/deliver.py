"""Deliver deliveries: claim them (one transaction), write through the connector (no transaction open),
record the outcomes (one transaction; both are shared with other threads' claims and outcomes, see
`hub.store.combine`). Returns what the caller (a Celery task) must schedule next.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from random import Random
from typing import Any, Protocol

import structlog

from hub.core.errors import TickethubError
from hub.core.ports import Connector, HttpAnswer, HttpWrite, HttpWriter, WriteRequest, WriteResult
from hub.core.retry import classify
from hub.store.combine import Combiner
from hub.store.deliveries import Claim, Finish
from hub.usecases.alerting import channels_for
from hub.usecases.context import Hub, retry_policy

log = structlog.get_logger("tickethub.delivery")
_JITTER = Random()  # one per process: seeding one per delivery read the OS entropy source every time


@dataclass(frozen=True)
class DeliverOutcome:
    kind: str  # delivered | retry | dead | busy | not_due | gone | in_flight | superseded | late | unrecorded
    countdown: float | None = None  # for retry/busy: when to try again
    follow_ups: list[int] = field(default_factory=list)  # deliveries to publish now
    latency_seconds: float | None = None  # acceptance of the oldest carried event -> delivered


def max_in_flight(hub: Hub, system: str) -> int:
    own = hub.settings.systems[system].max_in_flight if system in hub.settings.systems else None
    return own or hub.settings.delivery.max_in_flight_per_system


def deliver_once(hub: Hub, delivery_id: int, connector_for: Callable[[str], Connector],
                 rng: Random | None = None, worker: str | None = None,
                 sender: Sender | None = None) -> DeliverOutcome:
    """One delivery (`deliver_many` with one id)."""
    return deliver_many(hub, [delivery_id], connector_for, rng, worker, sender)[0]


def deliver_many(hub: Hub, delivery_ids: Sequence[int], connector_for: Callable[[str], Connector],
                 rng: Random | None = None, worker: str | None = None,
                 sender: Sender | None = None) -> list[DeliverOutcome]:
    """Several deliveries, each with its own claim, attempt and outcome, as if delivered one by one, but
    claimed together, sent together and recorded together.

    The claims of every thread of this process that claims at the same moment are one transaction, and so are
    their outcomes (`hub.store.combine`); outcomes recorded together that fail are recorded again one by one.
    A write its connector can express as one HTTP request (`HttpWriter`) goes out on `sender`, the worker's
    event loop, all of them at once; the others are written by their connectors in this thread meanwhile.
    `worker`: the claiming process's identity (`hub.usecases.liveness`), so that its claims are taken back
    soon after it dies; without one a claim waits out its lease."""
    rng = rng or _JITTER
    started = hub.clock()
    ids = list(dict.fromkeys(delivery_ids))
    try:
        claims = dict(zip(ids, _claims(hub, worker)(ids), strict=True))
    except Exception as exc:  # noqa: BLE001 (not claimed (the database?): each tried again soon, none held)
        log.warning("deliveries not claimed", deliveries=len(ids), error=type(exc).__name__)
        return [DeliverOutcome("busy", 1.0 + rng.random()) for _ in delivery_ids]
    outcomes: dict[int, DeliverOutcome] = {}
    held: list[tuple[Claim, Connector | TickethubError]] = []
    for delivery_id in ids:
        claim = claims[delivery_id]
        if isinstance(claim, str):
            outcomes[delivery_id] = DeliverOutcome(claim, 0.5 + rng.random() if claim == "busy" else None)
            continue
        try:
            held.append((claim, connector_for(claim.system)))
        except TickethubError as exc:
            held.append((claim, exc))

    results = _write_all(held, sender)
    answered = hub.clock()  # the writes were in flight together: one time for all their answers
    finishing = [_Finishing(hub, claim, result, started, answered, rng)
                 for (claim, _), result in zip(held, results, strict=True)]
    recorded = _outcomes(hub)(finishing) if finishing else []
    for finished, outcome in zip(finishing, recorded, strict=True):
        if isinstance(outcome, BaseException):  # written, but not recorded: its lease ends, then it is resent
            log.error("delivery outcome not recorded", ticket_id=finished.claim.ticket_id,
                      system=finished.claim.system, delivery_id=finished.claim.delivery_id,
                      error=type(outcome).__name__)
            outcomes[finished.claim.delivery_id] = DeliverOutcome("unrecorded")
            continue
        outcomes[finished.claim.delivery_id] = finished.logged(*outcome)
    return [outcomes[delivery_id] for delivery_id in delivery_ids]


CLAIMS_TOGETHER = 64  # deliveries claimed in one transaction, at most (the claims of several threads)
OUTCOMES_TOGETHER = 64  # outcomes recorded in one transaction, at most


def _claims(hub: Hub, worker: str | None) -> Combiner[int, Claim | str]:
    """This process's claims, combined (`claim_many` over the deliveries of every thread claiming meanwhile)."""
    return hub.shared(f"claims:{worker}",
                      lambda: Combiner(partial(_claim_all, hub, worker), CLAIMS_TOGETHER, key=lambda i: i))


def _claim_all(hub: Hub, worker: str | None, ids: list[int]) -> list[Claim | str]:
    lease = timedelta(seconds=hub.settings.delivery.lease_seconds)
    claims = hub.store.together(partial(_claim_many, hub, ids, hub.clock(), lease, worker))
    return [claims[i] for i in ids]


def _claim_many(hub: Hub, ids: list[int], now: datetime, lease: timedelta, worker: str | None,
                uow: Any) -> dict[int, Claim | str]:
    return uow.deliveries.claim_many(ids, now, lease, lambda system: max_in_flight(hub, system),
                                     worker)  # type: ignore[no-any-return]


Recorded = tuple[str, float | None, list[int]]  # verdict (or late), latency, follow-up deliveries


def _outcomes(hub: Hub) -> Combiner[_Finishing, Recorded | BaseException]:
    """This process's outcomes, combined (`_record_all`)."""
    return hub.shared("outcomes", lambda: Combiner(partial(_record_all, hub), OUTCOMES_TOGETHER))


def _record_all(hub: Hub, finishing: list[_Finishing]) -> list[Recorded | BaseException]:
    """The outcomes recorded in one transaction; if it fails, each in one of its own, so that one outcome's
    failure is its own."""
    try:
        return list(hub.store.together(partial(_record, hub, finishing)))
    except Exception as exc:  # noqa: BLE001 (rolled back: each again alone, for its own outcome)
        if len(finishing) == 1:
            return [exc]
    alone: list[Recorded | BaseException] = []
    for one in finishing:
        try:
            alone.extend(hub.store.together(partial(_record, hub, [one])))
        except Exception as exc:  # noqa: BLE001 (this one's outcome)
            alone.append(exc)
    return alone


def _record(hub: Hub, finishing: list[_Finishing], uow: Any) -> list[Recorded]:
    """Record these outcomes in a few statements: each delivery moved to its verdict if its claim still holds
    it (else the attempt is `late`: another attempt owns it), its attempt, what was written (so that the
    system's report of it is an echo), the next delivery of the same ticket and system (fields that
    waited meanwhile), an alert for a dead letter."""
    finishes = [f.finish for f in finishing]
    held = uow.deliveries.finish_many(finishes)
    late = {f.claim.delivery_id for f in finishes} - held
    uow.deliveries.record_attempts(finishes, late)
    mine = [f for f in finishing if f.claim.delivery_id in held]
    delivered = [f for f in mine if f.verdict == "delivered"]
    uow.tickets.record_delivered_many([(f.claim.ticket_id, f.claim.system,
                                        {name: field["value"] for name, field in f.claim.fields.items()}, f.now)
                                       for f in delivered])
    for f in delivered:
        if f.result.local_id and f.result.local_id != f.claim.local_id:
            # a new record, or one the write moved the ticket to (a courier's new waybill): linked too, so
            # the system's notices about it find the ticket; the old link stays for its late notices
            uow.tickets.link(f.claim.ticket_id, f.claim.system, f.result.local_id, f.now)
    for f in mine:
        if f.verdict == "dead":  # an operator should look (and replay once the system is fixed)
            claim = f.claim
            uow.alerts.raise_alert(f"delivery_dead:{claim.delivery_id}", "delivery_dead", f.now,
                                   channels_for(hub, "delivery_dead"), ticket_id=claim.ticket_id, system=claim.system,
                                   facts={"attempts": claim.attempt, "error": (f.result.error or "")[:500],
                                          "delivery_id": claim.delivery_id})
    done = [f for f in mine if f.verdict != "retry"]
    follow_ups = uow.deliveries.schedule_many([(f.claim.ticket_id, f.claim.system) for f in done],
                                              max((f.now for f in done), default=hub.clock()))
    recorded: list[Recorded] = []
    for f in finishing:
        claim = f.claim
        if claim.delivery_id in late:
            recorded.append(("late", None, []))
            continue
        latency = None
        if f.verdict == "delivered" and claim.first_accepted_at:
            latency = (f.now - claim.first_accepted_at).total_seconds()
        recorded.append((f.verdict, latency,
                         [] if f.verdict == "retry" else follow_ups[(claim.ticket_id, claim.system)]))
    return recorded


def _write_all(held: list[tuple[Claim, Connector | TickethubError]], sender: Sender | None) -> list[WriteResult]:
    """The result of each claim's write: HTTP writes on the sender (in flight together), the rest here."""
    requests = [WriteRequest(c.delivery_id, c.ticket_id, c.system, c.local_id, c.system_fields(), c.attempt)
                for c, _ in held]
    results: list[WriteResult | None] = [None] * len(held)
    by_http = [i for i, (_, connector) in enumerate(held) if sender is not None and isinstance(connector, HttpWriter)]
    in_flight = None
    if by_http:
        assert sender is not None
        in_flight = sender.submit([held[i][1].prepare(requests[i]) for i in by_http])  # type: ignore[union-attr]
    for i, (_, connector) in enumerate(held):
        if i in by_http:
            continue
        if isinstance(connector, TickethubError):
            results[i] = WriteResult(None, error=str(connector), permanent=True)
        else:
            results[i] = connector.write(requests[i])
    if in_flight is not None:
        for i, answer in zip(by_http, in_flight.result(), strict=True):
            results[i] = held[i][1].result(answer)  # type: ignore[union-attr]
    return [r for r in results if r is not None]


class Sender(Protocol):
    """Where HTTP writes go out together (`hub.outbound.AsyncSender`)."""

    def submit(self, writes: Sequence[HttpWrite]) -> Future[list[HttpAnswer]]: ...


class _Finishing:
    """One claim's write done: its verdict (retry with back-off, dead, delivered), recorded with the others."""

    def __init__(self, hub: Hub, claim: Claim, result: WriteResult, started: datetime, now: datetime, rng: Random):
        self.claim, self.now = claim, now
        verdict = classify(result.status_code, result.permanent)
        policy = retry_policy(hub)
        wait = None
        if verdict == "retry":
            wait = policy.delay(claim.attempt, rng, result.retry_after)
            if policy.gives_up((now - claim.created_at).total_seconds(), wait):
                verdict = "dead"
                result = replace(result, error=f"gave up after {claim.attempt} attempts: {result.error}")
        self.verdict, self.wait, self.result = verdict, wait, result
        next_at = now + timedelta(seconds=wait) if wait is not None else None
        self.finish = Finish(claim, verdict, started, now, result.status_code, result.error, next_at,
                             result.retry_after)

    def logged(self, recorded: str, latency: float | None, follow_ups: list[int]) -> DeliverOutcome:
        claim, result = self.claim, self.result
        bound = log.bind(ticket_id=claim.ticket_id, system=claim.system, delivery_id=claim.delivery_id,
                         attempt=claim.attempt)
        if recorded == "late":
            bound.warning("delivery finished after its lease ran out; another attempt owns it")
            return DeliverOutcome("late")
        if self.verdict == "dead":
            bound.warning("delivery dead-lettered", status_code=result.status_code, error=result.error)
        else:
            bound.info(f"delivery {self.verdict}", status_code=result.status_code, countdown=self.wait)
        return DeliverOutcome(self.verdict, self.wait, follow_ups, latency)
