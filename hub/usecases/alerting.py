"""Use cases: raise alerts (a refused status, a ticket stuck in a state), and send them to the channels.

Raising only stores: the alert and a pending send per channel that takes its kind are written in the
transaction that found the reason (a refused claim is alerted in the transaction that refused it), so an
alert is never lost and never raised twice (its key). Sending runs later, one Celery task per (alert,
channel), retried with back-off; a channel that is down delays only its own messages, never a ticket.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from random import Random
from typing import Any

import httpx
import structlog

from hub import metrics
from hub.core.alerts import Alert, ChannelSettings
from hub.core.model import Outcome
from hub.core.workflow import REFUSALS
from hub.notify import send_alert
from hub.usecases.context import Hub, retry_policy

log = structlog.get_logger("tickethub.alerts")
_JITTER = Random()
STALE_DISPATCH = timedelta(seconds=60)  # a send published this long ago and still pending is published again


@dataclass(frozen=True)
class SendOutcome:
    kind: str  # sent | retry | failed | gone
    countdown: float | None = None


def channels_for(hub: Hub, kind: str) -> list[str]:
    return list(hub.settings.alerts.channels_for(kind))


def raise_refusals(hub: Hub, uow: Any, ticket_id: str, outcomes: Iterable[Outcome], now: datetime) -> list[int]:
    """An alert per refused status claim among `outcomes` (in the caller's transaction); the new alert ids."""
    raised = []
    for outcome in outcomes:
        if outcome.change.field != "status" or outcome.kind not in REFUSALS or outcome.target is not None:
            continue
        p = outcome.change.provenance
        current = outcome.old.value if outcome.old is not None else None
        facts = {"from_status": current, "to_status": outcome.change.value, "reason": outcome.reason}
        alert_id = uow.alerts.raise_alert(
            f"{outcome.kind}:{ticket_id}:{p.event_id}:{p.system}:{outcome.change.value}", outcome.kind, now,
            channels_for(hub, outcome.kind), ticket_id=ticket_id, status=str(current) if current else None,
            system=p.system, author=p.author, facts=facts)
        if alert_id is not None:
            raised.append(alert_id)
            metrics.ALERTS.labels(outcome.kind, p.system).inc()
    return raised


def raise_dwell_breaches(hub: Hub, now: datetime) -> list[int]:
    """One alert per ticket past its state's dwell limit and one escalation past the second limit, each once
    per stay in the state (a ticket that leaves and comes back is a new stay)."""
    if hub.workflow is None:
        return []
    levels = (("dwell", {s: r.dwell_seconds for s, r in hub.workflow.states.items() if r.dwell_seconds}),
              ("dwell_escalation", {s: r.escalate_seconds for s, r in hub.workflow.states.items()
                                    if r.escalate_seconds}))
    raised = []
    with hub.store.unit_of_work() as uow:
        for kind, limits in levels:
            for breach in uow.alerts.dwell_breaches(kind, limits, now):
                since: datetime = breach["since"]
                facts = {"dwell_seconds": round((now - since).total_seconds()),
                         "limit_seconds": round(breach["limit_seconds"]), "since": since.isoformat()}
                alert_id = uow.alerts.raise_alert(
                    f"{kind}:{breach['ticket_id']}:{breach['status']}:{since.isoformat()}", kind, now,
                    channels_for(hub, kind), ticket_id=breach["ticket_id"], status=breach["status"],
                    system=breach["system"], author=breach["author"], since=since, facts=facts)
                if alert_id is not None:
                    raised.append(alert_id)
                    metrics.ALERTS.labels(kind, breach["status"]).inc()
                    uow.tickets.audit_note(breach["ticket_id"], kind, breach["status"], now,
                                           f"in {breach['status']} since {since.isoformat()}, past its "
                                           f"{'escalation' if kind == 'dwell_escalation' else 'dwell'} limit of "
                                           f"{_hours(breach['limit_seconds'])}")
        uow.commit()
    for alert_id in raised:
        log.warning("dwell limit passed", alert_id=alert_id)
    return raised


def due_sends(hub: Hub) -> list[tuple[int, str]]:
    """Sends to publish: pending, due, and not published recently (their task was lost or is retrying)."""
    now = hub.clock()
    with hub.store.unit_of_work() as uow:
        due = uow.alerts.take_due(now, now - STALE_DISPATCH)
        uow.commit()
    return due


def send_one(hub: Hub, alert_id: int, channel_name: str, client: httpx.Client,
             environ: Mapping[str, str] | None = None) -> SendOutcome:
    """Send one alert to one channel; record the attempt; say when to try again."""
    channel: ChannelSettings | None = hub.settings.alerts.channels.get(channel_name)
    with hub.store.unit_of_work() as uow:
        row, send = uow.alerts.get(alert_id), uow.alerts.send(alert_id, channel_name)
    if row is None or send is None or send["state"] != "pending":
        return SendOutcome("gone")
    now = hub.clock()
    bound = log.bind(ticket_id=row["ticket_id"], alert_id=alert_id, channel=channel_name, kind=row["kind"])
    error: str | None
    wait: float | None = None
    if channel is None:
        result_kind, error = "failed", f"no channel `{channel_name}` is configured any more"
    else:
        alert = to_alert(hub, row)
        result = send_alert(channel, alert, client, os.environ if environ is None else environ,
                            name=channel_name, timeout=hub.settings.alerts.timeout_seconds)
        result_kind, error, wait = result.outcome, result.message or None, None
        if result.outcome == "retry":
            policy = retry_policy(hub)
            wait = policy.delay(send["attempts"] + 1, _JITTER, result.retry_after)
            if policy.gives_up((now - row["raised_at"]).total_seconds(), wait):
                result_kind, error = "failed", f"gave up after {send['attempts'] + 1} attempts: {error}"
    state = {"sent": "sent", "failed": "failed"}.get(result_kind, "pending")
    with hub.store.unit_of_work() as uow:
        uow.alerts.record_send(alert_id, channel_name, state, now, error,
                               now + timedelta(seconds=wait) if wait is not None else None)
        uow.commit()
    metrics.ALERT_SENDS.labels(channel_name, result_kind).inc()
    if result_kind == "failed":
        bound.warning("alert not sent", error=error)
    else:
        bound.info(f"alert {result_kind}", countdown=wait)
    return SendOutcome(result_kind, wait)


def to_alert(hub: Hub, row: Mapping[str, Any]) -> Alert:
    ticket_url = hub.settings.alerts.ticket_url(row["ticket_id"]) if row["ticket_id"] else None
    return Alert(alert_id=f"alert-{row['id']}", kind=row["kind"], ticket_id=row["ticket_id"] or "",
                 raised_at=row["raised_at"], state=row["status"], system=row["system"], author=row["author"],
                 facts={k: v for k, v in row["facts"].items() if isinstance(v, (str, int, float)) or v is None},
                 ticket_url=ticket_url)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"
